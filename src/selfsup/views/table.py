"""Views of table rows ``[N, F]`` for the tabular methods: SCARF's corruption, VIME's mask and
replace, SubTab's feature subsets.

The views take raw rows (:meth:`selfsup.data.modalities.table.TableModality.view_input`: numeric
values, categorical indices ``0 .. K-1``, NaN for a missing value), so they need no schema:
replacing a value by the same column's value in another row keeps every categorical value an
index of its own column, and a missing value stays possible (it is one of the column's values).
Draws from a column's empirical marginal use the current batch (per process, in distributed
runs) instead of the whole training set, as is usual in batched implementations.

In every generator here, global view 0 is the row itself (clean): SCARF contrasts it with the
corrupted view, VIME and SubTab reconstruct it. Every random draw comes from the passed
generator, on the batch's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from selfsup.config import Fraction, OneOf, Range
from selfsup.views.base import Views, register_views

NAN = float("nan")


def _check_rows(x: torch.Tensor, name: str) -> None:
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} views take non-empty table rows [N, F]; got shape {tuple(x.shape)}")


def marginal_draws(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each entry replaced by the same column of a row drawn uniformly from the batch (with
    replacement): independent draws from each column's empirical marginal ``[N, F]``."""
    N, F = x.shape
    donors = torch.randint(0, N, (N, F), generator=generator, device=x.device)
    return torch.gather(x, 0, donors)


