"""Argument checks shared by the masking functions.

Each check raises :class:`ValueError` (or :class:`TypeError` for a wrong type) whose message starts
with the argument's name, so a caller can see at once which argument was wrong.
"""

from __future__ import annotations

import numbers

import torch


def check_generator(generator: object) -> torch.Generator:
    """Return ``generator`` if it is a :class:`torch.Generator`; all randomness must come from it."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator (all randomness comes from it), got {type(generator).__name__}"
        )
    return generator


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int if it is an integer ``>= minimum`` (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_ratio(name: str, value: object) -> float:
    """Return ``value`` as a float if it lies in ``[0, 1)`` (a ratio of hidden tokens)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def check_range(
    name: str, value: object, low: float, high: float, *, low_open: bool = True, high_open: bool = False
) -> tuple[float, float]:
    """Return ``(lo, hi)`` if ``value`` is a pair with ``lo <= hi`` both inside ``(low, high]`` (by default)."""
    try:
        lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max) of numbers, got {value!r}") from None

    def inside(v: float) -> bool:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above and below

    if not (inside(lo) and inside(hi)):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}, got {value!r}")
    if lo > hi:
        raise ValueError(f"{name} must be (min, max) with min <= max, got {value!r}")
    return lo, hi


def num_masked(mask_ratio: float, num_tokens: int) -> int:
    """The number of hidden tokens, ``round(mask_ratio * num_tokens)`` (Python's round: ties to even)."""
    return int(round(mask_ratio * num_tokens))


def output_device(generator: torch.Generator, device: torch.device | str | None) -> torch.device:
    """Where outputs go: ``device`` if given, else the generator's device (sampling happens there)."""
    return generator.device if device is None else torch.device(device)
