"""Losses against slow references written from the papers, and closed forms.

References are deliberately naive (explicit Python loops, float64) so that they share no
vectorisation trick with the implementations under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.losses import barlow_twins_loss, info_nce, normalized_mse, vicreg_loss

# --------------------------------------------------------------------------- helpers


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _decorrelated(n: int, d: int, ddof: int, seed: int = 0) -> torch.Tensor:
    """``[n, d]`` with columns of mean 0, pairwise orthogonal, and variance 1 (``ddof`` 0 or 1).

    Centre a random matrix's columns, orthonormalise them with QR (the Q columns are linear
    combinations of centred columns, so they stay centred), then scale: ``Q^T Q = I`` gives
    ``z^T z / (n - ddof) = I`` for ``z = sqrt(n - ddof) Q``. Needs ``d <= n - 1``.
    """
    assert d <= n - 1
    a = _randn(n, d, seed=seed)
    a = a - a.mean(dim=0)
    q, _ = torch.linalg.qr(a)
    return math.sqrt(n - ddof) * q


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(sum(x * y for x, y in zip(a.tolist(), b.tolist()))) / (
        math.sqrt(sum(x * x for x in a.tolist())) * math.sqrt(sum(y * y for y in b.tolist()))
    )


# --------------------------------------------------------------------------- InfoNCE / NT-Xent


def _info_nce_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """SimCLR eq. (1): mean over all 2N anchors of -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t)."""
    n = z1.shape[0]
    z = [row for row in z1] + [row for row in z2]  # z[k] and z[k + n] are the two views of sample k
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n  # positive
        numerator = math.exp(_cos(z[i], z[j]) / tau)
        denominator = 0.0
        for k in range(2 * n):
            if k != i:
                denominator += math.exp(_cos(z[i], z[k]) / tau)
        total += -math.log(numerator / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("d", [3, 32])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_info_nce_matches_slow_reference(n: int, d: int, tau: float) -> None:
    z1 = _randn(n, d, seed=1)
    z2 = z1 + 0.5 * _randn(n, d, seed=2)  # correlated views: positives are more similar than negatives
    expected = _info_nce_reference(z1, z2, tau)
    assert info_nce(z1, z2, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # float32 agrees with the float64 reference to float32 precision.
    assert info_nce(z1.float(), z2.float(), tau).item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("n,d", [(1, 1), (2, 2), (3, 8), (8, 8), (16, 32)])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_info_nce_closed_form_orthogonal_aligned(n: int, d: int, tau: float) -> None:
    # z1 = z2 = n orthonormal rows: positive similarity 1, the 2n - 2 negatives 0.
    q, _ = torch.linalg.qr(_randn(d, d, seed=3))
    for basis in (torch.eye(d, dtype=torch.float64)[:n], q.T[:n]):
        expected = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
        assert info_nce(basis, basis.clone(), tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_info_nce_closed_form_limits() -> None:
    n, d = 4, 8
    e = torch.eye(d, dtype=torch.float64)[:n]
    # Opposite views (cos -1 with the positive, 0 with the rest): log(1 + (2N-2) exp(1/tau)).
    tau = 0.5
    expected = math.log(1 + (2 * n - 2) * math.exp(1 / tau))
    assert info_nce(e, -e, tau).item() == pytest.approx(expected, rel=1e-9)
    # Complete collapse (all embeddings equal): every one of the 2N - 1 candidates ties.
    same = torch.ones(n, d, dtype=torch.float64)
    assert info_nce(same, same, tau).item() == pytest.approx(math.log(2 * n - 1), rel=1e-9)


def test_info_nce_invariant_to_scale() -> None:
    z1, z2 = _randn(6, 5, seed=4), _randn(6, 5, seed=5)
    base = info_nce(z1, z2, 0.3)
    torch.testing.assert_close(info_nce(7.5 * z1, 0.01 * z2, 0.3), base)
    # Per-row positive scales too (cosine similarity only looks at directions).
    s1 = torch.rand(6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1
    s2 = torch.rand(6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.1
    torch.testing.assert_close(info_nce(s1 * z1, s2 * z2, 0.3), base)


def test_info_nce_symmetric_in_views_and_batch_order() -> None:
    z1, z2 = _randn(7, 4, seed=6), _randn(7, 4, seed=7)
    base = info_nce(z1, z2, 0.2)
    torch.testing.assert_close(info_nce(z2, z1, 0.2), base)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(info_nce(z1[perm], z2[perm], 0.2), base)


def test_info_nce_depends_on_pairing() -> None:
    # Pairs of near-identical views: breaking the pairing must raise the loss a lot.
    z1 = _randn(8, 16, seed=8)
    z2 = z1 + 0.01 * _randn(8, 16, seed=9)
    assert info_nce(z1, z2, 0.1) < info_nce(z1, z2.roll(1, dims=0), 0.1) - 1.0


@pytest.mark.parametrize(
    "shape1,shape2", [((4, 3), (4, 2)), ((4, 3), (5, 3)), ((4, 3, 1), (4, 3, 1)), ((4,), (4,))]
)
def test_info_nce_rejects_bad_shapes(shape1: tuple[int, ...], shape2: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        info_nce(torch.randn(*shape1), torch.randn(*shape2), 0.5)


# --------------------------------------------------------------------------- BYOL normalised MSE


def _normalized_mse_reference(p: torch.Tensor, z: torch.Tensor) -> float:
    total = 0.0
    for pi, zi in zip(p.tolist(), z.tolist()):
        pn = math.sqrt(sum(x * x for x in pi))
        zn = math.sqrt(sum(x * x for x in zi))
        total += sum((a / pn - b / zn) ** 2 for a, b in zip(pi, zi))
    return total / p.shape[0]


@pytest.mark.parametrize("n,d", [(1, 1), (1, 5), (4, 3), (16, 32), (33, 7)])
def test_normalized_mse_matches_reference(n: int, d: int) -> None:
    p, z = _randn(n, d, seed=10), _randn(n, d, seed=11)
    expected = _normalized_mse_reference(p, z)
    assert normalized_mse(p, z).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert normalized_mse(p.float(), z.float()).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n,d", [(1, 1), (4, 3), (16, 32)])
def test_normalized_mse_closed_forms(n: int, d: int) -> None:
    z = _randn(n, d, seed=12)
    assert normalized_mse(z, z.clone()).item() == pytest.approx(0.0, abs=1e-12)
    assert normalized_mse(3 * z, z).item() == pytest.approx(0.0, abs=1e-12)
    assert normalized_mse(z, 0.25 * z).item() == pytest.approx(0.0, abs=1e-12)
    assert normalized_mse(-z, z).item() == pytest.approx(4.0, rel=1e-12)
    if d >= 2:
        # Orthogonal vectors: ||a - b||^2 = 2 for unit a ⟂ b.
        e = torch.eye(d, dtype=torch.float64)
        assert normalized_mse(e[:1], e[1:2]).item() == pytest.approx(2.0, rel=1e-12)


def test_normalized_mse_is_a_mean_over_samples() -> None:
    z = _randn(4, 3, seed=13)
    p = torch.cat([z[:2], -z[2:]])  # two perfect (0), two opposite (4) -> mean 2
    assert normalized_mse(p, z).item() == pytest.approx(2.0, rel=1e-12)


def test_normalized_mse_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        normalized_mse(torch.randn(4, 3), torch.randn(4, 2))


# --------------------------------------------------------------------------- Barlow Twins


def _standardise_reference(z: torch.Tensor, eps: float) -> list[list[float]]:
    n, d = z.shape
    rows = z.tolist()
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        mean = sum(rows[b][j] for b in range(n)) / n
        var = sum((rows[b][j] - mean) ** 2 for b in range(n)) / n  # biased, as in batch norm
        for b in range(n):
            out[b][j] = (rows[b][j] - mean) / math.sqrt(var + eps)
    return out


def _barlow_reference(z1: torch.Tensor, z2: torch.Tensor, lam: float, eps: float = 1e-5) -> float:
    """Zbontar et al. 2021 eq. (1): sum_i (1 - C_ii)^2 + lam * sum_i sum_{j != i} C_ij^2."""
    n, d = z1.shape
    a, b = _standardise_reference(z1, eps), _standardise_reference(z2, eps)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k][i] * b[k][j] for k in range(n)) / n
            loss += (1 - c_ij) ** 2 if i == j else lam * c_ij**2
    return loss


@pytest.mark.parametrize("n,d", [(2, 1), (3, 4), (8, 5), (32, 16)])
@pytest.mark.parametrize("lam", [0.0, 5.1e-3, 1.0])
def test_barlow_twins_matches_slow_reference(n: int, d: int, lam: float) -> None:
    z1 = _randn(n, d, seed=20)
    z2 = 0.7 * z1 + _randn(n, d, seed=21) + 3.0  # an offset and a scale the standardisation must remove
    expected = _barlow_reference(z1, z2, lam)
    assert barlow_twins_loss(z1, z2, lam).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert barlow_twins_loss(z1.float(), z2.float(), lam).item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_barlow_twins_uses_eps_inside_the_variance() -> None:
    # Small-variance columns make eps matter: the reference with eps=1e-5 (the default) must agree,
    # and a different eps argument must be honoured.
    z1 = 0.01 * _randn(6, 3, seed=22)
    z2 = 0.01 * _randn(6, 3, seed=23)
    assert barlow_twins_loss(z1, z2, 0.1).item() == pytest.approx(_barlow_reference(z1, z2, 0.1, 1e-5), rel=1e-9)
    assert barlow_twins_loss(z1, z2, 0.1, eps=1e-3).item() == pytest.approx(
        _barlow_reference(z1, z2, 0.1, 1e-3), rel=1e-9
    )


@pytest.mark.parametrize("n,d", [(5, 4), (16, 8), (64, 32)])
@pytest.mark.parametrize("lam", [5.1e-3, 1.0])
def test_barlow_twins_closed_form_identical_decorrelated_views(n: int, d: int, lam: float) -> None:
    z = _decorrelated(n, d, ddof=0, seed=24)
    # Sanity of the construction: mean 0, biased std 1, uncorrelated.
    torch.testing.assert_close(z.mean(0), torch.zeros(d, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.T @ z / n, torch.eye(d, dtype=torch.float64), atol=1e-12, rtol=0)
    # C = I / (1 + eps): diagonal term d * (eps / (1 + eps))^2 ~ 1e-10 * d, off-diagonal 0.
    loss = barlow_twins_loss(z, z.clone(), lam).item()
    assert loss == pytest.approx(d * (1e-5 / (1 + 1e-5)) ** 2, abs=1e-12)
    assert loss < 1e-8


@pytest.mark.parametrize("n,d", [(5, 4), (16, 8)])
def test_barlow_twins_closed_form_opposite_views(n: int, d: int) -> None:
    # z2 = -z1: C_ii = -1 (up to eps) so the invariance term is (1 - (-1))^2 * d = 4d.
    z = _randn(n, d, seed=25)
    assert barlow_twins_loss(z, -z, 0.0).item() == pytest.approx(4.0 * d, rel=1e-4)
    # With decorrelated dimensions the off-diagonal part is 0 too, whatever lambda.
    zd = _decorrelated(n, d, ddof=0, seed=26)
    assert barlow_twins_loss(zd, -zd, 1.0).item() == pytest.approx(4.0 * d, rel=1e-4)


def test_barlow_twins_offdiagonal_term_alone() -> None:
    # Two identical columns in both views: C = [[1, 1], [1, 1]] -> on-diagonal 0, off-diagonal 2 * 1.
    col = _randn(10, 1, seed=27)
    z = torch.cat([col, col], dim=1)
    assert barlow_twins_loss(z, z, 1.0).item() == pytest.approx(2.0, rel=1e-4)
    assert barlow_twins_loss(z, z, 0.25).item() == pytest.approx(0.5, rel=1e-4)


# --------------------------------------------------------------------------- VICReg


def _vicreg_reference(
    z1: torch.Tensor, z2: torch.Tensor, lam: float, mu: float, nu: float, eps: float
) -> float:
    """Bardes et al. 2022 as in the authors' code: variance terms averaged, covariance summed."""
    n, d = z1.shape
    a, b = z1.tolist(), z2.tolist()
    invariance = sum((a[k][j] - b[k][j]) ** 2 for k in range(n) for j in range(d)) / (n * d)

    def variance(rows: list[list[float]]) -> float:
        total = 0.0
        for j in range(d):
            mean = sum(rows[k][j] for k in range(n)) / n
            var = sum((rows[k][j] - mean) ** 2 for k in range(n)) / (n - 1)
            total += max(0.0, 1.0 - math.sqrt(var + eps))
        return total / d

    def covariance(rows: list[list[float]]) -> float:
        means = [sum(rows[k][j] for k in range(n)) / n for j in range(d)]
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    cov = sum((rows[k][i] - means[i]) * (rows[k][j] - means[j]) for k in range(n)) / (n - 1)
                    total += cov**2
        return total / d

    return lam * invariance + mu * 0.5 * (variance(a) + variance(b)) + nu * (covariance(a) + covariance(b))


