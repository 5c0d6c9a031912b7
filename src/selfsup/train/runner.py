"""Pretraining runs: build everything from a :class:`RunConfig`, train, and keep a run directory.

The run directory's files are described in :mod:`selfsup.rundir` (shared with evaluation).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.strategies import FSDPStrategy

from selfsup.backbones import BACKBONES
from selfsup.backbones.tokens import TransformerBlock
from selfsup.config import ComponentConfig, RunConfig, build_dataclass, to_plain
from selfsup.core.distributed import convert_to_global_batchnorm
from selfsup.core.io import check_output_dir, write_atomic
from selfsup.core.lock import LOCK_FILE, RunLock, is_secondary_rank
from selfsup.data import DatasetSplits, SampleSource, data_options, load_dataset
from selfsup.data.loader import iterate, make_loader, materialize
from selfsup.data.sampler import EpochBatchSampler
from selfsup.data.modalities import get_modality
from selfsup.errors import ConfigError, NonFiniteLossError, RunInterrupted, SelfsupError, StorageError
from selfsup.evaluate.plots import write_training_plot
from selfsup.evaluate.run import evaluate_run
from selfsup.methods import METHODS
from selfsup.methods.base import Method
from selfsup.rundir import (  # noqa: F401  (re-exported: the run directory's API as before)
    CHECKPOINT, CONFIG_FILE, FORMAT_VERSION, LATER_OUTPUTS, METRICS_FILE, SCHEMA_FILE, build_method, checkpoint_config, checkpoint_path,
    config_differences, data_backbone_params, input_statistics, load_run, load_run_config, method_backbone_params, read_checkpoint,
    write_metrics,
)
from selfsup.train.callbacks import AtomicCheckpoint, EmbeddingMonitor, History
from selfsup.train.monitors import CollapseAlarm
from selfsup.train.logs import AppendingCSVLogger
from selfsup.train.module import PretrainModule
from selfsup.train.precision import precision_warning
from selfsup.train.signals import SIGNAL_NAMES, Stop, StopAtStepBoundary, StopRequests, requeue_slurm_job
from selfsup.views import VIEWS, create_views


class _NoStepEstimateNote(logging.Filter):
    """Lightning says it loads the dataloader to count the steps (for the schedules), and advertises
    a logging service at every run: not news to a user."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "estimate number of stepping batches" not in message and "litlogger" not in message


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


def resolve_config(
    config: RunConfig, modality: str | None = None, sample_shape: tuple[int, ...] | None = None,
    data_info: dict[str, Any] | None = None,
) -> RunConfig:
    """Fill every component's params with its defaults (validating them) so runs are reproducible.

    The views and an ``"auto"`` backbone are resolved only once the data's ``modality`` is known
    (``"auto"`` picks the modality's default backbone, or the method's choice in its place
    (``Method.backbone_choices``: GraphMAE's gat for gcn): resnet_tiny for images, mlp for vectors,
    ts2vec_encoder for series; for a method that needs tokens, the modality's token backbone,
    sized for ``sample_shape``: vit_tiny for images, patch_transformer for series). ``data_info``
    (the source's: a table's schema) fills the backbone params the data decides.
    """
    out = RunConfig.from_dict(config.to_dict())
    out.data = ComponentConfig(config.data.name, to_plain(data_options(config.data.params)))
    method = METHODS.get(config.method.name)
    # The method's probe_pooling fills a backbone pool the user left unset (written out from here on).
    name = config.backbone.name if config.backbone.name != "auto" else None
    user_params = dict(config.backbone.params)
    if name is None and modality is not None:
        name = get_modality(modality, data_info).default_backbone  # may depend on the data (a graph's level)
        name = method.backbone_choices.get(name, name)
        if "tokens" in method.requires and (method.modalities is None or modality in method.modalities):
            picked = get_modality(modality).token_backbone(sample_shape)
            if picked is None:
                raise ConfigError(
                    f"method {config.method.name!r} needs a token backbone, and {modality} data has none yet; "
                    "choose a method that works on pooled features (selfsup list methods)"
                )
            name, sized = picked
            user_params = {**sized, **user_params}
    if name is not None:
        params = method_backbone_params(method, name, user_params)
        if modality is not None:  # what the data decides (a table's category counts), written out
            params = data_backbone_params(get_modality(modality, data_info), name, params)
        out.backbone = _resolved(ComponentConfig(name, params), BACKBONES.get(name), "backbone")
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


