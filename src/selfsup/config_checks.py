"""What a config field's annotation cannot declare, checked in the config dataclasses' ``__post_init__``.

A field's own range is part of its annotation (:class:`~selfsup.config.Range`,
:class:`~selfsup.config.OneOf`, on the items of a tuple too) and is checked by
:func:`~selfsup.config.build_dataclass` as the params are parsed. The checks here cover the rest:
a ``[low, high]`` pair in order, a list that must not be empty, an optional number (``build_dataclass``
leaves ``X | None`` fields as given). They raise ``ValueError``, which ``build_dataclass`` turns
into a ConfigError naming the component, e.g. ``invalid views 'image'.crop: scale must be [low,
high] with low <= high, each in (0, 1]; got [0.5, 0.2]``.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

from selfsup.config import OneOf, Range
from selfsup.errors import ConfigError


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _checks(annotation: Any) -> list[Any]:
    """The Range / OneOf of ``Annotated[T, ...]`` (empty for a plain type)."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return []
    return [c for c in typing.get_args(annotation)[1:] if isinstance(c, (Range, OneOf))]


def _item_words(annotation: Any) -> str:
    """``", each in (0, 1]"`` for ``tuple[Annotated[float, Range(gt=0, le=1)], ...]``, else ``""``."""
    args = typing.get_args(annotation)
    words = [c.describe() for c in _checks(args[0]) if isinstance(c, Range)] if args else []
    return f", each {words[0]}" if words and words[0] else ""


def check_pairs(config: Any, *names: str) -> None:
    """Each field in ``names`` is ``[low, high]`` with ``low <= high`` (the items' own range is
    declared on the tuple's item type and checked when parsed)."""
    hints = _hints(type(config))
    for name in names:
        value = tuple(getattr(config, name))
        if len(value) != 2 or value[0] > value[1]:
            raise ValueError(
                f"{name} must be [low, high] with low <= high{_item_words(hints[name])}; got {list(value)!r}"
            )


def check_not_empty(config: Any, *names: str) -> None:
    """Each field in ``names`` holds at least one value."""
    for name in names:
        if len(getattr(config, name)) == 0:
            raise ValueError(f"{name} must hold at least one value; got []")


def coerce_optional(config: Any, *names: str) -> None:
    """Fields annotated ``Annotated[float, Range(...)] | None`` (or int): None, or a number in the
    range, converted to the field's type in place (``"4e-2"``, YAML's reading of 4e-2, included)."""
    hints = _hints(type(config))
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        inner = next(arg for arg in typing.get_args(hints[name]) if arg is not type(None))
        base = typing.get_args(inner)[0] if typing.get_origin(inner) is typing.Annotated else inner
        kind = "a whole number" if base is int else "a number"
        if base is float and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be {kind} or null; got {value!r}")
        if base is int and isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{name} must be {kind} or null; got {value!r}")
            value = int(value)
        elif base is float:
            value = float(value)
        for check in _checks(inner):
            try:
                check.check(value, name)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        setattr(config, name, value)
