"""TS2Vec's UCR/UEA protocol on the seven datasets that ship inside aeon; writes benchmarks/results/ucr.md.

Protocol (Yue et al. 2022, arXiv 2106.10466, and its reference code; ../shared/ANCHORS.md): dilated
conv encoder (hidden 64, depth 10, output 320), batch 8, lr 1e-3, 200 iterations when the train
array holds at most 100,000 values, else 600; instance representation = max over timestamps;
RBF SVM with C chosen by 5-fold CV on the train split; test accuracy. Every method here uses the
same encoder, batch, learning rate and number of iterations; TS2Vec uses its overlapping crops,
the others the default time-series views (jitter, scaling, warps, crops, masking); masked methods
(issue 12: MAE, data2vec 2.0) need tokens and run on the patch transformer instead, with the same
batch, learning rate and iterations. Baselines: the same SVM on the standardised raw series and on
the random-init encoder of each architecture.

    python benchmarks/ucr.py                                   # all, seeds 0 1 2
    python benchmarks/ucr.py --datasets GunPoint --methods ts2vec --seeds 0

Rows are kept in benchmarks/results/ucr.jsonl (a rerun of the same dataset, method and seed
replaces its row); the table is rebuilt from all rows. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import kept_notes, load_rows, save_rows  # noqa: E402

DATASETS = ["GunPoint", "ItalyPowerDemand", "ArrowHead", "OSULeaf", "ACSF1", "BasicMotions", "JapaneseVowels"]
ARCHIVE = {"BasicMotions": "uea", "JapaneseVowels": "uea"}
# Published test accuracies (ANCHORS.md): TS2Vec, T-Loss, TNC, TS-TCC. UCR columns as reprinted in
# the TEST paper (Sun et al., ICLR 2024, table 14); UEA columns as reprinted in the CTNet README;
# both reprint the TS2Vec paper's baselines.
PUBLISHED = {
    "GunPoint": (0.987, 0.980, 0.967, None),
    "ItalyPowerDemand": (0.960, 0.954, 0.928, None),
    "ArrowHead": (0.817, 0.766, 0.703, None),
    "OSULeaf": (0.843, 0.760, 0.723, None),
    "ACSF1": (0.910, 0.900, 0.730, None),
    "BasicMotions": (0.975, None, 0.975, 1.000),
    "JapaneseVowels": (0.984, None, 0.978, 0.930),
}
BATCH, LR = 8, 1e-3


def run_one(dataset: str, method: str, seed: int) -> dict:
    from selfsup.config import RunConfig
    from selfsup.data import load_dataset
    from selfsup.evaluate.run import evaluate_run
    from selfsup.train.runner import pretrain

    from selfsup.data.modalities import get_modality
    from selfsup.methods import METHODS

    spec = f"{ARCHIVE.get(dataset, 'ucr')}:{dataset}"
    train = load_dataset(spec).train
    values = train.x.numel()
    backbone, params = "ts2vec_encoder", {}
    if "tokens" in METHODS.get(method).requires:
        # Masked methods need tokens: what --backbone auto gives them, the patch transformer with
        # non-overlapping patches sized for about 32 tokens per series.
        backbone, params = get_modality(train.modality).token_backbone(tuple(train.sample_shape))
    iterations = 200 if values <= 100_000 else 600
    steps_per_epoch = max(1, len(train) // BATCH)
    epochs = math.ceil(iterations / steps_per_epoch)
    config = RunConfig.from_dict(
        {
            "data": spec,
            "method": method,
            "backbone": {"name": backbone, "params": params},
            "views": "auto",
            "train": {
                "epochs": epochs, "batch_size": BATCH, "lr": LR, "optimizer": "adamw", "weight_decay": 0.01,
                "warmup_epochs": 0, "min_lr_ratio": 1.0, "seed": seed, "progress_bar": False,
                "monitor_every_n_epochs": epochs,
            },
            "eval": {"probes": ["svm"]},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = pretrain(config, run_dir=Path(tmp) / "run", evaluate=False)
        train_s = time.perf_counter() - start
        record = evaluate_run(Path(tmp) / "run", method=result.method, config=config, data=result.data, probes=("svm",))
    ev = record["evaluation"]["results"]
    return {
        "dataset": dataset, "method": method, "seed": seed, "iterations": epochs * steps_per_epoch,
        "backbone": backbone, **({"patch_len": params["patch_len"]} if params else {}),
        "svm": ev["pretrained"]["svm"], "random_svm": ev["random-init"]["svm"], "raw_svm": ev["raw input"]["svm"],
        "train_s": train_s, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean = statistics.mean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def table(rows: list[dict], notes: str) -> str:
    methods = sorted({r["method"] for r in rows}, key=lambda m: (m != "ts2vec", m))
    lines = [
        "# UCR/UEA benchmark (TS2Vec protocol)",
        "",
        "Test accuracy % of an RBF SVM on frozen instance representations (C by 5-fold CV on train), "
        "mean ± std over the seeds given. Encoder `ts2vec_encoder` (hidden 64, depth 10, output 320) for every "
        "method; batch 8, lr 1e-3, 200 iterations (600 when the train array has > 100,000 values).",
        "Published: TS2Vec / T-Loss / TNC / TS-TCC as in ../shared/ANCHORS.md (UCR columns reprinted in Sun et al., "
        "ICLR 2024, table 14; UEA in the CTNet README; all from the TS2Vec paper, arXiv 2106.10466).",
        "",
        f"Machine: {platform.machine()}, 2 CPU cores, torch {torch.__version__}, CPU only. "
        "Training time is per run (one seed).",
        "",
        "| dataset | " + " | ".join(f"{m} %" for m in methods)
        + " | random-init % | raw series % | TS2Vec (pub.) | T-Loss (pub.) | TNC (pub.) | TS-TCC (pub.) | "
        + " | ".join(f"{m} train s" for m in methods) + " | seeds |",
        "|" + "---|" * (1 + len(methods) + 2 + 4 + len(methods) + 1),
    ]
    pub = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for dataset in [d for d in DATASETS if any(r["dataset"] == d for r in rows)]:
        r = [x for x in rows if x["dataset"] == dataset]
        per = {m: [x for x in r if x["method"] == m] for m in methods}
        acc = [(_fmt([x["svm"] for x in per[m]]) if per[m] else "–") for m in methods]
        secs = [(_fmt([x["train_s"] for x in per[m]], 1, 0) if per[m] else "–") for m in methods]
        seeds = sorted({x["seed"] for x in r})
        conv = [x for x in r if x.get("backbone", "ts2vec_encoder") == "ts2vec_encoder"]
        patch = [x for x in r if x.get("backbone") == "patch_transformer"]
        random_init = _fmt([x["random_svm"] for x in conv]) if conv else "–"
        if patch:
            random_init += f" / {_fmt([x['random_svm'] for x in patch])}"
        lines.append(
            f"| {dataset} | " + " | ".join(acc)
            + f" | {random_init} | {_fmt([x['raw_svm'] for x in r])} | "
            + " | ".join(pub(v) for v in PUBLISHED[dataset]) + " | " + " | ".join(secs)
            + f" | {','.join(map(str, seeds))} |"
        )
    lines += ["", "Random-init and raw-series columns pool the runs of every method with the same encoder (same seeds). "
              "Masked methods (mae, data2vec2) run on the `patch_transformer` (non-overlapping patches, about 32 "
              "tokens per series; width 128, 3 blocks, mean-pooled), the others on `ts2vec_encoder`: where both ran, "
              "the random-init column reads `ts2vec_encoder / patch_transformer`.",
              "", "Command: `python benchmarks/ucr.py [--datasets ...] [--methods ...] [--seeds ...]`", ""]
    return "\n".join(lines) + ("\n" + notes if notes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    parser.add_argument("--methods", nargs="*", default=["ts2vec", "simclr", "vicreg", "byol"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ucr.md")
    parser.add_argument("--one", nargs=3, metavar=("DATASET", "METHOD", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], int(args.one[2]))))
        return
    store = args.out.with_suffix(".jsonl")
    rows = load_rows(store)
    for dataset in args.datasets:
        for method in args.methods:
            for seed in args.seeds:
                child = subprocess.run(
                    [sys.executable, __file__, "--one", dataset, method, str(seed)], capture_output=True, text=True
                )
                if child.returncode != 0:
                    print(f"{dataset} {method} seed {seed} failed:\n{child.stderr[-3000:]}", file=sys.stderr)
                    continue
                row = json.loads(child.stdout.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                rows = [x for x in rows if (x["dataset"], x["method"], x["seed"]) != (dataset, method, seed)] + [row]
                save_rows(store, rows)
    notes = kept_notes(args.out)
    text = table(rows, notes)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