def _loggers(run_dir: Path, csv_logger: AppendingCSVLogger) -> list[Any]:
    """The append-only CSV log always; a TensorBoard log too when ``tensorboard`` is installed."""
    loggers: list[Any] = [csv_logger]
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
    epochs: int | None = None,
    session: dict[str, Any] | None = None,
) -> RunResult:
    """Pretrain an encoder as ``config`` says and keep everything in ``run_dir``.

    Args:
        config: the run's configuration (``None``: the defaults, SimCLR on digits). Ignored when
            resuming: the run directory's own config is used.
        run_dir: where the run lives; default ``runs/<method>-<data>-<time>``. It is created only
            once the configuration and the data are known to be valid.
        resume: continue the run in ``run_dir`` from its last checkpoint (from the beginning when
            it stopped before its first checkpoint).
        callbacks: extra Lightning callbacks.
        evaluate: run the probes after training (default: ``config.eval.after_training``).
        epochs: when resuming, train to this many epochs instead of the run's own (more only):
            the cosine schedules are recomputed over the new length.
        session: when resuming, train settings for this session only, which change neither the
            model nor the data order: ``progress_bar``, ``accelerator``.

    Raises:
        RunInterrupted: SIGINT or SIGTERM stopped the run (a checkpoint of the step it stopped at
            is written first; see :mod:`selfsup.train.signals`).
        RunLockedError: another live process is training or evaluating ``run_dir``.
    """
    requests = StopRequests()
    with requests.installed():
        try:
            return _pretrain(config, run_dir, resume, callbacks, evaluate, epochs, session or {}, requests)
        except Stop as stop:  # outside the training steps: stopped at once
            raise RunInterrupted(
                f"stopped by {stop.name} outside the training steps (loading data, or evaluating after training); "
                "every file written so far is complete", stop.signum,
            ) from None


_RESUMABLE_CHANGES = ("train.epochs", "train.progress_bar", "train.accelerator", "eval")  # not the model or data


def _pretrain(
    config: RunConfig | None, run_dir: str | Path | None, resume: bool, callbacks: list[L.Callback] | None,
    evaluate: bool | None, epochs: int | None, session: dict[str, Any], requests: StopRequests,
) -> RunResult:
    lock: RunLock | None = None
    if is_secondary_rank():
        return _secondary(config, run_dir, resume, callbacks, requests)
    try:  # a refusal anywhere below leaves the folder unlocked for the next call in this process
        if not resume:
            config = config or RunConfig()
            run_dir = check_output_dir(run_dir if run_dir is not None else default_run_dir(config), "run directory")
            if run_dir.is_dir() and any(run_dir.iterdir()):
                _refuse_foreign(run_dir)  # before the lock: nothing is written into a folder that is not a run
                lock = RunLock(run_dir, "starting a run there").acquire()
                resume = _restart_or_refuse(run_dir)
        if resume:
            if run_dir is None:
                raise ConfigError("resume needs the run directory to continue")
            run_dir = Path(run_dir)
            lock = lock or RunLock(run_dir, "resuming the run").acquire() if run_dir.is_dir() else None
            config = _resume_config(run_dir, epochs)
            unknown = sorted(set(session) - {"progress_bar", "accelerator"})
            if unknown:
                raise ConfigError(f"a resume cannot change {', '.join(unknown)} (only progress_bar and accelerator)")
            config.train = replace(config.train, **session)
        return _train(config, run_dir, resume, callbacks, evaluate, requests, lock)
    finally:
        if lock is not None:
            lock.release()


# What rank 0 decided, for the processes Lightning launches for it (they run the same command).
_RUN_DIR_ENV, _RESUME_ENV = "SELFSUP_RUN_DIR", "SELFSUP_RESUME"


