"""Losses of momentum-contrast (MoCo v2, v3) and nearest-neighbour contrastive (NNCLR) methods.

Pure functions of embeddings. The queue of MoCo v2 and the support set of NNCLR are state: they
live in a :class:`selfsup.losses.memory.FeatureQueue` held by the method and are passed in here as
plain tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{names} must both be [N, D]; got {tuple(a.shape)} and {tuple(b.shape)}")


def moco_loss(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE of each query against its key (positive) and a queue of past keys (negatives).

    He, Fan, Wu, Xie, Girshick 2020, "Momentum Contrast for Unsupervised Visual Representation
    Learning", arXiv 1911.05722, eq. (1); temperature 0.2 as in MoCo v2 (Chen, Fan, Girshick, He
    2020, arXiv 2003.04297). For query ``q_i`` the logits are ``[q_i . k_i, q_i . queue_1, ...,
    q_i . queue_K] / tau`` on L2-normalised vectors and the positive is index 0:
    ``-log exp(q_i.k_i/tau) / (exp(q_i.k_i/tau) + sum_j exp(q_i.queue_j/tau))``, averaged over i.
    Other keys of the batch are not negatives (they enter the queue after the step).

    Args:
        query: query-encoder projections ``[N, D]``.
        key: key (momentum) encoder projections ``[N, D]``; row ``i`` is the positive of
            ``query[i]``. Callers pass keys without gradient.
        queue: negative keys ``[K, D]``.
        temperature: tau > 0.

    Returns:
        scalar loss.
    """
    _check_pair(query, key, "query and key")
    if queue.ndim != 2 or queue.shape[1] != query.shape[1]:
        raise ValueError(f"queue must be [K, {query.shape[1]}]; got {tuple(queue.shape)}")
    q, k = F.normalize(query, dim=1), F.normalize(key, dim=1)
    negatives = F.normalize(queue.to(q.dtype), dim=1)
    positive_logits = (q * k).sum(dim=1, keepdim=True)  # [N, 1]
    negative_logits = q @ negatives.T  # [N, K]
    logits = torch.cat([positive_logits, negative_logits], dim=1) / temperature  # [N, 1 + K]
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # the positive is column 0
    return F.cross_entropy(logits, targets)


def moco_v3_loss(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo v3's contrastive loss: in-batch InfoNCE of queries against keys, scaled by ``2 tau``.

    Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
    arXiv 2104.02057, eq. (1) and Algorithm 1 (``ctr``). Query ``q_i`` has key ``k_i`` as positive
    and the N - 1 other keys of the (gathered) batch as negatives; the cross entropy is multiplied
    by ``2 tau``, as in the paper's pseudocode, which makes the gradient's scale independent of
    tau. The method sums ``ctr(q1, k2) + ctr(q2, k1)``.

    Args:
        query: predictions of the query branch ``[N, D]``.
        key: momentum-encoder projections ``[N, D]`` (no gradient); row ``i`` is the positive.
        temperature: tau > 0.

    Returns:
        scalar loss.
    """
    _check_pair(query, key, "query and key")
    q, k = F.normalize(query, dim=1), F.normalize(key, dim=1)
    logits = q @ k.T / temperature  # [N, N]; the positives are on the diagonal
    targets = torch.arange(q.shape[0], device=q.device)
    return 2 * temperature * F.cross_entropy(logits, targets)


def nearest_neighbour(z: torch.Tensor, support: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's nearest neighbour (highest cosine similarity) in a support set.

    Dwibedi, Aytar, Tompson, Sermanet, Zisserman 2021, "With a Little Help from My Friends:
    Nearest-Neighbor Contrastive Learning of Visual Representations", arXiv 2104.14548, eq. (2):
    ``NN(z, Q) = argmin_{q in Q} ||z - q||`` on L2-normalised vectors, i.e. the highest cosine.
    A hard selection: no gradient flows to ``z`` or ``support``.

    Args:
        z: queries ``[N, D]``.
        support: the support set ``[K, D]``.
        valid: optional ``[K]`` bool mask; rows where it is False are never chosen (slots of a
            support set not written yet). At least one row must be valid.

    Returns:
        the chosen support rows, as stored, ``[N, D]``.
    """
    if z.ndim != 2 or support.ndim != 2 or z.shape[1] != support.shape[1]:
        raise ValueError(f"z [N, D] and support [K, D] must share D; got {tuple(z.shape)} and {tuple(support.shape)}")
    with torch.no_grad():
        similarity = F.normalize(z, dim=1) @ F.normalize(support.to(z.dtype), dim=1).T  # [N, K]
        if valid is not None:
            similarity = similarity.masked_fill(~valid.to(torch.bool), float("-inf"))
        index = similarity.argmax(dim=1)  # [N]
    return support[index].detach()


def nnclr_loss(neighbour: torch.Tensor, prediction: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NNCLR's InfoNCE: the nearest neighbour of view 1 against the predictions of view 2.

    Dwibedi et al. 2021, arXiv 2104.14548, eq. (2):
    ``L_i = -log exp(NN(z_i) . p_i / tau) / sum_k exp(NN(z_i) . p_k / tau)`` on L2-normalised
    vectors, where ``p_k`` is the prediction-head output of the other view of sample k; the
    negatives are the other samples' predictions in the (gathered) batch. The method symmetrises
    over the two views.

    Args:
        neighbour: nearest neighbours of the first view's projections ``[N, D]`` (no gradient).
        prediction: predictions from the second view ``[N, D]``; row ``i`` is the positive.
        temperature: tau > 0.

    Returns:
        scalar loss.
    """
    _check_pair(neighbour, prediction, "neighbour and prediction")
    a, b = F.normalize(neighbour.to(prediction.dtype), dim=1), F.normalize(prediction, dim=1)
    logits = a @ b.T / temperature  # [N, N]; row i's positive is column i
    targets = torch.arange(a.shape[0], device=a.device)
    return F.cross_entropy(logits, targets)