@pytest.mark.parametrize("n,d", [(2, 1), (4, 3), (8, 6), (32, 16)])
@pytest.mark.parametrize(
    "weights", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (2.0, 3.0, 0.5)]
)
@pytest.mark.parametrize("eps", [1e-4, 1e-2])
def test_vicreg_matches_slow_reference(n: int, d: int, weights: tuple[float, float, float], eps: float) -> None:
    # Small scale so that some dimensions have std < 1 and the hinge is active for part of them.
    scales = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    z1 = _randn(n, d, seed=30) * scales
    z2 = 0.5 * z1 + 0.8 * _randn(n, d, seed=31) * scales.flip(0)
    expected = _vicreg_reference(z1, z2, *weights, eps)
    got = vicreg_loss(z1, z2, *weights, eps=eps).item()
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    got32 = vicreg_loss(z1.float(), z2.float(), *weights, eps=eps).item()
    assert got32 == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_vicreg_invariance_term_alone() -> None:
    z = _randn(8, 5, seed=32)
    assert vicreg_loss(z, z.clone(), 1.0, 0.0, 0.0).item() == 0.0
    # A constant shift c in every entry: mean squared difference c^2.
    assert vicreg_loss(z, z + 0.5, 1.0, 0.0, 0.0).item() == pytest.approx(0.25, rel=1e-12)
    assert vicreg_loss(z, z + 0.5, 4.0, 0.0, 0.0).item() == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("eps", [1e-4, 1e-2])
