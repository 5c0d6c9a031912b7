"""Benchmark every registered method on scikit-learn's digits; writes benchmarks/results/digits.md.

For each method: pretrain with the method's recipe (recipes/<method>-digits.yaml when present,
else the defaults) and a fixed seed, then kNN and linear-probe test accuracy, RankMe, the same
probes on a random-init encoder and on raw pixels, wall time, samples/s and peak memory.

    python benchmarks/digits.py                 # all methods, seeds 0 1 2
    python benchmarks/digits.py --methods simclr --seeds 0

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
    rows = []
    for method in args.methods:
        for seed in args.seeds:
            # One process per run, so that peak memory is the run's own.
            command = [sys.executable, __file__, "--one", method, str(seed)]
            if args.epochs is not None:
                command += ["--epochs", str(args.epochs)]
            child = subprocess.run(command, capture_output=True, text=True)
            if child.returncode != 0:
                sys.exit(f"{method} seed {seed} failed:\n{child.stderr[-3000:]}")
            row = json.loads(child.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows.append(row)

    lines = [
        "# digits benchmark",
        "",
        f"scikit-learn digits (8x8 grayscale; 1,347 train / 450 test, stratified, seed 0). "
        f"Seeds {args.seeds}; mean ± std over seeds. Backbone resnet_tiny; recipes in `recipes/`.",
        "Probe hyperparameters (k, C) chosen on a split of the train set; test used once.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, CPU only. Peak memory: the run process's peak resident set size.",
        "",
        "| method | epochs | kNN % | linear % | RankMe | random-init kNN % | random-init linear % | random-init RankMe "
        "| raw kNN % | raw linear % | train s | samples/s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        r = [row for row in rows if row["method"] == method]
        col = lambda key, scale=100.0, digits=1: mean_std([x[key] for x in r], scale, digits)  # noqa: E731
        lines.append(
            f"| {method} | {r[0]['epochs']} | {col('knn')} | {col('linear')} | {col('rankme', 1)} | {col('random_knn')} "
            f"| {col('random_linear')} | {col('random_rankme', 1)} | {col('raw_knn')} | {col('raw_linear')} "
            f"| {col('train_s', 1, 0)} | {col('samples_per_s', 1, 0)} | {col('peak_rss_mib', 1, 0)} |"
        )
    lines += ["", "Command: `python benchmarks/digits.py " + " ".join(sys.argv[1:]) + "`", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
