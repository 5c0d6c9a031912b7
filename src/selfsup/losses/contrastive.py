"""Contrastive losses."""

from __future__ import annotations

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
