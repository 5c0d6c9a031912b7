"""Clustering losses: learn by predicting balanced cluster assignments (codes) across views."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Balanced soft assignments of ``B`` samples to ``K`` prototypes (SwAV's codes).

    Caron, Misra, Mairal, Goyal, Bojanowski, Joulin 2020, "Unsupervised Learning of Visual Features
    by Contrasting Cluster Assignments", arXiv 2006.09882, sec. 3.1: the codes ``Q`` maximise
    ``Tr(Q^T C^T Z) + epsilon H(Q)`` over the transportation polytope where every prototype
    receives ``1/K`` of the mass and every sample carries ``1/B``; the solution is
    ``Diag(u) exp(scores / epsilon) Diag(v)``, found by alternately rescaling prototype and
    sample marginals (Sinkhorn-Knopp, ``iterations`` rounds, the paper's 3). A round ends with the
    sample marginals exact (each row sums to ``1/B``); the prototype marginals approach ``1/K``
    as the rounds go. The result is multiplied by ``B``, so each sample's code sums to 1 and each
    prototype gets about ``B/K`` of the batch.

    Runs in the log domain (the same iterates as the paper's ``exp`` form, without overflow for
    small ``epsilon``) and in at least float32. The paper's first step, dividing ``Q`` by its
    total, is dropped: the first prototype rescaling removes any global factor.

    Sums run over the rows given: in distributed runs pass the scores of the global batch (SwAV
    here gathers the embeddings with ``gather_with_grad`` before computing the scores).

    Args:
        scores: similarities of samples to prototypes ``[B, K]`` (no gradient is taken).
        epsilon: entropy weight; smaller gives sharper codes (0.05 in the paper).
        iterations: Sinkhorn rounds (3 in the paper).

    Returns:
        codes ``[B, K]``, rows summing to 1.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be [B, K]; got shape {tuple(scores.shape)}")
    if epsilon <= 0 or iterations < 1:
        raise ValueError(f"need epsilon > 0 and iterations >= 1; got epsilon={epsilon}, iterations={iterations}")
    B, K = scores.shape
    work = scores if scores.dtype == torch.float64 else scores.float()
    log_q = work / epsilon
    for _ in range(iterations):
        # Every prototype (column) gets total mass 1/K ...
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(K)
        # ... then every sample (row) carries 1/B.
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(B)
    return (log_q + math.log(B)).exp().to(scores.dtype)


def swav_loss(
    scores: list[torch.Tensor] | tuple[torch.Tensor, ...],
    codes: list[torch.Tensor] | tuple[torch.Tensor, ...],
    temperature: float = 0.1,
) -> torch.Tensor:
    """SwAV's swapped prediction over all crops.

    Caron et al. 2020, arXiv 2006.09882, eq. (1)-(2) with multi-crop (sec. 3.2): the code ``q_s``
    of view ``s`` (computed from a global view, without gradient) is predicted from every other
    view ``t`` by ``p_t = softmax(z_t^T C / temperature)``, with the cross-entropy
    ``l(z_t, q_s) = -sum_k q_s^(k) log p_t^(k)``. Each code's losses are averaged over the other
    ``V - 1`` views and over the batch, then over the codes (as in the authors' code).

    Args:
        scores: ``V`` tensors ``[B, K]``, prototype scores ``z^T C`` of every view, global views
            first (row ``i`` of each belongs to sample ``i``).
        codes: one ``[B, K]`` tensor per view that gives codes, in the same order as the first
            ``len(codes)`` entries of ``scores`` (SwAV: the 2 global views).
        temperature: softmax temperature (0.1 in the paper).

    Returns:
        scalar loss.
    """
    if len(codes) < 1 or len(scores) < 2 or len(codes) > len(scores):
        raise ValueError(f"need 1 <= len(codes) <= len(scores) and len(scores) >= 2; got {len(codes)}, {len(scores)}")
    log_probs = [F.log_softmax(s / temperature, dim=1) for s in scores]
    total = scores[0].new_zeros((), dtype=log_probs[0].dtype)
    for s, q in enumerate(codes):
        q = q.detach()
        per_code = sum(-(q * log_probs[t]).sum(dim=1).mean() for t in range(len(scores)) if t != s)
        total = total + per_code / (len(scores) - 1)
    return total / len(codes)