def test_vicreg_variance_term_collapsed(eps: float) -> None:
    # All-constant embeddings: Var = 0, each dimension's hinge is 1 - sqrt(eps); mean over dims and
    # average over the two branches leave 1 - sqrt(eps).
    z1 = torch.full((8, 5), 0.3, dtype=torch.float64)
    z2 = torch.full((8, 5), -2.0, dtype=torch.float64)
    expected = 1.0 - math.sqrt(eps)
    assert vicreg_loss(z1, z2, 0.0, 1.0, 0.0, eps=eps).item() == pytest.approx(expected, rel=1e-12)
    # Averaged, not summed: one collapsed branch and one healthy (std >= 1) gives half.
    healthy = _decorrelated(8, 5, ddof=1, seed=33) * 2.0
    assert vicreg_loss(z1, healthy, 0.0, 1.0, 0.0, eps=eps).item() == pytest.approx(expected / 2, rel=1e-12)
    assert vicreg_loss(z1, z2, 0.0, 25.0, 0.0, eps=eps).item() == pytest.approx(25 * expected, rel=1e-12)


def test_vicreg_variance_term_known_std() -> None:
    # Columns with unbiased std s_j exactly: hinge mean_j relu(1 - sqrt(s_j^2 + eps)).
    n, d, eps = 10, 4, 1e-4
    s = torch.tensor([0.1, 0.5, 0.9, 3.0], dtype=torch.float64)
    z = _decorrelated(n, d, ddof=1, seed=34) * s
    expected = sum(max(0.0, 1 - math.sqrt(v**2 + eps)) for v in s.tolist()) / d
    assert vicreg_loss(z, z, 0.0, 1.0, 0.0, eps=eps).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n,d", [(5, 4), (16, 8), (64, 32)])
