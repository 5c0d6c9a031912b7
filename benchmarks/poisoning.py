"""Poisoning benchmark (issue 15): simulated backdoors on Fashion-MNIST, the scan, the defence;
writes benchmarks/results/poisoning.md.

For each attack (CTRL's frequency trigger, Saha et al.'s patch), poisoning rate and seed:

1. poison a fixed 10,000-image subset of the training set (class 0 is the target; the test set
   stays clean) and pretrain an encoder on it; pretrain a clean encoder per seed on the same subset;
2. attack success rate (ASR) and clean accuracy of both (evaluate/attack.py: a linear probe fit on
   the clean subset with its labels): the attack has taken hold when the poisoned encoder's ASR is
   clearly above the clean encoder's (the table says whether it did);
3. scan the poisoned run with every detector (evaluate/detect.py): AUROC of the scores, recall at
   5% false positives (the goal: >= 90%), precision and recall of the flags (the top FLAG_RATE);
4. defence: pretrain again without one detector's flags (data.exclude) and measure ASR and clean
   accuracy again (the goal: the clean encoder's ASR); skipped where the attack did not take hold
   (no backdoor to remove), unless --defend-always.

Rows are kept in benchmarks/results/poisoning.jsonl, one per finished step; a rerun skips them,
and an interrupted pretraining resumes from its checkpoint. Needs the Debian package
dataset-fashion-mnist. Not part of the test suite.

    OMP_NUM_THREADS=1 python benchmarks/poisoning.py                      # the whole table
    python benchmarks/poisoning.py --subset 5000 --epochs 20 --rates 0.05 --seeds 0   # a longer budget
    python benchmarks/poisoning.py --smoke                                 # minutes: a tiny configuration
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cell, code_version, kept_notes, load_rows, save_rows  # noqa: E402

from selfsup.config import RunConfig, load_yaml, merge  # noqa: E402
from selfsup.data import load_dataset  # noqa: E402
from selfsup.data.poison import poison_splits, write_poisoned  # noqa: E402
from selfsup.evaluate.attack import evaluate_attack  # noqa: E402
from selfsup.evaluate.detect import DETECTORS, detection_metrics  # noqa: E402
from selfsup.evaluate.scan import score_samples, write_scan_csv  # noqa: E402
from selfsup.rundir import CHECKPOINT, checkpoint_path, load_run, read_metrics  # noqa: E402
from selfsup.train.runner import pretrain  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = "fashion_mnist"
TARGET_CLASS = 0  # T-shirt/top (CTRL's default target is class 0 too)
ATTACKS = ["patch", "ctrl"]
RATES = [0.01, 0.05]
SEEDS = [0, 1, 2]
# Measured first (2026-11-30, this 2-core CPU, one thread, another benchmark on the other core):
# one SimCLR epoch of 10,000 Fashion-MNIST images on resnet_tiny at batch 256 takes about 90 s,
# so a run of BUDGET is about 8 minutes.
BUDGET = {"method": "simclr", "backbone": "resnet_tiny", "epochs": 5, "batch_size": 256, "train_subset": 10000,
          "warmup_epochs": 1}
FLAG_RATE = 0.10  # the defence removes the top 10% of a scan's ranking (a 5% attack plus as many again)
FLIP_SET = 200  # PatchSearch's flip set (the paper: 1,000); two images per cluster at 100 clusters, CPU time
# The detector whose flags the defence removes: PatchSearch for the patch (the published defence
# for it), spectral signatures for CTRL (PatchSearch looks for patches, CTRL has none).
DEFENCE_DETECTOR = {"patch": "patchsearch", "ctrl": "spectral"}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # embedding, probes' features and scans (training: Lightning's choice)
SMOKE = {"epochs": 1, "train_subset": 1000, "max_steps": 3, "flip_set": 20}


def config_for(data: str, seed: int, budget: dict, exclude: Path | None = None) -> RunConfig:
    values = merge(RunConfig().to_dict(), load_yaml(ROOT / "recipes" / f"{budget['method']}-digits.yaml"))
    params = {} if data.startswith("arrays:") else {"train_subset": budget["train_subset"]}
    if exclude is not None:
        params["exclude"] = str(exclude)
    values["data"] = {"name": data, "params": params}
    values["backbone"] = {"name": budget["backbone"], "params": dict(budget.get("backbone_params", {}))}
    if budget.get("views_params"):
        values["views"]["params"] = {**values["views"]["params"], **budget["views_params"]}
    values["train"].update(seed=seed, epochs=budget["epochs"], batch_size=budget["batch_size"],
                           warmup_epochs=budget["warmup_epochs"], max_steps=budget.get("max_steps", 0),
                           progress_bar=False, monitor_every_n_epochs=1000)
    return RunConfig.from_dict(values)


def train(run_dir: Path, config: RunConfig) -> dict:
    """Pretrain (or resume, or keep a finished run); returns the run's metrics."""
    if (run_dir / CHECKPOINT).is_file() and read_metrics(run_dir).get("status") == "finished":
        return read_metrics(run_dir)
    partial = checkpoint_path(run_dir) if run_dir.exists() else None
    if run_dir.exists() and partial is None:
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    result = pretrain(None if partial else config, run_dir=run_dir, evaluate=False, resume=bool(partial))
    metrics = dict(result.metrics)
    metrics["wall_s"] = time.perf_counter() - start
    return metrics


