"""Typed configuration: dataclasses per component, YAML files and ``--set key=value`` overrides.

A run is described by :class:`RunConfig`. Components chosen by name (backbone, method, views)
carry a ``name`` and a ``params`` dict; ``params`` is validated against the component's own
config dataclass, so an unknown or mistyped key is an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfsup.errors import ConfigError


@dataclass
class ComponentConfig:
    """A component chosen by name, with its own parameters (validated by the component)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation and hardware.

    ``lr`` is the peak learning rate of the ``optimizer`` (``adamw``, ``sgd`` with ``momentum``,
    or ``lars`` with trust coefficient ``lars_eta``), reached after ``warmup_epochs`` of linear
    warm-up and followed by cosine decay to ``min_lr_ratio * lr``.
    """

    epochs: int = 100
    # Stop after this many optimiser steps (0: no limit); the schedules then span max_steps.
    max_steps: int = 0
    batch_size: int = 256
    # DataLoader worker processes that read and decode samples (-1: none for data in memory,
    # else one per CPU core but one, at most 8).
    num_workers: int = -1
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    lars_eta: float = 1e-3
    warmup_epochs: int = 5
    min_lr_ratio: float = 0.01
    seed: int = 0
    accelerator: str = "auto"
    devices: Any = "auto"
    precision: str = "auto"  # "auto": bf16-mixed on GPUs that support it, else 32-true
    checkpoint_every_n_epochs: int = 1
    # Label-free monitors (RankMe, alpha-ReQ, alignment/uniformity, std; online kNN/linear when the
    # data has labels) on a fixed subset of the train set; see docs/monitoring.md.
    monitor_every_n_epochs: int = 5
    monitor_samples: int = 512
    # Collapse alarm: complete collapse when the normalised embeddings' std * sqrt(D) falls below
    # collapse_std_threshold; dimensional when RankMe < collapse_rank_fraction * min(N, D) (0: off).
    collapse_std_threshold: float = 0.05
    collapse_rank_fraction: float = 0.01
    stop_on_collapse: bool = False  # end the run (checkpoint kept, CLI exit code 4) at a collapse
    progress_bar: bool = True


@dataclass
class EvalConfig:
    """What ``selfsup evaluate`` (and the evaluation after training) runs by default.

    ``probes`` on frozen features (knn, linear, svm, fewshot, retrieval); ``finetune``: also
    fine-tune a copy of the encoder; ``risk``: also the risk decomposition of the linear probe.
    """

    after_training: bool = True
    probes: tuple[str, ...] = ("knn", "linear")
    finetune: bool = False
    risk: bool = False


COMPONENTS = ("data", "backbone", "method", "views")  # sections chosen by name, with params


@dataclass
class RunConfig:
    # The data component: its name is a dataset spec (a built-in name, a path, ``ucr:NAME``, ...),
    # its params the data options (selfsup.data.DataOptions, e.g. image_size).
    data: ComponentConfig = field(default_factory=lambda: ComponentConfig("digits"))
    skip_bad_files: bool = False
    # Apply the method's published settings (Method.run_defaults, e.g. TS2Vec's batch of 8) to the
    # train/eval settings left at the library defaults. The command line resolves them itself and
    # the resolved config.yaml has them written out, so both set this to false.
    apply_method_defaults: bool = True
    backbone: ComponentConfig = field(default_factory=lambda: ComponentConfig("auto"))  # by the data's modality
    method: ComponentConfig = field(default_factory=lambda: ComponentConfig("simclr"))
    views: ComponentConfig = field(default_factory=lambda: ComponentConfig("auto"))
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        # RunConfig(data="wine") and RunConfig(method="byol"): a component given by name alone.
        for name in COMPONENTS:
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, ComponentConfig(value))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in COMPONENTS and isinstance(value, str):
            value = ComponentConfig(value)  # config.data = "wine"
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        return build_dataclass(cls, values, where="config")


def to_plain(value: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, numpy scalars -> Python numbers, recursively.

    The result is safe for YAML and JSON.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    return value


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to a field's annotated type (tuples, nested dataclasses, floats)."""
    origin = typing.get_origin(annotation)
    if annotation is ComponentConfig and isinstance(value, str):
        return ComponentConfig(value)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of {annotation.__name__} fields; got {value!r}")
        return build_dataclass(annotation, value, where=where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list; got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, where) for v in value)
    if annotation is float and isinstance(value, str):
        # YAML 1.1 reads ``1e-6`` (no dot) as a string; accept any number Python can parse.
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number; got {value!r}") from None
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    simple = {int: int, float: float, bool: bool, str: str}
    if annotation in simple and not isinstance(value, simple[annotation]):
        raise ConfigError(f"{where} must be of type {annotation.__name__}; got {value!r}")
    return value


def build_dataclass(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a dict, recursively, with clear errors on bad keys."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in {where}. "
            f"Valid keys: {', '.join(sorted(fields))}."
        )
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {where}: {error}") from error


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping (key: value), not {type(values).__name__}")
    return values


def apply_override(values: dict[str, Any], assignment: str) -> None:
    """Apply one ``key.path=value`` override to a config dict, in place.

    The value is parsed as YAML (``0.2``, ``true``, ``[0.2, 1.0]``). For components chosen by name
    (``data``, ``backbone``, ``method``, ``views``), keys other than ``name`` go to ``params``:
    ``method.temperature=0.2`` sets ``method.params.temperature``.
    """
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key=value, e.g. method.temperature=0.2")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {assignment!r} has an empty key")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if parts[0] in COMPONENTS and len(parts) > 1 and parts[1] not in ("name", "params"):
        parts.insert(1, "params")
    node = values
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if node is values and part in COMPONENTS and isinstance(child, str):
            child = node[part] = {"name": child}  # `method: byol` in a YAML file
        if not isinstance(child, dict):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Changing a component's name drops its old params."""
    out = dict(base)
    for key, value in update.items():
        if key in COMPONENTS and isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            old = out[key]
            if "name" in value and "name" in old and value["name"] != old["name"]:
                old = {"name": value["name"], "params": {}}
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out
