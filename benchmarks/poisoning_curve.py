"""Does a simulated backdoor take hold as pretraining goes on? Attack success over epochs (issue 15).

``benchmarks/poisoning.py`` measures the attack once, at the end of a short budget, and found no
backdoor at 5-20 epochs. CTRL (Li et al. 2023, arXiv 2210.07346) and Saha et al. (2022, arXiv
2105.10123) train hundreds of epochs, and a backdoor in contrastive learning is known to appear late.
This script trains one poisoned encoder per configuration for longer, on a cheaper backbone, and
measures the attack every few epochs of the same run, so one run gives the whole curve:

- linear ASR: the issue's protocol (``selfsup.evaluate.attack.evaluate_attack``): a linear probe fit on
  the clean training subset's features with clean labels; the share of triggered test images of the
  other classes it puts in the target class;
- kNN ASR: CTRL's own monitor, a weighted kNN (k = 200, temperature 0.1; Wu et al. 2018, arXiv
  1805.01978) over the clean training subset's features;
- the control, per probe: the share of the same test images *without* the trigger put in the target
  class (the encoder's base rate), and clean test accuracy.

The attack has taken hold where the triggered rate exceeds the untriggered one by more than 10 points.

Rows go to ``benchmarks/results/poisoning_curve.jsonl`` (one per configuration and measured epoch),
the table to ``poisoning_curve.md`` and the curves to ``poisoning_curve.png``. A killed run resumes from
its last checkpoint (every measured epoch) and skips the epochs it already measured::

    OMP_NUM_THREADS=1 python benchmarks/poisoning_curve.py --configs patch5 &
    OMP_NUM_THREADS=1 python benchmarks/poisoning_curve.py --configs ctrl5 &
    python benchmarks/poisoning_curve.py --table

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poisoning as base  # noqa: E402  (the poisoning benchmark's data, config and training helpers)
from common import code_version, kept_notes, load_rows  # noqa: E402

from selfsup.data import load_dataset  # noqa: E402
from selfsup.data.poison import poison_splits, write_poisoned  # noqa: E402
from selfsup.evaluate.attack import _root_labels, evaluate_attack, triggered_test_images  # noqa: E402
from selfsup.evaluate.detect import DETECTORS, detection_metrics  # noqa: E402
from selfsup.evaluate.embed import embed_in_batches, embed_source  # noqa: E402
from selfsup.evaluate.knn import knn_predict  # noqa: E402
from selfsup.evaluate.scan import score_samples  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STORE = RESULTS / "poisoning_curve.jsonl"
# A cheaper resnet_tiny: stride 2 in the first stage too (28 -> 14 -> 7 -> 4), 2.6x faster per step on
# this CPU (0.95 s against 2.46 s for a forward and backward pass of 512 images, one thread).
FAST = {"strides": [2, 2, 2]}
CONFIGS: dict[str, dict] = {
    "patch5": {"attack": "patch", "rate": 0.05, "train_subset": 5000, "epochs": 100, "every": 10, "backbone_params": FAST},
    "ctrl5": {"attack": "ctrl", "rate": 0.05, "train_subset": 5000, "epochs": 100, "every": 10, "backbone_params": FAST},
    # SimCLR's CIFAR-10 augmentations (Chen et al. 2020, arXiv 2002.05709, appendix B.9) have no blur, nor
    # have CTRL's: the digits recipe's blur (p 0.5, sigma up to 2 px on 28 px) removes a high-frequency
    # trigger from half the views.
    "ctrl5_noblur": {"attack": "ctrl", "rate": 0.05, "train_subset": 5000, "epochs": 100, "every": 10,
                     "backbone_params": FAST, "views_params": {"blur": {"p": 0.0}}},
    "patch5_noblur": {"attack": "patch", "rate": 0.05, "train_subset": 5000, "epochs": 100, "every": 10,
                      "backbone_params": FAST, "views_params": {"blur": {"p": 0.0}}},
    # Saha et al. found BYOL and MoCo v2 more open to the patch attack than contrastive learning with
    # in-batch negatives; BYOL with the digits recipe's settings.
    "patch5_byol": {"attack": "patch", "rate": 0.05, "train_subset": 5000, "epochs": 100, "every": 10,
                    "backbone_params": FAST, "method": "byol"},
    "patch1": {"attack": "patch", "rate": 0.01, "train_subset": 5000, "epochs": 100, "every": 10, "backbone_params": FAST},
    "ctrl1": {"attack": "ctrl", "rate": 0.01, "train_subset": 5000, "epochs": 100, "every": 10, "backbone_params": FAST},
}
KNN_K, KNN_T = 200, 0.1  # CTRL's kNN monitor


def append_row(row: dict) -> None:
    with STORE.open("a") as f:  # one short line per write: two processes can append side by side
        f.write(json.dumps(row) + "\n")


def knn_rates(encoder: torch.nn.Module, clean, spec) -> dict[str, float]:
    """CTRL's monitor: weighted kNN over the clean training features; triggered and untriggered target rates."""
    device = next(encoder.parameters()).device
    train, test = clean.train, clean.test
    (train_z, train_i), (test_z, test_i) = (embed_source(encoder, part, device=device) for part in (train, test))
    train_y, test_y = _root_labels(train, train_i), _root_labels(test, test_i)
    images, labels = triggered_test_images(test, spec)
    triggered_z = embed_in_batches(encoder, images, device=device)
    others = test_y != spec.target_class
    # How much the trigger moves an image's embedding: the same images without it are test_z's rows
    # of the other classes, in the same order (both read the test source from its start).
    if not torch.equal(labels, test_y[others]):
        raise RuntimeError("the triggered test images are not in the order of the test embeddings")
    untriggered_z = test_z[others]
    classes = int(train_y.max()) + 1
    test_pred = knn_predict(train_z, train_y, test_z, KNN_K, KNN_T, classes)
    trig_pred = knn_predict(train_z, train_y, triggered_z, KNN_K, KNN_T, classes)
    return {
        "knn_clean_acc": float((test_pred == test_y).float().mean()),
        "knn_asr": float((trig_pred == spec.target_class).float().mean()),
        "knn_untriggered": float((test_pred[others] == spec.target_class).float().mean()),
        "trigger_cos": float(torch.nn.functional.cosine_similarity(triggered_z, untriggered_z).mean()),
    }