def encoder_of(run_dir: Path) -> torch.nn.Module:
    return load_run(run_dir)[1].encoder.to(DEVICE)


def save_row(path: Path, rows: list[dict], row: dict) -> list[dict]:
    rows = [r for r in rows if r["key"] != row["key"]] + [row]
    save_rows(path, rows)
    print(json.dumps(row), flush=True)
    return rows


def budget_tag(budget: dict) -> str:
    strides = budget.get("backbone_params", {}).get("strides")
    return (f"{budget['method']}-e{budget['epochs']}-n{budget['train_subset']}"
            + ("-s" + "".join(map(str, strides)) if strides else "")
            + ("-noblur" if budget.get("views_params", {}).get("blur", {}).get("p") == 0 else "")
            + ("-smoke" if budget.get("max_steps") else ""))


def budget_words(r: dict) -> str:
    """The backbone and views of a row's budget, where they differ from the default."""
    strides = r.get("backbone_params", {}).get("strides")
    words = [f"strides {strides}"] if strides else []
    if r.get("views_params", {}).get("blur", {}).get("p") == 0:
        words.append("no blur")
    return f" ({', '.join(words)})" if words else ""


def run_case(attack: str, rate: float, seed: int, budget: dict, runs: Path, rows: list[dict], store: Path,
             clean: dict, flip_set: int, defend_always: bool = False) -> list[dict]:
    """Steps 1-4 for one (attack, rate, seed); each finished step is a row."""
    tag = budget_tag(budget)
    case = runs / tag / f"{attack}-r{rate:g}-s{seed}"
    case.mkdir(parents=True, exist_ok=True)
    key = f"{tag}/{attack}/{rate:g}/{seed}"
    row = next((r for r in rows if r["key"] == key), None) or {
        "key": key, "attack": attack, "rate": rate, "seed": seed, **{k: budget[k] for k in ("method", "backbone", "epochs", "batch_size", "train_subset")},
        "backbone_params": budget.get("backbone_params", {}), "views_params": budget.get("views_params", {}),
        "target_class": TARGET_CLASS, "flag_rate": FLAG_RATE, "flip_set": flip_set,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.machine()})",
        "torch": torch.__version__, "code": code_version(),
    }
    clean_data = load_dataset(DATA, options={"train_subset": budget["train_subset"]})
    poisoned_npz = case / "poisoned.npz"
    arrays, chosen, spec = poison_splits(clean_data, attack, TARGET_CLASS, rate, seed=seed, data_name=DATA)
    spec.data, spec.train_subset = DATA, budget["train_subset"]
    if not poisoned_npz.is_file():
        write_poisoned(poisoned_npz, arrays, chosen, spec)
    truth = torch.zeros(len(arrays["x_train"]), dtype=torch.bool)
    truth[chosen] = True

    if "poisoned_asr" not in row:  # 1-2: the poisoned encoder
        metrics = train(case / "poisoned", config_for(f"arrays:{poisoned_npz}", seed, budget))
        result = evaluate_attack(encoder_of(case / "poisoned"), clean_data, spec, seed=seed, device=DEVICE)
        clean_result = evaluate_attack(clean["encoder"], clean_data, spec, seed=seed, device=DEVICE)
        row.update(poisoned_asr=result.asr, poisoned_clean_acc=result.clean_accuracy,
                   clean_asr=clean_result.asr, clean_clean_acc=clean_result.clean_accuracy,
                   num_poisoned=len(chosen), train_s=metrics.get("train_seconds_this_session"))
        rows = save_row(store, rows, row)
    if "detection" not in row:  # 3: every detector on the poisoned run
        encoder = encoder_of(case / "poisoned")
        source = load_dataset(f"arrays:{poisoned_npz}").train
        detection = {}
        for detector in DETECTORS:
            start = time.perf_counter()
            found = score_samples(encoder, source, detector, FLAG_RATE, flip_set_size=flip_set, seed=seed, device=DEVICE)
            write_scan_csv(case / f"scan-{detector}.csv", found)
            detection[detector] = {**detection_metrics(found.scores, found.flagged, truth), "seconds": time.perf_counter() - start}
        row["detection"] = detection
        rows = save_row(store, rows, row)
    if "defended_asr" not in row and row.get("defence") != "skipped" and not (held(row) or defend_always):
        row["defence"] = "skipped"  # no backdoor to remove: a defence number would not count
        rows = save_row(store, rows, row)
    if "defended_asr" not in row and row.get("defence") != "skipped":  # 4: retrain without the flags
        detector = DEFENCE_DETECTOR[attack]
        metrics = train(case / f"defended-{detector}",
                        config_for(f"arrays:{poisoned_npz}", seed, budget, exclude=case / f"scan-{detector}.csv"))
        result = evaluate_attack(encoder_of(case / f"defended-{detector}"), clean_data, spec, seed=seed, device=DEVICE)
        row.update(defence_detector=detector, defended_asr=result.asr, defended_clean_acc=result.clean_accuracy)
        rows = save_row(store, rows, row)
    return rows


