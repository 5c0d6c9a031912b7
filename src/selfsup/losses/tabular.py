"""Losses of the tabular methods: SCARF's InfoNCE, VIME's mask estimation, the mixed
(numeric / categorical) reconstruction of VIME and SubTab, and SubTab's pairwise subset losses.

Pure functions of tensors. A table row is ``[F]`` columns; ``cardinalities`` gives, per column,
its number of categories ``K`` (0 for a numeric column). A reconstruction head predicts, column
after column, one value for a numeric column and ``K + 1`` logits for a categorical one (the last
class is "missing": the table modality's standardised input holds a missing category as index
``K``), so a prediction is ``[N, P]`` with ``P = sum(1 if K == 0 else K + 1)``
(:func:`column_slots`).
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import torch
import torch.nn.functional as F

from selfsup.losses.contrastive import info_nce
from selfsup.losses.moco import moco_v3_loss


def column_slots(cardinalities: Sequence[int]) -> list[int]:
    """Per column, the outputs a reconstruction head gives it: 1 (numeric), ``K + 1`` (categorical)."""
    return [1 if k == 0 else int(k) + 1 for k in cardinalities]


def scarf_loss(anchor: torch.Tensor, corrupted: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """SCARF's InfoNCE between each clean row and the corrupted rows of the batch.

    Bahri, Jiang, Tay, Metzler 2022, "SCARF: Self-Supervised Contrastive Learning using Random
    Feature Corruption", ICLR 2022, arXiv 2106.15147, the pre-training loss: with ``s_ik`` the cosine
    similarity of the anchor ``z_i`` (the uncorrupted row) and the corrupted view ``z~_k``,

        L = (1/N) sum_i -log( exp(s_ii / tau) / sum_k exp(s_ik / tau) )

    one direction only (the anchors are not candidates of each other). This is the in-batch
    InfoNCE of MoCo v3 without its ``2 tau`` factor, so it is computed by
    :func:`selfsup.losses.moco.moco_v3_loss` divided by ``2 tau``.

    Args:
        anchor: projections of the clean rows ``[N, D]``.
        corrupted: projections of their corrupted views ``[N, D]``; row ``i`` is the positive of
            ``anchor[i]``, every other row a negative.
        temperature: tau > 0 (1.0 in the paper).

    Returns:
        scalar loss.
    """
    return moco_v3_loss(anchor, corrupted, temperature) / (2 * temperature)


def mask_estimation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """VIME's mask estimation loss: binary cross-entropy per entry, averaged.

    Yoon, Zhang, Jordon, van der Schaar 2020, "VIME: Extending the Success of Self- and
    Semi-supervised Learning to Tabular Domain", NeurIPS 2020, sec. 4.1:
    ``l_m = -(1/d) sum_j [m_j log m^_j + (1 - m_j) log(1 - m^_j)]`` with ``m^ = sigmoid(logits)``,
    averaged over the rows.

    Args:
        logits: the mask estimator's outputs ``[N, F]`` (before the sigmoid).
        mask: 1 where the entry was replaced, 0 where it is the row's own ``[N, F]`` (bool or float).

    Returns:
        scalar loss.
    """
    if logits.shape != mask.shape or logits.ndim != 2:
        raise ValueError(f"logits and mask must both be [N, F]; got {tuple(logits.shape)} and {tuple(mask.shape)}")
    return F.binary_cross_entropy_with_logits(logits, mask.to(logits.dtype))


def mixed_reconstruction_loss(
    prediction: torch.Tensor, target: torch.Tensor, cardinalities: Sequence[int]
) -> torch.Tensor:
    """Reconstruction of a table row, column by column: squared error on numeric columns,
    cross-entropy over ``K + 1`` classes on categorical ones, averaged over the observed entries.

    VIME (Yoon et al. 2020, NeurIPS, sec. 4.1), the feature vector estimator's loss
    ``l_r = (1/d) sum_j l(x_j, x^_j)``: squared error for continuous features, cross-entropy for
    categorical ones; SubTab (Ucar et al. 2021, arXiv 2110.04361) reconstructs the whole row from
    each subset (squared error there; the categorical term is VIME's).

    Args:
        prediction: ``[N, P]``, column after column: one value per numeric column, ``K + 1``
            logits per categorical column (:func:`column_slots`).
        target: ``[N, F]``: numeric columns standardised, categorical columns the class index
            ``0 .. K`` (``K``: missing). NaN marks an entry with no target (a missing numeric
            value): it counts nowhere.
        cardinalities: per column, ``K`` (0 for numeric), ``F`` of them.

    Returns:
        scalar loss: the mean of the per-entry losses over the entries with a target (0 when
        there is none).
    """
    slots = column_slots(cardinalities)
    if target.ndim != 2 or target.shape[1] != len(slots):
        raise ValueError(f"target must be [N, {len(slots)}] (one column per cardinality); got {tuple(target.shape)}")
    if prediction.shape != (target.shape[0], sum(slots)):
        raise ValueError(f"prediction must be [N, P] = {(target.shape[0], sum(slots))}; got {tuple(prediction.shape)}")
    starts = torch.tensor([0, *slots[:-1]]).cumsum(0).tolist()
    observed = ~torch.isnan(target)
    filled = torch.where(observed, target, torch.zeros_like(target))  # no NaN inside a difference (its gradient)
    numeric = [j for j, k in enumerate(cardinalities) if k == 0]
    categorical = [j for j, k in enumerate(cardinalities) if k > 0]
    errors, order = [], []
    if numeric:
        where = torch.tensor([starts[j] for j in numeric], device=prediction.device)
        columns = torch.tensor(numeric, device=prediction.device)
        errors.append((prediction.index_select(1, where) - filled.index_select(1, columns)).pow(2))  # [N, F_num]
        order += numeric
    for j in categorical:
        k = int(cardinalities[j])
        classes = filled[:, j].round().long().clamp(0, k)
        logits = prediction[:, starts[j] : starts[j] + k + 1]
        errors.append(F.cross_entropy(logits, classes, reduction="none")[:, None])  # [N, 1]
        order.append(j)
    per_entry = torch.cat(errors, dim=1)  # [N, F], columns in `order`
    valid = observed[:, order]
    per_entry = torch.where(valid, per_entry, torch.zeros_like(per_entry))
    return per_entry.sum() / valid.sum().clamp(min=1)


def _pairs(projections: torch.Tensor | Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    views = list(projections)
    if len(views) < 2 or len({tuple(z.shape) for z in views}) != 1 or views[0].ndim != 2:
        raise ValueError(f"need at least 2 subsets' projections [N, D] of one shape; got {[tuple(z.shape) for z in views]}")
    return list(combinations(views, 2))


def subset_contrastive_loss(projections: torch.Tensor | Sequence[torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    """SubTab's contrastive loss: NT-Xent (:func:`selfsup.losses.contrastive.info_nce`) between
    the projections of every pair of subsets, averaged over the pairs.

    Ucar, Hajiramezanali, Edwards 2021, "SubTab: Subsetting Features of Tabular Data for
    Self-Supervised Representation Learning", NeurIPS 2021, arXiv 2110.04361, sec. 3: the
    subsets of one row are positives, every other projection of the pair's ``2N`` a negative;
    the total is the mean over the ``S (S - 1) / 2`` pairs.

    Args:
        projections: ``S >= 2`` subsets' projections, ``[S, N, D]`` or a sequence of ``[N, D]``.
        temperature: tau > 0 (0.1 in the paper's settings).
    """
    pairs = _pairs(projections)
    return torch.stack([info_nce(a, b, temperature) for a, b in pairs]).mean()


def subset_distance_loss(projections: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """SubTab's distance loss: the squared Euclidean distance between the projections of the two
    subsets of each pair, summed over the ``D`` dimensions, averaged over the rows and the pairs
    (``(1/N) sum_i ||z_a,i - z_b,i||^2``; SubTab applies it to L2-normalised projections).

    Args:
        projections: ``S >= 2`` subsets' projections, ``[S, N, D]`` or a sequence of ``[N, D]``.
    """
    pairs = _pairs(projections)
    return torch.stack([(a - b).pow(2).sum(dim=1).mean() for a, b in pairs]).mean()


__all__ = [
    "column_slots", "mask_estimation_loss", "mixed_reconstruction_loss", "scarf_loss", "subset_contrastive_loss",
    "subset_distance_loss",
]
