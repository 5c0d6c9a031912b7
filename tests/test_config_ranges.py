"""Every knob of every method, backbone and views declares its valid range, and the parser enforces it.

Walked generically over the registries, so a new method, backbone or view generator is covered
without a line here: its defaults must lie in their ranges, every float must reject nan and inf,
every int must reject ``True``, and every numeric field must declare a Range (or a string field
a OneOf) unless it is on the short allow-list below.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Annotated, Any, Iterator

import pytest

from selfsup.cli import main
from selfsup.config import OneOf, Range, build_dataclass
from selfsup.backbones import BACKBONES
from selfsup.errors import ConfigError
from selfsup.methods import METHODS
from selfsup.views import VIEWS

COMPONENTS = [
    (kind, name, registry.get(name).Config)
    for kind, registry in (("method", METHODS), ("backbone", BACKBONES), ("views", VIEWS))
    for name in registry.names()
]
IDS = [f"{kind}:{name}" for kind, name, _ in COMPONENTS]

# Numeric fields that declare no range because none exists, as "<kind>:<name>.<field path>".
# None today: every dimension, weight, rate, temperature, momentum and probability has one.
# Add an entry only for a genuinely unbounded knob (a seed, an offset), with its reason.
UNBOUNDED: list[str] = []


@dataclasses.dataclass
class Leaf:
    """One field of a config (nested view configs flattened to a dotted path)."""

    path: tuple[str, ...]
    base: Any  # float, int, str, bool, Any, ...
    checks: list[Any]  # its Range / OneOf
    container: str  # "": a plain value, "tuple": the items of a tuple, "optional": X | None
    default: Any


def _split(annotation: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        return base, [e for e in extras if isinstance(e, (Range, OneOf))]
    return annotation, []


def leaves(cls: type, prefix: tuple[str, ...] = (), instance: Any = None) -> Iterator[Leaf]:
    instance = cls() if instance is None else instance
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        annotation, path, default = hints[f.name], (*prefix, f.name), getattr(instance, f.name)
        if dataclasses.is_dataclass(annotation):
            yield from leaves(annotation, path, default)
            continue
        container = ""
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            container = "optional"
        elif typing.get_origin(annotation) is tuple:
            annotation = typing.get_args(annotation)[0]
            container = "tuple"
        base, checks = _split(annotation)
        yield Leaf(path, base, checks, container, default)


def _params(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    params: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        params = {key: params}
    return params


def _bad(leaf: Leaf, item: Any) -> Any:
    """The field's value with ``item`` where a number goes: in place of a tuple's first item."""
    if leaf.container == "tuple":
        return [item, *list(leaf.default)[1:]]
    return item


def _rejects(kind: str, name: str, cls: type, leaf: Leaf, value: Any) -> str:
    with pytest.raises(ConfigError) as info:
        build_dataclass(cls, _params(leaf.path, _bad(leaf, value)), where=f"{kind} {name!r}")
    message = str(info.value)
    assert leaf.path[-1] in message, message
    return message


@pytest.mark.parametrize("kind,name,cls", COMPONENTS, ids=IDS)
def test_defaults_lie_in_their_ranges(kind: str, name: str, cls: type) -> None:
    defaults = dataclasses.asdict(cls())
    built = build_dataclass(cls, defaults, where=f"{kind} {name!r}")
    assert dataclasses.asdict(built) == defaults
    for leaf in leaves(cls):  # the same checks, one default at a time, for a clear failure
        items = leaf.default if leaf.container == "tuple" else [leaf.default]
        for item in items:
            for check in leaf.checks:
                if item is not None:
                    check.check(item, ".".join(leaf.path))


@pytest.mark.parametrize("kind,name,cls", COMPONENTS, ids=IDS)
def test_every_number_rejects_nan_inf_and_bools(kind: str, name: str, cls: type) -> None:
    numbers = [leaf for leaf in leaves(cls) if leaf.base in (float, int)]
    for leaf in numbers:
        if leaf.base is float:
            assert "got nan" in _rejects(kind, name, cls, leaf, math.nan)
            if all(check.finite for check in leaf.checks if isinstance(check, Range)):
                for value in (math.inf, -math.inf):
                    assert "inf" in _rejects(kind, name, cls, leaf, value)
        else:
            assert "True" in _rejects(kind, name, cls, leaf, True)
            _rejects(kind, name, cls, leaf, "3")  # a string is not a whole number either


def test_every_numeric_field_declares_its_range_and_every_string_its_choices() -> None:
    undeclared = []
    for kind, name, cls in COMPONENTS:
        for leaf in leaves(cls):
            if leaf.base in (bool, Any) or leaf.checks:
                continue
            undeclared.append(f"{kind}:{name}.{'.'.join(leaf.path)}")  # str fields included: OneOf for choices
    assert undeclared == UNBOUNDED


def test_the_walk_sees_every_kind_of_field() -> None:
    """A guard on the walk itself: nested view configs, tuples and optionals are all reached."""
    seen = {(kind, name, ".".join(leaf.path), leaf.container) for kind, name, cls in COMPONENTS for leaf in leaves(cls)}
    assert ("views", "image", "crop.scale", "tuple") in seen
    assert ("backbone", "mlp", "hidden_dims", "tuple") in seen
    assert ("method", "dino", "weight_decay_start", "optional") in seen
    assert ("views", "ts2vec_crops", "max_length", "optional") in seen
    assert ("method", "simclr", "temperature", "") in seen
    assert len(COMPONENTS) >= 30


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["method.temperature=0"], ["temperature", "> 0", "0.0"]),
        (["method.name=dino", "method.weight_decay_start=-0.1", "method.weight_decay_end=0.4"], ["weight_decay_start", ">= 0", "-0.1"]),
        (["method.name=dino", "method.weight_decay_start=0.04"], ["weight_decay_start", "weight_decay_end"]),
        (["views.name=timeseries", "views.timestamp_mask.ratio=[0, 1]"], ["timestamp_mask.ratio", "[0, 1)", "1.0"]),
        (["views.crop.scale=[0.5, 0.2]"], ["crop", "scale", "low <= high", "(0, 1]", "[0.5, 0.2]"]),
        (["method.name=byol", "method.base_momentum=1.5"], ["base_momentum", "[0, 1]", "1.5"]),
        (["method.name=swav", "method.num_prototypes=1"], ["num_prototypes", ">= 2"]),
        (["backbone.name=vit_tiny", "backbone.drop_path=1"], ["drop_path", "[0, 1)"]),
        (["backbone.name=resnet_tiny", "backbone.widths=[32, 0, 64]"], ["widths", ">= 1"]),
        (["backbone.name=vit_tiny", "backbone.pool=max"], ["pool", "'mean', 'cls'", "'max'"]),
        (["method.temperature=.nan"], ["temperature", "nan"]),
        (["method.proj_dim=true"], ["proj_dim", "whole number", "True"]),
    ],
    ids=[
        "temperature-0", "dino-negative-weight-decay", "dino-weight-decay-alone", "mask-ratio-1",
        "crop-scale-reversed", "byol-momentum", "swav-one-prototype", "vit-drop-path-1", "resnet-width-0",
        "vit-pool", "nan", "bool-for-int",
    ],
)
def test_out_of_range_values_stop_the_cli_before_the_run_directory(
    tmp_path, capsys, overrides: list[str], words: list[str]
) -> None:
    out = tmp_path / "run"
    argv = ["pretrain", "--no-eval", "-o", str(out)]
    for assignment in overrides:
        argv += ["--set", assignment]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    for word in words:
        assert word in err[0], (word, err[0])
    assert not out.exists()
