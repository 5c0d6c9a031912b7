"""Information-maximisation losses: decorrelate embedding dimensions instead of using negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square ``[D, D]`` matrix, flattened to ``[D * (D - 1)]``."""
    D = matrix.shape[0]
    return matrix.flatten()[:-1].view(D - 1, D + 1)[:, 1:].flatten()


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float = 5.1e-3, eps: float = 1e-5
) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss.

    Zbontar, Jing, Misra, LeCun, Deny 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction", arXiv 2103.03230, eq. (1)-(2). Each embedding dimension is standardised over the
    batch (mean 0, std 1, biased std as in batch norm); ``C = z1n^T z2n / N`` is the
    cross-correlation matrix; the loss pulls its diagonal to 1 (invariance) and its off-diagonal to
    0 (redundancy reduction): ``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2``.

    Args:
        z1, z2: projections of the two views ``[N, D]``.
        lambda_offdiag: weight of the off-diagonal term (the paper's 0.0051).
        eps: added to the variance before the square root.

    Returns:
        scalar loss.
    """
    N, D = z1.shape
    z1n = F.batch_norm(z1, None, None, training=True, eps=eps)  # per-dimension standardisation
    z2n = F.batch_norm(z2, None, None, training=True, eps=eps)
    c = z1n.T @ z2n / N  # [D, D]
    on_diag = (1.0 - torch.diagonal(c)).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return on_diag + lambda_offdiag * off_diag


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg: variance-invariance-covariance regularisation.

    Bardes, Ponce, LeCun 2022, "VICReg", arXiv 2105.04906, eq. (1)-(6), default weights
    lambda = mu = 25, nu = 1. Terms, for projections ``Z, Z'`` ``[N, D]``:

    - invariance ``s = mean((Z - Z')^2)`` over samples and dimensions;
    - variance ``v(Z) = mean_j relu(1 - sqrt(Var(Z_j) + eps))`` (unbiased variance), a hinge that
      keeps every dimension's std at least 1 (prevents complete collapse);
    - covariance ``c(Z) = sum_{i != j} Cov(Z)_ij^2 / D`` (decorrelates dimensions).

    As in the authors' released code (the weights were tuned with it), the two branches'
    variance terms are averaged and their covariance terms summed.

    Returns:
        scalar loss.
    """
    N, D = z1.shape
    invariance = F.mse_loss(z1, z2)

    def variance(z: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(z.var(dim=0) + eps)
        return F.relu(1.0 - std).mean()

    def covariance(z: torch.Tensor) -> torch.Tensor:
        zc = z - z.mean(dim=0)
        cov = zc.T @ zc / (N - 1)  # [D, D]
        return _off_diagonal(cov).pow(2).sum() / D

    var_term = 0.5 * (variance(z1) + variance(z2))
    cov_term = covariance(z1) + covariance(z2)
    return invariance_weight * invariance + variance_weight * var_term + covariance_weight * cov_term


# --------------------------------------------------------------------------- W-MSE


def whiten(z: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Cholesky whitening of one batch: ``z [N, D] -> [N, D]`` with mean 0 and identity covariance.

    Ermolov, Siarohin, Sangineto, Sebe 2021, "Whitening for Self-Supervised Representation
    Learning", arXiv 2007.06346, sec. 3: ``Whitening(v) = W_V (v - mu_V)`` with
    ``W_V^T W_V = Sigma_V^{-1}``; W-MSE takes ``W_V = L^{-1}`` from the Cholesky factorisation
    ``Sigma_V = L L^T``. The covariance is the unbiased one (``/ (N - 1)``), so the output's
    unbiased covariance is exactly ``I`` when ``eps = 0``. ``eps`` shrinks the covariance towards
    the identity, ``(1 - eps) Sigma + eps I`` (the authors' code), which keeps the factorisation
    defined when ``N <= D`` or the batch is degenerate.

    The arithmetic runs in at least float32 with autocast off: a Cholesky factorisation in bf16 is
    not accurate enough. The result has the input's dtype.
    """
    N, D = z.shape
    if N < 2:
        raise ValueError(f"whitening needs at least 2 samples; got a batch of shape {tuple(z.shape)}")
    if eps == 0 and N <= D:
        raise ValueError(
            f"whitening {N} samples of dimension {D} without shrinkage: the covariance is singular "
            f"(needs N > D); use a larger sub-batch or eps > 0"
        )
    work = z if z.dtype in (torch.float32, torch.float64) else z.float()
    with torch.autocast(device_type=z.device.type, enabled=False):
        centred = work - work.mean(dim=0)
        cov = centred.T @ centred / (N - 1)  # [D, D]
        eye = torch.eye(D, device=z.device, dtype=work.dtype)
        cov = (1 - eps) * cov + eps * eye
        chol = torch.linalg.cholesky(cov)  # cov = L L^T, L lower-triangular
        # Rows of the result are L^{-1} (z_i - mu): solve L X = centred^T instead of inverting L.
        white = torch.linalg.solve_triangular(chol, centred.T, upper=False).T
    return white.to(z.dtype)


def wmse_loss(
    views: list[torch.Tensor] | tuple[torch.Tensor, ...],
    whitening_size: int = 128,
    whitening_iters: int = 1,
    eps: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """W-MSE: MSE between normalised, whitened embeddings of positives.

    Ermolov et al. 2021, arXiv 2007.06346, eq. (1): minimise the distance between positives under
    the constraint that each view's embeddings have identity covariance. The constraint is met by
    construction: each view's embeddings are whitened (:func:`whiten`) and the loss is
    ``dist(z_i, z_j) = || z_i / |z_i| - z_j / |z_j| ||^2 = 2 - 2 cos(z_i, z_j)`` averaged over the
    samples and over all ``V (V - 1) / 2`` pairs of views (the paper's d positives per image).

    Batch slicing (sec. 3): a random permutation splits the batch into ``N // whitening_size``
    sub-batches of (about) ``whitening_size`` samples; every view is whitened within each
    sub-batch separately (the authors' code whitens each view on its own, with the same sample
    indices for all views). ``whitening_iters`` repeats this with new permutations and averages,
    which gives the whitening more randomness for the same batch. A remainder that does not fill
    a whole sub-batch is shared out among the others, so every sample counts.

    Args:
        views: ``V >= 2`` projections ``[N, D]``; row ``i`` of each is a view of sample ``i``.
        whitening_size: samples per sub-batch (the paper: 128 for D = 64; must exceed ``D``
            unless ``eps > 0``). A batch smaller than this is whitened whole.
        whitening_iters: number of random slicings averaged.
        eps: covariance shrinkage of :func:`whiten`.
        generator: generator for the permutations, best on the views' device (deterministic
            tests; the same seed on every rank gives every rank the same slicing).

    Returns:
        scalar loss, in ``[0, 4]``.
    """
    if len(views) < 2:
        raise ValueError(f"W-MSE needs at least 2 views; got {len(views)}")
    N, D = views[0].shape
    if any(v.shape != (N, D) for v in views):
        raise ValueError(f"every view must have the shape of the first {(N, D)}; got {[tuple(v.shape) for v in views]}")
    if whitening_size < 2 or whitening_iters < 1:
        raise ValueError(f"need whitening_size >= 2 and whitening_iters >= 1; got {whitening_size}, {whitening_iters}")
    # At least float32 (bf16 projections under autocast): the loss is a mean of 2 - 2 cos terms.
    views = [v if v.dtype in (torch.float32, torch.float64) else v.float() for v in views]
    num_slices = max(1, N // whitening_size)
    num_pairs = len(views) * (len(views) - 1) // 2
    total = views[0].new_zeros(())
    for _ in range(whitening_iters):
        # Drawn where the generator lives: a CPU permutation copied to a GPU would sync the host.
        device = generator.device if generator is not None else views[0].device
        perm = torch.randperm(N, generator=generator, device=device).to(views[0].device)
        white = [torch.empty_like(v) for v in views]
        for index in torch.tensor_split(perm, num_slices):
            for w, v in zip(white, views):
                w[index] = whiten(v[index], eps)
        unit = [F.normalize(w, dim=1) for w in white]
        for i in range(len(unit)):
            for j in range(i + 1, len(unit)):
                total = total + (2 - 2 * (unit[i] * unit[j]).sum(dim=1)).mean()
    return total / (whitening_iters * num_pairs)


# --------------------------------------------------------------------------- Mixed Barlow Twins


def mixup_cross_correlation_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z_mixed: torch.Tensor,
    permutation: torch.Tensor,
    mix: float,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Mixed Barlow Twins' regulariser: cross-correlations with a mixed view follow the mixture.

    Bandara, De Melo, Patel 2023, "Guarding Barlow Twins Against Overfitting with Mixed Samples",
    arXiv 2312.02151, sec. 3 (fig. 2). The mixed input is ``Y^M = mix * Y^A + (1 - mix) *
    Shuffle(Y^B)`` (``Shuffle`` = ``permutation``, ``mix ~ Beta(alpha, alpha)``). Assuming the
    embedding is linear in the input, ``Z^M ~ mix * Z^A + (1 - mix) * Shuffle*(Z^B)``, which gives
    the ground-truth cross-correlations

    - ``C^{MA} = (Z^M)^T Z^A``,  ``C^{MA}_gt = mix (Z^A)^T Z^A + (1 - mix) Shuffle*(Z^B)^T Z^A``,
    - ``C^{MB} = (Z^M)^T Z^B``,  ``C^{MB}_gt = mix (Z^A)^T Z^B + (1 - mix) Shuffle*(Z^B)^T Z^B``,

    and the regulariser ``L_reg = ||C^{MA} - C^{MA}_gt||_F^2 + ||C^{MB} - C^{MB}_gt||_F^2``.
    Every ``Z`` is standardised over the batch as in :func:`barlow_twins_loss` and every ``C`` is
    divided by ``N``. The ground truths are not detached (as in the authors' code). The paper's
    objective is ``L_BT + lambda_reg * lambda_BT * L_reg`` (the authors' code scales ``L_reg`` by
    the off-diagonal weight ``lambda_BT`` too).

    Args:
        z1, z2: projections of the two views ``[N, D]`` (``Z^A``, ``Z^B``).
        z_mixed: projection of the mixed view ``[N, D]``; row ``i`` mixes ``x1[i]`` and
            ``x2[permutation[i]]``.
        permutation: ``[N]`` long tensor, the shuffle used to make the mixed view.
        mix: the mixing coefficient of ``x1`` (``lambda`` in the paper).
        eps: added to the variance before the square root.

    Returns:
        scalar ``L_reg``.
    """
    N, D = z1.shape
    z1n = F.batch_norm(z1, None, None, training=True, eps=eps)
    z2n = F.batch_norm(z2, None, None, training=True, eps=eps)
    zmn = F.batch_norm(z_mixed, None, None, training=True, eps=eps)
    linear = mix * z1n + (1 - mix) * z2n[permutation]  # the linearity prior on the mixed embedding
    c_m1 = zmn.T @ z1n / N
    c_m2 = zmn.T @ z2n / N
    target_m1 = linear.T @ z1n / N
    target_m2 = linear.T @ z2n / N
    return (c_m1 - target_m1).pow(2).sum() + (c_m2 - target_m2).pow(2).sum()
