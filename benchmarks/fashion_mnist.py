"""Fashion-MNIST benchmark: SimCLR, BYOL, VICReg on all 60,000 training images (``--budget resnet``),
and the masked and predictive family beside SimCLR and DINO on a ViT (``--budget vit``, a fixed
10,000-image subset); writes benchmarks/results/fashion_mnist.md.

Every method trains with the same budget (epochs, batch, backbone, optimiser; the method's
digits recipe gives its own hyperparameters), then the kNN and linear probes on its frozen
features beside the random-init encoder and the raw pixels. Two phases, so training can run
where a GPU is lent and evaluation where there is time:

    python benchmarks/fashion_mnist.py --train --runs RUNS_DIR     # trains the missing runs
    python benchmarks/fashion_mnist.py --evaluate --runs RUNS_DIR  # probes the trained ones
    python benchmarks/fashion_mnist.py --runs RUNS_DIR             # both
    python benchmarks/fashion_mnist.py --budget vit --runs RUNS_DIR --methods mae  # a ViT row

Rows are kept in benchmarks/results/fashion_mnist.jsonl, one per (method, seed, budget); a
finished row is skipped on a rerun, so later issues add methods to the same table
(``--methods mae``). Needs the Debian package dataset-fashion-mnist. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from common import kept_notes, load_rows, save_rows  # benchmarks/ is on sys.path when a script here runs
from selfsup.config import RunConfig, load_yaml, merge
from selfsup.evaluate.run import evaluate_run
from selfsup.rundir import CHECKPOINT, checkpoint_path, read_checkpoint, read_metrics
from selfsup.train.runner import pretrain

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ["simclr", "byol", "vicreg"]
# The budget every row of a table section shares (stated in the table).
BUDGET = {"epochs": 25, "batch_size": 256, "backbone": "resnet_tiny", "warmup_epochs": 2}
# The ViT section (issue 12): the masked and predictive family beside a contrastive and a
# distillation method on the same ViT. A ViT epoch on all 60,000 images takes about 50 minutes on
# this 2-core CPU, so these rows train on a fixed subset of 10,000 (data.train_subset) and the
# probes are fitted on it too; the test set stays whole. Every method's own published optimiser
# settings apply (its run_defaults), the epochs and batch are shared.
VIT_METHODS = ["mae", "simmim", "mixed_ae", "ijepa", "data2vec2", "simclr", "dino"]
VIT_BUDGET = {"epochs": 20, "batch_size": 256, "backbone": "vit_tiny", "warmup_epochs": 2, "train_subset": 10000,
              "finetune_epochs": 3, "finetune_lr": 5e-4}
BUDGETS = {"resnet": (METHODS, BUDGET), "vit": (VIT_METHODS, VIT_BUDGET)}


def _key(row: dict) -> tuple:
    return row["method"], row["seed"], row["epochs"], row["batch_size"], row["backbone"], row.get("train_subset")


def config_for(method: str, seed: int, budget: dict) -> RunConfig:
    recipe = ROOT / "recipes" / f"{method}-digits.yaml"
    values = merge(RunConfig().to_dict(), load_yaml(recipe) if recipe.exists() else {"method": method})
    subset = budget.get("train_subset")
    values["data"] = {"name": "fashion_mnist", "params": {"train_subset": subset} if subset else {}}
    values["backbone"] = {"name": budget["backbone"], "params": {}}
    # ResNet rows share the digits recipes' optimiser; ViT rows take each method's published one.
    values["apply_method_defaults"] = budget["backbone"].startswith("vit")
    if "finetune_epochs" in budget:  # one stated fine-tuning budget (no lr choice: CPU time)
        values["eval"].update(finetune_epochs=budget["finetune_epochs"], finetune_lrs=[budget["finetune_lr"]])
    if budget["backbone"].startswith("vit") and method == "dino":
        # The ViT's position embeddings are built for the global crop's grid: no local crops.
        values["method"]["params"]["num_local_crops"] = 0
    train = values["train"]
    train.update(seed=seed, epochs=budget["epochs"], batch_size=budget["batch_size"], max_steps=budget.get("max_steps", 0),
                 warmup_epochs=budget["warmup_epochs"], progress_bar=False, monitor_every_n_epochs=5)
    return RunConfig.from_dict(values)


def train_one(method: str, seed: int, runs: Path, budget: dict) -> dict:
    tag = f"-{budget['backbone']}-n{budget['train_subset']}" if budget.get("train_subset") else ""
    run_dir = runs / f"{method}-seed{seed}-e{budget['epochs']}{tag}"
    if (run_dir / CHECKPOINT).is_file() and read_metrics(run_dir).get("status") == "finished":
        return json.loads((run_dir / "bench.json").read_text())
    # A run stopped part-way (a session's end kills its process) continues from its checkpoint,
    # exactly (selfsup's resume); one without a checkpoint starts again.
    partial = checkpoint_path(run_dir) if run_dir.exists() else None
    if run_dir.exists() and partial is None:
        import shutil

        shutil.rmtree(run_dir)
    config = config_for(method, seed, budget)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    steps_before = int(read_checkpoint(partial, mmap=True).get("global_step", 0)) if partial else 0
    if partial:
        print(f"{run_dir.name}: resuming from step {steps_before}", flush=True)
    result = pretrain(config if not partial else None, run_dir=run_dir, evaluate=False, resume=bool(partial))
    wall = time.perf_counter() - start
    m = result.metrics
    session_steps = m["steps"] - steps_before
    row = {
        "method": method, "seed": seed, **{k: budget[k] for k in ("epochs", "batch_size", "backbone")},
        "train_subset": budget.get("train_subset"),
        # images/s from the last session's steps and seconds; a resumed run's train_s is every
        # step at that rate (the stopped session's own seconds died with it).
        "steps": m["steps"], "resumed_at_step": steps_before,
        "train_s": m["train_seconds_this_session"] * m["steps"] / max(session_steps, 1), "wall_s": wall,
        "images_per_s": session_steps * budget["batch_size"] / m["train_seconds_this_session"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "run_dir": run_dir.name,
    }
    (run_dir / "bench.json").write_text(json.dumps(row))
    return row


def evaluate_one(row: dict, runs: Path) -> dict:
    vit = row["backbone"].startswith("vit")
    # ViT rows: fine-tuning beside the probes (the headline of MAE-style methods), for every method.
    start = time.perf_counter()
    record = evaluate_run(runs / row["run_dir"], probes=("knn", "linear"), finetune=True if vit else None)
    ev = record["evaluation"]["results"]
    out = {
        **row,
        "knn": ev["pretrained"]["knn"], "linear": ev["pretrained"]["linear"], "rankme": ev["pretrained"]["rankme"],
        "random_knn": ev["random-init"]["knn"], "random_linear": ev["random-init"]["linear"],
        "raw_knn": ev["raw input"]["knn"], "raw_linear": ev["raw input"]["linear"],
        "evaluated": True, "eval_s": time.perf_counter() - start,
        "headline": record["evaluation"].get("headline", {}).get("protocol"),
    }
    if "finetune" in ev["pretrained"]:
        out.update(finetune=ev["pretrained"]["finetune"], random_finetune=ev["random-init"]["finetune"])
    linear_chosen = record["evaluation"].get("chosen", {}).get("pretrained", {}).get("linear", {})
    out["linear_probe"] = "BatchNorm + SGD" if "lr" in linear_chosen else "L-BFGS"
    return out


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table(rows: list[dict], notes: str) -> str:
    resnet = [r for r in rows if not r["backbone"].startswith("vit")]
    vit = [r for r in rows if r["backbone"].startswith("vit")]
    lines = [
        "# Fashion-MNIST benchmark",
        "",
        "Fashion-MNIST (Xiao et al. 2017, arXiv 1708.07747) from Debian's dataset-fashion-mnist, 28x28 grey images; "
        "the 10,000 test images are scored once. Probe hyperparameters (k and temperature, C or the SGD probe's lr) "
        "chosen on a split of the train set.",
        "",
        "## ResNet",
        "",
        "All 60,000 training images for pretraining and for fitting the probes. Budget of every row: backbone, epochs "
        "and batch as listed, AdamW, warm-up then cosine; each method's own hyperparameters from its digits recipe; "
        "default image views (crop, flip, colour jitter, blur) on the device.",
        "",
        "| method | seed | backbone | epochs | batch | kNN % | linear % | RankMe | random-init kNN % | random-init linear % "
        "| raw-pixel kNN % | raw-pixel linear % | train s | images/s | peak RSS MiB | peak GPU MiB | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(resnet, key=_key):
        gpu = "-" if r.get("peak_gpu_mib") is None else f"{r['peak_gpu_mib']:.0f}"
        lines.append(
            f"| {r['method']} | {r['seed']} | {r['backbone']} | {r['epochs']} | {r['batch_size']} | {pct(r.get('knn'))} "
            f"| {pct(r.get('linear'))} | {r['rankme']:.1f} | {pct(r.get('random_knn'))} | {pct(r.get('random_linear'))} "
            f"| {pct(r.get('raw_knn'))} | {pct(r.get('raw_linear'))} | {r['train_s']:.0f} | {r['images_per_s']:.0f} "
            f"| {r['peak_rss_mib']:.0f} | {gpu} | {r['device']}, torch {r['torch']} |"
            if r.get("evaluated") else
            f"| {r['method']} | {r['seed']} | {r['backbone']} | {r['epochs']} | {r['batch_size']} | (not evaluated yet) "
            f"| | | | | | | {r['train_s']:.0f} | {r['images_per_s']:.0f} | {r['peak_rss_mib']:.0f} | {gpu} | {r['device']} |"
        )
    lines += [
        "",
        "## ViT: the masked and predictive family",
        "",
        f"`vit_tiny` (width 128, 4 blocks, 4 px patches: 49 tokens), pretrained on a fixed subset of "
        f"{VIT_BUDGET['train_subset']:,} training images (`data.train_subset`, seed 0), on which the probes and "
        "fine-tuning are fitted too; the full test set. Every row: the epochs and batch listed, each method's own "
        "published optimiser settings (its `run_defaults`) and views; DINO without local crops. Linear: the method's "
        "declared probe (BatchNorm + SGD for MAE, Mixed AE and data2vec 2.0, else L-BFGS on standardised features). "
        "Fine-tuning: "
        f"the whole encoder plus a linear head, {VIT_BUDGET['finetune_epochs']} epochs of AdamW at lr "
        f"{VIT_BUDGET['finetune_lr']:g} (one stated budget, no lr choice, to fit the CPU; docs/evaluation.md).",
        "",
        "| method | seed | epochs | batch | kNN % | linear % | linear probe | fine-tune % | RankMe | random-init kNN % "
        "| random-init linear % | random-init fine-tune % | raw-pixel kNN % | raw-pixel linear % | train s | images/s "
        "| eval s | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(vit, key=_key):
        if r.get("evaluated"):
            lines.append(
                f"| {r['method']} | {r['seed']} | {r['epochs']} | {r['batch_size']} | {pct(r.get('knn'))} "
                f"| {pct(r.get('linear'))} | {r.get('linear_probe', '')} | {pct(r.get('finetune'))} | {r['rankme']:.1f} "
                f"| {pct(r.get('random_knn'))} | {pct(r.get('random_linear'))} | {pct(r.get('random_finetune'))} "
                f"| {pct(r.get('raw_knn'))} | {pct(r.get('raw_linear'))} | {r['train_s']:.0f} | {r['images_per_s']:.0f} "
                f"| {r.get('eval_s', 0):.0f} | {r['device']}, torch {r['torch']} |"
            )
        else:
            lines.append(
                f"| {r['method']} | {r['seed']} | {r['epochs']} | {r['batch_size']} | (not evaluated yet) | | | | | | | | | "
                f"| {r['train_s']:.0f} | {r['images_per_s']:.0f} | | {r['device']} |"
            )
    lines += ["", "Command: `python benchmarks/fashion_mnist.py --runs RUNS_DIR [--budget resnet|vit] [--train | --evaluate] "
              "[--methods ...] [--epochs E]`", ""]
    return "\n".join(lines) + ("\n" + notes if notes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="resnet",
                        help="resnet: all 60,000 images on resnet_tiny; vit: the masked family on vit_tiny, 10,000 images")
    parser.add_argument("--methods", nargs="*", help="default: the budget's methods")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--epochs", type=int, help="default: the budget's")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "fashion_mnist")
    parser.add_argument("--train", action="store_true", help="only train (the missing runs)")
    parser.add_argument("--evaluate", action="store_true", help="only evaluate (the trained runs)")
    parser.add_argument("--out", type=Path, default=RESULTS / "fashion_mnist.md")
    parser.add_argument("--max-steps", type=int, default=0, help="smoke test: stop each run after this many steps")
    args = parser.parse_args()
    methods, base = BUDGETS[args.budget]
    budget = {**base, "epochs": args.epochs or base["epochs"], "max_steps": args.max_steps}
    do_train, do_eval = (args.train or not args.evaluate), (args.evaluate or not args.train)
    store = args.out.with_suffix(".jsonl")
    rows = load_rows(store)
    for method in args.methods or methods:
        for seed in args.seeds:
            key = (method, seed, budget["epochs"], budget["batch_size"], budget["backbone"], budget.get("train_subset"))
            row = next((r for r in rows if _key(r) == key), None)
            if row is not None and row.get("evaluated"):
                print(f"{method} seed {seed}: finished earlier, kept", file=sys.stderr)
                continue
            if row is None and do_train:
                row = train_one(method, seed, args.runs, budget)
            if row is not None and do_eval and (args.runs / row["run_dir"] / CHECKPOINT).is_file():
                row = evaluate_one(row, args.runs)
            if row is not None:
                rows = [r for r in rows if _key(r) != key] + [row]
                save_rows(store, rows)
                print(json.dumps(row), flush=True)
    notes = kept_notes(args.out)
    args.out.write_text(table(rows, notes))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
