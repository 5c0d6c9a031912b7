"""Rectangular block masks on a 2-D patch grid, and I-JEPA's multi-block masking.

Tokens of an ``H x W`` patch grid are numbered row-major: patch ``(r, c)`` is token ``r * W + c``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from selfsup.masking._checks import check_generator, check_int, check_range, output_device


@dataclass(frozen=True)
class BlockMasks:
    """Context and target tokens of I-JEPA multi-block masking.

    Attributes:
        context: ``LongTensor [N, L_ctx]``, visible token indices (row-major into ``H*W``), ascending.
        targets: one ``LongTensor [N, L_tgt]`` per target block, ascending, ``L_tgt = h * w``.
        grid: ``(H, W)``.
        target_shape: ``(h, w)`` of every target block (shared by the whole batch).
        context_shape: ``(h, w)`` of the context block before the targets were removed from it.
    """

    context: torch.Tensor
    targets: list[torch.Tensor]
    grid: tuple[int, int]
    target_shape: tuple[int, int]
    context_shape: tuple[int, int]

    @property
    def num_tokens(self) -> int:
        """``H * W``."""
        return self.grid[0] * self.grid[1]

    @property
    def context_mask(self) -> torch.Tensor:
        """``BoolTensor [N, H*W]``, ``True`` at context tokens (after truncation)."""
        return _indices_to_mask(self.context, self.num_tokens)

    @property
    def target_mask(self) -> torch.Tensor:
        """``BoolTensor [N, H*W]``, ``True`` at tokens of any target block."""
        return _indices_to_mask(torch.cat(self.targets, dim=1), self.num_tokens)

    def to(self, device: torch.device | str) -> BlockMasks:
        """The same masks with every tensor on ``device``."""
        return BlockMasks(
            self.context.to(device), [t.to(device) for t in self.targets], self.grid, self.target_shape,
            self.context_shape,
        )


def _indices_to_mask(indices: torch.Tensor, num_tokens: int) -> torch.Tensor:
    mask = torch.zeros(indices.shape[0], num_tokens, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices, True)


def _check_grid(grid: object) -> tuple[int, int]:
    try:
        height, width = grid  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"grid must be a pair (H, W) of positive integers, got {grid!r}") from None
    return check_int("grid[0] (H)", height, 1), check_int("grid[1] (W)", width, 1)


def block_mask_2d(
    grid: tuple[int, int], top: torch.Tensor, left: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Boolean mask of one ``height x width`` rectangle per entry of ``top``/``left``.

    Args:
        grid: ``(H, W)``.
        top, left: ``LongTensor [*B]``, the rectangle's top-left patch; any batch shape ``B``.
        height, width: rectangle size, shared by every entry; the rectangle must fit in the grid.

    Returns:
        ``BoolTensor [*B, H*W]``, ``True`` inside the rectangle (row-major), on ``top.device``.
    """
    grid_h, grid_w = _check_grid(grid)
    rows = torch.arange(grid_h, device=top.device)
    cols = torch.arange(grid_w, device=top.device)
    in_rows = (rows >= top[..., None]) & (rows < top[..., None] + height)  # [*B, H]
    in_cols = (cols >= left[..., None]) & (cols < left[..., None] + width)  # [*B, W]
    return (in_rows[..., :, None] & in_cols[..., None, :]).flatten(-2)  # [*B, H*W]


