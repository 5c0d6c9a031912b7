"""Random token masking (MAE, SimMIM) and the gather/scatter helpers around it.

The masks here say which tokens of a sequence of ``L`` tokens an encoder sees (``keep``) and which
it must predict or reconstruct (``masked``). Every sample hides the same number of tokens, so the
visible tokens of a batch stack into one rectangular tensor ``[N, L_keep, D]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.masking._checks import check_generator, check_int, check_ratio, num_masked, output_device


@dataclass(frozen=True)
class TokenMask:
    """Which tokens of each sample are visible and which are hidden.

    Attributes:
        keep: ``LongTensor [N, L_keep]``, indices of the visible tokens, ascending in each row.
        masked: ``LongTensor [N, L_mask]``, indices of the hidden tokens, ascending in each row.
        mask: ``BoolTensor [N, L]``, ``True`` where a token is hidden (``L = L_keep + L_mask``).

    ``keep`` and ``masked`` are disjoint and together cover ``0 .. L-1`` in every row.
    """

    keep: torch.Tensor
    masked: torch.Tensor
    mask: torch.Tensor

    @property
    def num_tokens(self) -> int:
        """``L``, the length of the full sequence."""
        return self.mask.shape[1]

    @property
    def ids_shuffle(self) -> torch.Tensor:
        """``LongTensor [N, L]``: visible indices then hidden ones, the order MAE's encoder+mask tokens come in."""
        return torch.cat([self.keep, self.masked], dim=1)

    @property
    def ids_restore(self) -> torch.Tensor:
        """``LongTensor [N, L]``, MAE's ``ids_restore``: the inverse permutation of :attr:`ids_shuffle`.

        ``torch.gather(torch.cat([x_kept, mask_tokens], 1), 1, ids_restore[..., None].expand(-1, -1, D))``
        puts ``[N, L, D]`` tokens back in their original order (He et al. 2022, arXiv 2111.06377).
        :func:`restore` does the same in one scatter.
        """
        return torch.argsort(self.ids_shuffle, dim=1)

    def to(self, device: torch.device | str) -> TokenMask:
        """The same mask with every tensor on ``device``."""
        return TokenMask(self.keep.to(device), self.masked.to(device), self.mask.to(device))

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> TokenMask:
        """Build a :class:`TokenMask` from a boolean ``mask [N, L]`` (``True`` = hidden).

        Every row must hide the same number of tokens, otherwise ``keep`` would not be rectangular.
        """
        if mask.ndim != 2 or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a BoolTensor [N, L], got dtype {mask.dtype} and shape {tuple(mask.shape)}")
        counts = mask.sum(dim=1)
        if counts.numel() and bool((counts != counts[0]).any()):
            raise ValueError(f"mask must hide the same number of tokens in every row, got counts {counts.tolist()}")
        hidden = int(counts[0]) if counts.numel() else 0
        # A stable sort of 0 (visible) before 1 (hidden) lists each group in ascending index order.
        order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
        keep_len = mask.shape[1] - hidden
        return cls(keep=order[:, :keep_len], masked=order[:, keep_len:], mask=mask)


def random_token_mask(
    num_samples: int,
    num_tokens: int,
    mask_ratio: float,
    generator: torch.Generator,
    *,
    device: torch.device | str | None = None,
) -> TokenMask:
    """Hide a uniformly random subset of exactly ``round(mask_ratio * num_tokens)`` tokens per sample.

    MAE's random masking (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners",
    arXiv 2111.06377, sec. 3): each sample draws uniform noise ``[L]`` and the tokens with the
    smallest noise are kept, i.e. a per-sample random shuffle by ``argsort``. SimMIM (Xie et al.
    2022, arXiv 2111.09886) uses the same kind of mask with patch-level tokens. Unlike MAE's code,
    ``keep`` is returned in ascending order, so kept tokens stay in their original order.

    Args:
        num_samples: ``N``, the number of independent masks.
        num_tokens: ``L``, tokens per sample.
        mask_ratio: fraction of tokens to hide, in ``[0, 1)``; the count is rounded with Python's
            ``round`` (ties to even) and at least one token must stay visible.
        generator: the only source of randomness; sampling happens on its device.
        device: where the outputs go; defaults to ``generator.device``.

    Returns:
        :class:`TokenMask` with ``keep [N, L_keep]``, ``masked [N, L_mask]``, ``mask [N, L]``.
    """
    check_generator(generator)
    n = check_int("num_samples", num_samples, 1)
    length = check_int("num_tokens", num_tokens, 1)
    ratio = check_ratio("mask_ratio", mask_ratio)
    hidden = num_masked(ratio, length)
    if hidden >= length:
        raise ValueError(
            f"mask_ratio={ratio} hides round({ratio} * {length}) = {hidden} of num_tokens={length} tokens; "
            "at least one token must stay visible"
        )
    noise = torch.rand(n, length, generator=generator, device=generator.device)  # [N, L]
    ids_shuffle = torch.argsort(noise, dim=1)  # a uniform random permutation per row
    keep_len = length - hidden
    keep = ids_shuffle[:, :keep_len].sort(dim=1).values
    masked = ids_shuffle[:, keep_len:].sort(dim=1).values
    mask = torch.zeros(n, length, dtype=torch.bool, device=generator.device)
    mask.scatter_(1, masked, True)
    return TokenMask(keep, masked, mask).to(output_device(generator, device))


