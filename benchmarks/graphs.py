"""Graphs: self-supervised GNN encoders against the random-init encoder and the raw input (results/graphs.md).

Four datasets, two levels, all offline:

- ``package_nodes``: the Debian package graph (benchmarks/data/package_graph.npz, built by
  scripts/build_package_graph.py: 18,666 packages, Depends edges, 1,500 Description words as
  binary features, Section as the label, 14 classes), node level, its Planetoid-style split
  (20 labelled nodes per class for the probes' train set, 1,000 test nodes); pretraining reads
  every node (transductive, as GRACE, BGRL, DGI and GraphMAE do).
- ``sbm_nodes``: a stochastic block model generated here from a fixed seed with PyG's
  ``stochastic_blockmodel_graph`` (5 classes x 400 nodes, expected degree 10, intra-class edge
  share 0.7 by construction), with Gaussian node features whose class means differ weakly (raw
  features alone are mediocre); Planetoid-style masks: 20 train nodes per class, 500 val, 1,000 test.
- ``package_egonets``: graph level, the package graph's 1,357 ego-networks (``level: graph``),
  each labelled by its centre's Section.
- ``sbm_graphs``: graph level, 600 small graphs (20-40 nodes) in 3 classes with the same
  expected degree that differ in block structure (1, 2 or 4 communities); node features are the
  one-hot degree (capped), the GIN paper's input for graphs without attributes.

The generated sets are written once under runs/graph_data/ (git-ignored) and regenerated when
missing; their measured homophily and sizes are in a JSON file beside each.

Every method of a dataset trains with the dataset's budget (steps, batch, backbone width: stated in
the table); optimiser, learning rate, weight decay, schedule and view rates are each method's own
(its ``run_defaults``, applied by the library); a method without its own warm-up gets the
budget's. Then the linear and kNN probes on the frozen encoder, beside the random-init encoder
and the raw input (``evaluate_run`` gives both). Node level: probes fit on the train-mask nodes
and score the test-mask nodes. Graph level: 10-fold cross-validation when the library has
``eval.folds``, else a stratified 20% held out.

    python benchmarks/graphs.py                                         # everything
    python benchmarks/graphs.py --datasets sbm_nodes --methods grace --seeds 0
    python benchmarks/graphs.py --evaluate-only                         # rewrite the table only
    python benchmarks/graphs.py --datasets sbm_nodes --methods grace --max-steps 3   # smoke test

Rows are kept in benchmarks/results/graphs.jsonl, one per (dataset, method, seed, budget,
protocol); a finished row is skipped on a rerun, so methods registered later fill their rows by
running the same command again. A ``--max-steps`` smoke test writes under runs/graphs_smoke/.
Notes below the table (from a line starting with "Notes") are kept. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import ROOT, cell, code_version, kept_notes, load_rows, mean_std, runnable, save_rows  # benchmarks/ is on sys.path when a script here runs

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "runs" / "graph_data"
PACKAGE = ROOT / "benchmarks" / "data" / "package_graph.npz"
KNOWN_GRAPH_METHODS = ["grace", "bgrl", "dgi", "graphmae"]  # row order; any other graph method registered follows
JOINT_METHODS = ["simclr", "vicreg", "barlow_twins"]


def graph_methods() -> list[str]:
    """The graph methods (those that declare the graph modality), registered or expected."""
    from selfsup.methods import METHODS as REGISTERED

    found = [n for n in REGISTERED if "graph" in (REGISTERED.get(n).modalities or ())]
    return KNOWN_GRAPH_METHODS + sorted(n for n in found if n not in KNOWN_GRAPH_METHODS)


GRAPH_METHODS = graph_methods()
METHODS = GRAPH_METHODS + JOINT_METHODS
PROBES = ("knn", "linear")
FOLDS = 10  # graph level: the graph papers' 10-fold protocol, when eval.folds exists


@dataclass(frozen=True)
class GraphSet:
    """One benchmark dataset: where it comes from and the budget every method shares on it."""

    name: str
    level: str  # "node" or "graph"
    steps: int  # optimiser steps (the schedules span them)
    batch_size: int  # node level: sample nodes per step (message passing sees the whole graph)
    backbone: dict[str, Any] = field(default_factory=dict)  # backbone params (the name stays "auto")
    warmup_epochs: int = 0  # for methods without their own warm-up
    about: str = ""

    def path(self) -> Path:
        return PACKAGE if self.name.startswith("package") else CACHE / f"{self.name}.npz"

    def data_params(self) -> dict[str, Any]:
        return {"level": "graph"} if self.name == "package_egonets" else {}

    def samples(self) -> int:
        return describe(self)["samples"]

    def epochs(self) -> int:
        per_epoch = max(1, self.samples() // self.batch_size)
        return math.ceil(self.steps / per_epoch)


DATASETS: dict[str, GraphSet] = {
    d.name: d
    for d in [
        GraphSet("sbm_nodes", "node", steps=200, batch_size=1000, backbone={"hidden_dim": 256}, warmup_epochs=10,
                 about="stochastic block model, 5 classes x 400 nodes"),
        GraphSet("package_nodes", "node", steps=20, batch_size=2048, backbone={"hidden_dim": 128}, warmup_epochs=0,
                 about="Debian package graph, node level, 2,048 sample nodes per step over the whole graph"),
        GraphSet("package_egonets", "graph", steps=300, batch_size=128, backbone={}, warmup_epochs=3,
                 about="the package graph's 1,357 ego-networks, graph level"),
        GraphSet("sbm_graphs", "graph", steps=300, batch_size=128, backbone={}, warmup_epochs=6,
                 about="600 small SBM graphs in 3 classes (1, 2 or 4 blocks)"),
    ]
}
# The order the default plan runs in: node level first, the graph methods before the joint-embedding ones
# on the expensive package graph.
PRIORITY = [("sbm_nodes", METHODS), ("package_nodes", GRAPH_METHODS), ("sbm_graphs", METHODS),
            ("package_egonets", METHODS), ("package_nodes", JOINT_METHODS)]


# ------------------------------------------------------------------------------------------------
# Generated data (runs/graph_data/, regenerated when missing)
# ------------------------------------------------------------------------------------------------

SBM_NODES = {"classes": 5, "per_class": 400, "degree": 10.0, "homophily": 0.7, "features": 32, "mean_scale": 0.15,
             "train_per_class": 20, "val": 500, "test": 1000, "seed": 0}
SBM_GRAPHS = {"per_class": 200, "blocks": [1, 2, 4], "degree": 5.0, "intra": 0.8, "nodes": [20, 40],
              "max_degree_feature": 15, "seed": 0}


def edge_homophily(edge_index: np.ndarray, y: np.ndarray) -> float:
    """The share of edges that join two nodes of the same class (Zhu et al. 2020's edge homophily)."""
    return float((y[edge_index[0]] == y[edge_index[1]]).mean()) if edge_index.shape[1] else float("nan")


def _block_probs(sizes: list[int], degree: float, intra: float) -> list[list[float]]:
    """Edge probabilities giving every node an expected ``degree``, a share ``intra`` of it inside its block."""
    n, k = sum(sizes), len(sizes)
    if k == 1:
        return [[degree / (n - 1)]]
    probs = [[0.0] * k for _ in range(k)]
    for a in range(k):
        for b in range(k):
            probs[a][b] = (degree * intra / (sizes[a] - 1) if a == b
                           else degree * (1 - intra) / (n - sizes[a]))
    sym = [[min(1.0, (probs[a][b] + probs[b][a]) / 2) for b in range(k)] for a in range(k)]
    return sym


def make_sbm_nodes(p: dict[str, Any] = SBM_NODES) -> dict[str, np.ndarray]:
    """The node-level SBM (module docstring), as the arrays of a node-level graph .npz."""
    from torch_geometric.utils import stochastic_blockmodel_graph

    c, n = p["classes"], p["per_class"]
    sizes = [n] * c
    p_in = p["degree"] * p["homophily"] / (n - 1)
    p_out = p["degree"] * (1 - p["homophily"]) / (n * (c - 1))
    probs = [[p_in if a == b else p_out for b in range(c)] for a in range(c)]
    with torch.random.fork_rng():  # PyG's generator draws from torch's global generator
        torch.manual_seed(p["seed"])
        edge_index = stochastic_blockmodel_graph(sizes, probs).numpy().astype(np.int64)
    rng = np.random.default_rng(p["seed"])
    y = np.repeat(np.arange(c), n)
    means = rng.normal(0.0, p["mean_scale"], (c, p["features"]))
    x = (means[y] + rng.normal(0.0, 1.0, (c * n, p["features"]))).astype(np.float32)
    order = rng.permutation(c * n)
    train = np.concatenate([order[y[order] == k][: p["train_per_class"]] for k in range(c)])
    rest = order[~np.isin(order, train)]
    val, test = rest[: p["val"]], rest[p["val"]: p["val"] + p["test"]]
    masks = {}
    for name, idx in (("train_mask", train), ("val_mask", val), ("test_mask", test)):
        m = np.zeros(c * n, dtype=bool)
        m[idx] = True
        masks[name] = m
    return {"x": x, "edge_index": edge_index, "y": y.astype(np.int64), **masks,
            "class_names": np.array([f"block{k}" for k in range(c)])}


def make_sbm_graphs(p: dict[str, Any] = SBM_GRAPHS) -> dict[str, np.ndarray]:
    """The graph-level SBM set (module docstring), as the x / edge_index / batch / y arrays of a .npz."""
    from torch_geometric.utils import stochastic_blockmodel_graph

    rng = np.random.default_rng(p["seed"])
    xs, edges, batch, ys = [], [], [], []
    offset = 0
    cap = p["max_degree_feature"]
    with torch.random.fork_rng():
        torch.manual_seed(p["seed"])
        for g in range(p["per_class"] * len(p["blocks"])):
            label = g % len(p["blocks"])
            k = p["blocks"][label]
            n = int(rng.integers(p["nodes"][0], p["nodes"][1] + 1))
            sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
            ei = stochastic_blockmodel_graph(sizes, _block_probs(sizes, p["degree"], p["intra"])).numpy()
            node_order = rng.permutation(n)  # the block of a node is not its position
            ei = node_order[ei]
            degree = np.bincount(ei[0], minlength=n)
            x = np.zeros((n, cap + 1), dtype=np.float32)
            x[np.arange(n), np.minimum(degree, cap)] = 1.0
            xs.append(x)
            edges.append(ei + offset)
            batch.append(np.full(n, g, dtype=np.int64))
            ys.append(label)
            offset += n
    return {"x": np.concatenate(xs), "edge_index": np.concatenate(edges, axis=1).astype(np.int64),
            "batch": np.concatenate(batch), "y": np.array(ys, dtype=np.int64),
            "class_names": np.array([f"{k} block{'s' if k > 1 else ''}" for k in p["blocks"]])}


def prepare(spec: GraphSet) -> Path:
    """The dataset's file (the generated ones written once; the package graph must exist)."""
    path = spec.path()
    if path.exists() or spec.name.startswith("package"):
        return path
    arrays = make_sbm_nodes() if spec.name == "sbm_nodes" else make_sbm_graphs()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    info_path = path.with_suffix(".json")
    if info_path.exists():
        info_path.unlink()
    return path


def describe(spec: GraphSet) -> dict[str, Any]:
    """What the dataset holds (cached beside it as NAME.json): sizes, classes, measured homophily."""
    info_path = (CACHE / f"{spec.name}.json")
    if info_path.exists():
        return json.loads(info_path.read_text())
    from selfsup.data.graph import read_graph

    g = read_graph(prepare(spec), level="graph" if spec.level == "graph" else None)
    info: dict[str, Any] = {"name": spec.name, "level": spec.level, "features": g.num_features,
                            "classes": g.num_classes}
    if spec.level == "node":
        y, ei = g.y.numpy(), g.edge_index.numpy()
        info.update(samples=int(g.x.shape[0]), nodes=int(g.x.shape[0]), edges=int(ei.shape[1] // 2),
                    homophily=round(edge_homophily(ei, y), 4),
                    train=int(g.train_mask.sum()), val=int(g.val_mask.sum()) if g.val_mask is not None else 0,
                    test=int(g.test_mask.sum()))
    else:
        nodes = [int(d.x.shape[0]) for d in g.graphs]
        edges = [int(d.edge_index.shape[1] // 2) for d in g.graphs]
        counts = np.bincount(g.y.numpy())
        info.update(samples=len(g.graphs), graphs=len(g.graphs), mean_nodes=round(float(np.mean(nodes)), 1),
                    mean_edges=round(float(np.mean(edges)), 1), class_counts=[int(c) for c in counts])
    CACHE.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(info, indent=1))
    return info


# ------------------------------------------------------------------------------------------------
# One run (in a child process, so that its peak memory and time are its own)
# ------------------------------------------------------------------------------------------------


def has_folds() -> bool:
    from selfsup.config import EvalConfig

    return any(f.name == "folds" for f in dataclasses.fields(EvalConfig))


def protocol(spec: GraphSet) -> str:
    if spec.level == "node":
        return "test mask"
    return f"{FOLDS}-fold CV" if has_folds() else "20% held out"


def run_config(spec: GraphSet, method: str, seed: int, max_steps: int = 0) -> Any:
    """The run's RunConfig: the dataset's budget; everything else the method's own or the library's."""
    from selfsup.config import RunConfig
    from selfsup.methods import METHODS as REGISTERED

    steps = max_steps or spec.steps
    epochs = spec.epochs()
    if epochs == 100:  # the library default would let a method's run_defaults replace it
        epochs = 101
    train: dict[str, Any] = {
        "epochs": epochs, "max_steps": steps, "batch_size": spec.batch_size, "seed": seed,
        "progress_bar": False, "monitor_every_n_epochs": epochs, "checkpoint_every_n_epochs": epochs,
    }
    own = REGISTERED.get(method).run_defaults.get("train", {})
    if "warmup_epochs" not in own:
        train["warmup_epochs"] = spec.warmup_epochs
    evaluation: dict[str, Any] = {"probes": list(PROBES)}
    if spec.level == "graph" and has_folds():
        evaluation["folds"] = FOLDS
    return RunConfig.from_dict({
        "data": {"name": f"graph:{prepare(spec)}", "params": spec.data_params()},
        "method": method,
        # The modality's default for the level, named: every method on the same encoder (with "auto",
        # GraphMAE would take its paper's GAT at node level).
        "backbone": {"name": "gcn" if spec.level == "node" else "gin", "params": dict(spec.backbone)},
        "views": "auto",
        "train": train,
        "eval": evaluation,
    })


def run_method(spec: GraphSet, method: str, seed: int, max_steps: int) -> dict:
    """Pretrain ``method`` on ``spec`` and probe its frozen encoder beside the random-init one and the raw input."""
    import selfsup.rundir
    from selfsup.config import RunConfig, load_yaml
    from selfsup.evaluate.run import evaluate_run
    from selfsup.train.runner import pretrain

    # Input statistics from every sample (the library takes a random 10,000 when there are more): on the
    # package graph (18,666 nodes, sparse words) some words occur only outside such a subset, and every
    # row here was measured this way (see the notes: before the library's fix such a word swamped the GCN).
    selfsup.rundir.STATISTICS_SAMPLES = max(selfsup.rundir.STATISTICS_SAMPLES, 10**9)
    config = run_config(spec, method, seed, max_steps)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        result = pretrain(config, run_dir=run_dir, evaluate=False)
        train_s = time.perf_counter() - start
        resolved = load_yaml(run_dir / "config.yaml")
        start = time.perf_counter()
        record = evaluate_run(run_dir, method=result.method, config=RunConfig.from_dict(resolved), data=result.data,
                              probes=PROBES)
        eval_s = time.perf_counter() - start
    ev = record["evaluation"]
    res = ev["results"]
    pre, rnd, raw = res["pretrained"], res["random-init"], res["raw input"]
    t = resolved["train"]
    return {
        "dataset": spec.name, "method": method, "seed": seed, "steps_budget": max_steps or spec.steps,
        "batch_size": spec.batch_size, "max_steps": max_steps, "protocol": protocol(spec),
        "steps": result.metrics["steps"], "epochs": t["epochs"],
        "backbone": resolved["backbone"]["name"], "backbone_params": resolved["backbone"]["params"],
        "views": resolved["views"], "optimizer": t["optimizer"], "lr": t["lr"], "weight_decay": t["weight_decay"],
        "warmup_epochs": t["warmup_epochs"], "min_lr_ratio": t["min_lr_ratio"],
        "linear": pre["linear"], "knn": pre["knn"], "rankme": pre.get("rankme"),
        "random_linear": rnd["linear"], "random_knn": rnd["knn"], "random_rankme": rnd.get("rankme"),
        "raw_linear": raw["linear"], "raw_knn": raw["knn"], "note": ev.get("note"), "statistics": "every sample",
        "train_s": train_s, "eval_s": eval_s, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(), "code": code_version(), "torch": torch.__version__,
    }


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------


def _key(row: dict) -> tuple:
    return (row["dataset"], row["method"], row["seed"], row["steps_budget"], row["batch_size"],
            row.get("max_steps", 0), row["protocol"])


def current(spec: GraphSet, row: dict) -> bool:
    """Whether ``row`` was run with ``spec``'s budget and protocol (older budgets stay in the jsonl, unshown)."""
    return (row["steps_budget"], row["batch_size"], row["protocol"]) == (
        row.get("max_steps") or spec.steps, spec.batch_size, protocol(spec))


def _budget_line(spec: GraphSet, info: dict[str, Any], rows: list[dict]) -> str:
    width = spec.backbone.get("hidden_dim")
    backbones = sorted({f"{r['backbone']}" for r in rows})
    unit = "sample nodes" if spec.level == "node" else "graphs"
    epochs = spec.steps / max(1, info["samples"] // spec.batch_size)
    return (f"Budget: {spec.steps} steps of {spec.batch_size} {unit} ({epochs:.3g} epochs), "
            f"backbone {', '.join(backbones) or 'auto'} (library defaults"
            + (f", hidden_dim {width}" if width else "") + "). Probes: "
            + ("train-mask nodes -> test-mask nodes." if spec.level == "node" else f"{protocol(spec)}."))


def _describe_line(info: dict[str, Any]) -> str:
    if info["level"] == "node":
        return (f"{info['nodes']:,} nodes, {info['edges']:,} undirected edges, {info['features']} features, "
                f"{info['classes']} classes, measured edge homophily {info['homophily']:.2f}; "
                f"split {info['train']} / {info['val']} / {info['test']} (train / val / test).")
    return (f"{info['graphs']:,} graphs, {info['mean_nodes']} nodes and {info['mean_edges']} edges on average, "
            f"{info['features']} node features, {info['classes']} classes ({', '.join(map(str, info['class_counts']))} "
            "graphs).")


def section(spec: GraphSet, rows: list[dict]) -> list[str]:
    info = describe(spec)
    lines = [f"## {spec.name}", "", f"{spec.about}: {_describe_line(info)}", "", _budget_line(spec, info, rows), "",
             "| method | seeds | linear | kNN | RankMe | Δ linear vs random-init | time per run, s (train) |",
             "|---|---|---|---|---|---|---|"]
    methods: dict[str, list[dict]] = {}
    for r in rows:
        methods.setdefault(r["method"], []).append(r)
    order = [m for m in METHODS if m in methods] + sorted(m for m in methods if m not in METHODS)
    for m in order:
        r = sorted(methods[m], key=lambda x: x["seed"])
        delta = [x["linear"] - x["random_linear"] for x in r]
        lines.append(
            f"| {m} | {','.join(str(x['seed']) for x in r)} | {cell([x['linear'] for x in r])} "
            f"| {cell([x['knn'] for x in r])} | {cell([x.get('rankme') for x in r], 1.0)} "
            f"| {'+' if mean_std(delta)[0] > 0 else ''}{cell(delta)} "
            f"| {cell([x['train_s'] + x['eval_s'] for x in r], 1.0, 0)} "
            f"({cell([x['train_s'] for x in r], 1.0, 0)}) |"
        )
    per_seed: dict[int, dict] = {}
    for r in rows:  # the random-init encoder and the raw input of a seed are the same for every method
        per_seed.setdefault(r["seed"], r)
    base = [per_seed[s] for s in sorted(per_seed)]
    if base:
        seeds = ",".join(str(s) for s in sorted(per_seed))
        lines += [
            f"| random-init encoder | {seeds} | {cell([b['random_linear'] for b in base])} "
            f"| {cell([b['random_knn'] for b in base])} "
            f"| {cell([b.get('random_rankme') for b in base], 1.0)} | – | – |",
            f"| raw input | {seeds} | {cell([b['raw_linear'] for b in base])} | {cell([b['raw_knn'] for b in base])} "
            "| – | – | – |",
        ]
    lines += ["", *_verdict(methods, base), ""]
    return lines


def _verdict(methods: dict[str, list[dict]], base: list[dict]) -> list[str]:
    """Which methods beat the random-init encoder (mean Δ over seeds above its std, both probes),
    and the best method against the raw input."""
    if not methods or not base:
        return []
    above, even, below = [], [], []
    for m, r in methods.items():
        parts = []
        verdicts = []
        for probe in ("linear", "knn"):
            s = mean_std([x[probe] - x[f"random_{probe}"] for x in r])
            assert s is not None
            parts.append(f"{'kNN' if probe == 'knn' else probe} {100 * s[0]:+.1f}")
            verdicts.append(1 if s[0] > s[1] and s[0] > 0 else -1 if s[0] < -s[1] and s[0] < 0 else 0)
        text = f"{m} ({', '.join(parts)})" + ("" if len(r) > 1 else ", one seed")
        (above if min(verdicts) == 1 else below if max(verdicts) == -1 else even).append(text)
    lines = [
        "Against the random-init encoder (mean Δ over seeds, points; above / below: both probes' Δ beyond one "
        "std over seeds): above: " + ("; ".join(above) or "none") + ". Mixed or within noise: "
        + ("; ".join(even) or "none") + ". Below: " + ("; ".join(below) or "none") + "."
    ]
    raw = mean_std([b["raw_linear"] for b in base])
    best = max(methods, key=lambda m: mean_std([x["linear"] for x in methods[m]])[0])  # type: ignore[index]
    mean = mean_std([x["linear"] for x in methods[best]])[0]  # type: ignore[index]
    if raw is not None:
        lines += ["", f"Best linear probe: {best} {100 * mean:.1f}, raw input {100 * raw[0]:.1f} "
                  f"({100 * (mean - raw[0]):+.1f} points)."]
    return lines


def table(rows: list[dict], notes: str) -> str:
    lines = [
        "# Graph benchmark",
        "",
        "Test accuracy %, mean ± std over the seeds listed (seed = pretraining seed = probe seed). Each method "
        "trains with the dataset's budget (steps, batch, backbone: below), and with its own optimiser, learning "
        "rate, weight decay, schedule and view rates (its `run_defaults`; a method without its own warm-up gets "
        "the budget's); default `graph` views (edge dropping + feature-column masking), the same backbone for every "
        "method (`gcn` at node level, `gin` at graph level: the modality's defaults). Probes on the frozen encoder: linear and kNN (hyperparameters "
        "chosen on a split of the probe's train set; test used once). Baselines: the same probes on the "
        "random-init encoder (same architecture and seed) and on the raw input (a node's own features; a "
        "graph's mean node features). Δ: the linear probe minus the random-init encoder's, per seed. RankMe "
        "(Garrido et al. 2023) of the probe's train embeddings. Time per run: pretraining + evaluation "
        "(pretraining alone in brackets), one thread.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other work, "
        f"{max((r.get('threads', 1) for r in rows), default=1)} thread per run (OMP_NUM_THREADS=1), "
        f"torch {torch.__version__}, CPU only.",
        "",
    ]
    for name, spec in DATASETS.items():
        mine = [r for r in rows if r["dataset"] == name and current(spec, r)]
        if mine:
            lines += section(spec, mine)
        other = sum(r["dataset"] == name and not current(spec, r) for r in rows)
        if other:
            lines += [f"({other} row(s) of {name} with another budget or protocol are kept in graphs.jsonl, "
                      "not shown.)", ""]
    missing = [d for d in DATASETS if not any(r["dataset"] == d for r in rows)]
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    lines += ["Command: `OMP_NUM_THREADS=1 python benchmarks/graphs.py [--datasets ...] [--methods ...] [--seeds ...]`",
              ""]
    return "\n".join(lines) + ("\n" + notes if notes else "")


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def plan(datasets: list[str], methods: list[str], seeds: list[int]) -> list[tuple[str, str, int]]:
    """(dataset, method, seed) in the PRIORITY order, then anything else asked for."""
    out: list[tuple[str, str, int]] = []
    for dataset, group in PRIORITY:
        if dataset in datasets:
            out += [(dataset, m, s) for m in group if m in methods for s in seeds]
    out += [(d, m, s) for d in datasets for m in methods for s in seeds if (d, m, s) not in out]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS), metavar="DATASET",
                        help=f"default: all ({', '.join(DATASETS)})")
    parser.add_argument("--methods", nargs="*", default=METHODS, help=f"default: {' '.join(METHODS)}")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=0, help="smoke test: this many steps per run "
                        "(rows go to runs/graphs_smoke/, not to the results)")
    parser.add_argument("--evaluate-only", action="store_true", help="rewrite the table from the jsonl; run nothing")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/graphs.md")
    parser.add_argument("--one", nargs=3, metavar=("DATASET", "METHOD", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or (ROOT / "runs" / "graphs_smoke" / "graphs.md" if args.max_steps else RESULTS / "graphs.md")

    if args.one:  # child process: one run
        spec = DATASETS[args.one[0]]
        print(json.dumps(run_method(spec, args.one[1], int(args.one[2]), args.max_steps)))
        return

    store = out.with_suffix(".jsonl")
    rows = load_rows(store)
    if not args.evaluate_only:
        methods = []
        for method in args.methods:
            reason = runnable(method, "graph")
            if reason:
                print(f"skipping {method}: {reason}; rerun later to fill its rows", flush=True)
            else:
                methods.append(method)
        todo = plan(args.datasets, methods, args.seeds)
        for i, (dataset, method, seed) in enumerate(todo, start=1):
            spec = DATASETS[dataset]
            prepare(spec)
            describe(spec)
            key = (dataset, method, seed, args.max_steps or spec.steps, spec.batch_size, args.max_steps,
                   protocol(spec))
            tag = f"[{i}/{len(todo)}] {dataset} {method} seed {seed}"
            if any(_key(r) == key for r in rows):
                print(f"{tag}: finished earlier, kept", flush=True)
                continue
            command = [sys.executable, __file__, "--one", dataset, method, str(seed),
                       "--max-steps", str(args.max_steps)]
            start = time.perf_counter()
            child = subprocess.run(command, capture_output=True, text=True)
            if child.returncode != 0:
                print(f"{tag}: failed\n{child.stderr[-3000:]}", file=sys.stderr, flush=True)
                continue
            row = json.loads(child.stdout.strip().splitlines()[-1])
            rows = load_rows(store)  # as on disk (nothing else writes it; kept simple and safe)
            rows = [r for r in rows if _key(r) != key] + [row]
            save_rows(store, rows)
            out.parent.mkdir(parents=True, exist_ok=True)
            notes = kept_notes(out)
            out.write_text(table(rows, notes))
            print(f"{tag}: {row['steps']} steps, linear {100 * row['linear']:.1f} (random-init "
                  f"{100 * row['random_linear']:.1f}, raw {100 * row['raw_linear']:.1f}), kNN {100 * row['knn']:.1f}, "
                  f"RankMe {row['rankme'] or math.nan:.1f}, train {row['train_s']:.0f} s "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    notes = kept_notes(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table(rows, notes))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
