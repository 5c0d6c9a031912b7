"""Contrastive losses."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent / InfoNCE over the 2N views of a batch (SimCLR).

    Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations", arXiv 2002.05709, eq. (1). Each of the 2N embeddings has one positive (the
    other view of its sample) and 2N - 2 negatives (every other embedding in the batch); the loss
    is the mean over all 2N anchors of ``-log softmax`` of the positive's cosine similarity / tau.

    Args:
        z1: first view's embeddings ``[N, D]``.
        z2: second view's embeddings ``[N, D]``; row ``i`` is the positive of ``z1[i]``.
        temperature: tau > 0.

    Returns:
        scalar loss.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be [N, D]; got {tuple(z1.shape)} and {tuple(z2.shape)}")
    N = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D]
    logits = z @ z.T / temperature  # [2N, 2N] cosine similarities / tau
    # An anchor is never its own negative: remove the diagonal from the softmax.
    self_mask = torch.eye(2 * N, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    # Anchor i (first view) has its positive at i + N, anchor i + N at i.
    targets = torch.cat([torch.arange(N, 2 * N), torch.arange(0, N)]).to(z.device)
    return F.cross_entropy(logits, targets)


# --------------------------------------------------------------------------- helpers


def _check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be [N, D]; got {tuple(z1.shape)} and {tuple(z2.shape)}")


def _stack_views(zs: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``[V, N, D]`` from a tensor of that shape or a sequence of V ``[N, D]`` tensors."""
    if isinstance(zs, (list, tuple)):
        shapes = {tuple(z.shape) for z in zs}
        if len(zs) == 0 or len(shapes) != 1 or zs[0].ndim != 2:
            raise ValueError(f"views must be [N, D] tensors of one shape; got {[tuple(z.shape) for z in zs]}")
        zs = torch.stack(list(zs))
    if zs.ndim != 3:
        raise ValueError(f"views must be [V, N, D]; got {tuple(zs.shape)}")
    return zs


# --------------------------------------------------------------------------- DCL / DCLW