def test_vicreg_covariance_term_decorrelated(n: int, d: int) -> None:
    z1 = _decorrelated(n, d, ddof=1, seed=35)
    z2 = _decorrelated(n, d, ddof=1, seed=36)
    torch.testing.assert_close(
        torch.cov(z1.T), torch.eye(d, dtype=torch.float64), atol=1e-12, rtol=0
    )  # construction sanity: unit unbiased variance, uncorrelated
    assert vicreg_loss(z1, z2, 0.0, 0.0, 1.0).item() == pytest.approx(0.0, abs=1e-20)
    # Unit variance (+eps) puts every hinge at 0, so the full default loss is the invariance alone.
    full = vicreg_loss(z1, z2).item()
    assert full == pytest.approx(25.0 * torch.mean((z1 - z2) ** 2).item(), rel=1e-10)


def test_vicreg_covariance_term_known_value() -> None:
    # Two identical columns with unbiased variance v: Cov = [[v, v], [v, v]], off-diagonal squares
    # sum to 2 v^2, divided by D = 2 -> v^2 per branch; both branches summed -> 2 v^2.
    col = _decorrelated(9, 1, ddof=1, seed=37) * 1.5  # unbiased variance 2.25
    z = torch.cat([col, col], dim=1)
    assert vicreg_loss(z, z, 0.0, 0.0, 1.0).item() == pytest.approx(2 * 2.25**2, rel=1e-10)
    assert vicreg_loss(z, z, 0.0, 0.0, 3.0).item() == pytest.approx(3 * 2 * 2.25**2, rel=1e-10)


