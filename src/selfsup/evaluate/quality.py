"""Label-free measures of representation quality, and the cheap online probes the training monitor uses.

Every function here is a pure function of embeddings ``[N, D]`` (numpy arrays or torch tensors, any
device; gradients are ignored), computed in float64 on the CPU:

- :func:`alpha_req`: the power-law decay exponent of the covariance eigenspectrum (α-ReQ).
- :func:`alignment` and :func:`uniformity`: Wang & Isola's two properties of contrastive features.
- :func:`normalized_std`: the per-dimension std of L2-normalised embeddings (0 at complete collapse).
- :func:`online_probes`: kNN and ridge-regression accuracy on a labelled subset, fit on one part and
  scored on the other. It sees labels, so it belongs to evaluation: it never trains anything.

RankMe lives in :mod:`selfsup.evaluate.rankme`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.knn import knn_predict
from selfsup.evaluate.common import ArrayLike, labels_numpy, stratified_split


def _as_float64(embeddings: ArrayLike, name: str = "embeddings") -> torch.Tensor:
    """``embeddings`` as a finite float64 CPU tensor ``[N, D]`` with ``N >= 1`` and ``D >= 1``."""
    if isinstance(embeddings, torch.Tensor):
        t = embeddings.detach()
        if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.bool)):
            raise DataError(f"{name} must be a real numeric array of shape [N, D], got dtype {t.dtype}")
        t = t.to("cpu", torch.float64)
    else:
        arr = np.asarray(embeddings)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
            raise DataError(f"{name} must be a real numeric array of shape [N, D], got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    if t.ndim != 2:
        raise DataError(f"{name} must be a 2-D array of shape [N, D] (one row per sample), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {tuple(t.shape)}); it needs at least one sample and one dimension")
    finite = torch.isfinite(t).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise DataError(
            f"{name} contains NaN or infinite values in {bad.numel()} of {t.shape[0]} rows (first bad row: "
            f"{int(bad[0])}); the encoder produced non-finite embeddings (a diverged run?) or the input has NaNs"
        )
    return t


# ----------------------------------------------------------------------------------------------
# alpha-ReQ: eigenspectrum decay
# ----------------------------------------------------------------------------------------------


def covariance_eigenvalues(embeddings: ArrayLike) -> np.ndarray:
    """Eigenvalues of the empirical covariance ``Cov(f) = (1/N) Σ_i (f_i - f̄)(f_i - f̄)ᵀ``, descending.

    Computed as ``σ_k² / N`` from the singular values ``σ_k`` of the centred ``[N, D]`` matrix.

    Args:
        embeddings: ``[N, D]``.

    Returns:
        ``[min(N, D)]`` float64 array, descending (at most ``N - 1`` of them are non-zero).
    """
    z = _as_float64(embeddings)
    centred = z - z.mean(dim=0, keepdim=True)
    sigma = torch.linalg.svdvals(centred)
    return (sigma.square() / z.shape[0]).numpy()


def alpha_req(
    embeddings: ArrayLike, first: int = 1, last: int | None = None, rel_floor: float = 1e-10
) -> float:
    """α-ReQ: the power-law decay exponent of the covariance eigenspectrum.

    Agrawal, Mondal, Ghosh & Richards 2022, "α-ReQ: Assessing Representation Quality in
    Self-Supervised Learning by measuring eigenspectrum decay", NeurIPS 2022 (Advances in Neural
    Information Processing Systems 35). The eigenvalues
    ``λ_1 >= λ_2 >= ...`` of the empirical covariance ``Cov(f)`` of the embeddings (centred) are
    modelled as a power law ``λ_k ∝ k^(-α)``; ``α`` is found by ordinary least squares on the
    log-log plot, ``log λ_k = c - α log k``, over the ranks ``first..last``.

    Reading it: a small ``α`` (a slowly decaying, flat spectrum: many directions of similar
    variance, towards white noise) and a large ``α`` (the variance in a few directions: towards
    dimensional collapse) both go with poorer linear probes; the paper finds the best ones near
    ``α ≈ 1``. ``α`` is comparable between runs only for the same ``N`` and ``D``.

    Args:
        embeddings: ``[N, D]``; ``N`` of a few hundred to a few thousand is enough.
        first: first rank (1-based) in the fit; raise it to skip the leading eigenvalues.
        last: last rank in the fit (default ``min(N - 1, D)``, the rank of a centred ``N``-sample
            covariance).
        rel_floor: eigenvalues below ``rel_floor * λ_1`` are numerically zero and left out of the fit.

    Returns:
        ``α`` as a Python float; ``nan`` when fewer than two eigenvalues in ``first..last`` are
        above the floor (a collapsed representation has no spectrum to fit).

    Raises:
        DataError: if ``embeddings`` is not a finite ``[N, D]`` array with ``N >= 2``.
        ConfigError: for ``first < 1``, ``last < first + 1`` or a ``rel_floor`` outside ``[0, 1)``.
    """
    if int(first) != first or first < 1:
        raise ConfigError(f"first must be a positive integer rank (1 = the largest eigenvalue), got {first}")
    if last is not None and (int(last) != last or last < first + 1):
        raise ConfigError(f"last must be an integer rank of at least first + 1 = {first + 1}, got {last}")
    if not 0.0 <= rel_floor < 1.0:
        raise ConfigError(f"rel_floor must be in [0, 1), got {rel_floor}")
    z = _as_float64(embeddings)
    N, D = z.shape
    if N < 2:
        raise DataError(f"alpha_req needs at least 2 samples to estimate a covariance, got {N}")
    eigenvalues = covariance_eigenvalues(z)
    stop = min(N - 1, D) if last is None else min(int(last), eigenvalues.size)
    ranks = np.arange(int(first), stop + 1)
    values = eigenvalues[ranks - 1]
    keep = values > rel_floor * eigenvalues[0] if eigenvalues[0] > 0 else np.zeros_like(values, dtype=bool)
    if keep.sum() < 2:
        return math.nan
    slope, _ = np.polyfit(np.log(ranks[keep]), np.log(values[keep]), deg=1)
    return float(-slope)


# ----------------------------------------------------------------------------------------------
# Alignment and uniformity on the hypersphere
# ----------------------------------------------------------------------------------------------


def alignment(z1: ArrayLike, z2: ArrayLike, alpha: float = 2.0) -> float:
    """Alignment of positive pairs (Wang & Isola 2020, arXiv 2005.10242, eq. 4).

    ``L_align = E_(x, y) positive ||f(x) - f(y)||_2^α`` with ``f`` the L2-normalised embedding; row
    ``i`` of ``z1`` and row ``i`` of ``z2`` are two views of the same sample. Lower is better
    aligned: 0 for identical views, at most ``2^α`` (antipodal views).

    Args:
        z1: ``[N, D]`` embeddings of the first views.
        z2: ``[N, D]`` embeddings of the second views.
        alpha: the exponent ``α > 0`` (2 in the paper).

    Returns:
        the alignment as a Python float.

    Raises:
        DataError: for non-finite embeddings or mismatched shapes.
        ConfigError: for ``alpha <= 0``.
    """
    if not alpha > 0:
        raise ConfigError(f"alignment's alpha must be positive, got {alpha}")
    a, b = _as_float64(z1, "z1"), _as_float64(z2, "z2")
    if a.shape != b.shape:
        raise DataError(
            f"z1 and z2 must have the same shape [N, D] (row i of each is a view of sample i); "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    distances = (F.normalize(a, dim=1) - F.normalize(b, dim=1)).norm(dim=1)
    return float(distances.pow(alpha).mean())


def uniformity(z: ArrayLike, t: float = 2.0) -> float:
    """Uniformity on the hypersphere (Wang & Isola 2020, arXiv 2005.10242, eq. 5).

    ``L_uniform = log E_(x, y) i.i.d. exp(-t ||f(x) - f(y)||_2²)`` with ``f`` the L2-normalised
    embedding, the expectation taken over the ``N(N-1)/2`` pairs of distinct samples (the pairs of
    two independent draws, a sample's pair with itself left out). Lower (more negative) is
    more uniform; it is 0 when every embedding is the same point (complete collapse) and at least
    ``-4t`` (all pairs antipodal, possible only for ``N = 2``).

    Args:
        z: ``[N, D]`` embeddings, ``N >= 2``.
        t: the temperature ``t > 0`` (2 in the paper).

    Returns:
        the uniformity as a Python float.

    Raises:
        DataError: for non-finite embeddings or fewer than 2 samples.
        ConfigError: for ``t <= 0``.
    """
    if not t > 0:
        raise ConfigError(f"uniformity's t must be positive, got {t}")
    f = F.normalize(_as_float64(z, "z"), dim=1)
    N = f.shape[0]
    if N < 2:
        raise DataError(f"uniformity needs at least 2 samples (it averages over pairs), got {N}")
    squared = torch.pdist(f).square()  # [N(N-1)/2], the distinct pairs
    # log-mean-exp, stable for large t.
    return float(torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel()))


# ----------------------------------------------------------------------------------------------
# Complete collapse: per-dimension std of normalised embeddings
# ----------------------------------------------------------------------------------------------


class NormalizedStd(NamedTuple):
    """Per-dimension std of L2-normalised embeddings: its ``mean`` and ``min`` over dimensions."""

    mean: float
    min: float


def normalized_std(embeddings: ArrayLike) -> NormalizedStd:
    """Std over samples of each dimension of the L2-normalised embeddings, summarised.

    Chen & He 2021 ("Exploring Simple Siamese Representation Learning", arXiv 2011.10566, sec.
    4.1) monitor it: if the normalised embeddings were spread like an isotropic Gaussian, every
    dimension's std would be about ``1/sqrt(D)``; under complete collapse (every input mapped to
    the same direction) it is 0. ``mean * sqrt(D)`` is therefore about 1 when healthy and 0 when
    collapsed, whatever ``D``. A zero embedding stays zero after normalisation.

    Args:
        embeddings: ``[N, D]``, ``N >= 2``.

    Returns:
        :class:`NormalizedStd` ``(mean, min)`` over the ``D`` dimensions.
    """
    z = _as_float64(embeddings)
    if z.shape[0] < 2:
        raise DataError(f"normalized_std needs at least 2 samples, got {z.shape[0]}")
    std = F.normalize(z, dim=1).std(dim=0)
    return NormalizedStd(float(std.mean()), float(std.min()))


# ----------------------------------------------------------------------------------------------
# Online probes on a small labelled subset (evaluation: sees labels, trains nothing)
# ----------------------------------------------------------------------------------------------


def ridge_classifier_accuracy(
    fit_x: ArrayLike, fit_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike, l2: float = 1.0
) -> float:
    """Accuracy of a linear classifier fit in closed form: ridge regression onto one-hot labels.

    Features are standardised with the fitting part's mean and std; with ``X`` the standardised
    fitting features plus a bias column and ``Y`` their one-hot labels, ``W = (XᵀX + l2·I)⁻¹ XᵀY``
    (the bias is not penalised) and a sample's class is ``argmax(x W)``. Deterministic, no
    iterations, so it is cheap enough to run every few epochs. Classes absent from ``fit_y`` are
    never predicted.

    Args:
        fit_x: ``[N_fit, D]`` features, ``fit_y``: ``[N_fit]`` integer labels.
        test_x: ``[N_test, D]`` features, ``test_y``: ``[N_test]`` integer labels.
        l2: ridge penalty ``>= 0``.

    Returns:
        top-1 accuracy on the test part, in ``[0, 1]``.
    """
    if not l2 >= 0:
        raise ConfigError(f"l2 must be non-negative, got {l2}")
    fx, tx = _as_float64(fit_x, "fit_x"), _as_float64(test_x, "test_x")
    fy, ty = labels_numpy(fit_y, "fit_y"), labels_numpy(test_y, "test_y")
    if fx.shape[0] != fy.size or tx.shape[0] != ty.size:
        raise DataError("fit_x/fit_y and test_x/test_y must have one label per sample")
    if fx.shape[1] != tx.shape[1]:
        raise DataError(f"fit_x has {fx.shape[1]} dimensions but test_x has {tx.shape[1]}")
    mean, std = fx.mean(dim=0), fx.std(dim=0, correction=0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    classes, fit_index = np.unique(fy, return_inverse=True)
    X = torch.cat([(fx - mean) / std, torch.ones(fx.shape[0], 1, dtype=torch.float64)], dim=1)
    Y = F.one_hot(torch.from_numpy(fit_index), len(classes)).to(torch.float64)
    penalty = torch.full((X.shape[1],), float(l2), dtype=torch.float64)
    penalty[-1] = 0.0
    W = torch.linalg.lstsq(X.T @ X + torch.diag(penalty), X.T @ Y).solution
    Xt = torch.cat([(tx - mean) / std, torch.ones(tx.shape[0], 1, dtype=torch.float64)], dim=1)
    predicted = classes[(Xt @ W).argmax(dim=1).numpy()]
    return float(np.mean(predicted == ty))


def online_probes(
    embeddings: ArrayLike, labels: ArrayLike, test_fraction: float = 0.5, k: int = 20, seed: int = 0
) -> dict[str, float]:
    """kNN and linear accuracy of embeddings of a small labelled subset, fit on one part, scored on the other.

    The subset is split (stratified, seeded, so the same split every time) into a fitting part
    and a ``test_fraction`` scoring part. ``knn_acc``: the weighted cosine kNN of Wu et al. 2018
    (arXiv 1805.01978; temperature 0.07, ``k`` capped at the fitting part's size);
    ``linear_acc``: :func:`ridge_classifier_accuracy`. No hyperparameter is tuned, so the numbers
    are for watching a run's trend, not for reporting: use ``selfsup evaluate`` for that.

    Args:
        embeddings: ``[N, D]`` detached embeddings.
        labels: ``[N]`` integer labels.
        test_fraction: fraction of each class scored (strictly between 0 and 1).
        k: neighbours of the kNN.
        seed: seed of the split.

    Returns:
        ``{"knn_acc": ..., "linear_acc": ...}``.
    """
    z = _as_float64(embeddings)
    y = labels_numpy(labels, "labels")
    if y.size != z.shape[0]:
        raise DataError(f"embeddings has {z.shape[0]} rows but labels has {y.size}; they must match")
    if int(k) != k or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k}")
    fit_idx, test_idx = stratified_split(y, test_fraction, seed)
    classes, y_index = np.unique(y, return_inverse=True)
    fit_x, test_x = z[torch.from_numpy(fit_idx)].float(), z[torch.from_numpy(test_idx)].float()
    predicted = knn_predict(
        fit_x, y_index[fit_idx], test_x, k=min(int(k), fit_idx.size), temperature=0.07, num_classes=classes.size
    )
    knn_acc = float(np.mean(predicted.numpy() == y_index[test_idx]))
    linear_acc = ridge_classifier_accuracy(fit_x, y[fit_idx], test_x, y[test_idx])
    return {"knn_acc": knn_acc, "linear_acc": linear_acc}