def column_shuffle(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each column permuted on its own ``[N, F]``: VIME's and SubTab's draw from the marginals
    (swap noise): the batch's marginals are kept exactly, the rows' joint structure is broken."""
    N, F = x.shape
    order = torch.rand(N, F, generator=generator, device=x.device).argsort(dim=0)  # one permutation per column
    return torch.gather(x, 0, order)


def fixed_count_mask(N: int, F: int, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """bool ``[N, F]`` with exactly ``count`` True per row, at random columns."""
    scores = torch.rand(N, F, generator=generator, device=device)
    mask = torch.zeros(N, F, dtype=torch.bool, device=device)
    if count > 0:
        mask.scatter_(1, scores.topk(count, dim=1).indices, True)
    return mask


# ----------------------------------------------------------------------------- SCARF


@dataclass
class ScarfViewsConfig:
    """``corruption_rate``: the share ``c`` of each row's columns replaced (exactly ``floor(c F)``
    of them, a new random set per row and view; 0.6 in the paper)."""

    corruption_rate: Annotated[float, Range(ge=0, lt=1)] = 0.6


@register_views("scarf")
class ScarfViews:
    """SCARF's views (Bahri et al. 2022, arXiv 2106.15147): the row itself (the anchor) and
    corrupted copies in which ``floor(c F)`` columns chosen at random take a draw from their
    empirical marginal (a random row's value of that column, which may equal the row's own).

    ``x [N, F]`` -> global views ``[x, corrupted, ...]`` (``num_views - 1`` corrupted ones),
    local views: further corrupted copies. ``extras["corrupted"]``: the replaced entries of
    global view 1, bool ``[N, F]``.
    """

    Config = ScarfViewsConfig

    def __init__(self, config: ScarfViewsConfig) -> None:
        self.config = config

    def corrupt(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        N, F = x.shape
        mask = fixed_count_mask(N, F, int(self.config.corruption_rate * F), g, x.device)
        return torch.where(mask, marginal_draws(x, g), x), mask

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        _check_rows(batch, "scarf")
        corrupted = [self.corrupt(batch, generator) for _ in range(max(num_views - 1, 0) + num_local_views)]
        views = [batch, *(v for v, _ in corrupted)]
        extras = {"corrupted": corrupted[0][1]} if corrupted else {}
        return Views(views[:num_views], views[num_views:], extras=extras)


# ----------------------------------------------------------------------------- VIME


@dataclass
class VimeViewsConfig:
    """``mask_prob``: ``p_m``, the probability that an entry is masked and replaced (0.3 in the
    authors' release; the paper tunes it per data set)."""

    mask_prob: Annotated[float, Range(gt=0, lt=1)] = 0.3


@register_views("vime_mask")
class VimeMaskViews:
    """VIME's mask generator and pretext generator (Yoon et al. 2020, NeurIPS, sec. 4.1):
    ``m_j ~ Bernoulli(p_m)`` per entry, ``x~ = m * x_bar + (1 - m) * x`` with ``x_bar`` drawn
    from the columns' empirical marginals (each column shuffled over the batch).

    ``x [N, F]`` -> global views ``[x, x~, ...]`` (``num_views - 1`` masked copies, each with
    its own mask), local views: further masked copies. ``extras["mask"]``: the mask of global
    view 1 (bool ``[N, F]``); where a replacement happens to equal the row's own value the entry
    is unchanged, so VIME's method takes "changed" as the mask it estimates.
    """

    Config = VimeViewsConfig

    def __init__(self, config: VimeViewsConfig) -> None:
        self.config = config

    def mask_and_replace(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.rand(x.shape, generator=g, device=x.device) < self.config.mask_prob
        return torch.where(mask, column_shuffle(x, g), x), mask

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        _check_rows(batch, "vime_mask")
        masked = [self.mask_and_replace(batch, generator) for _ in range(max(num_views - 1, 0) + num_local_views)]
        views = [batch, *(v for v, _ in masked)]
        extras = {"mask": masked[0][1]} if masked else {}
        return Views(views[:num_views], views[num_views:], extras=extras)


# ----------------------------------------------------------------------------- SubTab


def subset_columns(num_features: int, num_subsets: int, overlap: float) -> list[tuple[int, int]]:
    """SubTab's feature subsets as column ranges ``[start, stop)``.

    Ucar et al. 2021 (arXiv 2110.04361): the columns, in the table's order, are cut into
    ``num_subsets`` consecutive blocks of ``b = F // num_subsets`` columns (the last block also
    takes the ``F mod num_subsets`` columns left over); each block is extended by
    ``int(overlap * b)`` columns of its neighbour (the first to the right, the others to the
    left), so neighbouring subsets share columns.
    """
    if not 2 <= num_subsets <= num_features:
        raise ValueError(f"SubTab needs 2 <= num_subsets <= the {num_features} columns; got num_subsets={num_subsets}")
    size = num_features // num_subsets
    shared = int(overlap * size)
    bounds = [k * size for k in range(num_subsets)] + [num_features]
    return [(0, bounds[1] + shared)] + [(bounds[k] - shared, bounds[k + 1]) for k in range(1, num_subsets)]


@dataclass
class SubTabViewsConfig:
    """``overlap``: the share of a block's columns its neighbour adds to the subset (0.75 in the
    paper's settings); ``noise``: what happens to a masked entry of a subset: ``swap`` (a value
    of the same column in another row: the paper's best setting), ``missing`` (the entry is
    missing: the standardised input's 0 for numeric columns, the "missing" category otherwise,
    SubTab's zero-out) or ``none``; ``mask_prob``: the probability that an entry is masked (0.3)."""

    overlap: Annotated[float, Range(ge=0, lt=1)] = 0.75
    noise: Annotated[str, OneOf("swap", "missing", "none")] = "swap"
    mask_prob: Fraction = 0.3


@register_views("subtab")
class SubTabViews:
    """SubTab's views (Ucar et al. 2021, arXiv 2110.04361): the row itself, then one noisy copy
    of each feature subset, in which the columns outside the subset are missing (NaN).

    ``x [N, F]`` -> global views ``[x, subset_1, ..., subset_S]`` with ``S = num_views - 1``
    subsets (:func:`subset_columns`; asked for 2 views, as the monitors do, the first subset of
    2); no local views. ``extras["subsets"]``: the column ranges of the subsets returned.
    """

    Config = SubTabViewsConfig

    def __init__(self, config: SubTabViewsConfig) -> None:
        self.config = config

    def subset_view(self, x: torch.Tensor, start: int, stop: int, g: torch.Generator) -> torch.Tensor:
        inside = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
        inside[start:stop] = True
        mask = torch.rand(x.shape, generator=g, device=x.device) < self.config.mask_prob
        if self.config.noise == "swap":
            x = torch.where(mask, column_shuffle(x, g), x)
        elif self.config.noise == "missing":
            x = x.masked_fill(mask, NAN)
        return x.masked_fill(~inside, NAN)  # the columns outside the subset are missing

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 5, num_local_views: int = 0
    ) -> Views:
        _check_rows(batch, "subtab")
        if num_local_views:
            raise ValueError(f"subtab views make no local views; asked for {num_local_views}")
        # Fewer than 3 views (the monitors ask for 2): the first subset of 2.
        subsets = subset_columns(batch.shape[1], max(num_views - 1, 2), self.config.overlap)[: max(num_views - 1, 0)]
        views = [batch] + [self.subset_view(batch, start, stop, generator) for start, stop in subsets]
        return Views(views, extras={"subsets": subsets})


__all__ = [
    "ScarfViews", "VimeMaskViews", "SubTabViews", "subset_columns", "marginal_draws", "column_shuffle",
    "fixed_count_mask",
]
