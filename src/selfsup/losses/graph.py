"""Losses of the graph methods: GRACE, BGRL, DGI, GraphMAE.

Each is a pure function of node (or graph) embeddings. ``N`` counts the samples scored (the
batch's sample nodes, or graphs), ``D`` the embedding width, ``F`` the node features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.data.graph_batch import pool_graphs
from selfsup.losses.contrastive import info_nce


def grace_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """GRACE's node-level contrastive objective, symmetric in the two views.

    Zhu, Xu, Yu, Liu, Wu, Wang 2020, "Deep Graph Contrastive Representation Learning", arXiv
    2006.04131, eq. (1)-(2). With ``u_i = z1[i]``, ``v_i = z2[i]`` and ``s`` the cosine similarity
    divided by ``temperature``::

        l(u_i, v_i) = -log  e^{s(u_i, v_i)} / ( e^{s(u_i, v_i)}                   positive
                                              + sum_{k != i} e^{s(u_i, v_k)}      inter-view negatives
                                              + sum_{k != i} e^{s(u_i, u_k)} )    intra-view negatives
        J = 1 / (2N) sum_i [ l(u_i, v_i) + l(v_i, u_i) ]

    Every one of the 2N projections is an anchor whose candidates are the 2N - 1 others: the
    same sum as SimCLR's NT-Xent, so this is :func:`~selfsup.losses.contrastive.info_nce` (the
    test checks it against a loop written from GRACE's formula).

    Args:
        z1: first view's projections ``[N, P]`` (row ``i``: node ``i``).
        z2: second view's projections ``[N, P]``; row ``i`` is the positive of ``z1[i]``.
        temperature: tau > 0 (0.4 on Cora in the paper's code).

    Returns:
        scalar, the mean over the 2N anchors.
    """
    return info_nce(z1, z2, temperature)


def bgrl_loss(q1: torch.Tensor, q2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """BGRL's symmetric cosine loss: each view's prediction against the other view's target.

    Thakoor, Tallec, Azar, Azabou, Dyer, Munos, Velickovic, Valko 2022, "Large-Scale
    Representation Learning on Graphs via Bootstrapping", ICLR 2022, arXiv 2102.06514, sec. 3:
    ``2 - mean_i cos(q1_i, y2_i) - mean_i cos(q2_i, y1_i)``. No negatives. The targets are used
    as given: the method passes the target encoder's outputs, which carry no gradient.

    Args:
        q1: online predictions of view 1 ``[N, D]``; ``q2`` of view 2.
        y1: target embeddings of view 1 ``[N, D]``; ``y2`` of view 2.

    Returns:
        scalar in ``[0, 4]``, 0 when every prediction points along its target.
    """
    if not (q1.shape == q2.shape == y1.shape == y2.shape) or q1.ndim != 2:
        raise ValueError(
            f"predictions and targets must all be [N, D]; got {[tuple(t.shape) for t in (q1, q2, y1, y2)]}"
        )
    return 2.0 - F.cosine_similarity(q1, y2, dim=-1).mean() - F.cosine_similarity(q2, y1, dim=-1).mean()


def dgi_summary(h: torch.Tensor, node_graph: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """DGI's readout: ``s = sigmoid(mean of a graph's node embeddings)``, one row per graph.

    Velickovic et al. 2019, arXiv 1809.10341, sec. 3.4 (eq. 5 without the learned parts).

    Args:
        h: node embeddings ``[n, D]``.
        node_graph: ``[n]`` the graph of each node.
        num_graphs: ``G``.

    Returns:
        ``[G, D]`` in ``(0, 1)``.
    """
    return torch.sigmoid(pool_graphs(h, node_graph, num_graphs, "mean"))


def dgi_loss(
    h: torch.Tensor, h_corrupted: torch.Tensor, summary: torch.Tensor, weight: torch.Tensor,
    bias: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """DGI's local-global objective: binary cross-entropy of a bilinear discriminator.

    Velickovic, Fedus, Hamilton, Lio, Bengio, Hjelm 2019, "Deep Graph Infomax", ICLR 2019, arXiv
    1809.10341, eq. (1) and (6): ``D(h, s) = sigmoid(h^T W s + b)``; with N positive pairs
    ``(h_i, s_i)`` and N negative pairs ``(h~_i, s_i)``::

        L = -1 / (2N) sum_i [ log D(h_i, s_i) + log(1 - D(h~_i, s_i)) ]

    Args:
        h: embeddings of the scored nodes in the real graph ``[N, D]``.
        h_corrupted: the same positions' embeddings in the corrupted graph ``[N, D]``.
        summary: the summary each pair is scored against ``[N, D]`` (its graph's readout).
        weight: the discriminator's bilinear form ``W [D, D]``.
        bias: its scalar bias ``b``.

    Returns:
        scalar: the mean of the 2N binary cross-entropies (``log 2`` for a discriminator that
        answers 1/2 everywhere).
    """
    if not (h.shape == h_corrupted.shape == summary.shape) or h.ndim != 2:
        raise ValueError(
            f"h, h_corrupted and summary must all be [N, D]; got {[tuple(t.shape) for t in (h, h_corrupted, summary)]}"
        )
    ws = summary @ weight.T  # [N, D]: W s_i, so h_i . (W s_i) = h_i^T W s_i
    positive = (h * ws).sum(dim=-1) + bias  # [N] logits of the real pairs
    negative = (h_corrupted * ws).sum(dim=-1) + bias  # [N] logits of the corrupted pairs
    logits = torch.cat([positive, negative])
    labels = torch.cat([torch.ones_like(positive), torch.zeros_like(negative)])
    return F.binary_cross_entropy_with_logits(logits, labels)


def scaled_cosine_error(
    reconstruction: torch.Tensor, target: torch.Tensor, masked: torch.Tensor, gamma: float = 2.0
) -> torch.Tensor:
    """GraphMAE's scaled cosine error over the masked nodes.

    Hou, Liu, Cen, Dong, Yang, Wang, Tang 2022, "GraphMAE: Self-Supervised Masked Graph
    Autoencoders", KDD 2022, arXiv 2205.10803, eq. (4)::

        L = 1 / |masked| sum_{i in masked} (1 - cos(reconstruction_i, target_i)) ^ gamma

    ``gamma >= 1`` down-weights nodes already well reconstructed (3 on Cora, 1 on CiteSeer, 2 on
    some graph-level sets in the paper's configs). Only the masked nodes' rows count.

    Args:
        reconstruction: the decoder's output for every node ``[n, F]``.
        target: the input features ``[n, F]``.
        masked: bool ``[n]`` (True: masked, scored) or int64 indices ``[M]`` of the masked nodes.
        gamma: the scaling exponent.

    Returns:
        scalar in ``[0, 2 ** gamma]``.
    """
    if reconstruction.shape != target.shape or reconstruction.ndim != 2:
        raise ValueError(f"reconstruction and target must both be [n, F]; got {tuple(reconstruction.shape)} and {tuple(target.shape)}")
    if masked.dtype == torch.bool:
        masked = masked.nonzero().flatten()
    if masked.numel() == 0:
        raise ValueError("no masked node to score; raise the mask rate or give more nodes")
    cos = F.cosine_similarity(reconstruction[masked], target[masked], dim=-1)  # [M]
    return (1.0 - cos).pow(gamma).mean()


__all__ = ["bgrl_loss", "dgi_loss", "dgi_summary", "grace_loss", "scaled_cosine_error"]