def clean_encoder(seed: int, budget: dict, runs: Path) -> dict:
    run_dir = runs / budget_tag(budget) / f"clean-s{seed}"
    train(run_dir, config_for(DATA, seed, budget))
    return {"encoder": encoder_of(run_dir)}


def held(r: dict) -> bool:
    """The attack took hold: the poisoned encoder's ASR more than 10 points above the clean one's."""
    return r["poisoned_asr"] > r["clean_asr"] + 0.10


def section(mine: list[dict], expected: int | None) -> list[str]:
    """The three tables of one budget."""
    first = mine[0]
    lines = [
        f"## {first['method']} on {first['backbone']}{budget_words(first)}, {first['epochs']} epochs at batch {first['batch_size']}, "
        f"{first['train_subset']:,} training images",
        "",
        "### Attack: did it take hold?",
        "",
        "| attack | rate | seeds | poisoned | clean encoder ASR % | poisoned encoder ASR % | clean acc. clean enc. % "
        "| clean acc. poisoned enc. % | took hold (ASR > clean + 10) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in mine:
        groups.setdefault((r["attack"], r["rate"]), []).append(r)
    for (attack, rate), rs in sorted(groups.items()):
        done = [r for r in rs if "poisoned_asr" in r]
        if not done:
            continue
        lines.append(
            f"| {attack} | {100 * rate:g}% | {len(done)} | {done[0]['num_poisoned']} | {cell([r['clean_asr'] for r in done])} "
            f"| {cell([r['poisoned_asr'] for r in done])} | {cell([r['clean_clean_acc'] for r in done])} "
            f"| {cell([r['poisoned_clean_acc'] for r in done])} | {sum(held(r) for r in done)} of {len(done)} |"
        )
    lines += [
        "",
        "### Detection",
        "",
        "| attack | rate | detector | seeds | AUROC | recall at 5% FP % | goal (>= 90%) | flags: precision % | flags: recall % "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (attack, rate), rs in sorted(groups.items()):
        done = [r for r in rs if "detection" in r]
        for detector in DETECTORS:
            ms = [r["detection"][detector] for r in done if detector in r["detection"]]
            if not ms:
                continue
            goal = sum(m["recall_at_5pct_fpr"] >= 0.9 for m in ms)
            lines.append(
                f"| {attack} | {100 * rate:g}% | {detector} | {len(ms)} | {cell([m['auroc'] for m in ms], 1.0, 3)} "
                f"| {cell([m['recall_at_5pct_fpr'] for m in ms])} | {goal} of {len(ms)} "
                f"| {cell([m['precision'] for m in ms])} | {cell([m['recall'] for m in ms])} "
                f"| {sum(m['seconds'] for m in ms) / len(ms):.0f} |"
            )
    lines += [
        "",
        "### Defence",
        "",
        "A defence number counts only where the attack took hold (same seed); where it did not, the retraining is "
        "skipped (`--defend-always` runs it anyway, listed as not counted).",
        "",
        "| attack | rate | detector | seeds | ASR before % | ASR after % | clean encoder ASR % | back to clean (within 2 points) "
        "| clean acc. before % | clean acc. after % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (attack, rate), rs in sorted(groups.items()):
        skipped = [r for r in rs if r.get("defence") == "skipped"]
        done = [r for r in rs if "defended_asr" in r]
        if skipped and not done:
            lines.append(f"| {attack} | {100 * rate:g}% | {DEFENCE_DETECTOR[attack]} | {len(skipped)} | skipped: the attack "
                         "did not take hold | | | | | |")
        if not done:
            continue
        counted = [r for r in done if held(r)]
        back = sum(r["defended_asr"] <= r["clean_asr"] + 0.02 for r in counted)
        verdict = f"{back} of {len(counted)}" + (f" ({len(done) - len(counted)} not counted: no backdoor)" if len(counted) < len(done) else "")
        lines.append(
            f"| {attack} | {100 * rate:g}% | {done[0]['defence_detector']} | {len(done)} | {cell([r['poisoned_asr'] for r in done])} "
            f"| {cell([r['defended_asr'] for r in done])} | {cell([r['clean_asr'] for r in done])} | {verdict} "
            f"| {cell([r['poisoned_clean_acc'] for r in done])} | {cell([r['defended_clean_acc'] for r in done])} |"
        )
    finished = sum("defended_asr" in r or r.get("defence") == "skipped" for r in mine)
    of = f" of {expected}" if expected else ""
    lines += ["", f"Finished: {finished}{of} (attack, rate, seed) cases; device {first['device']}.", ""]
    return lines


def table(rows: list[dict], notes: str, expected: dict[str, int]) -> str:
    lines = [
        "# Poisoning benchmark: simulated backdoors, the scan, the defence",
        "",
        "Fashion-MNIST (Debian's dataset-fashion-mnist), a fixed subset of the training images (`data.train_subset`, "
        f"seed 0); the 10,000 test images. Target class {TARGET_CLASS} (T-shirt/top). Every encoder: SimCLR with the "
        "digits recipe's settings (AdamW lr 0.002, crops of 20-100% of the area, jitter, blur) at the budget of its "
        "section, seed as listed; a poisoned encoder trains on the poisoned copy (the same images, the poisoned ones "
        "with the trigger), a clean encoder per seed on the clean subset. Attacks (src/selfsup/data/poison.py): "
        "**patch** (Saha et al. 2022: a random 4x4 grid of grey levels resized to 6x6 px, pasted at a random place), "
        "**ctrl** (Li et al. 2023: +100 at DCT coefficients (13,13) and (27,27) of the luminance, the image's only "
        "channel). Poisons are drawn from class 0 and keep their label.",
        "",
        "ASR (attack success rate): a linear probe fit on the clean subset's features with clean labels; the share of "
        "triggered test images of the other nine classes it puts in class 0. Detection: AUROC of each detector's "
        "scores against the planted samples, recall at 5% false positives (goal >= 90%), precision / recall of the "
        f"flags (the top {100 * FLAG_RATE:g}% of the ranking). Defence: the same pretraining without the flags of "
        f"{', '.join(f'{d} ({a})' for a, d in DEFENCE_DETECTOR.items())}. PatchSearch: {FLIP_SET} flip images "
        "(the paper: 1,000), one cluster per 100 images. Mean ± std over the seeds finished.",
        "",
    ]
    tags = sorted({r["key"].rsplit("/", 3)[0] for r in rows}, key=lambda t: (t != budget_tag(BUDGET), t))
    for tag in tags:
        default = len(ATTACKS) * len(RATES) * len(SEEDS) if tag == budget_tag(BUDGET) else None
        lines += section([r for r in rows if r["key"].startswith(tag + "/")], expected.get(tag, default))
    lines += [
        "Resume or complete with `OMP_NUM_THREADS=1 python benchmarks/poisoning.py` (the default budget; `--epochs E` "
        "for a longer one): finished steps are skipped, an interrupted pretraining resumes from its checkpoint.",
        "",
    ]
    return "\n".join(lines) + ("\n" + notes if notes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", nargs="*", default=ATTACKS)
    parser.add_argument("--rates", nargs="*", type=float, default=RATES)
    parser.add_argument("--seeds", nargs="*", type=int, default=SEEDS)
    parser.add_argument("--epochs", type=int, help=f"default {BUDGET['epochs']}")
    parser.add_argument("--subset", type=int, help=f"training images (default {BUDGET['train_subset']})")
    parser.add_argument("--strides", type=int, nargs=3, help="resnet_tiny's stage strides (default 1 2 2; 2 2 2 is 2.6x faster)")
    parser.add_argument("--no-blur", action="store_true", help="SimCLR's CIFAR-10 augmentations: no Gaussian blur")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "poisoning")
    parser.add_argument("--out", type=Path, default=RESULTS / "poisoning.md")
    parser.add_argument("--table", action="store_true", help="only rebuild the markdown table from the jsonl rows")
    parser.add_argument("--defend-always", action="store_true", help="retrain without the flags even where the attack did not take hold")
    parser.add_argument("--smoke", action="store_true", help="a tiny configuration (1,000 images, 3 steps) to check the script")
    args = parser.parse_args()
    budget = {**BUDGET, **({"epochs": args.epochs} if args.epochs else {}), **({"train_subset": args.subset} if args.subset else {})}
    if args.strides:
        budget["backbone_params"] = {"strides": list(args.strides)}
    if args.no_blur:
        budget["views_params"] = {"blur": {"p": 0.0}}
    flip_set = FLIP_SET
    out = args.out
    if args.smoke:  # one seed, one rate, both attacks, a few steps each
        budget.update({k: v for k, v in SMOKE.items() if k != "flip_set"})
        args.seeds, args.rates = args.seeds[:1], args.rates[-1:]
        flip_set = SMOKE["flip_set"]
        out = args.runs / "smoke.md"
    store = out.with_suffix(".jsonl")
    rows = load_rows(store)
    if args.table:  # rebuild the markdown from the rows, nothing run
        out.write_text(table(rows, kept_notes(out), {}))
        print(out.read_text())
        return
    # Seed by seed, so that whole seeds finish first; the clean encoder of a seed before its cases.
    for seed in args.seeds:
        clean = clean_encoder(seed, budget, args.runs)
        for rate in sorted(args.rates, reverse=True):
            for attack in args.attacks:
                rows = run_case(attack, rate, seed, budget, args.runs, rows, store, clean, flip_set, args.defend_always)
                notes = kept_notes(out)
                out.write_text(table(rows, notes, {budget_tag(budget): len(args.attacks) * len(args.rates) * len(args.seeds)}))
    print(out.read_text())


if __name__ == "__main__":
    main()