class AttackCurve(L.Callback):
    """Measures the attack on the encoder every ``every`` epochs (and at the last), skipping measured epochs."""

    def __init__(self, name: str, cfg: dict, clean, spec, done: set[int]) -> None:
        self.name, self.cfg, self.clean, self.spec, self.done = name, cfg, clean, spec, done
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.done or (epoch % self.cfg["every"] and epoch != self.cfg["epochs"]):
            return
        encoder = pl_module.method.encoder
        was_training = encoder.training
        start = time.perf_counter()
        with torch.no_grad():
            linear = evaluate_attack(encoder, self.clean, self.spec, seed=0, device=next(encoder.parameters()).device)
            knn = knn_rates(encoder, self.clean, self.spec)
        encoder.train(was_training)
        row = {"config": self.name, **{k: v for k, v in self.cfg.items() if k != "every"}, "epoch": epoch,
               "step": trainer.global_step, "linear_asr": linear.asr, "linear_untriggered": linear.clean_target_rate,
               "linear_clean_acc": linear.clean_accuracy, **knn, "eval_s": time.perf_counter() - start,
               "train_s_this_session": start - self.started, "code": code_version(), "torch": torch.__version__,
               "threads": torch.get_num_threads()}
        append_row(row)
        self.done.add(epoch)
        print(f"{self.name} epoch {epoch}: linear ASR {100 * linear.asr:.1f} (untriggered {100 * linear.clean_target_rate:.1f}, "
              f"clean acc {100 * linear.clean_accuracy:.1f}); kNN ASR {100 * knn['knn_asr']:.1f} "
              f"(untriggered {100 * knn['knn_untriggered']:.1f})", flush=True)