def _secondary(
    config: RunConfig | None, run_dir: str | Path | None, resume: bool, callbacks: list[L.Callback] | None,
    requests: StopRequests,
) -> RunResult:
    """A non-zero rank of a multi-process run: it trains its share and writes nothing.

    Launched by Lightning (``--devices N``), it follows rank 0's decisions (run directory,
    resume) and reads the config rank 0 resolved; under ``torchrun`` or SLURM every rank starts
    from the command line, so it resolves the same config from it and rank 0 alone checks and
    keeps the run directory (a refusal there ends the whole launch).
    """
    # Rank 0 marks its decisions with its process id: only the processes it launched follow them
    # (not, say, the processes of a later torchrun started from the same environment).
    owner, _, inherited = os.environ.get(_RUN_DIR_ENV, "").partition(":")
    if inherited and owner == str(os.getppid()):
        run_dir, resume = Path(inherited), os.environ.get(_RESUME_ENV) == "1"
        config = load_run_config(run_dir)
    elif resume:
        config = load_run_config(Path(run_dir)) if run_dir is not None else None
    if config is None:
        config = RunConfig()
    return _train(config, Path(run_dir) if run_dir is not None else default_run_dir(config), resume, callbacks, None,
                  requests, None)


def _restart_or_refuse(run_dir: Path) -> bool:
    """For a start in an existing, non-empty ``run_dir``: ``True`` to resume it (a requeued SLURM
    job), ``False`` to start it again (it never reached a checkpoint), else a one-line refusal."""
    if checkpoint_path(run_dir) is not None:
        if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
            print(f"requeued SLURM job: continuing {run_dir} from its last checkpoint", file=sys.stderr)
            return True
        raise ConfigError(
            f"run directory {run_dir} already holds a run; pass --resume {run_dir} to continue it, "
            "or choose another --output"
        )
    print(f"{run_dir} holds a start that stopped before its first checkpoint: starting it again", file=sys.stderr)
    return False


def _refuse_foreign(run_dir: Path) -> None:
    """One line when an existing, non-empty ``run_dir`` holds anything but a run's own files."""
    ours = {CONFIG_FILE, METRICS_FILE, SCHEMA_FILE, "logs", "checkpoints", LOCK_FILE, "training.png", *LATER_OUTPUTS}
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in ours and not p.name.startswith("."))
    if not (run_dir / CONFIG_FILE).is_file() or others:
        raise ConfigError(
            f"run directory {run_dir} already exists and is not a selfsup run (it holds {', '.join(others[:3]) or 'files'}); "
            "choose another --output"
        )


def _resume_config(run_dir: Path, epochs: int | None) -> RunConfig:
    """The config a resume continues with: the run's own, checked against its checkpoint, with a
    longer ``epochs`` when asked (written back to ``config.yaml``)."""
    config = load_run_config(run_dir)
    path = checkpoint_path(run_dir)
    if path is not None:
        saved = checkpoint_config(read_checkpoint(path, mmap=True))
        changed = config_differences(saved, config.to_dict(), ignore=_RESUMABLE_CHANGES) if saved else []
        if changed:
            raise ConfigError(
                f"{run_dir / CONFIG_FILE} no longer matches the run's checkpoint ({'; '.join(changed[:3])}); "
                "restore those settings, or start a new run to change them"
            )
    else:
        print(f"{run_dir} has no checkpoint yet: training it from the beginning with its {CONFIG_FILE}", file=sys.stderr)
    if epochs is not None and epochs != config.train.epochs:
        if epochs < config.train.epochs:
            raise ConfigError(
                f"--epochs {epochs} is fewer than the run's {config.train.epochs} epochs; a resume can only "
                "extend a run (train.max_steps stops one early)"
            )
        print(
            f"extending {run_dir} from {config.train.epochs} to {epochs} epochs: the learning-rate and other "
            f"schedules now span {epochs} epochs", file=sys.stderr,
        )
        config.train.epochs = epochs
        write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return config


