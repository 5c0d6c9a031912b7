"""Benchmark every registered method on scikit-learn's digits; writes benchmarks/results/digits.md.

For each method: pretrain with the method's recipe (recipes/<method>-digits.yaml when present,
else the defaults) and a fixed seed, then kNN and linear-probe test accuracy, RankMe, the same
probes on a random-init encoder and on raw pixels, wall time, samples/s and peak memory.

    python benchmarks/digits.py                 # all methods, seeds 0 1 2
    python benchmarks/digits.py --methods simclr --seeds 0

Every run's row is kept in benchmarks/results/digits.jsonl (a rerun of the same method, seed and
epochs replaces its row), and the table is rebuilt from all rows, so methods can be measured in
several sittings. Notes below the table (from a line starting with "Notes") are kept.

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

from common import kept_notes, load_rows, save_rows  # benchmarks/ is on sys.path when a script here runs
from selfsup.config import RunConfig, load_yaml, merge
from selfsup.methods import list_methods
from selfsup.train.runner import pretrain

ROOT = Path(__file__).resolve().parents[1]


def run_one(method: str, seed: int, epochs: int | None) -> dict:
    recipe = ROOT / "recipes" / f"{method}-digits.yaml"
    values = merge(RunConfig().to_dict(), load_yaml(recipe) if recipe.exists() else {"method": method})
    values["train"]["seed"] = seed
    values["train"]["progress_bar"] = False
    if epochs is not None:
        values["train"]["epochs"] = epochs
    config = RunConfig.from_dict(values)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = pretrain(config, run_dir=Path(tmp) / "run")
        wall = time.perf_counter() - start
    m = result.metrics
    samples = m["steps"] * config.train.batch_size
    ev = m["evaluation"]["results"]
    return {
        "method": method, "seed": seed, "epochs": config.train.epochs,
        "knn": ev["pretrained"]["knn"], "linear": ev["pretrained"]["linear"], "rankme": ev["pretrained"]["rankme"],
        "random_knn": ev["random-init"]["knn"], "random_linear": ev["random-init"]["linear"],
        "random_rankme": ev["random-init"]["rankme"],
        "raw_knn": ev["raw input"]["knn"], "raw_linear": ev["raw input"]["linear"],
        "train_s": m["train_seconds_this_session"], "wall_s": wall,
        "samples_per_s": samples / m["train_seconds_this_session"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean = statistics.mean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def table(rows: list[dict], notes: str) -> str:
    methods = sorted({row["method"] for row in rows})
    lines = [
        "# digits benchmark",
        "",
        "scikit-learn digits (8x8 grayscale; 1,347 train / 450 test, stratified, seed 0). "
        "Mean ± std over the seeds listed per row. Backbone resnet_tiny; recipes in `recipes/`.",
        "Probe hyperparameters (k, C) chosen on a split of the train set; test used once. "
        "\"learns\": linear-probe accuracy above the random-init encoder's in every seed.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, 2 CPU cores, "
        f"torch {torch.__version__}, CPU only. Peak memory: the run process's peak resident set size.",
        "",
        "| method | seeds | epochs | kNN % | linear % | RankMe | learns | random-init kNN % | random-init linear % "
        "| random-init RankMe | raw kNN % | raw linear % | train s | samples/s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        r = [row for row in rows if row["method"] == method]
        col = lambda key, scale=100.0, digits=1: mean_std([x[key] for x in r], scale, digits)  # noqa: E731
        learns = "yes" if all(x["linear"] > x["random_linear"] for x in r) else "**no**"
        seeds = ",".join(str(x["seed"]) for x in sorted(r, key=lambda x: x["seed"]))
        lines.append(
            f"| {method} | {seeds} | {r[0]['epochs']} | {col('knn')} | {col('linear')} | {col('rankme', 1)} | {learns} "
            f"| {col('random_knn')} | {col('random_linear')} | {col('random_rankme', 1)} | {col('raw_knn')} "
            f"| {col('raw_linear')} | {col('train_s', 1, 0)} | {col('samples_per_s', 1, 0)} | {col('peak_rss_mib', 1, 0)} |"
        )
    lines += ["", "Command: `python benchmarks/digits.py [--methods ...] [--seeds ...]`", ""]
    return "\n".join(lines) + ("\n" + notes if notes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=list_methods())
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "digits.md")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # child process: one run, its own peak memory
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.epochs)))
        return
    store = args.out.with_suffix(".jsonl")
    rows = load_rows(store)
    for method in args.methods:
        for seed in args.seeds:
            # One process per run, so that peak memory is the run's own.
            command = [sys.executable, __file__, "--one", method, str(seed)]
            if args.epochs is not None:
                command += ["--epochs", str(args.epochs)]
            child = subprocess.run(command, capture_output=True, text=True)
            if child.returncode != 0:
                print(f"{method} seed {seed} failed:\n{child.stderr[-3000:]}", file=sys.stderr)
                continue
            row = json.loads(child.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows = [x for x in rows if (x["method"], x["seed"]) != (method, seed)] + [row]
            save_rows(store, rows)

    notes = kept_notes(args.out)
    text = table(rows, notes)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
