"""Losses of masked modelling: pixel (or series value) reconstruction and homologous recognition.

Pure functions of tensors. ``pred`` and ``target`` hold the values under each token, ``[N, L, K]``
(``K`` values per patch, as a backbone's ``patchify`` gives them); ``mask [N, L]`` is True at the
tokens the loss is taken on (the hidden ones). A NaN in ``target`` is a missing value (a series
step that was not observed): it counts nowhere, neither in a patch's normalisation nor in the
loss, and a patch without any observed value is left out.

- :func:`normalize_patches`: MAE's per-patch target normalisation (``norm_pix_loss``).
- :func:`masked_patch_mse`: MAE's loss (He et al. 2022, arXiv 2111.06377).
- :func:`masked_patch_l1`: SimMIM's loss (Xie et al. 2022, arXiv 2111.09886).
- :func:`homologous_contrastive_loss`: MixedAE's homologous recognition (Chen et al. 2023, arXiv 2303.17152).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be [N, L, K]; got {tuple(pred.shape)} and {tuple(target.shape)}")
    if mask.shape != pred.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool [N, L] = {tuple(pred.shape[:2])}; got {mask.dtype} {tuple(mask.shape)}")


def normalize_patches(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch standardised by its own mean and variance (MAE's ``norm_pix_loss``).

    ``target [N, L, K] -> [N, L, K]``: ``(t - mean) / sqrt(var + eps)`` over the K values of each
    patch, ``var`` unbiased (divided by ``count - 1``, as ``Tensor.var``); NaN values are left out of
    the statistics and stay NaN. A patch with a single observed value gets ``var = 0``.
    """
    valid = ~torch.isnan(target)
    count = valid.sum(dim=-1, keepdim=True)
    filled = torch.where(valid, target, torch.zeros_like(target))
    mean = filled.sum(dim=-1, keepdim=True) / count.clamp(min=1)
    centred = torch.where(valid, target - mean, torch.zeros_like(target))
    var = centred.pow(2).sum(dim=-1, keepdim=True) / (count - 1).clamp(min=1)
    return torch.where(valid, centred / torch.sqrt(var + eps), target)


def _observed(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid, filled)``: where ``target`` is observed, and ``target`` with 0 at missing values.

    The losses subtract ``filled``, never ``target``: a NaN inside the difference would make the
    gradient NaN even where ``torch.where`` drops the value (``0 * NaN`` in the backward)."""
    valid = ~torch.isnan(target)
    return valid, torch.where(valid, target, torch.zeros_like(target))


def _masked_patch_mean(errors: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the observed (``valid``) values of each patch, then over the masked patches that have any."""
    errors = torch.where(valid, errors, torch.zeros_like(errors))
    count = valid.sum(dim=-1)  # [N, L]
    per_patch = errors.sum(dim=-1) / count.clamp(min=1)  # [N, L]
    used = mask & (count > 0)
    return (per_patch * used).sum() / used.sum().clamp(min=1)


def masked_patch_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True
) -> torch.Tensor:
    """MAE's reconstruction loss: the mean squared error of each masked patch, averaged.

    He, Chen, Xie, Li, Dollár, Girshick 2022, "Masked Autoencoders Are Scalable Vision Learners",
    CVPR 2022, arXiv 2111.06377, sec. 3: the loss is computed on the masked patches only; with
    ``norm_pix`` the target of each patch is its own standardised values (:func:`normalize_patches`).

    Args:
        pred: predicted values ``[N, L, K]``.
        target: the true values ``[N, L, K]`` (NaN = missing, left out).
        mask: bool ``[N, L]``, True = the patch counts (a hidden token).
        norm_pix: normalise each target patch by its mean and variance.

    Returns:
        scalar: ``sum_{masked patches} mean_k (pred - target)^2 / #masked patches`` (0 if none).
    """
    _check(pred, target, mask)
    if norm_pix:
        target = normalize_patches(target)
    valid, target = _observed(target)
    return _masked_patch_mean((pred - target).pow(2), valid, mask)


def masked_patch_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's reconstruction loss: the mean absolute error over the values of the masked patches.

    Xie, Zhang, Cao, Lin, Bao, Yao, Dai, Hu 2022, "SimMIM: A Simple Framework for Masked Image
    Modeling", CVPR 2022, arXiv 2111.09886, sec. 3: an l1 loss on the raw (standardised) values of
    the masked patches. ``pred``, ``target [N, L, K]``, ``mask [N, L]`` as :func:`masked_patch_mse`;
    every observed value of a masked patch weighs the same (patches of equal size: the mean of the
    per-patch means).
    """
    _check(pred, target, mask)
    observed, target = _observed(target)
    valid = observed & mask.unsqueeze(-1)
    errors = torch.where(valid, (pred - target).abs(), torch.zeros_like(pred))
    return errors.sum() / valid.sum().clamp(min=1)


def homologous_contrastive_loss(
    features: torch.Tensor, sources: torch.Tensor, temperature: float = 0.1, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """MixedAE's homologous contrastive loss: tokens of a mixed sequence recognise their homologous tokens.

    Chen, Liu, Hong, Xu, Li, Yeung 2023, "Mixed Autoencoder for Self-supervised Visual
    Representation Learning", CVPR 2023, arXiv 2303.17152: within each mixed sequence, the tokens
    that come from the same image (homologous tokens) are positives of each other and the tokens of
    the other images are negatives, as in a supervised contrastive loss (Khosla et al. 2020, arXiv
    2004.11362) with the source image as label. For token ``i`` of sequence ``g`` with positives
    ``P(i)`` (same source, not ``i``):

        ``loss_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip / t) / sum_{a != i} exp(s_ia / t) )``

    with ``s`` the cosine similarity; the result is the mean over the anchors that have a positive.

    Args:
        features: token features ``[G, L, D]`` (normalised here).
        sources: long ``[G, L]``, which image each token comes from (any labels; equal = homologous).
        temperature: ``t > 0``.
        valid: bool ``[G, L]``, tokens that take part (None: all); others are neither anchors nor
            in any denominator (padding).

    Returns:
        scalar loss (0 when no token has a positive).
    """
    if features.ndim != 3 or sources.shape != features.shape[:2]:
        raise ValueError(
            f"features must be [G, L, D] and sources [G, L]; got {tuple(features.shape)}, {tuple(sources.shape)}"
        )
    G, L, _ = features.shape
    # At least float32 logits (bf16 under mixed precision would blur the softmax).
    z = F.normalize(features.to(torch.promote_types(features.dtype, torch.float32)), dim=-1)
    logits = z @ z.transpose(1, 2) / temperature  # [G, L, L]
    keep = torch.ones(G, L, dtype=torch.bool, device=features.device) if valid is None else valid
    pair = keep.unsqueeze(1) & keep.unsqueeze(2) & ~torch.eye(L, dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(~pair, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=-1, keepdim=True)  # rows without any pair: NaN, masked below
    positive = pair & (sources.unsqueeze(1) == sources.unsqueeze(2))  # [G, L, L]
    num_positive = positive.sum(dim=-1)  # [G, L]
    per_anchor = -torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=-1) / num_positive.clamp(min=1)
    anchors = num_positive > 0
    return (per_anchor * anchors).sum() / anchors.sum().clamp(min=1)


__all__ = ["homologous_contrastive_loss", "masked_patch_l1", "masked_patch_mse", "normalize_patches"]
