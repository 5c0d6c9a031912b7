"""Pretraining runs: build everything from a :class:`RunConfig`, train, and keep a run directory.

The run directory's files are described in :mod:`selfsup.rundir` (shared with evaluation).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import TQDMProgressBar

from selfsup.backbones import BACKBONES
from selfsup.config import ComponentConfig, RunConfig, build_dataclass, to_plain
from selfsup.core.io import write_atomic
from selfsup.data import DatasetSplits, SampleSource, data_options, load_dataset
from selfsup.data.loader import iterate, make_loader, materialize
from selfsup.data.modalities import get_modality
from selfsup.errors import ConfigError, NonFiniteLossError
from selfsup.evaluate.plots import write_training_plot
from selfsup.evaluate.run import evaluate_run
from selfsup.methods import METHODS
from selfsup.methods.base import Method
from selfsup.rundir import (  # noqa: F401  (re-exported: the run directory's API as before)
    CHECKPOINT, CONFIG_FILE, METRICS_FILE, build_method, input_statistics, load_run, load_run_config, write_metrics,
)
from selfsup.train.callbacks import AtomicCheckpoint, EmbeddingMonitor, History
from selfsup.train.monitors import CollapseAlarm, check_thresholds
from selfsup.train.module import PretrainModule
from selfsup.views import VIEWS, create_views


class _NoStepEstimateNote(logging.Filter):
    """Lightning says it loads the dataloader to count the steps (for the schedules): not news to a user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "estimate number of stepping batches" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoStepEstimateNote())


def _resolved(component: ComponentConfig, factory: Any, where: str) -> ComponentConfig:
    """``component`` with its params validated and every default written out."""
    params = build_dataclass(factory.Config, component.params, where=f"{where} {component.name!r}")
    return ComponentConfig(component.name, to_plain(params))


def apply_method_defaults(config: RunConfig) -> tuple[RunConfig, list[str]]:
    """The method's ``run_defaults`` applied to the settings ``config`` left at the library
    defaults; returns the new config and the ``key=value`` settings that were applied."""
    defaults = METHODS.get(config.method.name).run_defaults
    if not config.apply_method_defaults or not defaults:
        return config, []
    library = RunConfig().to_dict()
    values = config.to_dict()
    applied = []
    for section, entries in defaults.items():
        for key, value in entries.items():
            current = values[section][key]
            if current == library[section][key] and current != to_plain(value):
                values[section][key] = to_plain(value)
                applied.append(f"{section}.{key}={value}")
    values["apply_method_defaults"] = False
    return RunConfig.from_dict(values), applied


def resolve_config(config: RunConfig, modality: str | None = None) -> RunConfig:
    """Fill every component's params with its defaults (validating them) so runs are reproducible.

    The views and an ``"auto"`` backbone are resolved only once the data's ``modality`` is known
    (``"auto"`` picks the modality's default backbone: resnet_tiny for images, mlp for vectors,
    ts2vec_encoder for series).
    """
    out = RunConfig.from_dict(config.to_dict())
    out.data = ComponentConfig(config.data.name, to_plain(data_options(config.data.params)))
    if config.backbone.name != "auto":
        out.backbone = _resolved(config.backbone, BACKBONES.get(config.backbone.name), "backbone")
    elif modality is not None:
        name = get_modality(modality).default_backbone
        out.backbone = _resolved(ComponentConfig(name, config.backbone.params), BACKBONES.get(name), "backbone")
    method = METHODS.get(config.method.name)
    out.method = _resolved(config.method, method, "method")
    if modality is not None:
        if method.modalities is not None and modality not in method.modalities:
            raise ConfigError(
                f"method {config.method.name!r} works on {', '.join(sorted(method.modalities))} data, but "
                f"{config.data.name} is {modality!r} data; choose another method (selfsup list methods)"
            )
        name = config.views.name
        if name == "auto":
            # A method that needs its own views (TS2Vec's overlapping crops) names them;
            # otherwise the modality's default.
            name = method.default_views or get_modality(modality).default_views
        out.views = _resolved(ComponentConfig(name, config.views.params), VIEWS.get(name), "views")
    return out