def _train(
    config: RunConfig, run_dir: Path, resume: bool, callbacks: list[L.Callback] | None, evaluate: bool | None,
    requests: StopRequests, lock: RunLock | None,
) -> RunResult:
    if not resume:
        config, applied = apply_method_defaults(config)
        if applied:
            print(f"method {config.method.name}: its published settings {', '.join(applied)} "
                  "(set apply_method_defaults=False, or set them, to choose others)", file=sys.stderr)
    config = resolve_config(config)  # names and params checked before any data is read
    cfg = config.train
    _check_hardware(cfg)
    slow = precision_warning(cfg.precision, cfg.accelerator)
    if slow is not None and not is_secondary_rank():
        print(f"warning: {slow}", file=sys.stderr)
    # A resume reads the data with the schema its checkpoint was trained on (a table whose file
    # gained a category meanwhile keeps the run's vocabulary, so the weights still fit).
    saved = checkpoint_path(run_dir) if resume else None
    reference = (read_checkpoint(saved, mmap=True).get("selfsup") or {}).get("data_info") if saved else None
    data = load_dataset(
        config.data.name, skip_bad_files=config.skip_bad_files, options=config.data.params, reference=reference,
    )
    train = data.pretraining  # every node of a graph whose split labels a few; else the train split
    config = resolve_config(config, train.modality, tuple(train.sample_shape), train.data_info)
    cfg = config.train
    if cfg.batch_size > len(train):
        raise ConfigError(
            f"batch size {cfg.batch_size} is larger than the training set of {train.name} "
            f"({len(train)} samples); pass --batch-size {_largest_power_of_two(len(train))} or smaller"
        )

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # An unreadable file met here already stops the run (or is skipped), before training starts.
    mean, std = input_statistics(train, seed=cfg.seed, skip_bad_files=config.skip_bad_files)
    method = build_method(config, train.sample_shape, mean, std, train.modality, train.data_info)
    views = create_views(config.views.name, train.modality, config.views.params)
    _check_views(views, train, method, config)
    if method.requires_labels and train.labels is None:
        raise ConfigError(
            f"method {config.method.name!r} is supervised by design and needs labels, but {train.name} has none; "
            "use a labeled dataset (e.g. an image folder with one sub-folder per class) or a self-supervised method"
        )

    if is_secondary_rank():  # rank 0 keeps the run directory
        return _fit(config, run_dir, resume, callbacks, evaluate, requests, data, method, views, mean)
    # Everything is valid: only now is the run directory made (a failed start leaves nothing).
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = lock or RunLock(run_dir, "training there").acquire()
    try:
        if not resume:
            write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
            if train.data_info is not None:  # for people; the checkpoint holds the copy runs are rebuilt from
                write_atomic(run_dir / SCHEMA_FILE, json.dumps(train.data_info, indent=1))
        return _fit(config, run_dir, resume, callbacks, evaluate, requests, data, method, views, mean)
    except BaseException:
        if created and checkpoint_path(run_dir) is None and not (run_dir / METRICS_FILE).exists():
            lock.release()
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing had been trained: leave nothing
        raise
    finally:
        lock.release()


