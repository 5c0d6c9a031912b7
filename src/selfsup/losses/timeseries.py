"""Contrastive losses on timestamp-level representations of series.

TS2Vec's hierarchical contrastive loss: Yue, Wang, Duan, Yang, Huang, Tong, Xu 2022, "TS2Vec:
Towards Universal Representation of Time Series", AAAI 2022, arXiv 2106.10466, sec. 3.3
(eqs. 1-3) and Algorithm 1.

The two inputs are the representations of the SAME timestamps (the overlap of two crops) seen in
two different contexts. Two InfoNCE-style losses use them, with raw dot products (no
normalisation, no temperature), as in the paper:

- temporal: for sample i, the representation at timestamp t in view 1 must pick the one at t in
  view 2 among all 2T - 1 other timestamps of sample i (both views);
- instance-wise: at timestamp t, sample i's representation in view 1 must pick sample i's in
  view 2 among all 2B - 1 other representations at t (every sample, both views).

Both are computed at every scale of a max-pooling pyramid (kernel 2 along time) until one
timestamp is left, and averaged over the scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def paired_contrastive_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """InfoNCE over G independent groups of K pairs, with dot-product similarities.

    In group g the 2K candidates are ``a[g, 0..K-1]`` and ``b[g, 0..K-1]``; the anchor
    ``a[g, k]`` has its positive ``b[g, k]`` and vice versa, and the other 2K - 2 candidates of
    the group are its negatives (the anchor itself is left out of its softmax). The loss is the
    mean of ``-log softmax`` of the positive over all 2GK anchors (both directions, as in the
    TS2Vec reference code, which averages the two).

    Args:
        a: ``[G, K, D]``.
        b: ``[G, K, D]``.

    Returns:
        scalar loss; 0 when K = 1 (the positive is the only candidate).
    """
    G, K, _ = a.shape
    z = torch.cat([a, b], dim=1)  # [G, 2K, D]: rows 0..K-1 from a, K..2K-1 from b
    logits = z @ z.transpose(1, 2)  # [G, 2K, 2K] dot products
    # An anchor is not its own candidate. In place: the product's backward needs only z, and
    # for long series (2K = 2T up to 6000) each [G, 2K, 2K] copy is large.
    logits.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
    positives = (torch.arange(2 * K, device=z.device) + K) % (2 * K)  # a[k] <-> b[k]
    return F.cross_entropy(logits.reshape(G * 2 * K, 2 * K), positives.repeat(G))


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's instance-wise contrastive loss (arXiv 2106.10466, eq. 2), both directions.

    At each timestamp t the 2B representations of the batch compete: sample i's representation
    in one view must identify the same sample's in the other view.

    Args:
        z1: ``[B, T, D]`` representations of the overlapping timestamps in view 1.
        z2: ``[B, T, D]`` the same timestamps in view 2.

    Returns:
        scalar; 0 when B = 1 (no negatives).
    """
    return paired_contrastive_loss(z1.transpose(0, 1), z2.transpose(0, 1))  # groups: timestamps


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's temporal contrastive loss (arXiv 2106.10466, eq. 1), both directions.

    Within each sample the 2T timestamp representations compete: timestamp t in one view must
    identify timestamp t in the other view.

    Args:
        z1: ``[B, T, D]``.
        z2: ``[B, T, D]``.

    Returns:
        scalar; 0 when T = 1 (no negatives).
    """
    return paired_contrastive_loss(z1, z2)  # groups: samples


def hierarchical_contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5, temporal_unit: int = 0
) -> torch.Tensor:
    """TS2Vec's hierarchical contrastive loss (Yue et al. 2022, arXiv 2106.10466, Algorithm 1).

    At scale s = 0, 1, ... the loss is ``alpha * instance + (1 - alpha) * temporal`` on the
    current representations, which are then max-pooled along time with kernel 2 (an odd last
    timestamp is dropped, as ``max_pool1d`` does); at the last scale (one timestamp left) only the
    instance term is added, since a single timestamp has no temporal negatives. The result is
    the sum divided by the number of scales. The temporal term starts at scale ``temporal_unit``
    (earlier scales contribute only their instance term but still count as scales), which saves
    time and memory on long series.

    The paper's eq. 3 weights the two terms equally (``alpha = 0.5`` up to a factor 2) and writes
    them for anchors in view 1; like the reference code, anchors from both views are averaged.
    Similarities are raw dot products. Computed in float32 even under autocast: the logits are
    unnormalised dot products of 320-d features, too coarse in bfloat16.

    Args:
        z1: ``[B, T, D]`` timestamp representations of the overlapping segment in view 1.
        z2: ``[B, T, D]`` the same timestamps in view 2; ``z1[i, t]`` and ``z2[i, t]`` are
            positives.
        alpha: weight of the instance-wise term, ``1 - alpha`` of the temporal term (in [0, 1]).
        temporal_unit: first scale at which the temporal term is used (>= 0).

    Returns:
        scalar loss.

    Raises:
        ValueError: if the shapes differ, are not 3-d, or have no timestamp; if ``alpha`` is
            outside [0, 1] or ``temporal_unit`` is negative.
    """
    if z1.shape != z2.shape or z1.ndim != 3 or z1.shape[1] < 1 or z1.shape[0] < 1:
        raise ValueError(f"z1 and z2 must both be [B, T, D] with B, T >= 1; got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temporal_unit < 0:
        raise ValueError(f"temporal_unit must be >= 0, got {temporal_unit}")
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z1, z2 = z1.float(), z2.float()
        total = z1.new_zeros(())
        scales = 0
        while True:
            T = z1.shape[1]
            if alpha > 0:
                total = total + alpha * instance_contrastive_loss(z1, z2)
            if T > 1 and scales >= temporal_unit and alpha < 1:
                total = total + (1 - alpha) * temporal_contrastive_loss(z1, z2)
            scales += 1
            if T == 1:
                break
            # Next scale: max over pairs of neighbouring timestamps, [B, T, D] -> [B, T // 2, D].
            z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
            z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
        return total / scales
