"""Typed configuration: dataclasses per component, YAML files and ``--set key=value`` overrides.

A run is described by :class:`RunConfig`. Components chosen by name (backbone, method, views)
carry a ``name`` and a ``params`` dict; ``params`` is validated against the component's own
config dataclass, so an unknown or mistyped key is an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from selfsup.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric config field, declared in its annotation::

        temperature: PositiveFloat = 0.1           # Annotated[float, Range(gt=0)]
        drop_rate: Annotated[float, Range(ge=0, lt=1)] = 0.1

    Every float field must be finite unless its range says ``finite=False``. A value out of range
    is a ConfigError naming the field, the value and the range.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True

    def describe(self) -> str:
        """The range in words: ``> 0``, ``in [0, 1)``, or ``""`` when only finiteness is asked."""
        low = f"[{_number(self.ge)}" if self.ge is not None else f"({_number(self.gt)}" if self.gt is not None else ""
        high = f"{_number(self.le)}]" if self.le is not None else f"{_number(self.lt)})" if self.lt is not None else ""
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        if high:
            return f"{'<=' if self.le is not None else '<'} {high[:-1]}"
        return ""

    def check(self, value: float, where: str) -> None:
        words = f" {self.describe()}" if self.describe() else ""
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{where} must be a number{words}; got nan")
        if self.finite and isinstance(value, float) and math.isinf(value):
            raise ConfigError(f"{where} must be a finite number{words}; got {value}")
        bad = (
            (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)
        )
        if bad:
            raise ConfigError(f"{where} must be{words}; got {value!r}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class OneOf:
    """The valid values of a string config field: ``Annotated[str, OneOf("adamw", "sgd")]``."""

    choices: tuple[str, ...]

    def __init__(self, *choices: str) -> None:
        object.__setattr__(self, "choices", tuple(choices))

    def check(self, value: Any, where: str) -> None:
        if value not in self.choices:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, self.choices))}; got {value!r}")


# The ranges most fields need (use Annotated[...] with a Range for others).
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]  # a probability or a ratio, ends included
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]


@dataclass
class ComponentConfig:
    """A component chosen by name, with its own parameters (validated by the component)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "64")


@dataclass
class TrainConfig:
    """Optimisation and hardware.

    ``lr`` is the peak learning rate of the ``optimizer`` (``adamw``, ``sgd`` with ``momentum``,
    or ``lars`` with trust coefficient ``lars_eta``), reached after ``warmup_epochs`` of linear
    warm-up and followed by cosine decay to ``min_lr_ratio * lr``.
    """

    epochs: PositiveInt = 100
    # Stop after this many optimiser steps (0: no limit); the schedules then span max_steps.
    max_steps: NonNegativeInt = 0
    # The global batch: with N processes (--devices N, torchrun) each takes batch_size / N of it,
    # so N processes train as one process with this batch would (N must divide it).
    batch_size: Annotated[int, Range(ge=2)] = 256
    # DataLoader worker processes that read and decode samples (-1: none for data in memory,
    # else one per CPU core but one, at most 8).
    num_workers: Annotated[int, Range(ge=-1)] = -1
    optimizer: Annotated[str, OneOf("adamw", "sgd", "lars")] = "adamw"
    lr: PositiveFloat = 2e-3
    weight_decay: NonNegativeFloat = 1e-4
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9
    lars_eta: PositiveFloat = 1e-3
    warmup_epochs: NonNegativeInt = 5
    min_lr_ratio: Fraction = 0.01
    seed: Annotated[int, Range(ge=0, lt=2**32)] = 0
    accelerator: Annotated[str, OneOf("auto", "cpu", "gpu", "cuda", "mps")] = "auto"
    devices: Any = "auto"
    precision: Annotated[str, OneOf(*PRECISIONS)] = "auto"  # "auto": bf16-mixed on GPUs that support it, else 32-true
    checkpoint_every_n_epochs: PositiveInt = 1
    # Also a checkpoint every this many optimiser steps (0: only at epoch ends); a run killed
    # (even with SIGKILL) and resumed continues from the last one exactly as it would have.
    checkpoint_every_n_steps: NonNegativeInt = 0
    # Deterministic kernels (torch.use_deterministic_algorithms, via Lightning): the same run gives
    # the same weights on GPUs too; slower. On CPUs runs are repeatable without it at a fixed
    # thread count (OMP_NUM_THREADS).
    deterministic: bool = False
    # With several processes, BatchNorm normalises with the statistics of the global batch, as one
    # process would (SyncBatchNorm on GPUs; on CPUs, where it does not run, selfsup's
    # GlobalBatchNorm). false: each process uses its own share's statistics (faster, not equal).
    sync_batchnorm: bool = True
    # torch.compile the backbone (nn.Module.compile: weights and checkpoints unchanged). The first
    # steps pay the compilation; then 1.07-1.10x on this library's CPU benchmark
    # (benchmarks/results/throughput.md). On CPUs it needs a C++ compiler.
    compile: bool = False
    # How several processes share the work: "auto" (DDP: every process holds the whole model) or
    # "fsdp" (Fully Sharded Data Parallel, GPUs only: parameters, gradients and optimiser state
    # sharded over the processes, for models too large to replicate).
    strategy: Annotated[str, OneOf("auto", "ddp", "fsdp")] = "auto"
    # Send the logged scalars to logs/metrics.csv every this many steps. On GPUs each logging step
    # waits for the device; a larger value lets the host run ahead (the per-step loss curve in
    # metrics.json is kept either way).
    log_every_n_steps: PositiveInt = 1
    # Label-free monitors (RankMe, alpha-ReQ, alignment/uniformity, std; online kNN/linear when the
    # data has labels) on a fixed subset of the train set; see docs/monitoring.md.
    monitor_every_n_epochs: PositiveInt = 5
    monitor_samples: Annotated[int, Range(ge=2)] = 512
    # Collapse alarm: complete collapse when the normalised embeddings' std * sqrt(D) falls below
    # collapse_std_threshold; dimensional when RankMe < collapse_rank_fraction * min(N, D) (0: off).
    collapse_std_threshold: Fraction = 0.05
    collapse_rank_fraction: Fraction = 0.01
    stop_on_collapse: bool = False  # end the run (checkpoint kept, CLI exit code 4) at a collapse
    progress_bar: bool = True

    def __post_init__(self) -> None:
        devices = self.devices
        ok = devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or devices == -1))
        if isinstance(devices, str) and devices != "auto":
            ok = devices.strip().lstrip("-").isdigit() or all(part.strip().isdigit() for part in devices.split(",") if part.strip())
        if isinstance(devices, (list, tuple)):
            ok = bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
        if not ok:
            raise ConfigError(
                f"config.train.devices must be auto, a number of devices (1 or more; -1: all), or a list of device "
                f"indices; got {devices!r}"
            )