def detect(name: str, cfg: dict, run_dir: Path, npz: Path, chosen: torch.Tensor) -> None:
    """Every detector of ``selfsup scan`` on the finished encoder: a row with their AUROC and recall."""
    encoder = base.encoder_of(run_dir)
    source = load_dataset(f"arrays:{npz}").train
    truth = torch.zeros(len(source), dtype=torch.bool)
    truth[chosen] = True
    detection = {}
    for detector in DETECTORS:
        start = time.perf_counter()
        found = score_samples(encoder, source, detector, base.FLAG_RATE, flip_set_size=base.FLIP_SET, seed=0, device=base.DEVICE)
        detection[detector] = {**detection_metrics(found.scores, found.flagged, truth), "seconds": time.perf_counter() - start}
        print(f"{name} {detector}: AUROC {detection[detector]['auroc']:.3f}, recall at 5% FP "
              f"{100 * detection[detector]['recall_at_5pct_fpr']:.1f}", flush=True)
    append_row({"config": name, "detection": detection, "epoch_detected": cfg["epochs"], "flag_rate": base.FLAG_RATE,
                "flip_set": base.FLIP_SET, "code": code_version()})


def run(name: str, runs: Path) -> None:
    cfg = CONFIGS[name]
    rows = [r for r in load_rows(STORE) if r["config"] == name]
    done = {r["epoch"] for r in rows if "epoch" in r}
    case = runs / name
    case.mkdir(parents=True, exist_ok=True)
    clean = load_dataset(base.DATA, options={"train_subset": cfg["train_subset"]})
    arrays, chosen, spec = poison_splits(clean, cfg["attack"], base.TARGET_CLASS, cfg["rate"], seed=0, data_name=base.DATA)
    spec.data, spec.train_subset = base.DATA, cfg["train_subset"]
    npz = case / "poisoned.npz"
    if not npz.is_file():
        write_poisoned(npz, arrays, chosen, spec)
    run_dir = case / "poisoned"
    if cfg["epochs"] in done:
        print(f"{name}: trained earlier, kept")
        if not any("detection" in r for r in rows):
            detect(name, cfg, run_dir, npz, chosen)
        return
    budget = {**base.BUDGET, "epochs": cfg["epochs"], "train_subset": cfg["train_subset"], "method": cfg.get("method", "simclr"),
              "backbone_params": cfg["backbone_params"], "views_params": cfg.get("views_params", {})}
    config = base.config_for(f"arrays:{npz}", 0, budget)
    config.train.checkpoint_every_n_epochs = cfg["every"]
    partial = base.checkpoint_path(run_dir) if run_dir.exists() else None
    base.pretrain(None if partial else config, run_dir=run_dir, evaluate=False, resume=bool(partial),
                  callbacks=[AttackCurve(name, cfg, clean, spec, done)])
    detect(name, cfg, run_dir, npz, chosen)