def _precision(requested: str) -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _loggers(run_dir: Path) -> list[Any]:
    """A CSV log always; a TensorBoard log too when ``tensorboard`` is installed (not a dependency)."""
    loggers: list[Any] = [L.pytorch.loggers.CSVLogger(str(run_dir), name="logs", version="")]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(L.pytorch.loggers.TensorBoardLogger(str(run_dir), name="logs", version="tensorboard"))
    return loggers








@dataclass
class RunResult:
    run_dir: Path
    method: Method
    data: DatasetSplits
    metrics: dict[str, Any]


def default_run_dir(config: RunConfig) -> Path:
    spec = config.data.name
    data = Path(spec).name if os.sep in spec else spec
    data = data.replace(":", "-") or "data"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.method.name}-{data}-{stamp}"






def pretrain(
    config: RunConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: list[L.Callback] | None = None,
    evaluate: bool | None = None,
) -> RunResult:
    """Pretrain an encoder as ``config`` says and keep everything in ``run_dir``.

    Args:
        config: the run's configuration (``None``: the defaults, SimCLR on digits). Ignored when
            resuming: the run directory's own config is used.
        run_dir: where the run lives; default ``runs/<method>-<data>-<time>``.
        resume: continue the run in ``run_dir`` from its last checkpoint.
        callbacks: extra Lightning callbacks.
        evaluate: run the probes after training (default: ``config.eval.after_training``).
    """
    if resume:
        if run_dir is None:
            raise ConfigError("resume needs the run directory to continue")
        run_dir = Path(run_dir)
        config = load_run_config(run_dir)
        if not (run_dir / CHECKPOINT).is_file():
            raise ConfigError(f"cannot resume {run_dir}: it has no checkpoint ({CHECKPOINT}) yet")
    else:
        config = config or RunConfig()
        run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run directory {run_dir} already exists and is not empty; "
                "pass --resume to continue it, or choose another --output"
            )

    if not resume:
        config, applied = apply_method_defaults(config)
        if applied:
            print(f"method {config.method.name}: its published settings {', '.join(applied)} "
                  "(set apply_method_defaults=False, or set them, to choose others)", file=sys.stderr)
    config = resolve_config(config)  # names and params checked before any data is read
    data = load_dataset(config.data.name, skip_bad_files=config.skip_bad_files, options=config.data.params)
    train = data.train
    config = resolve_config(config, train.modality)
    cfg = config.train
    if cfg.batch_size < 2:
        raise ConfigError(f"batch size must be at least 2 (self-supervised losses compare samples); got {cfg.batch_size}")
    if cfg.batch_size > len(train):
        raise ConfigError(
            f"batch size {cfg.batch_size} is larger than the training set of {train.name} "
            f"({len(train)} samples); pass --batch-size {_largest_power_of_two(len(train))} or smaller"
        )
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be at least 1; got {cfg.epochs}")
    if cfg.max_steps < 0:
        raise ConfigError(f"train.max_steps must be 0 (no limit) or a positive number of steps; got {cfg.max_steps}")
    check_thresholds(cfg.collapse_rank_fraction, cfg.collapse_std_threshold)  # before the run dir is written

    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # An unreadable file met here already stops the run (or is skipped), before training starts.
    mean, std = input_statistics(train, seed=cfg.seed, skip_bad_files=config.skip_bad_files)
    method = build_method(config, train.sample_shape, mean, std, train.modality)
    views = create_views(config.views.name, train.modality, config.views.params)
    _check_views(views, train, method, config)
    if method.requires_labels and train.labels is None:
        raise ConfigError(
            f"method {config.method.name!r} is supervised by design and needs labels, but {train.name} has none; "
            "use a labeled dataset (e.g. an image folder with one sub-folder per class) or a self-supervised method"
        )
    on_gpu = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    loader = make_loader(
        train, cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.num_workers,
        pin_memory=on_gpu, persistent_workers=True,
    )
    module = PretrainModule(
        method, views, cfg, steps_per_epoch=len(loader), modality=train.modality, skip_bad_files=config.skip_bad_files,
    )
    module.run_meta = {
        "input_shape": list(train.sample_shape),
        "stat_shape": list(mean.shape),
        "modality": train.modality,
    }

    generator = torch.Generator().manual_seed(cfg.seed)
    monitor_idx = torch.randperm(len(train), generator=generator)[: cfg.monitor_samples]
    monitored = materialize(train.subset(monitor_idx), skip_bad_files=config.skip_bad_files)
    history = History()
    # Labels, when the data has them, feed only the monitor's online probes (evaluation, not training).
    monitor = EmbeddingMonitor(
        monitored["x"], cfg.monitor_every_n_epochs, labels=monitored.get("y"), seed=cfg.seed, modality=train.modality,
    )
    alarm = CollapseAlarm(monitor, cfg.collapse_rank_fraction, cfg.collapse_std_threshold, stop=cfg.stop_on_collapse)
    checkpoint = AtomicCheckpoint(run_dir / "checkpoints", cfg.checkpoint_every_n_epochs)
    all_callbacks: list[L.Callback] = [
        checkpoint,
        monitor,
        alarm,  # after the monitor: it reads the record the monitor writes at the same epoch end
        history,
        *(callbacks or []),
    ]
    if cfg.progress_bar:
        all_callbacks.append(TQDMProgressBar(refresh_rate=1))
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=_precision(cfg.precision),
        callbacks=all_callbacks,
        logger=_loggers(run_dir),
        enable_checkpointing=True,  # AtomicCheckpoint is the only checkpoint callback
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    ckpt_path = str(run_dir / CHECKPOINT) if resume else None
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
            trainer.fit(module, loader, ckpt_path=ckpt_path)
    except NonFiniteLossError as error:
        kept = (
            f"the last good checkpoint is kept at {checkpoint.last_path}"
            if checkpoint.last_path.exists()
            else "no checkpoint had been written yet"
        )
        failed = {"status": f"failed: {error}", "history": history.steps, "monitors": monitor.records}
        write_metrics(run_dir, {**failed, "collapse": alarm.report()})
        raise NonFiniteLossError(
            f"{error}; {kept}. Try a lower --lr, a larger batch, or --precision 32-true."
        ) from None
    train_time = time.perf_counter() - start
    if trainer.interrupted:
        raise KeyboardInterrupt

    collapse = alarm.report()
    stopped = alarm.stopped_run
    metrics = write_metrics(
        run_dir,
        {
            "status": f"stopped: collapse detected at epoch {collapse['epoch']}" if stopped else "finished",
            "method": config.method.name,
            "data": config.data.name,
            "steps": trainer.global_step,
            "epochs_done": trainer.current_epoch,
            "train_seconds_this_session": train_time,
            "history": history.steps,
            "monitors": monitor.records,
            "collapse": collapse,
        },
    )
    method.eval()
    # A run stopped by the collapse alarm is not worth the probes' time.
    if not stopped and (evaluate if evaluate is not None else config.eval.after_training):
        metrics = evaluate_run(run_dir, method=method, config=config, data=data)
    else:
        write_training_plot(run_dir, metrics, method=method, data=train)
    return RunResult(run_dir, method, data, metrics)


def _check_views(views: Any, data: SampleSource, method: Method, config: RunConfig) -> None:
    """Make the method's views of two samples once, so a views/data mismatch is a clear error."""
    first = next(iterate(data.subset(list(range(min(len(data), 8)))), batch_size=8, skip_bad_files=config.skip_bad_files))
    x = get_modality(data.modality).view_input(first)[:2]
    try:
        with torch.no_grad():
            views(x, torch.Generator().manual_seed(0), method.num_global_views, method.num_local_views)
    except (ValueError, RuntimeError) as error:
        raise ConfigError(
            f"views {config.views.name!r} cannot make views of {data.name} (samples of shape "
            f"{tuple(data.sample_shape)}, modality {data.modality!r}): {error}. "
            "Leave --set views.name=auto to pick the views for the method and the data's modality."
        ) from None


def _largest_power_of_two(n: int) -> int:
    power = 1
    while power * 2 <= n:
        power *= 2
    return power
