"""A run directory's files, and the method rebuilt from them: shared by training and evaluation.

Run directory::

    RUN_DIR/
      config.yaml            resolved configuration (every default written out)
      checkpoints/last.ckpt  written atomically every epoch; resume and evaluate from it
      checkpoints/previous.ckpt  the checkpoint before it (for a damaged last.ckpt)
      metrics.json           loss per step, monitors per epoch, evaluation results
      training.png           training curve, RankMe, singular-value spectrum
      logs/metrics.csv       CSV log of every logged scalar, append-only (a session column per start/resume)
      schema.json            the data's schema, for tables (column types, vocabularies; the checkpoint holds it too)
      .lock                  held by the process training (or evaluating) the run; who, since when

This module sits above ``methods`` and ``data`` and below ``evaluate`` and ``train``, so both can
read a run without importing each other.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

import torch
import yaml

from selfsup.backbones import BACKBONES, create_backbone
from selfsup.config import OneOf, RunConfig
from selfsup.core.io import write_atomic
from selfsup.data.base import SampleSource
from selfsup.data.loader import iterate
from selfsup.data.modalities import Modality, get_modality
from selfsup.errors import ConfigError, DataError
from selfsup.methods import METHODS, create_method
from selfsup.methods.base import Encoder, Method

CONFIG_FILE = "config.yaml"
CHECKPOINT = "checkpoints/last.ckpt"
PREVIOUS_CHECKPOINT = "checkpoints/previous.ckpt"  # the one before last.ckpt, kept for a damaged last
# Checkpoint format: 1 before the contracts change (no version key), 2 adds the version and a
# copy of the run's config. load_run reads both (format 1 when its weights still fit the model).
FORMAT_VERSION = 2
METRICS_FILE = "metrics.json"
SCHEMA_FILE = "schema.json"  # the data's schema (tables), for people: the checkpoint holds the copy used
# What later commands write into a finished run directory (a run that holds them is still a run):
REPORT_FILE = "report.html"  # selfsup report
FIGURES_DIR = "report"  # selfsup report: the figures beside report.html
EXPORT_DIR = "export"  # selfsup export: the default output folder
SCAN_FILE = "scan.csv"  # selfsup scan: the ranking
GRID_SUFFIX = ".png"  # selfsup scan: the grid of the top images beside the CSV (scan.csv -> scan.png)
LATER_OUTPUTS = (REPORT_FILE, FIGURES_DIR, EXPORT_DIR, SCAN_FILE, str(Path(SCAN_FILE).with_suffix(GRID_SUFFIX)))
STATISTICS_SAMPLES = 10_000  # input statistics come from at most this many samples (a fixed subset)


def input_statistics(
    source: SampleSource, batch_size: int = 512, seed: int = 0, skip_bad_files: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The modality's mean and std of ``source``'s samples, streamed in batches.

    Up to :data:`STATISTICS_SAMPLES` samples: all of them for smaller data, else a fixed random
    subset (the statistics of 10,000 samples differ from the full set's by far less than the
    views change them).
    """
    if len(source) > STATISTICS_SAMPLES:
        generator = torch.Generator().manual_seed(seed)
        source = source.subset(torch.randperm(len(source), generator=generator)[:STATISTICS_SAMPLES].sort().values)
    modality = get_modality(source.modality)
    return modality.statistics(batch["x"] for batch in iterate(source, batch_size, skip_bad_files=skip_bad_files))


def build_method(
    config: RunConfig, input_shape: tuple[int, ...], mean: torch.Tensor, std: torch.Tensor, modality: str | None = None,
    data_info: dict[str, Any] | None = None,
) -> Method:
    """Backbone -> encoder (the modality's standardisation) -> method, as ``config`` says."""
    encoder = build_encoder(config, input_shape, mean, std, modality, data_info)
    return create_method(config.method.name, encoder, **config.method.params)


