"""Pretraining runs: build everything from a :class:`RunConfig`, train, and keep a run directory.

Run directory::

    RUN_DIR/
      config.yaml          resolved configuration (every default written out)
      checkpoints/last.ckpt  written atomically every epoch; resume and evaluate from it
      metrics.json         loss per step, monitors per epoch, evaluation results
      training.png         training curve, RankMe, singular-value spectrum
      logs/                CSV log of every logged scalar
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from selfsup.backbones import create_backbone
from selfsup.config import ComponentConfig, RunConfig, build_dataclass, to_plain
from selfsup.data import ArrayDataset, DatasetSplits, load_dataset
from selfsup.errors import ConfigError, DataError, NonFiniteLossError, SelfsupError
from selfsup.methods import METHODS, create_method
from selfsup.methods.base import Encoder, Method
from selfsup.train.callbacks import AtomicCheckpoint, EmbeddingMonitor, History
from selfsup.train.monitors import CollapseAlarm, check_thresholds
from selfsup.train.module import PretrainModule
from selfsup.views import VIEWS, create_views

CONFIG_FILE = "config.yaml"
CHECKPOINT = "checkpoints/last.ckpt"
METRICS_FILE = "metrics.json"


def _resolved(component: ComponentConfig, factory: Any, where: str) -> ComponentConfig:
    """``component`` with its params validated and every default written out."""
    params = build_dataclass(factory.Config, component.params, where=f"{where} {component.name!r}")
    return ComponentConfig(component.name, to_plain(params))


def resolve_config(config: RunConfig, modality: str | None = None) -> RunConfig:
    """Fill every component's params with its defaults (validating them) so runs are reproducible.

    The views and an ``"auto"`` backbone are resolved only once the data's ``modality`` is known
    (``"auto"`` picks by it: resnet_tiny for images, mlp for vectors, ts2vec_encoder for series).
    """
    from selfsup.backbones import BACKBONES
    from selfsup.views import DEFAULT_VIEWS

    from selfsup.backbones import default_backbone

    out = RunConfig.from_dict(config.to_dict())
    if config.backbone.name != "auto":
        out.backbone = _resolved(config.backbone, BACKBONES.get(config.backbone.name), "backbone")
    elif modality is not None:
        out.backbone = _resolved(ComponentConfig(default_backbone(modality), config.backbone.params), BACKBONES.get(default_backbone(modality)), "backbone")
    out.method = _resolved(config.method, METHODS.get(config.method.name), "method")
    if modality is not None:
        name = config.views.name
        if name == "auto":
            # A method that needs its own views (TS2Vec's overlapping crops) names them;
            # otherwise the modality's default.
            name = METHODS.get(config.method.name).default_views or DEFAULT_VIEWS.get(modality, modality)
        out.views = _resolved(ComponentConfig(name, config.views.params), VIEWS.get(name), "views")
    return out


def input_statistics(data: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (images, series) or per-feature (vectors) mean and std, shaped to broadcast over a sample.

    For series this is the TS2Vec protocol's standardisation (one mean/std per channel fit on the
    train split; for univariate series, one over the whole train set).
    """
    x = data.x.float()
    if x.ndim == 4:
        mean = x.mean(dim=(0, 2, 3)).view(-1, 1, 1)
        std = x.std(dim=(0, 2, 3)).view(-1, 1, 1)
    elif x.ndim == 3:  # series [N, C, T]: per channel over samples and time, NaN (missing) ignored
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean = flat.nanmean(dim=1)
        std = (flat - mean[:, None]).pow(2).nanmean(dim=1).sqrt()
        mean, std = mean.view(-1, 1), std.view(-1, 1)
    else:
        mean, std = x.mean(dim=0), x.std(dim=0)
    return mean, std.clamp(min=1e-6)


def build_method(config: RunConfig, input_shape: tuple[int, ...], mean: torch.Tensor, std: torch.Tensor) -> Method:
    """Backbone -> encoder (with input standardisation) -> method, as ``config`` says."""
    backbone = create_backbone(config.backbone.name, tuple(input_shape), **config.backbone.params)
    encoder = Encoder(backbone, mean, std, input_shape)
    return create_method(config.method.name, encoder, **config.method.params)


