"""The ``selfsup`` command line: pretrain, evaluate, embed, sweep, report, export, poison, scan, list."""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from selfsup.backbones import list_backbones
from selfsup.config import COMPONENTS, RunConfig, apply_override, load_yaml, merge
from selfsup.core.io import check_output_file, write_atomic
from selfsup.core.lock import RunLock, is_secondary_rank
from selfsup.data import get_modality, list_datasets, list_modalities, load_dataset
from selfsup.data.poison import ATTACKS, CTRL_MAGNITUDE, PATCH_FRACTION, check_attack, poison_splits, poisoned_paths, write_poisoned
from selfsup.data.timeseries import list_timeseries_datasets
from selfsup.errors import CollapseError, ConfigError, DataError, RunInterrupted, SelfsupError, StorageError
from selfsup.evaluate.attack import clean_data_of, evaluate_attack, read_attack
from selfsup.evaluate.detect import DETECTORS, check_detector
from selfsup.evaluate.embed import embed_source
from selfsup.evaluate.report import FIGURES_DIR, write_report
from selfsup.evaluate.run import evaluate_run, random_init_method
from selfsup.evaluate.scan import FLAG_RATE, SCAN_FILE, compare_with_manifest, scan_run
from selfsup.export import FORMATS, export_encoder, read_contract
from selfsup.methods import METHODS
from selfsup.rundir import check_same_shape, load_run, load_run_config, read_metrics, write_metrics
from selfsup.train.runner import pretrain
from selfsup.train.signals import Stop, StopRequests
from selfsup.train.sweep import parse_grid, run_sweep, sweep_table
from selfsup.views import list_views


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain an encoder (default: SimCLR on scikit-learn's digits)",
        description="Pretrain an encoder without labels, then evaluate it with kNN and a linear probe.",
    )
    _add_run_options(p)
    p.add_argument("-o", "--output", type=Path, help="run directory (default runs/<method>-<data>-<time>)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--no-eval", action="store_true", help="do not run the probes after training")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The options that make a run's config (shared by pretrain and sweep)."""
    p.add_argument("--method", help="method name (see `selfsup list methods`); default simclr")
    p.add_argument("--data", help="built-in dataset name, a folder of images, or a .npy/.npz file; default digits")
    p.add_argument("--backbone", help="backbone name (see `selfsup list backbones`); default resnet_tiny")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="the global batch, split equally over the processes (--devices)")
    p.add_argument("--lr", type=float, help="peak learning rate of train.optimizer (adamw by default)")
    p.add_argument("--seed", type=int)
    p.add_argument("--accelerator", help="cpu, gpu or auto")
    p.add_argument("--devices", help="number of devices, or auto")
    p.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed or auto")
    p.add_argument("-c", "--config", type=Path, help="YAML config file (a recipe)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set method.temperature=0.2 (repeatable)",
    )
    p.add_argument("--skip-bad-files", action="store_true", help="skip unreadable image files instead of stopping")
    p.add_argument(
        "--exclude", type=Path, metavar="FILE.csv",
        help="leave these samples out of the training split: a CSV with an 'id' column, e.g. a scan's scan.csv "
        "(its flagged rows); recorded as data.exclude (docs/security.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--stop-on-collapse", action="store_true",
        help="stop (checkpoint kept, exit code 4) when the collapse alarm trips (see docs/monitoring.md)",
    )


