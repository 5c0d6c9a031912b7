"""How close does label-free selection come to label-based selection? Writes benchmarks/results/selection.md.

For each setting (a method on a dataset and a small grid of its hyperparameters) every grid point is
pretrained once (`selfsup.train.sweep.run_sweep`), scored without labels (RankMe, α-ReQ) and with
labels (the setting's probe: linear on digits, TS2Vec's SVM protocol on UCR). The table compares the
test accuracy of the run each label-free signal picks with the best run of the grid (the oracle,
which looks at test labels) and with the grid's mean (what a blind pick gets on average), and gives
the Spearman correlation between each signal and the accuracy.

    python benchmarks/selection.py                       # every setting
    python benchmarks/selection.py --settings digits-simclr

Sweeps live in --workdir (default /tmp/selfsup-selection): rerunning resumes them. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import kept_notes  # noqa: E402

from selfsup.config import RunConfig, load_yaml, merge  # noqa: E402
from selfsup.methods import METHODS  # noqa: E402
from selfsup.train.sweep import SweepResult, run_sweep  # noqa: E402

DIGITS_EPOCHS = 25


def _ucr_base(dataset: str, method: str) -> dict:
    """TS2Vec's protocol as in benchmarks/ucr.py: batch 8, lr 1e-3, 200 iterations."""
    from selfsup.data import load_dataset

    train = load_dataset(f"ucr:{dataset}").train
    iterations = 200 if train.x.numel() <= 100_000 else 600
    epochs = math.ceil(iterations / max(1, len(train) // 8))
    base = merge(RunConfig().to_dict(), METHODS.get(method).run_defaults)
    return merge(base, {
        "data": f"ucr:{dataset}", "method": {"name": method}, "backbone": {"name": "ts2vec_encoder"},
        "train": {"epochs": epochs, "batch_size": 8, "progress_bar": False, "monitor_every_n_epochs": epochs},
    })


def _digits_base(method: str) -> dict:
    recipe = load_yaml(ROOT / "recipes" / f"{method}-digits.yaml")
    base = merge(RunConfig().to_dict(), recipe)
    return merge(base, {"train": {"epochs": DIGITS_EPOCHS, "progress_bar": False, "monitor_every_n_epochs": DIGITS_EPOCHS}})


SETTINGS = {
    "digits-simclr": (
        lambda: _digits_base("simclr"), {"train.lr": [3e-4, 2e-3, 1e-2], "method.temperature": [0.05, 0.2, 0.5]}, "linear",
    ),
    "digits-vicreg": (
        lambda: _digits_base("vicreg"), {"train.lr": [3e-4, 2e-3, 1e-2], "method.covariance_weight": [0.04, 1.0, 4.0]}, "linear",
    ),
    "ItalyPowerDemand-ts2vec": (
        lambda: _ucr_base("ItalyPowerDemand", "ts2vec"), {"train.lr": [1e-4, 1e-3, 1e-2], "method.alpha": [0.0, 0.5, 1.0]}, "svm",
    ),
    "ArrowHead-ts2vec": (
        lambda: _ucr_base("ArrowHead", "ts2vec"), {"train.lr": [1e-4, 1e-3, 1e-2], "method.alpha": [0.0, 0.5, 1.0]}, "svm",
    ),
}


def row(name: str, result: SweepResult) -> list[str]:
    finished = [r for r in result.finished() if r.accuracy is not None]
    accs = [r.accuracy for r in finished]
    best = max(accs)
    cells = [name, str(len(finished)), f"{100 * best:.1f}", f"{100 * statistics.mean(accs):.1f}"]
    for signal in ("rankme", "alpha_req"):
        view = SweepResult(result.out_dir, signal, result.probe, result.runs)
        chosen = view.chosen_without_labels()
        rho = view.spearman()
        cells += [
            f"{100 * chosen.accuracy:.1f} ({chosen.name.split('-', 1)[0]})",
            f"{100 * (best - chosen.accuracy):.1f}",
            "–" if rho is None or math.isnan(rho) else f"{rho:.2f}",
        ]
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/selfsup-selection"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "selection.md")
    args = parser.parse_args()
    rows, grids = [], []
    for name in SETTINGS:  # every setting whose sweep exists, in a fixed order
        make_base, grid, probe = SETTINGS[name]
        if name not in args.settings and not (args.workdir / name / "sweep.json").exists():
            continue
        result = run_sweep(make_base(), grid, args.workdir / name, signal="rankme", probe=probe)
        rows.append(row(name, result))
        grids.append(f"- {name}: " + "; ".join(f"`{k}` ∈ {v}" for k, v in grid.items()) + f"; probe {probe}")
    header = [
        "setting", "runs", "best % (oracle)", "grid mean %",
        "RankMe pick %", "RankMe regret", "RankMe ρ", "α-ReQ pick %", "α-ReQ regret", "α-ReQ ρ",
    ]
    lines = [
        "# Label-free model selection",
        "",
        "Each grid point is pretrained once (seed 0); RankMe and α-ReQ are computed on the train-set embeddings, "
        "without labels; accuracy is the probe's test accuracy (linear probe on digits, TS2Vec's SVM protocol on UCR). "
        "*pick*: test accuracy of the run the signal chooses (run number in brackets); *regret*: best minus pick, "
        "in points; ρ: Spearman correlation between the signal (α-ReQ as -|α-1|) and the accuracy over the grid; "
        "*grid mean*: the expected accuracy of a blind pick.",
        "",
        f"Machine: {platform.machine()}, 2 CPU cores, torch {torch.__version__}, CPU only. Digits: each method's "
        f"recipe at {DIGITS_EPOCHS} epochs; UCR: batch 8, 200 iterations as in benchmarks/ucr.py.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "Grids:",
        *grids,
        "",
        "Per-run tables: `<workdir>/<setting>/sweep.md`. Command: `python benchmarks/selection.py [--settings ...]`",
        "",
    ]
    notes = kept_notes(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + ("\n" + notes if notes else ""))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
