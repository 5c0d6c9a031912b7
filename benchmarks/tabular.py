"""Tables: self-supervised encoders against the raw input and gradient-boosted trees (results/tabular.md).

Six offline tables: four from Debian's r-cran-mlbench (LetterRecognition, Satellite, DNA, Soybean;
R data files read with pyreadr, the ``bench-tabular`` extra) and scikit-learn's wine and
breast_cancer. Each is converted once to ``Name_TRAIN.csv`` / ``Name_TEST.csv`` under
runs/tabular_data/ (R factors as text, missing values as empty cells) and read back through
``table:PATH``, as a user's CSV would be. Splits: the dataset's conventional one where it has
one (LetterRecognition: first 16,000 / last 4,000 rows; Satellite: the StatLog 4,435 / 2,000;
DNA: the StatLog 2,000 / 1,186), else a stratified 75% / 25% split with seed 0 (the built-in
datasets' split).

Every method pretrains its encoder with the same budget (the dataset's epochs, batch 128, AdamW at
lr 1e-3, weight decay 1e-4, warm-up then cosine; default table views and ``--backbone auto``:
table_mlp, or ft_transformer for a method that needs tokens), then the kNN and linear probes on
full labels and the linear probe with 1% and 10% of the labels (the ``fewshot`` probe: 5 draws,
at least 2 labels per class) on the frozen encoder and on the random-init encoder. The baselines
do not depend on the method and run once per dataset and seed: the same probes on the raw input
(standardised numeric columns, one-hot categorical ones) and gradient-boosted trees on the raw
values (``selfsup.evaluate.trees``: HistGradientBoosting, learning rate and leaves chosen on a split
of train, native categorical splits, missing values routed by the trees).

    python benchmarks/tabular.py                                      # every dataset, method, seed
    python benchmarks/tabular.py --datasets wine Soybean --methods simclr byol --seeds 0
    python benchmarks/tabular.py --evaluate-only                      # rewrite the table only
    python benchmarks/tabular.py --datasets wine --methods simclr --max-steps 5   # smoke test

Rows are kept in benchmarks/results/tabular.jsonl, one per (dataset, method or "baselines", seed,
budget); a finished row is skipped on a rerun, so methods registered later (scarf, vime, subtab,
tjepa) fill their rows by running the same command again. Methods not registered yet are skipped
with a note. A ``--max-steps`` smoke test writes under runs/tabular_smoke/, never to the results.
Notes below the table (from a line starting with "Notes") are kept. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import ROOT, cell, code_version, kept_notes, load_rows, mean_std, runnable, save_rows  # benchmarks/ is on sys.path when a script here runs

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "runs" / "tabular_data"
MLBENCH = Path("/usr/lib/R/site-library/mlbench/data")
# The methods of the table, in its row order: the tabular family first (issue 13), then the
# general joint-embedding methods that already run on tables.
METHODS = ["scarf", "vime", "subtab", "tjepa", "simclr", "vicreg", "barlow_twins", "byol"]
BASELINES = "baselines"  # the "method" of the per-(dataset, seed) baseline row
BATCH, LR, WEIGHT_DECAY = 128, 1e-3, 1e-4
FRACTIONS = ("1% labels", "10% labels")  # the fewshot probe's fraction columns shown
PROBES = ("knn", "linear", "fewshot")
MIN_PER_CLASS = 2  # labels per class the 1% and 10% settings keep at least (eval.fewshot_min_per_class)
TREES_ROW = "gradient-boosted trees"  # selfsup.evaluate.trees.TREES_ROW


@dataclass(frozen=True)
class TableSet:
    """One benchmark table: where it comes from, its label column and split, and its budget."""

    name: str
    source: str  # "mlbench" (an .rda file) or "sklearn"
    label: str
    epochs: int  # pretraining epochs at batch 128
    first_train_rows: int | None = None  # a conventional split: the first rows train, the rest test
    split_note: str = "stratified 75% / 25%, seed 0"


DATASETS: dict[str, TableSet] = {
    t.name: t
    for t in [
        TableSet("wine", "sklearn", "target", epochs=200),
        TableSet("breast_cancer", "sklearn", "target", epochs=100),
        TableSet("Soybean", "mlbench", "Class", epochs=100),
        TableSet("DNA", "mlbench", "Class", epochs=40, first_train_rows=2000,
                 split_note="StatLog's 2,000 / 1,186 (the first 2,000 rows train)"),
        TableSet("Satellite", "mlbench", "classes", epochs=30, first_train_rows=4435,
                 split_note="StatLog's 4,435 / 2,000 (the first 4,435 rows train)"),
        TableSet("LetterRecognition", "mlbench", "lettr", epochs=10, first_train_rows=16000,
                 split_note="the documented first 16,000 / last 4,000 rows"),
    ]
}
SMALL = ["wine", "breast_cancer", "Soybean"]


# ------------------------------------------------------------------------------------------------
# Data: each table converted once to Name_TRAIN.csv / Name_TEST.csv (+ Name.json, what it holds)
# ------------------------------------------------------------------------------------------------


def _frame(spec: TableSet) -> tuple[Any, list[str]]:
    """The whole table as a pandas DataFrame (label column included, categorical columns as text)
    and the names of its categorical feature columns."""
    import pandas as pd

    if spec.source == "sklearn":
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{spec.name}")()
        frame = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
        frame[spec.label] = np.asarray(bunch.target_names)[bunch.target]
        return frame, []
    import pyreadr

    frame = pyreadr.read_r(str(MLBENCH / f"{spec.name}.rda"))[spec.name].reset_index(drop=True)
    categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype) and c != spec.label]
    for column in [*categorical, spec.label]:  # R factors -> their labels as text, NaN stays missing
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame, categorical


def prepare(spec: TableSet) -> dict[str, Any]:
    """Write the table's CSV pair once (skipped when present); returns its description (Name.json)."""
    info_path = CACHE / f"{spec.name}.json"
    if info_path.exists():
        return json.loads(info_path.read_text())
    from selfsup.data.builtin import stratified_split

    frame, categorical = _frame(spec)
    y = frame[spec.label].astype(str).to_numpy()
    if spec.first_train_rows is not None:
        train_idx, test_idx = np.arange(spec.first_train_rows), np.arange(spec.first_train_rows, len(frame))
    else:
        train_idx, test_idx = stratified_split(y, 0.25, 0)
    CACHE.mkdir(parents=True, exist_ok=True)
    for part, idx in (("TRAIN", train_idx), ("TEST", test_idx)):
        frame.iloc[idx].to_csv(CACHE / f"{spec.name}_{part}.csv", index=False, na_rep="")
    features = [c for c in frame.columns if c != spec.label]
    info = {
        "name": spec.name, "label": spec.label, "categorical": categorical,
        "rows": len(frame), "train_rows": int(train_idx.size), "test_rows": int(test_idx.size),
        "numeric_columns": len(features) - len(categorical), "categorical_columns": len(categorical),
        "categories": sorted({int(frame[c].nunique()) for c in categorical}),
        "classes": int(np.unique(y).size),
        "smallest_train_class": int(np.unique(y[train_idx], return_counts=True)[1].min()),
        "missing_cells": int(frame[features].isna().sum().sum()),
        "rows_with_missing": int(frame[features].isna().any(axis=1).sum()),
        "split": spec.split_note,
    }
    info_path.write_text(json.dumps(info, indent=1))
    return info