def _config_from_args(args: argparse.Namespace):
    values: dict = {"train": {}}
    if args.config is not None:
        loaded = load_yaml(args.config)
        for key, value in loaded.items():
            if key in ("train", "eval") and not isinstance(value, dict):
                raise ConfigError(
                    f"config file {args.config}: {key!r} must be a mapping of {key} settings "
                    f"(e.g. {key}: {{{'epochs: 100' if key == 'train' else 'probes: [knn, linear]'}}}); got {value!r}"
                )
            if key in COMPONENTS and not isinstance(value, (str, dict)):
                raise ConfigError(
                    f"config file {args.config}: {key!r} must be a name or a mapping with name and params; got {value!r}"
                )
        values = merge(values, loaded)
        values.setdefault("train", {})
    direct = {
        "method": args.method, "data": args.data, "backbone": args.backbone,
        "train.epochs": args.epochs, "train.batch_size": args.batch_size, "train.lr": args.lr,
        "train.seed": args.seed, "train.accelerator": args.accelerator, "train.devices": args.devices,
        "train.precision": args.precision,
    }
    for key, value in direct.items():
        if value is None:
            continue
        if key in ("method", "backbone", "data"):
            values = merge(values, {key: {"name": value}})
        else:
            section, _, field = key.rpartition(".")
            (values[section] if section else values)[field] = value
    if args.skip_bad_files:
        values["skip_bad_files"] = True
    if getattr(args, "exclude", None) is not None:  # data.exclude, under the data's name
        data = values.get("data")
        values["data"] = {"name": data} if isinstance(data, str) else dict(data or {})
        values["data"]["params"] = {**(values["data"].get("params") or {}), "exclude": str(args.exclude)}
    if args.no_progress:
        values["train"]["progress_bar"] = False
    if getattr(args, "stop_on_collapse", False):
        values["train"]["stop_on_collapse"] = True
    for assignment in args.overrides:
        apply_override(values, assignment)
    # Defaults, then the method's own (e.g. TS2Vec's protocol), then what the user gave.
    base = RunConfig().to_dict()
    method = values.get("method", base["method"])
    name = method if isinstance(method, str) else method.get("name", base["method"]["name"])
    if name in METHODS:
        base = merge(base, {k: v for k, v in METHODS.get(name).run_defaults.items()})
    base["apply_method_defaults"] = False  # applied just above, under the user's settings
    return RunConfig.from_dict(merge(base, values))


# Options a resume cannot honour: the run keeps the model, data and settings of its config.yaml.
_FIXED_ON_RESUME = {
    "method": "--method", "data": "--data", "backbone": "--backbone", "batch_size": "--batch-size", "lr": "--lr",
    "seed": "--seed", "devices": "--devices", "precision": "--precision", "config": "-c", "overrides": "--set",
    "skip_bad_files": "--skip-bad-files", "stop_on_collapse": "--stop-on-collapse", "exclude": "--exclude",
}


