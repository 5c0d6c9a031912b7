"""Batches of a large graph: the whole graph vs k-hop subgraphs vs sampled neighbourhoods (fanout).

On the Debian package graph (benchmarks/data/package_graph.npz: 18,666 nodes, 67,568 edges,
1,500 bag-of-words features, 14 sections, Planetoid-style masks), node level, for each way to batch
its nodes (``data.hops`` / ``data.fanout``, selfsup.data.graph_source.NodeSource):

* ``full``: every batch is the whole graph, the batch's nodes its samples;
* ``hops=2``: the subgraph within 2 hops of the batch's nodes (exact for a 2-layer GNN);
* ``fanout=[10, 10]`` and ``[5, 5]``: GraphSAGE's sampled neighbourhoods (at most f incoming
  edges per node per hop, the sampled edges only).

Each mode pretrains the same 2-layer GCN (hidden 128, PReLU) with SimCLR on GRACE's graph views
(edge dropping 0.2/0.4, feature masking 0.3/0.4), batch 256 nodes, the same number of optimiser
steps, and reports training steps/s, the nodes and edges a batch holds, the training process's
peak memory, and the linear probe's test accuracy (the Planetoid protocol: probe fit on the 280
train nodes, scored on the 1,000 test nodes; the encoder embeds them with the same batching).

One process per mode (``resource.getrusage`` peak RSS is the process's own, read after training,
before the evaluation); a ``data`` row is a process that only reads the graph and one batch: the
floor every mode pays. CPU only.

    python benchmarks/graph_sampling.py                    # every mode, 40 steps each
    python benchmarks/graph_sampling.py --modes fanout10 --steps 20

Rows go to benchmarks/results/graph_sampling.jsonl (a rerun of a mode and budget replaces its row)
and the table to benchmarks/results/graph_sampling.md (notes from a line starting "Notes" kept).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import ROOT, code_version, kept_notes, load_rows, save_rows  # benchmarks/ is on sys.path when a script here runs

from selfsup.config import RunConfig
from selfsup.data import load_dataset
from selfsup.evaluate.run import evaluate_run
from selfsup.train.runner import pretrain

GRAPH = ROOT / "benchmarks" / "data" / "package_graph.npz"
RESULTS = ROOT / "benchmarks" / "results"
MODES: dict[str, dict] = {
    "full": {},
    "hops2": {"hops": 2},
    "fanout10": {"fanout": [10, 10]},
    "fanout5": {"fanout": [5, 5]},
}
BATCH = 256
HIDDEN = 128


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batch_size_stats(options: dict, batches: int = 20) -> tuple[float, float]:
    """Mean nodes and edges of a batch of 256 random nodes (the same 20 batches for every mode)."""
    source = load_dataset(f"graph:{GRAPH}", options=options).pretrain
    g = torch.Generator().manual_seed(0)
    nodes, edges = [], []
    for _ in range(batches):
        picked = torch.randperm(len(source), generator=g)[:BATCH].tolist()
        x = source.__getitems__(picked)["x"]
        nodes.append(x.num_nodes)
        edges.append(x.num_edges)
    return statistics.mean(nodes), statistics.mean(edges)


def run_data_only() -> dict:
    source = load_dataset(f"graph:{GRAPH}").pretrain
    source.__getitems__(list(range(BATCH)))
    return {"mode": "data", "peak_train_mib": peak_mib()}


def run_mode(mode: str, steps: int, seed: int) -> dict:
    options = MODES[mode]
    config = RunConfig.from_dict({
        "data": {"name": f"graph:{GRAPH}", "params": options},
        "method": "simclr",
        "views": "graph",
        "backbone": {"name": "gcn", "params": {"hidden_dim": HIDDEN, "num_layers": 2}},
        "train": {
            "epochs": 1 + steps * BATCH // 18_666, "max_steps": steps, "batch_size": BATCH, "seed": seed,
            "warmup_epochs": 0, "progress_bar": False, "monitor_every_n_epochs": 1000, "monitor_samples": 256,
            "num_workers": 0,
        },
        "eval": {"after_training": False, "probes": ["linear"], "trees": False},
    })
    with tempfile.TemporaryDirectory() as tmp:
        result = pretrain(config, run_dir=Path(tmp) / "run")
        train_peak = peak_mib()
        m = result.metrics
        start = time.perf_counter()
        record = evaluate_run(Path(tmp) / "run", method=result.method, config=config, data=result.data)
        eval_s = time.perf_counter() - start
        # The same encoders embedding with the whole graph (GraphSAGE's full-neighbourhood inference).
        whole = evaluate_run(
            Path(tmp) / "run", method=result.method, config=config, data=load_dataset(f"graph:{GRAPH}"),
        )["evaluation"]["results"]
    ev = record["evaluation"]["results"]
    nodes, edges = batch_size_stats(options)
    return {
        "mode": mode, "options": options, "steps": m["steps"], "seed": seed,
        "train_s": m["train_seconds_this_session"], "steps_per_s": m["steps"] / m["train_seconds_this_session"],
        "batch_nodes": nodes, "batch_edges": edges, "peak_train_mib": train_peak, "peak_all_mib": peak_mib(),
        "eval_s": eval_s, "linear": ev["pretrained"]["linear"], "random_linear": ev["random-init"]["linear"],
        "raw_linear": ev["raw input"]["linear"], "linear_whole": whole["pretrained"]["linear"],
        "random_linear_whole": whole["random-init"]["linear"], "code": code_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def table(rows: list[dict], notes: str) -> str:
    data_row = next((r for r in rows if r["mode"] == "data"), None)
    runs = [r for r in rows if r["mode"] != "data"]
    order = list(MODES)
    runs.sort(key=lambda r: (r["steps"], order.index(r["mode"]), r["seed"]))
    lines = [
        "# Batching a large graph: whole graph, k-hop subgraphs, sampled neighbourhoods",
        "",
        "Written by `python benchmarks/graph_sampling.py` (rows kept in `graph_sampling.jsonl`).",
        "",
        f"Machine: AMD EPYC ({platform.machine()}), 2 cores shared with other jobs, `OMP_NUM_THREADS=1`, no GPU; "
        f"torch {torch.__version__}. Code: {', '.join(sorted({r.get('code', '?') for r in runs}))}.",
        "",
        "Data: the Debian package graph, node level (18,666 nodes, 135,136 directed edges after symmetrising, "
        "1,500 features, 14 classes). Budget per mode: SimCLR on GRACE's graph views (edges dropped 0.2/0.4, "
        f"feature columns masked 0.3/0.4), a 2-layer GCN (hidden {HIDDEN}, PReLU), batch {BATCH} nodes, AdamW lr 2e-3, "
        "no warm-up, the steps in the table (one process per mode). Linear probe: the Planetoid protocol (fit on "
        "the 280 train nodes, C chosen on a split of them, scored once on the 1,000 test nodes), every encoder "
        "embedding with its mode's batches, and again embedding with the whole graph (the last two columns: "
        "full-neighbourhood inference). Steps/s: Lightning's fit time over the optimiser steps. Nodes / edges: "
        "the mean of 20 batches of 256 random nodes. Peak memory: the process's peak RSS after training "
        "(before the evaluation)" + (
            f"; reading the graph and one batch alone peaks at {data_row['peak_train_mib']:.0f} MiB." if data_row else "."
        ),
        "",
        "| mode | data options | steps | steps/s | nodes / batch | edges / batch | peak train MiB "
        "| linear % | random-init linear % | raw-input linear % | linear %, whole-graph embedding "
        "| random-init, whole-graph embedding |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "(whole graph)"
        lines.append(
            f"| {r['mode']} | {opts} | {r['steps']} | {r['steps_per_s']:.2f} | {r['batch_nodes']:,.0f} "
            f"| {r['batch_edges']:,.0f} | {r['peak_train_mib']:.0f} | {100 * r['linear']:.1f} "
            f"| {100 * r['random_linear']:.1f} | {100 * r['raw_linear']:.1f} | {100 * r['linear_whole']:.1f} "
            f"| {100 * r['random_linear_whole']:.1f} |"
        )
    lines += ["", "Command: `OMP_NUM_THREADS=1 python benchmarks/graph_sampling.py [--modes ...] [--steps N]`", ""]
    return "\n".join(lines) + ("\n" + notes if notes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "graph_sampling.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    if args.one:  # a child process: one mode, its own peak memory
        row = run_data_only() if args.one == "data" else run_mode(args.one, args.steps, args.seed)
        print(json.dumps(row))
        return
    store = args.out.with_suffix(".jsonl")
    rows = load_rows(store)
    for mode in ["data", *args.modes]:
        command = [sys.executable, __file__, "--one", mode, "--steps", str(args.steps), "--seed", str(args.seed)]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:
            print(f"{mode} failed:\n{child.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads(child.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        same = (lambda r: r["mode"] == "data") if mode == "data" else (
            lambda r: (r["mode"], r.get("steps"), r.get("seed")) == (mode, row["steps"], row["seed"])
        )
        rows = [r for r in rows if not same(r)] + [row]
        save_rows(store, rows)
    notes = kept_notes(args.out)
    text = table(rows, notes)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