def block_indices_2d(
    grid: tuple[int, int], top: torch.Tensor, left: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Token indices of one ``height x width`` rectangle per entry of ``top``/``left``.

    Same arguments as :func:`block_mask_2d`. Returns ``LongTensor [*B, height*width]``, row-major
    inside the rectangle, hence ascending.
    """
    _, grid_w = _check_grid(grid)
    dr = torch.arange(height, device=top.device)[:, None]  # [h, 1]
    dc = torch.arange(width, device=top.device)[None, :]  # [1, w]
    rows = top[..., None, None] + dr  # [*B, h, 1]
    cols = left[..., None, None] + dc  # [*B, 1, w]
    return (rows * grid_w + cols).flatten(-2)  # [*B, h*w]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand(1, generator=generator, device=generator.device).item()


def _sample_block_size(
    generator: torch.Generator,
    grid: tuple[int, int],
    scale: tuple[float, float],
    aspect: tuple[float, float],
) -> tuple[int, int]:
    """Draw one block size ``(h, w)`` with area ~ ``scale * H * W`` and ``h / w`` ~ ``aspect``.

    As in I-JEPA's ``MaskCollator._sample_block_size``: ``A = int(s * H * W)``,
    ``h = round(sqrt(A * a))``, ``w = round(sqrt(A / a))``. Two deviations: the scale ``s`` and the
    aspect ``a`` are independent uniform draws (I-JEPA reuses one draw for both, coupling them), and
    ``h, w`` are clipped to ``[1, H]``, ``[1, W]`` (I-JEPA forces ``h < H``, so a context block
    could never cover the whole grid).
    """
    grid_h, grid_w = grid
    s = _uniform(generator, *scale)
    a = _uniform(generator, *aspect)
    area = max(int(s * grid_h * grid_w), 1)
    h = int(round(math.sqrt(area * a)))
    w = int(round(math.sqrt(area / a)))
    return min(max(h, 1), grid_h), min(max(w, 1), grid_w)


def _sample_corners(
    generator: torch.Generator, grid: tuple[int, int], size: tuple[int, int], shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform top-left corners ``[*shape]`` of a ``size`` block that fits in the grid."""
    top = torch.randint(0, grid[0] - size[0] + 1, shape, generator=generator, device=generator.device)
    left = torch.randint(0, grid[1] - size[1] + 1, shape, generator=generator, device=generator.device)
    return top, left


def multi_block_mask(
    num_samples: int,
    grid: tuple[int, int],
    generator: torch.Generator,
    num_targets: int = 4,
    target_scale: tuple[float, float] = (0.15, 0.2),
    target_aspect: tuple[float, float] = (0.75, 1.5),
    context_scale: tuple[float, float] = (0.85, 1.0),
    min_keep: int = 4,
    *,
    max_tries: int = 20,
    device: torch.device | str | None = None,
) -> BlockMasks:
    """I-JEPA multi-block masking: ``num_targets`` target rectangles and one context block without them.

    Assran et al. 2023, "Self-Supervised Learning from Images with a Joint-Embedding Predictive
    Architecture", arXiv 2301.08243, sec. 3 and the ``MaskCollator`` of their code. The rule:

    1. One target size ``(h, w)`` is drawn for the whole batch (area a fraction ``target_scale`` of
       the grid, ``h / w`` in ``target_aspect``) and one context size (``context_scale``, aspect 1),
       as I-JEPA does, so every sample has the same number ``h * w`` of tokens per target.
    2. Per sample, each target block and the context block get independent uniform positions.
       Targets may overlap each other.
    3. Target tokens are removed from the context. A sample left with fewer than ``min_keep``
       context tokens redraws all its positions, up to ``max_tries`` times; then ``ValueError``.
       (I-JEPA instead gradually lets the context overlap the targets; here the context never
       contains a target token.)
    4. Context sizes now differ across samples; every sample keeps only its first ``L_ctx`` context
       tokens in row-major order, ``L_ctx`` = the smallest context size in the batch (the
       truncation of I-JEPA's collator), so ``context`` is a rectangular tensor.

    Args:
        num_samples: ``N``.
        grid: ``(H, W)`` patches.
        generator: the only source of randomness; sampling happens on its device.
        num_targets: target blocks per sample (I-JEPA: 4).
        target_scale: ``(min, max)`` fraction of ``H*W`` covered by one target block, in ``(0, 1]``.
        target_aspect: ``(min, max)`` of ``h / w`` for target blocks, positive.
        context_scale: ``(min, max)`` fraction of ``H*W`` covered by the context block, in ``(0, 1]``.
        min_keep: least number of context tokens per sample.
        max_tries: redraws allowed for a sample whose context is too small.
        device: where the outputs go; defaults to ``generator.device``.

    Returns:
        :class:`BlockMasks` with ``context [N, L_ctx]`` and ``targets``: ``num_targets`` tensors
        ``[N, h*w]``, all indices row-major into ``H*W``.
    """
    check_generator(generator)
    n = check_int("num_samples", num_samples, 1)
    hw = _check_grid(grid)
    num_targets = check_int("num_targets", num_targets, 1)
    target_scale = check_range("target_scale", target_scale, 0.0, 1.0)
    target_aspect = check_range("target_aspect", target_aspect, 0.0, math.inf, high_open=True)
    context_scale = check_range("context_scale", context_scale, 0.0, 1.0)
    min_keep = check_int("min_keep", min_keep, 1)
    max_tries = check_int("max_tries", max_tries, 1)
    if min_keep > hw[0] * hw[1]:
        raise ValueError(f"min_keep={min_keep} exceeds the {hw[0] * hw[1]} tokens of grid {hw}")

    target_size = _sample_block_size(generator, hw, target_scale, target_aspect)
    context_size = _sample_block_size(generator, hw, context_scale, (1.0, 1.0))
    if context_size[0] * context_size[1] < min_keep:
        raise ValueError(
            f"the context block {context_size} has fewer than min_keep={min_keep} tokens; "
            "raise context_scale or lower min_keep"
        )

    target_top, target_left = _sample_corners(generator, hw, target_size, (n, num_targets))  # [N, T]
    context_top, context_left = _sample_corners(generator, hw, context_size, (n,))  # [N]

    def context_masks() -> torch.Tensor:  # [N, H*W], True = context token not in any target
        in_targets = block_mask_2d(hw, target_top, target_left, *target_size).any(dim=1)
        return block_mask_2d(hw, context_top, context_left, *context_size) & ~in_targets

    context = context_masks()
    for _ in range(max_tries):
        short = context.sum(dim=1) < min_keep
        if not bool(short.any()):
            break
        # Redraw only the samples that came out short; the others keep their masks.
        rows = short.nonzero().squeeze(1)
        target_top[rows], target_left[rows] = _sample_corners(generator, hw, target_size, (rows.numel(), num_targets))
        context_top[rows], context_left[rows] = _sample_corners(generator, hw, context_size, (rows.numel(),))
        context = context_masks()
    counts = context.sum(dim=1)
    if bool((counts < min_keep).any()):
        raise ValueError(
            f"after max_tries={max_tries} redraws a sample still has {int(counts.min())} < min_keep={min_keep} "
            f"context tokens (target block {target_size} x {num_targets}, context block {context_size}); "
            "lower min_keep, num_targets or target_scale, or raise context_scale"
        )

    # Stable sort puts each row's context tokens first, in ascending (row-major) order; keeping the
    # first min-count columns is I-JEPA's truncation to the smallest context in the batch.
    order = torch.argsort((~context).to(torch.uint8), dim=1, stable=True)
    context_indices = order[:, : int(counts.min())]
    targets = block_indices_2d(hw, target_top, target_left, *target_size)  # [N, T, h*w]
    masks = BlockMasks(context_indices, list(targets.unbind(dim=1)), hw, target_size, context_size)
    return masks.to(output_device(generator, device))