def _precision(requested: str) -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _loggers(run_dir: Path) -> list[Any]:
    """A CSV log always; a TensorBoard log too when ``tensorboard`` is installed (not a dependency)."""
    import importlib.util

    loggers: list[Any] = [L.pytorch.loggers.CSVLogger(str(run_dir), name="logs", version="")]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(L.pytorch.loggers.TensorBoardLogger(str(run_dir), name="logs", version="tensorboard"))
    return loggers


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _strict_json(value: Any) -> Any:
    """Non-finite floats as strings ("inf", "nan"): strict JSON has no Infinity or NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def write_metrics(run_dir: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into ``metrics.json`` (atomic rewrite) and return the whole record."""
    path = run_dir / METRICS_FILE
    record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    record.update(updates)
    _write_atomic(path, json.dumps(_strict_json(record), indent=2))
    return record


@dataclass
class RunResult:
    run_dir: Path
    method: Method
    data: DatasetSplits
    metrics: dict[str, Any]


def default_run_dir(config: RunConfig) -> Path:
    data = Path(config.data).name if os.sep in config.data else config.data
    data = data.replace(":", "-") or "data"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.method.name}-{data}-{stamp}"


def load_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a selfsup run directory (no {CONFIG_FILE} in it)")
    return RunConfig.from_dict(yaml.safe_load(path.read_text()) or {})


def load_run(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[RunConfig, Method, dict[str, Any]]:
    """Rebuild a run's method from its config and last checkpoint.

    Returns ``(config, method, meta)``; ``meta`` holds ``input_shape`` and ``modality``.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    if not ckpt_path.is_file():
        raise ConfigError(
            f"{run_dir} has no checkpoint yet ({CHECKPOINT}); the run stopped before its first epoch ended. "
            "Start it again with selfsup pretrain."
        )
    try:
        checkpoint = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise DataError(f"{ckpt_path} is not a readable checkpoint ({error})") from error
    meta = checkpoint["selfsup"]
    shape = tuple(meta["input_shape"])
    placeholder = torch.zeros(meta["stat_shape"])
    method = build_method(config, shape, placeholder, placeholder + 1)
    state = {k.removeprefix("method."): v for k, v in checkpoint["state_dict"].items() if k.startswith("method.")}
    method.load_state_dict(state)
    method.eval()
    return config, method, meta


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

    config = resolve_config(config)  # names and params checked before any data is read
    data = load_dataset(config.data, skip_bad_files=config.skip_bad_files)
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
    check_thresholds(cfg.collapse_rank_fraction, cfg.collapse_std_threshold)  # before the run dir is written

    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        _write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    mean, std = input_statistics(train)
    method = build_method(config, train.sample_shape, mean, std)
    views = create_views(config.views.name, train.modality, config.views.params)
    _check_views(views, train, method, config)
    tensors = [train.x]
    if method.requires_labels:
        if train.y is None:
            raise ConfigError(
                f"method {config.method.name!r} is supervised by design and needs labels, but {train.name} has none; "
                "use a labeled dataset (e.g. an image folder with one sub-folder per class) or a self-supervised method"
            )
        tensors.append(train.y)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*tensors), batch_size=cfg.batch_size, shuffle=True, drop_last=True
    )
    module = PretrainModule(method, views, cfg, steps_per_epoch=len(loader))
    module.run_meta = {
        "input_shape": list(train.sample_shape),
        "stat_shape": list(mean.shape),
        "modality": train.modality,
    }

    generator = torch.Generator().manual_seed(cfg.seed)
    monitor_idx = torch.randperm(len(train), generator=generator)[: cfg.monitor_samples]
    history = History()
    # Labels, when the data has them, feed only the monitor's online probes (evaluation, not training).
    monitor_labels = train.y[monitor_idx] if train.y is not None else None
    monitor = EmbeddingMonitor(train.x[monitor_idx], cfg.monitor_every_n_epochs, labels=monitor_labels, seed=cfg.seed)
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
        from lightning.pytorch.callbacks import TQDMProgressBar

        all_callbacks.append(TQDMProgressBar(refresh_rate=1))
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
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
            "data": config.data,
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
        from selfsup.evaluate.run import evaluate_run

        metrics = evaluate_run(run_dir, method=method, config=config, data=data)
    else:
        from selfsup.evaluate.plots import write_training_plot

        write_training_plot(run_dir, metrics, method=method, data=train)
    return RunResult(run_dir, method, data, metrics)


def _check_views(views: Any, data: ArrayDataset, method: Method, config: RunConfig) -> None:
    """Make the method's views of two samples once, so a views/data mismatch is a clear error."""
    try:
        with torch.no_grad():
            views(data.x[:2].float(), torch.Generator().manual_seed(0), method.num_global_views, method.num_local_views)
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