def build_encoder(
    config: RunConfig, input_shape: tuple[int, ...], mean: torch.Tensor, std: torch.Tensor, modality: str | None = None,
    data_info: dict[str, Any] | None = None,
) -> Encoder:
    """The config's backbone behind the modality's standardisation (``mean``, ``std``), pooled as
    the method declares where the config leaves the backbone's ``pool`` unset (a run's resolved
    config has it written out, so a reloaded run keeps the pooling it was trained with), with the
    params the data decides (:func:`data_backbone_params`)."""
    params = config.backbone.params
    if config.method.name in METHODS:
        params = method_backbone_params(METHODS.get(config.method.name), config.backbone.name, params)
    params = data_backbone_params(get_modality(modality, data_info), config.backbone.name, params)
    backbone = create_backbone(config.backbone.name, tuple(input_shape), **params)
    return Encoder(backbone, mean, std, input_shape, modality, data_info)


def data_backbone_params(modality: Modality, backbone: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the modality's :meth:`~selfsup.data.modalities.Modality.backbone_inputs`
    (a table's ``cardinalities``) filled in where the backbone's config has the field and
    ``params`` leave it unset."""
    offered = modality.backbone_inputs()
    config_cls = getattr(BACKBONES.get(backbone), "Config", None) if backbone in BACKBONES else None
    if not offered or config_cls is None or not dataclasses.is_dataclass(config_cls):
        return dict(params)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    return {**{k: v for k, v in offered.items() if k in fields and k not in params}, **params}


POOLINGS = ("mean", "cls")  # the values of Method.probe_pooling besides None


def method_backbone_params(method: type[Method], backbone: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of ``backbone`` with ``method.probe_pooling`` filled in, where it applies.

    The declaration is used when the backbone's config has a ``pool`` setting, the user did not
    give one (``"pool"`` not in ``params``) and the backbone's pool offers the declared value
    (a series backbone offers "mean" and "max", no "cls": it keeps its own). For ``"cls"`` on a
    backbone with a ``cls_token`` switch the switch is turned on, unless the user turned it off,
    in which case the backbone keeps its own pool. ``None`` leaves ``params`` as they are.
    """
    pooling = method.probe_pooling
    name = getattr(method, "registered_name", method.__name__)
    if pooling is not None and pooling not in POOLINGS:
        raise ConfigError(f"method {name!r} declares probe_pooling={pooling!r}; it must be 'mean', 'cls' or None")
    factory = BACKBONES.get(backbone) if backbone in BACKBONES else None
    config_cls = getattr(factory, "Config", None)
    if pooling is None or "pool" in params or config_cls is None or not dataclasses.is_dataclass(config_cls):
        return dict(params)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if "pool" not in fields:
        return dict(params)
    hint = typing.get_type_hints(config_cls, include_extras=True)["pool"]
    choices = [c for meta in getattr(hint, "__metadata__", ()) if isinstance(meta, OneOf) for c in meta.choices]
    if choices and pooling not in choices:
        return dict(params)
    out = {**params, "pool": pooling}
    if pooling == "cls" and "cls_token" in fields:
        if "cls_token" in params and not params["cls_token"]:
            return dict(params)  # the user's cls_token=false wins: no CLS output to pool
        out["cls_token"] = True
    return out


def _strict_json(value: Any) -> Any:
    """Non-finite floats as strings ("inf", "nan"): strict JSON has no Infinity or NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``metrics.json`` (``{}`` before the first session has finished)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON ({error}); it may have been edited by hand") from None
    if not isinstance(record, dict):
        raise DataError(f"{path} must hold a JSON object, not {type(record).__name__}")
    return record


def write_metrics(run_dir: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into ``metrics.json`` (atomic rewrite) and return the whole record."""
    record = read_metrics(run_dir)
    record.update(updates)
    write_atomic(Path(run_dir) / METRICS_FILE, json.dumps(_strict_json(record), indent=2))
    return record


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The run's ``config.yaml``; a missing, damaged or invalid file is one line naming it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.exists() else "does not exist"
        raise ConfigError(f"run directory {run_dir} {what}")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a selfsup run directory (no {CONFIG_FILE} in it)")
    fix = "restore the file the run was started with, or start a new run"
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(f"{path} is damaged ({reason}); {fix}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} is damaged (it holds {type(values).__name__}, not a mapping of settings); {fix}")
    try:
        return RunConfig.from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"{path} is not a valid run config ({error}); {fix}") from None


def checkpoint_path(run_dir: str | Path) -> Path | None:
    """The checkpoint a run continues from: ``last.ckpt``, else ``previous.ckpt`` (after a crash
    between the two renames, or when the user moved a damaged ``last.ckpt`` away), else ``None``."""
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """A checkpoint file's contents; a truncated, empty or foreign file is one line naming it and
    what to do (continue from ``previous.ckpt`` when that one is intact)."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ValueError("it holds no state_dict")
    except Exception as error:  # a truncated, empty or foreign file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        previous = path.parent / Path(PREVIOUS_CHECKPOINT).name
        if path.name != previous.name and previous.is_file():
            todo = (
                f"move it away (mv {path} {path}.damaged) and the run continues from {previous}, "
                "the checkpoint before it"
            )
        else:
            todo = "no intact checkpoint is left: start the run again with selfsup pretrain"
        raise DataError(f"{path} is damaged, not a readable checkpoint ({reason}); {todo}") from None
    return checkpoint


def checkpoint_config(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The run config saved inside a checkpoint (format 2 and later), as a plain dict."""
    return (checkpoint.get("selfsup") or {}).get("config")


def config_differences(saved: dict[str, Any], current: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """``key: saved -> current`` for every setting that differs (dotted keys; ``ignore`` skipped)."""
    out: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if key in ignore:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            # Only settings both know: a knob added by a later version has its default, which the
            # run never had a say in (a component's name is compared, so a new method is seen).
            for k in [k for k in a if k in b]:
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")

    walk(saved, current, "")
    return out


def load_run(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[RunConfig, Method, dict[str, Any]]:
    """Rebuild a run's method from its config and last checkpoint.

    Returns ``(config, method, meta)``; ``meta`` holds ``input_shape``, ``stat_shape``,
    ``modality`` and (format 2 on) ``format_version`` and ``config``.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    ckpt_path = checkpoint_path(run_dir)
    if ckpt_path is None:
        raise ConfigError(
            f"{run_dir} has no checkpoint yet ({CHECKPOINT}); the run stopped before its first epoch ended. "
            f"Continue it with selfsup pretrain --resume {run_dir}."
        )
    checkpoint = read_checkpoint(ckpt_path, map_location)
    meta = checkpoint.get("selfsup") or {}
    version = int(meta.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise DataError(
            f"{ckpt_path} was written by a newer selfsup (checkpoint format {version}; this one reads up to "
            f"{FORMAT_VERSION}); upgrade selfsup to read it"
        )
    if "input_shape" not in meta or "stat_shape" not in meta:
        raise DataError(f"{ckpt_path} is not a selfsup checkpoint (it has no input shape); was it written by selfsup?")
    placeholder = torch.zeros(meta["stat_shape"])
    state = {k.removeprefix("method."): v for k, v in checkpoint["state_dict"].items() if k.startswith("method.")}
    try:
        method = build_method(
            config, tuple(meta["input_shape"]), placeholder, placeholder + 1, meta.get("modality"), meta.get("data_info"),
        )
        method.load_state_dict(state)
    except (RuntimeError, ConfigError, ValueError) as error:
        reason = str(error).strip().splitlines()[0]
        saved = checkpoint_config(checkpoint)
        changed = config_differences(saved, config.to_dict(), ignore=("train", "eval")) if saved else []
        if changed:
            why = f"{run_dir / CONFIG_FILE} no longer matches the checkpoint ({'; '.join(changed[:3])}); restore those settings"
        elif version < FORMAT_VERSION:
            why = (
                f"{ckpt_path} was written by an older selfsup (checkpoint format {version}, before the "
                f"contracts change; this version writes format {FORMAT_VERSION}) and its weights do not fit this "
                "version's model; pretrain it again, or read it with selfsup 0.1.0 from before that change"
            )
        else:
            why = f"{run_dir / CONFIG_FILE} does not describe the model in {ckpt_path} ({reason}); restore the run's config"
        raise DataError(why) from None
    method.eval()
    return config, method, meta


def check_same_shape(method: Method, source: SampleSource, what: str) -> None:
    """The one check that data fits a trained encoder: a one-line DataError naming both shapes."""
    trained = tuple(method.encoder.input_shape)
    if tuple(source.sample_shape) != trained:
        raise DataError(
            f"the run was trained on samples of shape {trained}, but {source.name} has samples of shape "
            f"{tuple(source.sample_shape)}; {what} on data of the same shape"
        )