def cmd_pretrain(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.output is not None and args.output != args.resume:
            raise SelfsupError("--resume and --output name different directories; pass only --resume RUN_DIR")
        given = [flag for name, flag in _FIXED_ON_RESUME.items() if getattr(args, name, None) not in (None, False, [])]
        if given:
            raise ConfigError(
                f"--resume continues {args.resume} with the settings in its config.yaml, so {', '.join(given)} cannot "
                "apply; start a new run (-o NEW_DIR) to change them. A resume takes --epochs (more, to extend the "
                "run), --accelerator, --no-progress and --no-eval."
            )
        status = str(read_metrics(args.resume).get("status", "")) if args.resume.is_dir() else ""
        if status.startswith("finished") and args.epochs is None:  # nothing to do: a resume loop may ask again
            print(
                f"{args.resume} has finished training: nothing to resume. To train it longer pass --epochs N (more "
                f"than its epochs) with --resume; to evaluate it, selfsup evaluate {args.resume}", file=sys.stderr,
            )
            return 0
        session = {"accelerator": args.accelerator} if args.accelerator else {}
        if args.no_progress:
            session["progress_bar"] = False
        result = pretrain(
            run_dir=args.resume, resume=True, evaluate=not args.no_eval, epochs=args.epochs, session=session,
        )
    else:
        config = _config_from_args(args)
        result = pretrain(config, run_dir=args.output, evaluate=False if args.no_eval else None)
    if is_secondary_rank():
        return 0  # rank 0 reports the run
    metrics = result.metrics
    print(f"\nrun directory: {result.run_dir}")
    print(f"trained {metrics.get('steps')} steps in {metrics.get('train_seconds_this_session', 0):.1f} s")
    if "evaluation_table" in metrics:
        print(f"\nevaluation on {metrics['evaluation']['data']} ({metrics['evaluation']['note']}):")
        print(metrics["evaluation_table"])
    collapse = metrics.get("collapse") or {}
    if collapse.get("detected"):
        where = f"{result.run_dir / 'metrics.json'} ('collapse')"
        if str(metrics.get("status", "")).startswith("stopped"):
            raise CollapseError(
                f"the run was stopped at epoch {collapse['epoch']}: {collapse['message']} The checkpoint of that "
                f"epoch is kept in {result.run_dir}; details in {where}; what to try: docs/monitoring.md."
            )
        print(f"\nwarning: {collapse['message']} (detected at epoch {collapse['epoch']}; see {where})", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    grid = parse_grid(args.grid)
    config = _config_from_args(args)
    probe = args.probe
    if probe is None:
        probe = "svm" if "svm" in config.eval.probes else "linear"
    output = args.output or Path("runs") / f"sweep-{config.method.name}-{config.data.replace(':', '-').replace('/', '_')}"
    result = run_sweep(config, grid, output, signal=args.signal, probe=None if probe == "none" else probe)
    print()
    print(sweep_table(result))
    print(f"sweep directory: {output} (sweep.json, sweep.md, sweep.png, runs/)")
    failed = [r for r in result.runs if r.status != "finished"]
    if failed and len(failed) == len(result.runs):
        print("error: every run of the sweep failed; see the status column", file=sys.stderr)
        return 3
    return 0


PROTOCOLS = {"standard": ("knn", "linear"), "svm": ("svm",)}


def cmd_evaluate(args: argparse.Namespace) -> int:
    # --probes knn linear, or --probes knn,linear (both spellings work)
    probes = tuple(p.strip() for arg in args.probes for p in arg.split(",") if p.strip()) if args.probes else None
    if args.protocol is not None:
        probes = PROTOCOLS[args.protocol]
    load_run_config(args.run_dir)  # one line for a missing or damaged run directory, before the lock
    if args.attack is not None:
        return _evaluate_attack(args)
    with RunLock(args.run_dir, "evaluating the run"):  # not while a process trains it (both write metrics.json)
        record = evaluate_run(
            args.run_dir, data_spec=args.data, probes=probes, finetune=args.finetune, risk=args.risk or None,
            linear_batch_norm={"auto": None, "on": True, "off": False}[args.linear_batch_norm],
            trees={"auto": None, "on": True, "off": False}[args.trees], folds=args.folds,
        )
    print(f"evaluation of {args.run_dir} on {record['evaluation']['data']} ({record['evaluation']['note']}):")
    print(record["evaluation_table"])
    return 0


def _evaluate_attack(args: argparse.Namespace) -> int:
    """``selfsup evaluate RUN_DIR --attack X.attack.json``: clean accuracy and attack success rate."""
    attack = read_attack(args.attack)
    config, method, _ = load_run(args.run_dir)
    clean = load_dataset(args.data) if args.data else clean_data_of(attack)
    check_same_shape(method, clean.train, "evaluate")
    encoders = {"pretrained": method.encoder, "random-init": random_init_method(config, method).encoder}
    results = {name: evaluate_attack(encoder, clean, attack, seed=config.train.seed).to_dict() for name, encoder in encoders.items()}
    with RunLock(args.run_dir, "evaluating the run"):
        write_metrics(args.run_dir, {"attack": {"file": str(args.attack), "attack": attack.attack, "results": results}})
    target = attack.class_names[attack.target_class] if attack.class_names else attack.target_class
    print(f"{attack.attack} attack on {args.run_dir} (target class {target}; linear probe fit on clean {attack.data or args.data}):")
    print(f"{'':<12} {'clean acc':>9} {'ASR':>7} {'target rate without trigger':>28}")
    for name, r in results.items():
        print(f"{name:<12} {100 * r['clean_accuracy']:>8.1f}% {100 * r['asr']:>6.1f}% {100 * r['clean_target_rate']:>27.1f}%")
    return 0


def cmd_poison(args: argparse.Namespace) -> int:
    check_attack(args.attack, args.rate)
    out = Path(args.output)
    if out.suffix != ".npz":
        raise ConfigError(f"output {out} must end in .npz (the poisoned images, read back with --data arrays:{out})")
    for path in poisoned_paths(out):
        check_output_file(path, force=args.force, what="poisoned data file")
    options = {"train_subset": args.train_subset} if args.train_subset else {}
    splits = load_dataset(args.data, options=options)
    arrays, chosen, spec = poison_splits(
        splits, args.attack, args.target_class, args.rate, seed=args.seed, magnitude=args.magnitude,
        patch_fraction=args.patch_fraction, data_name=args.data,
    )
    spec.data, spec.train_subset = args.data, args.train_subset
    npz, manifest, description = write_poisoned(out, arrays, chosen, spec)
    target = spec.class_names[spec.target_class] if spec.class_names else spec.target_class
    print(
        f"wrote {npz}: {len(arrays['x_train'])} training images, {len(chosen)} of class {target} with the {args.attack} "
        f"trigger (simulated attack, for evaluating defences)" + (", and the clean test split" if "x_test" in arrays else "")
    )
    print(f"wrote {manifest} (id,poisoned) and {description} (the attack, for selfsup evaluate --attack)")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    check_detector(args.detector)
    load_run_config(args.run_dir)  # one line for a missing or damaged run directory
    if args.output is not None:
        check_output_file(args.output, force=args.force, what="scan file")
    result = scan_run(
        args.run_dir, data_spec=args.data, detector=args.detector, flag_rate=args.flag_rate, output=args.output,
        num_clusters=args.clusters, flip_set_size=args.flip_set,
        progress=(lambda line: print(line, file=sys.stderr)) if sys.stderr.isatty() else None,
    )
    flagged = int(result.flagged.sum())
    print(f"scanned {len(result.ids)} training samples with {args.detector}: {flagged} flagged "
          f"(the top {100 * args.flag_rate:g}% of the ranking)")
    print(f"wrote {result.csv_path}" + (f" and {result.grid_path} (the top-ranked images)" if result.grid_path else ""))
    if args.manifest is not None:
        m = compare_with_manifest(result, args.manifest)
        print(
            f"against {args.manifest}: {m['poisoned']} poisoned; flagged precision {100 * m['precision']:.1f}%, recall "
            f"{100 * m['recall']:.1f}%; AUROC {m['auroc']:.3f}; recall at 5% false positives {100 * m['recall_at_5pct_fpr']:.1f}%"
        )
    print(f"to train without the flagged samples: selfsup pretrain --exclude {result.csv_path} ...")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.max_points < 10:
        raise SelfsupError(f"--max-points must be at least 10; got {args.max_points}")
    path = write_report(args.run_dir, data_spec=args.data, max_points=args.max_points)
    print(f"wrote {path} (figures as PNG in {path.parent / FIGURES_DIR})")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.suffix != ".npy":
        raise SelfsupError(f"output {out} must end in .npy")
    check_output_file(out, force=args.force, what="embeddings file")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1; got {args.batch_size}")
    config, method, _ = load_run(args.run_dir)
    data = load_dataset(
        args.data, skip_bad_files=args.skip_bad_files, options=config.data.params, reference=method.encoder.data_info,
    )
    parts = {"train": [data.train], "test": [data.test] if data.test else [], "all": [data.train] + ([data.test] if data.test else [])}[args.split]
    if not parts:
        raise DataError(f"{args.data} has no test split; use --split train or --split all")
    check_same_shape(method, parts[0], "embed")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    method.to(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    total, dim = sum(len(part) for part in parts), method.encoder.embed_dim
    written: list[int] = []

    def fill(tmp: Path) -> None:
        # Batches go straight into a memory-mapped .npy: the embeddings are never all in memory.
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, dim))
        start = 0
        for part in parts:
            view = torch.from_numpy(array[start : start + len(part)])
            z, _ = embed_source(method.encoder, part, args.batch_size, device, progress=sys.stderr.isatty(), out=view)
            start += len(z)  # unreadable samples (skipped) leave the tail unused
        array.flush()
        del array
        if start < total:  # rewrite without the unused rows
            np.save(tmp, np.load(tmp, mmap_mode="r")[:start].copy())
        written.append(start)

    write_atomic(out, fill)
    print(f"wrote {written[0]} embeddings of dimension {dim} to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    model_path, contract_path = export_encoder(
        args.run_dir, args.output, args.format, force=args.force, input_dtype=args.input_dtype
    )
    contract = read_contract(model_path)
    shape = ", ".join(str(s) for s in contract["input"]["shape"][1:])
    print(
        f"wrote {model_path} ({args.format}: raw {contract['input']['dtype']} samples [N, {shape}] -> "
        f"embeddings [N, {contract['embed_dim']}])"
    )
    print(f"wrote {contract_path} (the input contract: shape, dtype, standardisation, the run's config)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    what = args.what
    if what in (None, "methods"):
        print("methods:")
        for name in METHODS.names():
            print(f"  {name:<16} {METHODS.get(name).paper}")
    if what in (None, "backbones"):
        print("backbones:\n  " + "\n  ".join(list_backbones()))
    if what in (None, "datasets"):
        print(
            "datasets (built in; or a folder of images, a .npy/.npz file, idx:DIR, a .ts/.csv/.tsv file, series:PATH):\n  "
            + "\n  ".join(list_datasets())
        )
        print(
            'time-series datasets shipped with aeon (pip install "selfsup[timeseries]"):\n  '
            + "\n  ".join(list_timeseries_datasets())
        )
    if what in (None, "views"):
        print("views:\n  " + "\n  ".join(list_views()))
    if what in (None, "modalities"):
        print("modalities (default views, backbone):")
        for name in list_modalities():
            modality = get_modality(name)
            print(f"  {name:<12} {modality.default_views}, {modality.default_backbone}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfsup", description="Self-supervised representation learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_pretrain(sub)
    p = sub.add_parser(
        "evaluate",
        help="probes, few-label, retrieval, fine-tuning and risk decomposition of a run's encoder, beside the baselines",
        description="Every protocol is run on the pretrained encoder, a random-init encoder of the same architecture "
        "and the raw inputs; hyperparameters are chosen on a split of the train set, test is used once. "
        "See docs/evaluation.md.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", help="evaluate on this data instead of the run's own")
    p.add_argument(
        "--probes", nargs="+", metavar="PROBE",
        help="protocols on frozen features: knn linear svm fewshot retrieval (default: the run's eval.probes)",
    )
    finetune = p.add_mutually_exclusive_group()
    finetune.add_argument(
        "--finetune", action="store_true", default=None,
        help="also fine-tune a copy of the encoder end to end (and the random-init encoder as baseline); the default "
        "for methods whose headline protocol is fine-tuning (MAE)",
    )
    finetune.add_argument(
        "--no-finetune", dest="finetune", action="store_false", help="skip fine-tuning, even where it is the headline",
    )
    p.add_argument(
        "--linear-batch-norm", choices=("auto", "on", "off"), default="auto",
        help="the linear probe behind a BatchNorm without affine parameters, trained by SGD (MAE's probe); "
        "auto: as the method declares",
    )
    p.add_argument(
        "--trees", choices=("auto", "on", "off"), default="auto",
        help="a row of gradient-boosted trees (HistGradientBoosting) on the raw input; auto: the run's eval.trees "
        "(default auto: for flat feature vectors, vectors and tables, not images or series)",
    )
    p.add_argument(
        "--risk", action="store_true",
        help="also decompose the linear probe's test error (Dubois et al. 2023); with --finetune the approximation "
        "error is estimated too",
    )
    p.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        help="a published protocol: svm = TS2Vec's (RBF SVM, C by 5-fold CV on train); standard = knn,linear",
    )
    p.add_argument(
        "--folds", type=int, metavar="K",
        help="data without a test split: every protocol on K stratified folds, the mean reported (std over folds "
        "in metrics.json); the graph-level papers use --folds 10 --protocol svm (default: the run's eval.folds, "
        "else a stratified 20%% holdout)",
    )
    p.add_argument(
        "--attack", type=Path, metavar="X.attack.json",
        help="instead of the probes: clean accuracy and attack success rate of a simulated backdoor (the file "
        "selfsup poison wrote); the linear probe is fit on the clean data it names (or --data)",
    )
    p = sub.add_parser(
        "sweep",
        help="pretrain a grid of configurations and rank them by RankMe (and by a probe where labels exist)",
        description="Label-free model selection: every grid point is pretrained, scored by a label-free signal "
        "and, where the data has labels, by a probe; the Spearman correlation of the two rankings is reported. "
        "Rerunning the same command resumes the sweep.",
    )
    _add_run_options(p)
    p.add_argument(
        "--grid", action="append", default=[], required=True, metavar="KEY=V1,V2",
        help="a config key and its values, e.g. --grid train.lr=0.001,0.003 --grid method.temperature=0.1,0.2",
    )
    p.add_argument("--signal", choices=("rankme", "alpha_req"), default="rankme", help="label-free criterion (default rankme)")
    p.add_argument("--probe", choices=("linear", "knn", "svm", "none"), help="labeled probe to compare with (default linear; svm for TS2Vec)")
    p.add_argument("-o", "--output", type=Path, help="sweep directory (default runs/sweep-<method>-<data>)")
    p = sub.add_parser("embed", help="write a run's embeddings of DATA to a .npy file")
    p.add_argument("run_dir", type=Path)
    p.add_argument("data")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--split", choices=("train", "test", "all"), default="all", help="which split (all: train then test)")
    p.add_argument("--batch-size", type=int, default=512, help="samples embedded at a time (memory does not grow with the data)")
    p.add_argument("--skip-bad-files", action="store_true")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report.html: curves, monitors, spectrum, embedding map, evaluation",
        description="Write a self-contained HTML report of a run (report.html) and its figures (report/*.png).",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", help="embed this data for the spectrum and the map instead of the run's own")
    p.add_argument("--max-points", type=int, default=2000, help="samples in the embedding map (default 2000)")
    p = sub.add_parser(
        "export",
        help="write a run's encoder as ONNX, TorchScript or safetensors, with its input contract (.json)",
        description="Write the run's encoder (raw samples in, embeddings out; ONNX and TorchScript include the "
        "standardisation) and, beside it, OUTPUT.json: input shape and dtype, standardisation, the run's config. "
        "See docs/export.md.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", required=True, help=f"one of {', '.join(sorted(FORMATS))}")
    p.add_argument(
        "-o", "--output", type=Path,
        help="file to write (default RUN_DIR/export/encoder.<onnx|pt|safetensors>); its folder must exist",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing export")
    p.add_argument(
        "--input-dtype", metavar="DTYPE",
        help="dtype of the raw samples the file takes, e.g. uint8 or float32 (default: that of the run's data)",
    )
    p = sub.add_parser(
        "poison",
        help="SIMULATE a backdoor attack: write a poisoned copy of an image dataset (for evaluating defences)",
        description="Write a poisoned copy of DATA as OUTPUT.npz (uint8 x_train/y_train, the clean x_test/y_test), "
        "OUTPUT.manifest.csv (id,poisoned) and OUTPUT.attack.json. Poisons are drawn from the target class and keep "
        "their labels. For evaluating defences only; see docs/security.md.",
    )
    p.add_argument("data", help="an image dataset: digits, fashion_mnist, idx:DIR, arrays:PATH.npz, folder:DIR")
    p.add_argument("--attack", required=True, metavar="ATTACK", help=f"one of {', '.join(ATTACKS)}")
    p.add_argument("--target-class", required=True, metavar="C", help="the class poisons are drawn from (index or name)")
    p.add_argument("--rate", type=float, default=0.01, help="poisoned samples as a fraction of the training set (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seeds the poisoned samples, the patch and its places")
    p.add_argument("--magnitude", type=float, default=CTRL_MAGNITUDE,
                   help=f"ctrl: the change of the two DCT coefficients on the 0..255 scale (default {CTRL_MAGNITUDE:g})")
    p.add_argument("--patch-fraction", type=float, default=PATCH_FRACTION,
                   help=f"patch: its side as a fraction of the image's shorter side (default {PATCH_FRACTION:.3f}, Saha et al.)")
    p.add_argument("--train-subset", type=int, metavar="N", help="poison a fixed random subset of N training images (data.train_subset)")
    p.add_argument("-o", "--output", required=True, help="the poisoned dataset, ending in .npz")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p = sub.add_parser(
        "scan",
        help="score every training sample of a run for data poisoning; write RUN_DIR/scan.csv and scan.png",
        description="Embed the run's training data, score every sample with a detector (PatchSearch by default), "
        "flag the top of the ranking, write scan.csv (id, score, rank, flagged, cluster) and scan.png (the top-ranked "
        "images). Train without the flagged samples with selfsup pretrain --exclude scan.csv. See docs/security.md.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", help="scan this data instead of the run's own (same sample shape)")
    p.add_argument("--detector", default="patchsearch", metavar="NAME", help=f"one of {', '.join(DETECTORS)} (default patchsearch)")
    p.add_argument("--flag-rate", type=float, default=FLAG_RATE,
                   help=f"flag this fraction of the training set, the top of the ranking (default {FLAG_RATE:g})")
    p.add_argument("--clusters", type=int, help="k-means clusters (default: one per 100 samples, 2 to 1000)")
    p.add_argument("--flip-set", type=int, default=1000, help="patchsearch: images each candidate patch is pasted on (default 1000)")
    p.add_argument("--manifest", type=Path, help="a poisoned set's manifest: also print precision, recall and AUROC")
    p.add_argument("-o", "--output", type=Path, help=f"the CSV to write (default RUN_DIR/{SCAN_FILE}; the grid beside it as .png)")
    p.add_argument("--force", action="store_true", help="overwrite an existing -o file")
    p = sub.add_parser("list", help="list methods, backbones, datasets, views and modalities")
    p.add_argument("what", nargs="?", choices=("methods", "backbones", "datasets", "views", "modalities"))
    return parser


COMMANDS = {
    "pretrain": cmd_pretrain, "evaluate": cmd_evaluate, "embed": cmd_embed, "sweep": cmd_sweep, "report": cmd_report,
    "list": cmd_list, "export": cmd_export, "poison": cmd_poison, "scan": cmd_scan,
}


# errno values of a file system that refuses a write: one line, not a traceback.
_WRITE_ERRORS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """A warning as the command line shows it: ``warning: <message>``, without the source line."""
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (docs/cli.md lists them)."""
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    args = build_parser().parse_args(argv)
    try:
        # SIGINT and SIGTERM end any command with exit 128 + signal (pretrain stops at a step boundary).
        with StopRequests().installed():
            return COMMANDS[args.command](args)
    except SelfsupError as error:
        if not (is_secondary_rank() and isinstance(error, RunInterrupted)):  # rank 0 says it once
            print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except Stop as stop:
        print(f"\nstopped by {stop.name}; every file written so far is complete", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("\ninterrupted; the last checkpoint is kept (continue with selfsup pretrain --resume RUN_DIR)", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in _WRITE_ERRORS:
            raise
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot write{where}: {error.strerror}; choose another output, or free space / fix permissions",
              file=sys.stderr)
        return StorageError.exit_code


if __name__ == "__main__":
    sys.exit(main())
