"""Per-step schedules as plain functions of (step, total steps).

Every hook counts steps the same way: ``step`` is the index of the optimiser step being taken or
just taken, from 0, and ``total_steps`` the number of steps in the whole run (``train.max_steps``
when set, else epochs x steps per epoch).
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up from 0 to 1, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL's schedule: ``m = final - (final - base) * (cos(pi * step / total) + 1) / 2``.

    Starts at ``base`` and rises to ``final`` (1: the teacher freezes) at the last step.
    """
    if total_steps <= 0:
        return final
    progress = min(max(step / total_steps, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def cosine_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine from ``start`` at step 0 to ``end`` at the last step (DINO's weight-decay and
    teacher-temperature schedules, Caron et al. 2021, arXiv 2104.14294)."""
    if total_steps <= 1:
        return end
    progress = min(max(step / (total_steps - 1), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))