def dclw_weight(z1: torch.Tensor, z2: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """The negative von Mises-Fisher weighting of DCLW: one weight per positive pair ``[N]``.

    Yeh, Hong, Hsu, Liu, Chen, LeCun 2022, "Decoupled Contrastive Learning", arXiv 2110.06848,
    the weighted loss DCLW: ``w_i = 2 - exp(<z1_i, z2_i> / sigma) / mean_j exp(<z1_j, z2_j> / sigma)``
    with unit-normalised embeddings, i.e. ``2 - N * softmax_i(cos_i / sigma)``. The weights
    average to 1; pairs that are already close (easy) get less than 1, hard pairs more. The
    weights are not detached (as in the public reference implementations of DCLW).

    Args:
        z1: first view's embeddings ``[N, D]``.
        z2: second view's embeddings ``[N, D]``.
        sigma: concentration of the vMF weighting (0.5 in the paper).
    """
    _check_pair(z1, z2)
    cos = (F.normalize(z1, dim=1) * F.normalize(z2, dim=1)).sum(dim=1)  # [N]
    return 2.0 - z1.shape[0] * torch.softmax(cos / sigma, dim=0)


def dcl_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    weight_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Decoupled contrastive loss (DCL; DCLW with a weighting function).

    Yeh et al. 2022, "Decoupled Contrastive Learning", arXiv 2110.06848, the decoupled loss
    L_DC: InfoNCE with the positive pair removed from the denominator. For anchor ``i`` of
    view ``k``:

        L_i^(k) = -w_i <z_i^(1), z_i^(2)> / tau + log sum_{l in {1,2}, j != i} exp(<z_i^(k), z_j^(l)> / tau)

    (cosine similarities), averaged over all 2N anchors. Removing the positive from the
    denominator removes the negative-positive coupling factor that shrinks InfoNCE's gradient
    when the positive is easy or the batch is small. ``w_i = 1`` for DCL; DCLW passes
    ``weight_fn=dclw_weight``.

    Args:
        z1: first view's embeddings ``[N, D]``, N >= 2 (an anchor needs a negative).
        z2: second view's embeddings ``[N, D]``; row ``i`` is the positive of ``z1[i]``.
        temperature: tau > 0.
        weight_fn: ``(z1, z2) -> [N]`` weights of the positive terms (DCLW), or None.

    Returns:
        scalar loss.
    """
    _check_pair(z1, z2)
    N = z1.shape[0]
    if N < 2:
        raise ValueError("dcl_loss needs N >= 2: with one sample an anchor has no negative")
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D]
    logits = z @ z.T / temperature  # [2N, 2N]
    # Anchor a (sample a mod N) excludes itself and its positive: both are the same sample.
    sample = torch.arange(2 * N, device=z.device) % N
    same_sample = sample[:, None] == sample[None, :]
    negatives = torch.logsumexp(logits.masked_fill(same_sample, float("-inf")), dim=1)  # [2N]
    positive = (z[:N] * z[N:]).sum(dim=1) / temperature  # [N], shared by both anchors of a pair
    if weight_fn is not None:
        positive = positive * weight_fn(z1, z2)
    return negatives.mean() - positive.mean()


# --------------------------------------------------------------------------- NT-Xent-AM


def ntxent_am_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, margin: float = 0.1
) -> torch.Tensor:
    """NT-Xent with an additive margin on the positive pair's cosine similarity (NT-Xent-AM).

    Lepage, Dehak 2024, "Additive Margin in Contrastive Self-Supervised Frameworks to Learn
    Discriminative Speaker Representations", arXiv 2404.14913, the NT-Xent-AM loss: SimCLR's
    symmetric NT-Xent over the 2N views where the positive logit ``cos(z_i, z_i+) / tau`` becomes
    ``(cos(z_i, z_i+) - margin) / tau``, as in AM-Softmax / CosFace; negatives are unchanged.
    The positive must beat every negative by ``margin`` in cosine before the loss is satisfied.
    ``margin = 0`` gives :func:`info_nce` exactly.

    Args:
        z1: first view's embeddings ``[N, D]``.
        z2: second view's embeddings ``[N, D]``; row ``i`` is the positive of ``z1[i]``.
        temperature: tau > 0.
        margin: m, subtracted from the positive cosine similarity.

    Returns:
        scalar loss.
    """
    _check_pair(z1, z2)
    N = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D]
    logits = z @ z.T  # [2N, 2N] cosine similarities
    self_mask = torch.eye(2 * N, dtype=torch.bool, device=z.device)
    targets = torch.cat([torch.arange(N, 2 * N), torch.arange(0, N)]).to(z.device)
    # The margin only on each anchor's positive entry: [2N, 2N] with margin at (a, targets[a]).
    margins = torch.zeros_like(logits)
    margins[torch.arange(2 * N, device=z.device), targets] = margin
    logits = (logits - margins) / temperature
    logits = logits.masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(logits, targets)


# --------------------------------------------------------------------------- MV-InfoNCE


def multiview_info_nce(
    zs: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...], temperature: float = 0.5
) -> torch.Tensor:
    """MV-InfoNCE: one InfoNCE term per instance over all of its V views.

    Koromilas, Georgiou, Bouritsas, Giannakopoulos, Nicolaou, Panagakis 2025, "A Principled
    Framework for Multi-View Contrastive Learning", arXiv 2507.06979, Sec. IV (MV-InfoNCE), as
    in the authors' reference implementation. With unit embeddings ``u_{i,l}`` (instance i,
    view l) and ``s(a, b) = <a, b> / tau``:

        L = -1/N sum_i log [ sum_{l != l'} exp s(u_il, u_il')
                             / sum_l sum_{(j,m) != (i,l)} exp s(u_il, u_jm) ]

    The numerator aligns every ordered pair of the instance's views at once; the denominator is
    the energy of every view of the instance against every other embedding in the batch (the
    other views of the same instance included, as InfoNCE's denominator includes its positive).
    One term per instance, not an average of pairwise losses. For V = 2 the loss is
    ``-log(e^{s_i} / mean(D_i1, D_i2))`` with ``D`` the SimCLR denominators of the two anchors:
    at least :func:`info_nce` (arithmetic vs geometric mean), equal when ``D_i1 = D_i2``.

    Args:
        zs: the views ``[V, N, D]`` (or a list of V ``[N, D]``), V >= 2; row i of each is instance i.
        temperature: tau > 0.

    Returns:
        scalar loss.
    """
    zs = _stack_views(zs)
    V, N, D = zs.shape
    if V < 2:
        raise ValueError(f"multiview_info_nce needs at least 2 views; got {V}")
    z = F.normalize(zs.reshape(V * N, D), dim=1)  # row l * N + i is view l of instance i
    logits = z @ z.T / temperature  # [VN, VN]
    self_mask = torch.eye(V * N, dtype=torch.bool, device=z.device)
    instance = torch.arange(V * N, device=z.device) % N
    positive_mask = (instance[:, None] == instance[None, :]) & ~self_mask
    energy = logits.masked_fill(self_mask, float("-inf"))
    alignment = logits.masked_fill(~positive_mask, float("-inf"))
    # Regroup the rows by instance, [V, N, VN] -> [N, V * VN], and sum each instance's terms.
    log_energy = torch.logsumexp(energy.reshape(V, N, V * N).transpose(0, 1).reshape(N, -1), dim=1)
    log_alignment = torch.logsumexp(alignment.reshape(V, N, V * N).transpose(0, 1).reshape(N, -1), dim=1)
    return (log_energy - log_alignment).mean()


# --------------------------------------------------------------------------- SupCon


def supcon_loss(
    zs: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Supervised contrastive loss, L^sup_out.

    Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan 2020, "Supervised
    Contrastive Learning", arXiv 2004.11362, eq. (2). Every one of the V * N embeddings is an
    anchor; its positives P(i) are all other embeddings with the same label (the other views of
    its sample included), its denominator A(i) every other embedding:

        L = mean_i  -1/|P(i)| sum_{p in P(i)} log [ exp(z_i . z_p / tau) / sum_{a in A(i)} exp(z_i . z_a / tau) ]

    (unit embeddings; the 1/|P(i)| sits outside the log, the "out" variant the paper found
    best). With all labels distinct and V = 2 it is SimCLR's NT-Xent (:func:`info_nce`).
    Anchors with no positive (V = 1 and a label seen once) are left out of the mean.

    Args:
        zs: the views ``[V, N, D]`` (or a list of V ``[N, D]``); row i of each is sample i.
        labels: class of each sample ``[N]`` (int).
        temperature: tau > 0 (0.1 in the paper).

    Returns:
        scalar loss.
    """
    zs = _stack_views(zs)
    V, N, D = zs.shape
    if labels.shape != (N,):
        raise ValueError(f"labels must be [N] = [{N}]; got {tuple(labels.shape)}")
    z = F.normalize(zs.reshape(V * N, D), dim=1)  # row l * N + i is view l of sample i
    logits = z @ z.T / temperature  # [VN, VN]
    self_mask = torch.eye(V * N, dtype=torch.bool, device=z.device)
    log_prob = torch.log_softmax(logits.masked_fill(self_mask, float("-inf")), dim=1)
    y = labels.to(z.device).repeat(V)
    positive_mask = (y[:, None] == y[None, :]) & ~self_mask
    num_positives = positive_mask.sum(dim=1)  # [VN]; >= V - 1, so only V = 1 can leave it at 0
    if V == 1 and not bool((num_positives > 0).any()):  # a host sync, but never with V >= 2
        raise ValueError("supcon_loss: no anchor has a positive (one view and every label distinct)")
    # masked_fill before the sum: log_prob is -inf on the diagonal, and 0 * -inf would be nan.
    positive_log_prob = log_prob.masked_fill(~positive_mask, 0.0).sum(dim=1)
    has_positive = (num_positives > 0).to(z.dtype)
    per_anchor = -positive_log_prob / num_positives.clamp(min=1)
    return (per_anchor * has_positive).sum() / has_positive.sum()