def _fit(
    config: RunConfig, run_dir: Path, resume: bool, callbacks: list[L.Callback] | None, evaluate: bool | None,
    requests: StopRequests, data: DatasetSplits, method: Method, views: Any, mean: torch.Tensor,
) -> RunResult:
    train, cfg = data.pretraining, config.train
    on_gpu = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    # The data order is a function of (seed, epoch) and the global batch is split across the
    # processes; the loader's own generator keeps the global random stream untouched.
    sampler = EpochBatchSampler(len(train), cfg.batch_size, seed=cfg.seed)
    loader = make_loader(
        train, cfg.batch_size, num_workers=cfg.num_workers, pin_memory=on_gpu, persistent_workers=True,
        batch_sampler=sampler, generator=torch.Generator().manual_seed(cfg.seed),
    )
    module = PretrainModule(
        method, views, cfg, steps_per_epoch=len(loader), modality=train.modality, skip_bad_files=config.skip_bad_files,
        sampler=sampler,
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    # The monitor's online probes read labels: its samples come from the (labelled) train split.
    monitor_idx = torch.randperm(len(data.train), generator=generator)[: cfg.monitor_samples]
    monitored = materialize(data.train.subset(monitor_idx), skip_bad_files=config.skip_bad_files)
    module.run_meta = {
        "format_version": FORMAT_VERSION,
        "input_shape": list(train.sample_shape),
        "input_dtype": str(monitored["x"].dtype).removeprefix("torch."),  # raw samples, as the loaders give them
        "stat_shape": list(mean.shape),
        "modality": train.modality,
        "data_info": train.data_info,
        "config": config.to_dict(),
    }
    history = History()
    # Labels, when the data has them, feed only the monitor's online probes (evaluation, not training).
    monitor = EmbeddingMonitor(
        monitored["x"], cfg.monitor_every_n_epochs, labels=monitored.get("y"), seed=cfg.seed, modality=train.modality,
    )
    std_threshold = cfg.collapse_std_threshold if method.can_collapse_completely else 0.0
    alarm = CollapseAlarm(monitor, cfg.collapse_rank_fraction, std_threshold, stop=cfg.stop_on_collapse)
    checkpoint = AtomicCheckpoint(run_dir / "checkpoints", cfg.checkpoint_every_n_epochs, cfg.checkpoint_every_n_steps)
    all_callbacks: list[L.Callback] = [
        StopAtStepBoundary(requests, checkpoint.save),  # first: a stop at an epoch's end comes before the monitors
        checkpoint,
        monitor,
        alarm,  # after the monitor: it reads the record the monitor writes at the same epoch end
        history,
        *(callbacks or []),
    ]
    if cfg.progress_bar:
        all_callbacks.append(TQDMProgressBar(refresh_rate=1))
    logger = AppendingCSVLogger(run_dir)
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        accelerator=cfg.accelerator,
        devices=_devices(cfg.devices),
        num_nodes=_num_nodes(),
        precision=_precision(cfg.precision),
        strategy=_strategy(cfg.strategy),
        callbacks=all_callbacks,
        logger=_loggers(run_dir, logger),
        default_root_dir=str(run_dir),
        plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
        sync_batchnorm=on_gpu and cfg.sync_batchnorm,  # SyncBatchNorm: statistics of the global batch
        enable_checkpointing=True,  # AtomicCheckpoint is the only checkpoint callback
        use_distributed_sampler=False,  # EpochBatchSampler splits every global batch itself
        deterministic=cfg.deterministic or None,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=cfg.log_every_n_steps,
        num_sanity_val_steps=0,
    )
    # train.batch_size is the global batch: each of the processes takes an equal share of it.
    sampler.set_process(trainer.global_rank, trainer.world_size)
    if trainer.world_size > 1 and cfg.sync_batchnorm and not on_gpu:
        convert_to_global_batchnorm(method)  # nn.SyncBatchNorm does not run on CPUs
    if cfg.compile:
        method.encoder.backbone.compile()  # in place: the state dict's keys stay the same
    ckpt = checkpoint_path(run_dir) if resume else None
    primary = not is_secondary_rank()
    if primary:
        write_metrics(run_dir, {"status": f"running (session {logger.session}, process {os.getpid()})"})
        os.environ[_RUN_DIR_ENV] = f"{os.getpid()}:{run_dir}"
        os.environ[_RESUME_ENV] = "1" if ckpt is not None else "0"
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), _launch_env_cleared():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
            # The monitors measure the same samples with the same weights on every process.
            warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
            trainer.fit(module, loader, ckpt_path=str(ckpt) if ckpt is not None else None)
    except NonFiniteLossError as error:
        if not primary:
            raise
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
    except Stop as stop:
        raise _interrupted(stop, run_dir, trainer, history, monitor, alarm) from None
    except StorageError as error:
        with contextlib.suppress(Exception):  # the disk may be too full for this too
            if primary:
                write_metrics(run_dir, {"status": f"failed: {error}", "history": history.steps})
        raise
    train_time = time.perf_counter() - start
    if not trainer.is_global_zero:  # rank 0 writes the results and evaluates; this process is done
        return RunResult(run_dir, method, data, {"status": "finished", "steps": trainer.global_step})
    asked = requests.signum
    if asked is not None or trainer.interrupted:  # a signal during the last step: training is complete
        write_metrics(run_dir, {"status": "finished", "steps": trainer.global_step, "history": history.steps,
                                "monitors": monitor.records, "collapse": alarm.report()})
        raise RunInterrupted(
            f"stopped by {SIGNAL_NAMES.get(asked or signal.SIGINT)} as training finished (step {trainer.global_step}); "
            f"the run is complete but not evaluated: selfsup evaluate {run_dir}", asked or signal.SIGINT,
        )

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
    if isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size > 1:
        # Sharded weights: rank 0 evaluates the whole model, from the checkpoint just written.
        _, method, _ = load_run(run_dir)
    method.eval()
    # A run stopped by the collapse alarm is not worth the probes' time.
    if not stopped and (evaluate if evaluate is not None else config.eval.after_training):
        try:
            metrics = evaluate_run(run_dir, method=method, config=config, data=data)
        except SelfsupError as error:  # training is done and kept: a probe that cannot run is a warning
            print(f"warning: training finished, but the evaluation was skipped: {error}", file=sys.stderr)
            metrics = write_metrics(run_dir, {"status": f"finished; evaluation skipped: {error}"})
            write_training_plot(run_dir, metrics, method=method, data=train)
    else:
        write_training_plot(run_dir, metrics, method=method, data=train)
    return RunResult(run_dir, method, data, metrics)