@dataclass
class EvalConfig:
    """What ``selfsup evaluate`` (and the evaluation after training) runs by default.

    ``probes`` on frozen features (knn, linear, svm, fewshot, retrieval); ``finetune``: also
    fine-tune a copy of the encoder; ``risk``: also the risk decomposition of the linear probe;
    ``linear_batch_norm``: the linear probe as MAE's, a BatchNorm without affine parameters in
    front of a linear layer trained by mini-batch SGD (docs/evaluation.md). ``"auto"`` (finetune,
    linear_batch_norm): as the method declares (``Method.headline_protocol == "finetune"``,
    ``Method.linear_probe_batch_norm``). ``trees``: a gradient-boosted-trees row on the raw input
    beside the probes; ``"auto"``: where the data's modality declares flat feature vectors
    (``Modality.tree_baseline``: vectors, tables). ``fewshot_min_per_class``: labels per class the
    few-label fraction settings (1%, 10%) keep at least. ``folds``: for data without a test split,
    None holds out a stratified 20% as test; an int k runs every probe and baseline on k
    stratified folds and reports the mean (the std over folds in metrics.json's details), the
    graph-level papers' 10-fold protocol.
    """

    after_training: bool = True
    probes: tuple[str, ...] = ("knn", "linear")
    finetune: bool | str = "auto"
    # Fine-tuning's budget: epochs over the train split, and the learning rates tried (each on a
    # held-out part of train; the best is used on all of it). One lr skips the choice.
    finetune_epochs: PositiveInt = 5
    finetune_lrs: tuple[PositiveFloat, ...] = (1e-4, 3e-4, 1e-3)
    risk: bool = False
    linear_batch_norm: bool | str = "auto"
    trees: bool | str = "auto"
    fewshot_min_per_class: PositiveInt = 2
    folds: int | None = None

    def __post_init__(self) -> None:
        folds = self.folds
        if isinstance(folds, float) and folds.is_integer():
            folds = self.folds = int(folds)
        if folds is not None and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 2):
            raise ConfigError(
                f"config.eval.folds must be null (a stratified 20% holdout) or a whole number >= 2 of "
                f"cross-validation folds; got {folds!r}"
            )
        if not self.finetune_lrs:
            raise ConfigError("config.eval.finetune_lrs must hold at least one learning rate; got []")
        for key in ("finetune", "linear_batch_norm", "trees"):
            value = getattr(self, key)
            if value != "auto" and not isinstance(value, bool):
                raise ConfigError(f"config.eval.{key} must be auto, true or false; got {value!r}")


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


def _coerce(value: Any, annotation: Any, where: str, finite: bool = True) -> Any:
    """Convert a YAML value to a field's annotated type (tuples, nested dataclasses, floats) and
    check it against the field's :class:`Range` or :class:`OneOf` (floats must be finite)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *checks = typing.get_args(annotation)
        # A Range checks finiteness itself (its message gives the range).
        value = _coerce(value, base, where, finite=not any(isinstance(check, Range) for check in checks))
        for check in checks:
            if isinstance(check, (Range, OneOf)) and value is not None:
                check.check(value, where)
        return value
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
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number; got {value!r}") from None
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
        if finite and not math.isfinite(value):
            Range().check(value, where)  # every float field is finite unless its Range says otherwise
        return value
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    simple = {int: int, float: float, bool: bool, str: str}
    if annotation in simple and (not isinstance(value, simple[annotation]) or (annotation is not bool and isinstance(value, bool))):
        kind = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}[annotation]
        raise ConfigError(f"{where} must be {kind}; got {value!r}")
    return value


def build_dataclass(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a dict, recursively, with clear errors on bad keys."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls, include_extras=True)
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
    except ConfigError as error:  # a __post_init__ check: name where it happened, once
        if str(error).startswith(where) or f" {where}" in str(error):
            raise
        raise ConfigError(f"invalid {where}: {error}") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {where}: {error}") from error


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML ({reason}); a recipe is a YAML mapping, see recipes/") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read ({error.strerror})") from None
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