def table() -> str:
    everything = load_rows(STORE)
    rows = [r for r in everything if "epoch" in r]
    lines = [
        "# Does the backdoor take hold as training goes on?",
        "",
        "Written by `python benchmarks/poisoning_curve.py` (rows in `poisoning_curve.jsonl`, curves in "
        "`poisoning_curve.png`). Fashion-MNIST, a fixed training subset (seed 0), target class 0 (T-shirt/top), "
        "the triggers of `benchmarks/poisoning.py` (patch: Saha et al. 2022; ctrl: Li et al. 2023). One poisoned "
        "encoder per configuration (SimCLR unless named; the method's digits recipe, seed 0), measured every few epochs of the "
        "same run. Linear: the issue's ASR protocol (a linear probe fit on the clean subset's features with clean "
        "labels). kNN: CTRL's monitor (k = 200, temperature 0.1, over the clean subset's features). ASR: share of "
        "triggered test images of the nine other classes put in class 0; untriggered: the same images without the "
        "trigger (the encoder's base rate). Trigger cos: the mean cosine similarity between an image's embedding with and without the trigger (1: the encoder ignores the trigger). Took hold: ASR above the untriggered rate by more than 10 points.",
        "",
        f"Machine: x86_64, 2 CPU cores shared with another run, 1 thread per run, torch {torch.__version__}, CPU only.",
        "",
    ]
    for name in sorted({r["config"] for r in rows}, key=lambda n: list(CONFIGS).index(n) if n in CONFIGS else 99):
        mine = sorted((r for r in rows if r["config"] == name), key=lambda r: r["epoch"])
        first = mine[0]
        lines += [
            f"## {name}: {first['attack']} at {100 * first['rate']:g}%, {first.get('method', 'simclr')}, {first['train_subset']:,} images, "
            f"{first['epochs']} epochs, resnet_tiny {first['backbone_params']}, views: the digits recipe's"
            + (f" with {first['views_params']}" if first.get("views_params") else ""),
            "",
            "| epoch | linear ASR % | linear untriggered % | kNN ASR % | kNN untriggered % | clean acc. linear % | clean acc. kNN % "
            "| trigger cos | took hold |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in mine:
            held = r["linear_asr"] - r["linear_untriggered"] > 0.10 or r["knn_asr"] - r["knn_untriggered"] > 0.10
            cos = f"{r['trigger_cos']:.3f}" if "trigger_cos" in r else "-"
            lines.append(
                f"| {r['epoch']} | {100 * r['linear_asr']:.1f} | {100 * r['linear_untriggered']:.1f} | {100 * r['knn_asr']:.1f} | "
                f"{100 * r['knn_untriggered']:.1f} | {100 * r['linear_clean_acc']:.1f} | {100 * r['knn_clean_acc']:.1f} | "
                f"{cos} | {'yes' if held else 'no'} |")
        status = "finished" if mine[-1]["epoch"] == first["epochs"] else f"running or stopped at epoch {mine[-1]['epoch']}"
        lines += ["", f"Status: {status}.", ""]
        found = [r for r in everything if r["config"] == name and "detection" in r]
        if found:
            d = found[-1]
            lines += [
                f"Detection on the encoder of epoch {d['epoch_detected']} (every detector of `selfsup scan`, flags: the top "
                f"{100 * d['flag_rate']:g}%; PatchSearch with {d['flip_set']} flip images):",
                "",
                "| detector | AUROC | recall at 5% FP % | flags: precision % | flags: recall % | seconds |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for detector, m in d["detection"].items():
                lines.append(f"| {detector} | {m['auroc']:.3f} | {100 * m['recall_at_5pct_fpr']:.1f} | {100 * m['precision']:.1f} "
                             f"| {100 * m['recall']:.1f} | {m['seconds']:.0f} |")
            lines.append("")
    lines.append("Command: `OMP_NUM_THREADS=1 python benchmarks/poisoning_curve.py --configs NAME` (resumes); "
                 "`--table` rebuilds this file.")
    return "\n".join(lines) + "\n"


def plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in load_rows(STORE) if "epoch" in r]
    names = sorted({r["config"] for r in rows})
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        mine = sorted((r for r in rows if r["config"] == name), key=lambda r: r["epoch"])
        ep = [r["epoch"] for r in mine]
        for key, style, label in [("linear_asr", "-", "linear ASR"), ("linear_untriggered", ":", "linear, untriggered"),
                                  ("knn_asr", "-", "kNN ASR"), ("knn_untriggered", ":", "kNN, untriggered")]:
            ax.plot(ep, [100 * r[key] for r in mine], style, marker="o", ms=3, label=label)
        # The took-hold line: 10 points above the linear probe's untriggered rate.
        ax.plot(ep, [100 * r["linear_untriggered"] + 10 for r in mine], "--", color="grey", lw=1, label="took hold above")
        top = max(100 * max(r[k] for k in ("linear_asr", "knn_asr")) for r in mine)
        ax.set_ylim(0, max(20.0, top + 5))
        ax.set_title(name)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("% put in the target class")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def write_outputs() -> None:
    out = RESULTS / "poisoning_curve.md"
    notes = kept_notes(out)
    out.write_text(table() + ("\n" + notes if notes else ""))
    plot(RESULTS / "poisoning_curve.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "poisoning_curve")
    parser.add_argument("--table", action="store_true", help="only rebuild the table and the plot")
    args = parser.parse_args()
    if not args.table:
        for name in args.configs:
            run(name, args.runs)
    write_outputs()
    print((RESULTS / "poisoning_curve.md").read_text())


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
