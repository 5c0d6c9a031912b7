"""Losses of latent-prediction methods: I-JEPA and data2vec 2.0.

Both predict a teacher's representations of hidden tokens instead of their pixels or values, so
each loss is a regression between token features; data2vec 2.0 also builds its targets from the
outputs of several teacher blocks (:func:`data2vec_targets`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

REGRESSIONS = ("mse", "smooth_l1")


def _check_same(prediction: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"{what}: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")


def _token_errors(prediction: torch.Tensor, target: torch.Tensor, regression: str, beta: float = 1.0) -> torch.Tensor:
    """Per-token error ``[N, T]``: the mean over features of the squared or smooth-L1 difference."""
    if regression == "mse":
        return (prediction - target).pow(2).mean(dim=-1)
    if regression == "smooth_l1":
        return F.smooth_l1_loss(prediction, target, reduction="none", beta=beta).mean(dim=-1)
    raise ValueError(f"regression must be one of {REGRESSIONS}, got {regression!r}")


def _masked_mean(errors: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``errors [N, T]`` over the tokens where ``valid [N, T]`` is True (0 if none)."""
    if valid is None:
        return errors.mean()
    if valid.shape != errors.shape or valid.dtype != torch.bool:
        raise ValueError(f"valid must be bool {tuple(errors.shape)}; got {valid.dtype} {tuple(valid.shape)}")
    weights = valid.to(errors.dtype)
    return (errors * weights).sum() / weights.sum().clamp(min=1.0)


def ijepa_loss(
    predictions: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    regression: str = "mse",
    valid: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """I-JEPA's loss: the distance between predicted and target representations of each target
    block, averaged over the tokens of a block and over the blocks.

    Assran et al. 2023, "Self-Supervised Learning from Images with a Joint-Embedding Predictive
    Architecture", arXiv 2301.08243, eq. (1): ``1/M sum_i sum_{j in B_i} ||s_hat_j - s_j||^2``
    (averaged over the block's tokens and the features here). The paper states the squared L2
    distance (``regression="mse"``); its released code uses smooth L1 (``"smooth_l1"``, beta 1).

    Args:
        predictions: one ``[N, T_i, D]`` per target block, the predictor's outputs.
        targets: the target encoder's (layer-normalised) features at the same tokens, same shapes;
            pass them without gradient.
        regression: ``"mse"`` or ``"smooth_l1"``.
        valid: optional bool ``[N, T_i]`` per block, False = a token left out (series padding).

    Returns:
        scalar: the mean over blocks of the per-block mean error.
    """
    if len(predictions) != len(targets) or not predictions:
        raise ValueError(f"need one target per prediction, at least one; got {len(predictions)} and {len(targets)}")
    if valid is not None and len(valid) != len(predictions):
        raise ValueError(f"valid has {len(valid)} entries for {len(predictions)} blocks")
    losses = []
    for i, (prediction, target) in enumerate(zip(predictions, targets)):
        _check_same(prediction, target, f"target block {i}")
        errors = _token_errors(prediction, target, regression)  # [N, T_i]
        losses.append(_masked_mean(errors, None if valid is None else valid[i]))
    return torch.stack(losses).mean()


def instance_norm_tokens(x: torch.Tensor, padding: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Instance normalisation over tokens: each feature of each sample to zero mean and unit
    variance across that sample's tokens (``F.instance_norm`` on ``[N, D, L]``, biased variance).

    ``x [N, L, D]``; ``padding [N, L]`` (True = a token left out of the statistics) -> ``[N, L, D]``.
    """
    if padding is None:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, unbiased=False, keepdim=True)
    else:
        weights = (~padding).to(x.dtype).unsqueeze(-1)  # [N, L, 1]
        count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (x * weights).sum(dim=1, keepdim=True) / count
        var = ((x - mean).pow(2) * weights).sum(dim=1, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps)


def data2vec_targets(
    layer_outputs: Sequence[torch.Tensor], padding: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """data2vec 2.0's contextualised targets from the teacher's top K blocks.

    Baevski, Babu, Hsu, Auli 2023, "Efficient Self-supervised Learning with Contextualized Target
    Representations for Vision, Speech and Language", arXiv 2212.07525, sec. 3 (and data2vec,
    Baevski et al. 2022, arXiv 2202.03555, sec. 3.3): each block's output is instance-normalised
    over the tokens (:func:`instance_norm_tokens`), the K results are averaged, and the average
    is layer-normalised over the features (no affine parameters), as the image configuration.

    Args:
        layer_outputs: K tensors ``[N, L, D]``, the teacher's block outputs on the unmasked sample.
        padding: optional bool ``[N, L]``, True = a token left out of the instance statistics.
        eps: added to the variances.

    Returns:
        ``[N, L, D]`` targets, computed in float32, without gradient.
    """
    if not layer_outputs:
        raise ValueError("data2vec_targets needs at least one block output")
    shape = layer_outputs[0].shape
    if any(out.shape != shape for out in layer_outputs) or len(shape) != 3:
        raise ValueError(f"block outputs must all be [N, L, D]; got {[tuple(o.shape) for o in layer_outputs]}")
    with torch.no_grad():
        normed = [instance_norm_tokens(out.float(), padding, eps) for out in layer_outputs]
        average = torch.stack(normed).mean(dim=0)
        return F.layer_norm(average, average.shape[-1:], eps=eps)


def data2vec_loss(prediction: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """data2vec 2.0's regression: the squared error between the decoder's predictions and the
    targets at the hidden tokens, averaged over features and hidden tokens.

    Baevski et al. 2023, arXiv 2212.07525, sec. 3 ("L2 loss"). The reference code sums the
    errors and scales by ``1 / sqrt(D)`` per hidden token; this mean differs by a constant factor.

    Args:
        prediction: ``[N, L, D]`` decoder outputs at every token.
        target: ``[N, L, D]`` targets (repeated for each masked copy of a sample).
        masked: bool ``[N, L]``, True = a hidden token, the only ones that count.

    Returns:
        scalar.
    """
    _check_same(prediction, target, "data2vec_loss")
    return _masked_mean(_token_errors(prediction, target, "mse"), masked)


__all__ = ["REGRESSIONS", "data2vec_loss", "data2vec_targets", "ijepa_loss", "instance_norm_tokens"]
