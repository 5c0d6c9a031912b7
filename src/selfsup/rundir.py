"""A run directory's files, and the method rebuilt from them: shared by training and evaluation.

Run directory::

    RUN_DIR/
      config.yaml            resolved configuration (every default written out)
      checkpoints/last.ckpt  written atomically every epoch; resume and evaluate from it
      metrics.json           loss per step, monitors per epoch, evaluation results
      training.png           training curve, RankMe, singular-value spectrum
      logs/                  CSV log of every logged scalar

This module sits above ``methods`` and ``data`` and below ``evaluate`` and ``train``, so both can
read a run without importing each other.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import yaml

from selfsup.backbones import create_backbone
from selfsup.config import RunConfig
from selfsup.core.io import write_atomic
from selfsup.data.base import SampleSource
from selfsup.data.loader import iterate
from selfsup.data.modalities import get_modality
from selfsup.errors import ConfigError, DataError
from selfsup.methods import create_method
from selfsup.methods.base import Encoder, Method

CONFIG_FILE = "config.yaml"
CHECKPOINT = "checkpoints/last.ckpt"
METRICS_FILE = "metrics.json"
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
) -> Method:
    """Backbone -> encoder (the modality's standardisation) -> method, as ``config`` says."""
    backbone = create_backbone(config.backbone.name, tuple(input_shape), **config.backbone.params)
    encoder = Encoder(backbone, mean, std, input_shape, modality)
    return create_method(config.method.name, encoder, **config.method.params)


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
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a selfsup run directory (no {CONFIG_FILE} in it)")
    return RunConfig.from_dict(yaml.safe_load(path.read_text()) or {})


def load_run(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[RunConfig, Method, dict[str, Any]]:
    """Rebuild a run's method from its config and last checkpoint.

    Returns ``(config, method, meta)``; ``meta`` holds ``input_shape``, ``stat_shape`` and ``modality``.
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
    placeholder = torch.zeros(meta["stat_shape"])
    method = build_method(config, tuple(meta["input_shape"]), placeholder, placeholder + 1, meta.get("modality"))
    state = {k.removeprefix("method."): v for k, v in checkpoint["state_dict"].items() if k.startswith("method.")}
    method.load_state_dict(state)
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