def data_config(spec: TableSet) -> dict[str, Any]:
    """The run's data component: the training CSV, its label column, and the R factor columns
    declared categorical (their levels are the digits 0, 1, ..., which would be read as numbers)."""
    info = prepare(spec)
    params: dict[str, Any] = {"label": spec.label}
    if info["categorical"]:
        params["categorical"] = info["categorical"]
    return {"name": f"table:{CACHE / f'{spec.name}_TRAIN.csv'}", "params": params}


# ------------------------------------------------------------------------------------------------
# One run (in a child process, so that its peak memory is its own)
# ------------------------------------------------------------------------------------------------


def _few(result: dict[str, Any]) -> dict[str, float | None]:
    """The 1% and 10% cells (mean over the draws) of a results row, None where absent."""
    return {c: (result[c]["mean"] if isinstance(result.get(c), dict) else None) for c in FRACTIONS}


def method_config(spec: TableSet, method: str, seed: int, epochs: int, max_steps: int = 0) -> Any:
    """The run's :class:`selfsup.config.RunConfig`: the shared budget, default views, ``--backbone auto``."""
    from selfsup.config import RunConfig

    return RunConfig.from_dict(
        {
            "data": data_config(spec),
            "method": method,
            "backbone": "auto",
            "views": "auto",
            "train": {
                "epochs": epochs, "max_steps": max_steps, "batch_size": BATCH, "lr": LR, "optimizer": "adamw",
                "weight_decay": WEIGHT_DECAY, "warmup_epochs": max(1, epochs // 10), "min_lr_ratio": 0.01,
                "seed": seed, "progress_bar": False, "monitor_every_n_epochs": epochs,
                "checkpoint_every_n_epochs": epochs,
            },
            # No trees here: the baseline row has them, once per dataset and seed.
            "eval": {"probes": list(PROBES), "fewshot_min_per_class": MIN_PER_CLASS, "trees": False},
        }
    )


def run_method(spec: TableSet, method: str, seed: int, epochs: int, max_steps: int) -> dict:
    """Pretrain ``method`` on ``spec`` and probe its frozen encoder beside the random-init one."""
    from selfsup.config import RunConfig, load_yaml
    from selfsup.evaluate.run import evaluate_run
    from selfsup.train.runner import pretrain

    config = method_config(spec, method, seed, epochs, max_steps)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        result = pretrain(config, run_dir=run_dir, evaluate=False)
        train_s = time.perf_counter() - start
        resolved = load_yaml(run_dir / "config.yaml")
        start = time.perf_counter()
        record = evaluate_run(  # with the resolved config: the backbone named, not "auto"
            run_dir, method=result.method, config=RunConfig.from_dict(resolved), data=result.data, probes=PROBES,
        )
        eval_s = time.perf_counter() - start
    ev = record["evaluation"]["results"]
    pre, rnd = ev["pretrained"], ev["random-init"]
    return {
        "dataset": spec.name, "method": method, "seed": seed, "epochs": epochs, "batch_size": BATCH, "lr": LR,
        "max_steps": max_steps, "steps": result.metrics["steps"], "backbone": resolved["backbone"]["name"],
        "linear": pre["linear"], "knn": pre["knn"], **_few(pre), "rankme": pre.get("rankme"),
        "random_linear": rnd["linear"], "random_knn": rnd["knn"], **{f"random_{k}": v for k, v in _few(rnd).items()},
        "fewshot_min_per_class": MIN_PER_CLASS,
        "train_s": train_s, "eval_s": eval_s, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(), "code": code_version(), "torch": torch.__version__,
    }


def run_baselines(spec: TableSet, seed: int) -> dict:
    """The method-free rows of one dataset and seed: the probes on the raw input (the modality's
    ``raw_features``) and gradient-boosted trees on the raw values."""
    from selfsup.data import load_dataset
    from selfsup.data.modalities import get_modality
    from selfsup.evaluate.results import evaluate_features
    from selfsup.evaluate.trees import gbdt_fewshot, gbdt_probe
    from selfsup.rundir import input_statistics

    d = data_config(spec)
    data = load_dataset(d["name"], options=d["params"])
    train, test = data.train, data.test
    modality = get_modality(train.modality, train.data_info)
    mean, std = input_statistics(train)
    raw = [modality.raw_features(s.x, modality.standardize(s.x, mean, std)) for s in (train, test)]
    start = time.perf_counter()
    probes = evaluate_features(
        raw[0], train.labels, raw[1], test.labels, probes=PROBES, seed=seed, fewshot_min_per_class=MIN_PER_CLASS
    )
    cells = {c: v for r in probes.values() for c, v in r.table_cells().items()}
    raw_s = time.perf_counter() - start
    labelled = {name: int(np.mean(s["n_labelled"])) for name, s in probes["fewshot"].details["settings"].items()}

    start = time.perf_counter()
    (train_t, categorical), (test_t, _) = modality.tree_features(train.x), modality.tree_features(test.x)
    ys = [train.labels.numpy(), test.labels.numpy()]
    full = gbdt_probe(train_t, ys[0], test_t, ys[1], categorical=categorical, seed=seed)
    few = gbdt_fewshot(train_t, ys[0], test_t, ys[1], categorical=categorical, seed=seed, fractions=(0.01, 0.1),
                       shots=(), min_per_class=MIN_PER_CLASS)
    trees_s = time.perf_counter() - start
    return {
        "dataset": spec.name, "method": BASELINES, "seed": seed,
        "raw_linear": cells["linear"], "raw_knn": cells["knn"], **{f"raw_{k}": v for k, v in _few(cells).items()},
        "trees": full.accuracy, **{f"trees_{k}": v for k, v in _few(few.columns).items()}, "trees_chosen": full.chosen,
        "labelled": labelled, "fewshot_min_per_class": MIN_PER_CLASS, "raw_s": raw_s, "trees_s": trees_s,
        "features": int(raw[0].shape[1]), "threads": torch.get_num_threads(), "code": code_version(),
    }


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------


def _key(row: dict) -> tuple:
    if row["method"] == BASELINES:
        return row["dataset"], BASELINES, row["seed"]
    return row["dataset"], row["method"], row["seed"], row["epochs"], row["batch_size"], row.get("max_steps", 0)






def _compare(methods: dict[str, list[dict]], base: list[dict], against: str, test_rows: int) -> list[str]:
    """Per column (full labels, 1%, 10%): the best method's mean against a baseline's
    (``against``: "trees" or "raw"): "yes" / "**no**", "about even" within one test row, and
    flagged within one std (over seeds) of either."""
    parts = []
    for column, label in (("linear", "full labels"), *((c, c) for c in FRACTIONS)):
        scores = {m: s for m, rows in methods.items() if (s := mean_std([r.get(column) for r in rows])) is not None}
        key = "trees" if (against, column) == ("trees", "linear") else f"{against}_{column}"
        other = mean_std([b.get(key) for b in base])
        if not scores or other is None:
            continue
        best = max(scores, key=lambda m: scores[m][0])
        mean, std = scores[best]
        gap = 100 * (mean - other[0])
        answer = "yes" if gap > 0 else "**no**"
        if abs(gap) <= 100 / test_rows + 1e-6:
            answer = "about even (within one test row)"
        elif abs(gap) <= 100 * max(std, other[1]):
            answer += " (within one std over seeds)"
        parts.append(f"{label}: {answer}, best {best} {100 * mean:.1f} vs {100 * other[0]:.1f} ({gap:+.1f} points)")
    return parts


def _verdict(methods: dict[str, list[dict]], base: list[dict], test_rows: int) -> list[str]:
    """The "Does self-supervision beat the trees?" line (and the same against the raw input's
    linear probe), from the best method's mean in each column; the best of several methods is
    an optimistic pick, made on the test set."""
    if not methods or not base:
        return ["Does self-supervision beat the trees? Not measured yet."]
    trees, raw = (_compare(methods, base, against, test_rows) for against in ("trees", "raw"))
    return [
        "**Does self-supervision beat the trees?** " + "; ".join(trees) + ".",
        "",
        "Does it beat the raw input's linear probe? " + "; ".join(raw) + ".",
    ]


def section(name: str, rows: list[dict]) -> list[str]:
    spec, info = DATASETS[name], prepare(DATASETS[name])
    base = sorted([r for r in rows if r["method"] == BASELINES], key=lambda r: r["seed"])
    runs = [r for r in rows if r["method"] != BASELINES]
    order = METHODS + sorted({r["method"] for r in runs} - set(METHODS))
    methods = {m: [r for r in runs if r["method"] == m] for m in order if any(r["method"] == m for r in runs)}
    categories = info["categories"]
    lines = [
        f"## {name}",
        "",
        f"{info['rows']:,} rows ({info['train_rows']:,} train / {info['test_rows']:,} test: {info['split']}), "
        f"{info['numeric_columns']} numeric + {info['categorical_columns']} categorical columns"
        + (f" ({min(categories)}–{max(categories)} categories each)" if categories else "")
        + f", {info['classes']} classes (smallest train class: {info['smallest_train_class']}); one test row is "
        f"{100 / info['test_rows']:.2g} points"
        + (f"; {info['missing_cells']:,} missing cells in {info['rows_with_missing']} rows"
           if info["missing_cells"] else "")
        + ".",
    ]
    epochs = sorted({r["epochs"] for r in runs})
    steps = sorted({r["steps"] for r in runs})
    budget = (
        f"Budget: {', '.join(map(str, epochs))} epochs at batch {BATCH} ({', '.join(map(str, steps))} steps per run)."
        if runs else f"Budget: {spec.epochs} epochs at batch {BATCH} (no method run yet)."
    )
    if base and base[0].get("labelled"):
        budget += " Few-label subsets: " + ", ".join(
            f"{k} = {v} labels" for k, v in base[0]["labelled"].items() if k in FRACTIONS
        ) + f" (at least {base[0]['fewshot_min_per_class']} per class)."
    lines += [
        budget,
        "",
        "| row | backbone | seeds | linear % (full labels) | kNN % | 1% labels % | 10% labels % | time per run s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, r in methods.items():
        seeds = ",".join(str(x["seed"]) for x in sorted(r, key=lambda x: x["seed"]))
        times = cell([x["train_s"] + x["eval_s"] for x in r], 1.0, 0)
        train = cell([x["train_s"] for x in r], 1.0, 0)
        lines.append(
            f"| {method} | {r[0]['backbone']} | {seeds} | {cell([x['linear'] for x in r])} "
            f"| {cell([x['knn'] for x in r])} | "
            + " | ".join(cell([x.get(c) for x in r]) for c in FRACTIONS) + f" | {times} (train {train}) |"
        )
    for backbone in sorted({r["backbone"] for r in runs}):
        per_seed: dict[int, dict] = {}
        for r in runs:  # the random-init encoder of a backbone and seed is the same for every method
            if r["backbone"] == backbone:
                per_seed.setdefault(r["seed"], r)
        r = [per_seed[s] for s in sorted(per_seed)]
        lines.append(
            f"| random-init encoder | {backbone} | {','.join(map(str, sorted(per_seed)))} "
            f"| {cell([x['random_linear'] for x in r])} | {cell([x['random_knn'] for x in r])} | "
            + " | ".join(cell([x.get(f"random_{c}") for x in r]) for c in FRACTIONS) + " | – |"
        )
    if base:
        seeds = ",".join(str(b["seed"]) for b in base)
        lines += [
            f"| raw input (standardised + one-hot) | – | {seeds} | {cell([b['raw_linear'] for b in base])} "
            f"| {cell([b['raw_knn'] for b in base])} | "
            + " | ".join(cell([b.get(f"raw_{c}") for b in base]) for c in FRACTIONS)
            + f" | {cell([b['raw_s'] for b in base], 1.0, 0)} |",
            f"| {TREES_ROW} | – | {seeds} | {cell([b['trees'] for b in base])} | – | "
            + " | ".join(cell([b.get(f"trees_{c}") for b in base]) for c in FRACTIONS)
            + f" | {cell([b['trees_s'] for b in base], 1.0, 0)} |",
        ]
    lines += ["", *_verdict(methods, base, info["test_rows"]), ""]
    return lines


def table(rows: list[dict], notes: str) -> str:
    lines = [
        "# Tabular benchmark",
        "",
        "Test accuracy %, mean ± std over the seeds listed (seed = pretraining seed = probe seed). Every method: "
        f"the same budget per dataset (epochs below, batch {BATCH}, AdamW lr {LR:g}, weight decay {WEIGHT_DECAY:g}, "
        "linear warm-up for a tenth of the epochs then cosine), default table views (SCARF-style marginal corruption "
        "for the joint-embedding methods; each tabular method's own), `--backbone auto` (`table_mlp`; "
        "`ft_transformer` for methods that need tokens). Probes on the frozen encoder: kNN and linear (k, C "
        "chosen on a split of train; test used once); 1% / 10% labels: the `fewshot` linear probe on class-balanced "
        "subsets of the train labels, mean over 5 draws per seed, then mean ± std over seeds. Baselines, once per "
        "dataset and seed: the same probes on the raw input (standardised numeric columns, one-hot categorical "
        "ones with missing as its own slot), the random-init encoder of each backbone, and gradient-boosted trees "
        "(HistGradientBoosting on the raw values, categorical columns split natively, missing values routed by "
        "the trees; its columns are the trees' own accuracy with all, 1% and 10% of the labels). Time per run: "
        "pretraining + evaluation of the encoder (train alone in brackets); baseline rows: their own evaluation.",
        "",
        "Published context (../shared/ANCHORS.md): T-JEPA (arXiv 2410.05016) on Adult: MLP 0.825, MLP + T-JEPA "
        "0.866, XGBoost 0.874, i.e. pretraining closes most of the gap to boosted trees without passing them; "
        "SCARF (Bahri et al. 2022, arXiv 2106.15147) reports improvements over no pretraining on 69 OpenML "
        "classification sets, against a supervised MLP, not trees; Grinsztajn, Oyallon & Varoquaux 2022 "
        "(arXiv 2207.08815): on medium-sized tables tree ensembles still beat deep models. VIME on Adult: no gain "
        "over supervised (0.836 vs 0.831).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other work, "
        f"{max((r.get('threads', 1) for r in rows), default=1)} thread per run (OMP_NUM_THREADS=1), "
        f"torch {torch.__version__}, CPU only.",
        "",
    ]
    for name in [d for d in DATASETS if any(r["dataset"] == d for r in rows)]:
        lines += section(name, [r for r in rows if r["dataset"] == name])
    missing = [d for d in DATASETS if not any(r["dataset"] == d for r in rows)]
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    lines += ["Command: `OMP_NUM_THREADS=1 python benchmarks/tabular.py [--datasets ...] [--methods ...] "
              "[--seeds ...] [--epochs E]`", ""]
    return "\n".join(lines) + ("\n" + notes if notes else "")


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS), metavar="DATASET",
                        help=f"default: all ({', '.join(DATASETS)})")
    parser.add_argument("--methods", nargs="*", default=METHODS, help=f"default: {' '.join(METHODS)}")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="override every dataset's epochs")
    parser.add_argument("--max-steps", type=int, default=0, help="smoke test: stop each run after this many steps "
                        "(rows go to runs/tabular_smoke/, not to the results)")
    parser.add_argument("--no-baselines", action="store_true", help="only the method rows")
    parser.add_argument("--evaluate-only", action="store_true", help="rewrite the table from the jsonl; run nothing")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/tabular.md")
    parser.add_argument("--one", nargs=3, metavar=("DATASET", "METHOD", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or (ROOT / "runs" / "tabular_smoke" / "tabular.md" if args.max_steps else RESULTS / "tabular.md")

    if args.one:  # child process: one run
        spec, method, seed = DATASETS[args.one[0]], args.one[1], int(args.one[2])
        row = (run_baselines(spec, seed) if method == BASELINES
               else run_method(spec, method, seed, args.epochs or spec.epochs, args.max_steps))
        print(json.dumps(row))
        return

    store = out.with_suffix(".jsonl")
    rows = load_rows(store)
    if not args.evaluate_only:
        methods = []
        for method in args.methods:
            reason = runnable(method, "table")
            if reason:
                print(f"skipping {method}: {reason}; rerun later to fill its rows", flush=True)
            else:
                methods.append(method)
        plan = [(d, m, s) for d in args.datasets for m in ([] if args.no_baselines else [BASELINES]) + methods
                for s in args.seeds]
        for i, (dataset, method, seed) in enumerate(plan, start=1):
            spec = DATASETS[dataset]
            prepare(spec)
            epochs = args.epochs or spec.epochs
            key = ((dataset, BASELINES, seed) if method == BASELINES
                   else (dataset, method, seed, epochs, BATCH, args.max_steps))
            tag = f"[{i}/{len(plan)}] {dataset} {method} seed {seed}"
            if any(_key(r) == key for r in rows):
                print(f"{tag}: finished earlier, kept", flush=True)
                continue
            command = [sys.executable, __file__, "--one", dataset, method, str(seed),
                       "--max-steps", str(args.max_steps)]
            if args.epochs:
                command += ["--epochs", str(args.epochs)]
            start = time.perf_counter()
            child = subprocess.run(command, capture_output=True, text=True)
            if child.returncode != 0:
                print(f"{tag}: failed\n{child.stderr[-3000:]}", file=sys.stderr, flush=True)
                continue
            row = json.loads(child.stdout.strip().splitlines()[-1])
            rows = [r for r in rows if _key(r) != key] + [row]
            save_rows(store, rows)
            if method == BASELINES:
                summary = (f"raw linear {100 * row['raw_linear']:.1f}, raw kNN {100 * row['raw_knn']:.1f}, "
                           f"trees {100 * row['trees']:.1f}")
            else:
                summary = (f"{row['steps']} steps, linear {100 * row['linear']:.1f}, kNN {100 * row['knn']:.1f}, "
                           f"1% {100 * (row['1% labels'] or math.nan):.1f}, "
                           f"10% {100 * (row['10% labels'] or math.nan):.1f}, "
                           f"random-init linear {100 * row['random_linear']:.1f}")
            print(f"{tag}: {summary} ({time.perf_counter() - start:.0f} s)", flush=True)
    notes = kept_notes(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table(rows, notes))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