@contextlib.contextmanager
def _launch_env_cleared() -> Any:
    """Rank 0's decisions stay in the environment only while its fit may launch processes."""
    try:
        yield
    finally:
        for name in (_RUN_DIR_ENV, _RESUME_ENV):
            os.environ.pop(name, None)


def _continue(run_dir: Path) -> str:
    return f"continue with: selfsup pretrain --resume {run_dir}"


def _interrupted(stop: Stop, run_dir: Path, trainer: L.Trainer, history: History, monitor: Any, alarm: Any) -> RunInterrupted:
    """Record a signal's stop in ``metrics.json`` (requeue the SLURM job on SIGUSR1) and say how to go on."""
    if stop.step is not None:
        where = f"at step {stop.step} (epoch {trainer.current_epoch + 1})"
        saved = f"the checkpoint of step {stop.step} is in {run_dir / CHECKPOINT}"
    else:
        where = f"during step {trainer.global_step + 1}" if trainer.global_step else "before the first step"
        last = checkpoint_path(run_dir)
        saved = f"the last checkpoint is kept ({last})" if last else "no checkpoint had been written yet"
    history.flush()
    status = f"interrupted {where} by {stop.name}"
    if trainer.is_global_zero:  # rank 0 alone requeues the job (once) and records the stop
        if stop.signum == getattr(signal, "SIGUSR1", None):
            status = f"{status}; {requeue_slurm_job()}"
        write_metrics(run_dir, {
            "status": status, "steps": trainer.global_step, "history": history.steps, "monitors": monitor.records,
            "collapse": alarm.report(),
        })
    return RunInterrupted(f"{status}; {saved}; {_continue(run_dir)}", stop.signum)


def _devices(requested: Any) -> Any:
    """``devices``, where ``auto`` under a launcher that started the processes (torchrun, SLURM's
    srun) means the processes it started on this node: one run over all of them."""
    if requested == "auto":
        for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
            if os.environ.get(name, "").isdigit() and int(os.environ[name]) > 1:
                return int(os.environ[name])
    return requested


def _num_nodes() -> int:
    """Nodes of a launch that torchrun started (WORLD_SIZE / LOCAL_WORLD_SIZE), else 1."""
    world, local = os.environ.get("WORLD_SIZE", ""), os.environ.get("LOCAL_WORLD_SIZE", "")
    if world.isdigit() and local.isdigit() and int(local) > 0:
        return max(1, int(world) // int(local))
    return 1


def _strategy(name: str) -> Any:
    """Lightning's strategy for ``train.strategy``. FSDP shards each transformer block on its own
    (the unit that is all-gathered for its forward) and saves full, unsharded checkpoints, so a
    run trained with FSDP is evaluated, exported and resumed like any other."""
    if name == "fsdp":
        return FSDPStrategy(auto_wrap_policy={TransformerBlock}, state_dict_type="full", use_orig_params=True)
    return name


def _check_hardware(cfg: Any) -> None:
    """An accelerator, a compiler or a strategy the machine does not have is one line, before any data is read."""
    on_cuda = cfg.accelerator != "cpu" and torch.cuda.is_available()
    if cfg.strategy == "fsdp" and not on_cuda:
        raise ConfigError(
            "train.strategy=fsdp shards the model over GPUs, and this run has none; use --set train.strategy=auto "
            "(DDP: every process holds the whole model)"
        )
    if cfg.compile and not on_cuda and not _cpp_compiler():
        raise ConfigError(
            "train.compile on a CPU needs a C++ compiler (torch.compile generates C++), and none was found "
            "(g++, c++ or clang++ on PATH, or $CXX); install one (apt-get install g++) or drop train.compile"
        )
    if cfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--accelerator {cfg.accelerator}: no CUDA GPU is visible to PyTorch on this machine "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --accelerator cpu or auto"
        )
    if cfg.accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("--accelerator mps: this machine has no Apple GPU; use --accelerator cpu or auto")


def _cpp_compiler() -> str | None:
    for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


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