# --------------------------------------------------------------------------- gradients and dtypes

LOSSES = {
    "info_nce": lambda a, b: info_nce(a, b, 0.5),
    "normalized_mse": normalized_mse,
    "barlow_twins": lambda a, b: barlow_twins_loss(a, b, 5.1e-3),
    "vicreg": vicreg_loss,
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_losses_backward_finite_gradients(name: str, dtype: torch.dtype) -> None:
    z1 = _randn(8, 6, seed=40, dtype=dtype).requires_grad_(True)
    z2 = _randn(8, 6, seed=41, dtype=dtype).requires_grad_(True)
    loss = LOSSES[name](z1, z2)
    assert loss.ndim == 0 and loss.dtype == dtype and torch.isfinite(loss)
    loss.backward()
    for z in (z1, z2):
        assert z.grad is not None and z.grad.dtype == dtype
        assert torch.isfinite(z.grad).all()
        assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_gradient_matches_finite_differences(name: str) -> None:
    z1 = _randn(5, 4, seed=42).requires_grad_(True)
    z2 = _randn(5, 4, seed=43).requires_grad_(True)
    assert torch.autograd.gradcheck(LOSSES[name], (z1, z2), eps=1e-6, atol=1e-5)


def test_normalized_mse_gradient_with_detached_target() -> None:
    p = _randn(4, 3, seed=44).requires_grad_(True)
    z = _randn(4, 3, seed=45)
    normalized_mse(p, z.detach()).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