def _expand_index(index: torch.Tensor, trailing: torch.Size) -> torch.Tensor:
    """``index [N, K]`` broadcast to ``[N, K, *trailing]`` for gather/scatter along dim 1."""
    return index.reshape(*index.shape, *([1] * len(trailing))).expand(*index.shape, *trailing)


def _check_index(name: str, index: torch.Tensor, batch: int) -> None:
    if index.ndim != 2 or index.dtype != torch.long:
        raise ValueError(
            f"{name} must be a LongTensor [N, L_keep], got dtype {index.dtype} and shape {tuple(index.shape)}"
        )
    if index.shape[0] != batch:
        raise ValueError(f"{name} has {index.shape[0]} rows but the tokens have N={batch}")


def apply_keep(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Select the visible tokens: ``x [N, L, *D]``, ``keep [N, L_keep]`` -> ``[N, L_keep, *D]``.

    A ``gather`` along the token axis, as in MAE's encoder (He et al. 2022, arXiv 2111.06377).
    Differentiable in ``x``.
    """
    if x.ndim < 2:
        raise ValueError(f"x must have shape [N, L, ...], got {tuple(x.shape)}")
    _check_index("keep", keep, x.shape[0])
    return torch.gather(x, 1, _expand_index(keep, x.shape[2:]))


def restore(
    x_kept: torch.Tensor, keep: torch.Tensor, num_tokens: int, fill: torch.Tensor | float
) -> torch.Tensor:
    """Scatter visible tokens back to their places and put ``fill`` everywhere else.

    ``x_kept [N, L_keep, *D]``, ``keep [N, L_keep]`` -> ``[N, L, *D]`` with ``L = num_tokens``.
    ``fill`` is a scalar or a tensor broadcastable to ``[*D]``, typically MAE's learned mask token
    ``[D]`` (He et al. 2022, arXiv 2111.06377, sec. 3 "MAE decoder"). Differentiable in ``x_kept``
    and in ``fill`` (a mask token gets the gradient of every position it fills).
    ``restore(apply_keep(x, keep), keep, L, f)`` equals ``x`` at ``keep`` and ``f`` elsewhere.
    """
    if x_kept.ndim < 2:
        raise ValueError(f"x_kept must have shape [N, L_keep, ...], got {tuple(x_kept.shape)}")
    _check_index("keep", keep, x_kept.shape[0])
    if keep.shape[1] != x_kept.shape[1]:
        raise ValueError(f"keep has {keep.shape[1]} columns but x_kept has {x_kept.shape[1]} tokens")
    length = check_int("num_tokens", num_tokens, keep.shape[1])
    n, trailing = x_kept.shape[0], x_kept.shape[2:]
    if isinstance(fill, torch.Tensor):
        fill_t = fill.to(dtype=x_kept.dtype, device=x_kept.device)
    else:
        fill_t = torch.tensor(fill, dtype=x_kept.dtype, device=x_kept.device)
    try:
        base = fill_t.expand(n, length, *trailing)  # a view: no [N, L, D] copy of the fill value
    except RuntimeError:
        raise ValueError(
            f"fill of shape {tuple(fill_t.shape)} does not broadcast to the token shape {tuple(trailing)}"
        ) from None
    # Out-of-place scatter: the result is a new tensor and autograd reaches both base (fill) and x_kept.
    return torch.scatter(base, 1, _expand_index(keep, trailing), x_kept)
