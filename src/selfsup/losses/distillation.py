"""Losses of distillation (teacher-student) methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between L2-normalised vectors, ``2 - 2 cos(p, z)`` per sample (BYOL).

    Grill et al. 2020, "Bootstrap Your Own Latent", arXiv 2006.07733, eq. (2). The target is
    used as given: callers pass a target without gradient (EMA teacher output).

    Args:
        prediction: online predictions ``[N, D]``.
        target: target projections ``[N, D]``.

    Returns:
        scalar, the mean over the N samples, in ``[0, 4]``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")
    cosine = F.cosine_similarity(prediction, target, dim=-1)  # [N]
    return (2.0 - 2.0 * cosine).mean()


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative cosine similarity ``D(p, z) = -<p / ||p||, z / ||z||>``, averaged over samples (SimSiam).

    Chen & He 2021, "Exploring Simple Siamese Representation Learning", arXiv 2011.10566, eq. (1).
    The stop-gradient on the target (eq. 3) is not applied here: the method passes ``z.detach()``,
    so the function stays pure and its gradient in both arguments can be tested.

    Args:
        prediction: predictor outputs ``[N, D]``.
        target: projections of the other view ``[N, D]``.

    Returns:
        scalar, the mean over the N samples, in ``[-1, 1]`` (-1 when every pair is aligned).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")
    return -F.cosine_similarity(prediction, target, dim=-1).mean()


def dino_loss(
    student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor], student_temperature: float
) -> torch.Tensor:
    """Cross-entropy of the student's views against the teacher's (centred, sharpened) views (DINO).

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers",
    arXiv 2104.14294, eq. (3) and Algorithm 1: ``sum over teacher views i, student views v != i of
    H(P_t(x_i), P_s(x_v))`` with ``H(a, b) = -sum_k a_k log b_k`` and
    ``P_s = softmax(student_logits / student_temperature)``. As in the paper's code, each pair's
    cross-entropy is averaged over the batch and the pairs are averaged (not summed), so the
    scale does not depend on the number of crops. View ``i`` of ``teacher_probs`` and view ``i``
    of ``student_logits`` are the same crop (the global views come first in both lists); a view is
    never compared with itself.

    Args:
        student_logits: one ``[N, K]`` tensor per view (global views first, then local views).
        teacher_probs: one ``[N, K]`` tensor of probabilities per global view (no gradient:
            callers centre, sharpen and detach them, see ``DINOCenter``).
        student_temperature: ``tau_s`` (0.1 in the paper).

    Returns:
        scalar, the mean over the (teacher view, other student view) pairs of the batch-mean
        cross-entropy.
    """
    if not teacher_probs or len(student_logits) < 2:
        raise ValueError("dino_loss needs at least one teacher view and two student views")
    if len(teacher_probs) > len(student_logits):
        raise ValueError(f"{len(teacher_probs)} teacher views but only {len(student_logits)} student views")
    log_probs = [F.log_softmax(s / student_temperature, dim=-1) for s in student_logits]
    total = student_logits[0].new_zeros(())
    pairs = 0
    for i, q in enumerate(teacher_probs):
        for v, log_p in enumerate(log_probs):
            if v == i:
                continue  # the student and the teacher saw the same crop
            if log_p.shape != q.shape:
                raise ValueError(f"student view {v} has shape {tuple(log_p.shape)}, teacher view {i} {tuple(q.shape)}")
            total = total + (-(q * log_p).sum(dim=-1)).mean()
            pairs += 1
    return total / pairs
