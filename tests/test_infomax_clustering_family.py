"""W-MSE, Mixed Barlow Twins and SwAV: losses against slow references written from the papers,
closed forms, the methods' state and schedules, and distributed equivalence of the losses.

References are deliberately naive (explicit Python loops, float64) so that they share no
vectorisation trick with the implementations under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.methods.base import StepContext
import torch.distributed as dist

from gloo import ddp_average, run_on_ranks
from selfsup.backbones import create_backbone
from selfsup.losses.clustering import sinkhorn_knopp, swav_loss
from selfsup.losses.infomax import barlow_twins_loss, mixup_cross_correlation_loss, whiten, wmse_loss
from selfsup.methods import Encoder, create_method
from selfsup.methods.mixed_barlow_twins import global_permutation
from selfsup.core.distributed import gather_with_grad
from selfsup.errors import ConfigError
from selfsup.views import create_views

# --------------------------------------------------------------------------- helpers


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _cholesky_reference(a: list[list[float]]) -> list[list[float]]:
    """Cholesky-Banachiewicz: lower-triangular L with L L^T = a."""
    d = len(a)
    low = [[0.0] * d for _ in range(d)]
    for i in range(d):
        for j in range(i + 1):
            s = sum(low[i][k] * low[j][k] for k in range(j))
            low[i][j] = math.sqrt(a[i][i] - s) if i == j else (a[i][j] - s) / low[j][j]
    return low


def _whiten_reference(z: list[list[float]], eps: float = 0.0) -> list[list[float]]:
    """W-MSE whitening: x_i = L^{-1} (z_i - mean), L L^T = (1 - eps) Cov + eps I (unbiased Cov)."""
    n, d = len(z), len(z[0])
    mean = [sum(z[b][j] for b in range(n)) / n for j in range(d)]
    c = [[z[b][j] - mean[j] for j in range(d)] for b in range(n)]
    cov = [[sum(c[b][i] * c[b][j] for b in range(n)) / (n - 1) for j in range(d)] for i in range(d)]
    cov = [[(1 - eps) * cov[i][j] + (eps if i == j else 0.0) for j in range(d)] for i in range(d)]
    low = _cholesky_reference(cov)
    out = []
    for row in c:  # forward substitution: L x = row
        x = [0.0] * d
        for i in range(d):
            x[i] = (row[i] - sum(low[i][k] * x[k] for k in range(i))) / low[i][i]
        out.append(x)
    return out


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _slices_reference(perm: list[int], num_slices: int) -> list[list[int]]:
    """Split ``perm`` into ``num_slices`` contiguous parts, the first ``len % num_slices`` one longer."""
    n = len(perm)
    base, extra = divmod(n, num_slices)
    out, start = [], 0
    for s in range(num_slices):
        size = base + (1 if s < extra else 0)
        out.append(perm[start : start + size])
        start += size
    return out


# --------------------------------------------------------------------------- whitening


@pytest.mark.parametrize("n,d", [(3, 2), (9, 4), (40, 8), (200, 64)])
def test_whitened_batch_has_identity_covariance(n: int, d: int) -> None:
    # Correlated, shifted, badly scaled columns: the whitened ones are centred and decorrelated.
    mixing = torch.eye(d, dtype=torch.float64) + 0.3 * _randn(d, d, seed=2) / math.sqrt(d)  # well-conditioned
    z = _randn(n, d, seed=1) @ mixing * 5.0 + 3.0
    w = whiten(z)
    torch.testing.assert_close(w.mean(0), torch.zeros(d, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(w.T @ w / (n - 1), torch.eye(d, dtype=torch.float64), atol=1e-8, rtol=0)
    # float32 keeps the property to float32 precision.
    w32 = whiten(z.float())
    assert w32.dtype == torch.float32
    torch.testing.assert_close(w32.T @ w32 / (n - 1), torch.eye(d), atol=2e-3, rtol=0)


@pytest.mark.parametrize("n,d", [(3, 2), (7, 3), (12, 5)])
@pytest.mark.parametrize("eps", [0.0, 1e-3, 0.5])
def test_whiten_matches_slow_cholesky_reference(n: int, d: int, eps: float) -> None:
    z = _randn(n, d, seed=3) + 0.5 * _randn(n, 1, seed=4)
    expected = torch.tensor(_whiten_reference(z.tolist(), eps), dtype=torch.float64)
    torch.testing.assert_close(whiten(z, eps), expected, atol=1e-10, rtol=1e-9)


def test_whiten_is_lower_triangular_map() -> None:
    # W = L^{-1} is lower-triangular: the first whitened column depends on the first input column only.
    z = _randn(10, 4, seed=5)
    other = z.clone()
    other[:, 1:] = _randn(10, 3, seed=6)
    torch.testing.assert_close(whiten(z)[:, 0], whiten(other)[:, 0])


def test_whiten_with_shrinkage_handles_fewer_samples_than_dimensions() -> None:
    z = _randn(5, 8, seed=7)
    with pytest.raises(ValueError, match="eps > 0"):
        whiten(z)
    assert torch.isfinite(whiten(z, eps=1e-3)).all()


def test_whiten_low_precision_input() -> None:
    z = _randn(64, 8, seed=8).to(torch.bfloat16)
    w = whiten(z)
    assert w.dtype == torch.bfloat16 and torch.isfinite(w).all()


# --------------------------------------------------------------------------- W-MSE


def _wmse_reference(views: list[torch.Tensor], w_size: int, w_iter: int, eps: float, seed: int) -> float:
    """Ermolov et al. 2021: per slice of the batch, whiten each view; average 2 - 2 cos over
    samples, pairs of views and slicings (the permutations drawn as the implementation does)."""
    g = torch.Generator().manual_seed(seed)
    n = views[0].shape[0]
    rows = [v.tolist() for v in views]
    total, count = 0.0, 0
    for _ in range(w_iter):
        perm = torch.randperm(n, generator=g).tolist()
        white = [[None] * n for _ in views]
        for part in _slices_reference(perm, max(1, n // w_size)):
            for v in range(len(views)):
                for i, row in zip(part, _whiten_reference([rows[v][i] for i in part], eps)):
                    white[v][i] = row
        for a in range(len(views)):
            for b in range(a + 1, len(views)):
                pair = 0.0
                for i in range(n):
                    ua, ub = _unit(white[a][i]), _unit(white[b][i])
                    pair += sum((x - y) ** 2 for x, y in zip(ua, ub))
                total += pair / n
                count += 1
    return total / count


@pytest.mark.parametrize("n,d,w_size", [(8, 3, 8), (12, 2, 5), (20, 3, 6), (9, 4, 100)])
@pytest.mark.parametrize("num_views", [2, 4])
@pytest.mark.parametrize("w_iter", [1, 3])
def test_wmse_matches_slow_reference(n: int, d: int, w_size: int, num_views: int, w_iter: int) -> None:
    base = _randn(n, d, seed=10)
    views = [base + 0.5 * _randn(n, d, seed=11 + v) for v in range(num_views)]
    eps = 1e-3
    expected = _wmse_reference(views, w_size, w_iter, eps, seed=5)
    got = wmse_loss(views, w_size, w_iter, eps, torch.Generator().manual_seed(5))
    assert got.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_wmse_closed_forms() -> None:
    z = _randn(64, 6, seed=20)
    # Views that differ by a positive per-dimension scale and a shift whiten to the same points.
    scale = torch.rand(6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    assert wmse_loss([z, z * scale + 2.0], 32).item() == pytest.approx(0.0, abs=1e-10)
    # Opposite views: cos = -1 everywhere, the maximum 4.
    assert wmse_loss([z, -z], 32).item() == pytest.approx(4.0, rel=1e-10)
    # Independent views are far from aligned.
    assert wmse_loss([z, _randn(64, 6, seed=21)], 32).item() > 1.0


def test_wmse_gradient_flows_through_whitening() -> None:
    z1 = _randn(32, 4, seed=22).requires_grad_(True)
    z2 = _randn(32, 4, seed=23).requires_grad_(True)
    wmse_loss([z1, z2], 16).backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


def test_wmse_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        wmse_loss([_randn(8, 2)], 4)
    with pytest.raises(ValueError):
        wmse_loss([_randn(8, 2), _randn(7, 2)], 4)


# --------------------------------------------------------------------------- Mixed Barlow Twins


def _standardise_reference(z: torch.Tensor, eps: float = 1e-5) -> list[list[float]]:
    n, d = z.shape
    rows = z.tolist()
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        mean = sum(rows[b][j] for b in range(n)) / n
        var = sum((rows[b][j] - mean) ** 2 for b in range(n)) / n
        for b in range(n):
            out[b][j] = (rows[b][j] - mean) / math.sqrt(var + eps)
    return out


def _mixup_reference(z1, z2, zm, perm: list[int], lam: float) -> float:
    """Bandara et al. 2023: ||C^MA - C^MA_gt||_F^2 + ||C^MB - C^MB_gt||_F^2 with
    C^MA = Zm^T ZA / N, C^MA_gt = (lam ZA^T ZA + (1 - lam) Shuffle(ZB)^T ZA) / N (and B alike)."""
    n, d = z1.shape
    a, b, m = _standardise_reference(z1), _standardise_reference(z2), _standardise_reference(zm)
    loss = 0.0
    for other in (a, b):
        for i in range(d):
            for j in range(d):
                c = sum(m[k][i] * other[k][j] for k in range(n)) / n
                gt = sum((lam * a[k][i] + (1 - lam) * b[perm[k]][i]) * other[k][j] for k in range(n)) / n
                loss += (c - gt) ** 2
    return loss


@pytest.mark.parametrize("n,d", [(3, 2), (8, 5), (16, 3)])
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_mixup_regulariser_matches_slow_reference(n: int, d: int, lam: float) -> None:
    z1, z2, zm = _randn(n, d, seed=30), _randn(n, d, seed=31) + 1.0, 2.0 * _randn(n, d, seed=32)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    expected = _mixup_reference(z1, z2, zm, perm.tolist(), lam)
    got = mixup_cross_correlation_loss(z1, z2, zm, perm, lam)
    assert got.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_mixup_regulariser_closed_forms() -> None:
    z1, z2 = _randn(16, 4, seed=33), _randn(16, 4, seed=34)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    # A "mixed" view that is entirely view 1 (lam = 1) or the shuffled view 2 (lam = 0) is exact.
    assert mixup_cross_correlation_loss(z1, z2, z1.clone(), perm, 1.0).item() == pytest.approx(0.0, abs=1e-12)
    # The batch standardisation removes the mixed view's scale and offset (eps aside).
    rescaled = mixup_cross_correlation_loss(z1, z2, 3 * z1 + 1, perm, 1.0, eps=1e-30)
    assert rescaled.item() == pytest.approx(0.0, abs=1e-12)
    assert mixup_cross_correlation_loss(z1, z2, z2[perm], perm, 0.0).item() == pytest.approx(0.0, abs=1e-12)
    assert mixup_cross_correlation_loss(z1, z2, _randn(16, 4, seed=35), perm, 0.5).item() > 0.01


def test_global_permutation_maps_each_rank_to_its_own_rows() -> None:
    perm = torch.tensor([2, 0, 1])
    assert global_permutation(perm, 1).tolist() == [2, 0, 1]
    assert global_permutation(perm, 2).tolist() == [2, 0, 1, 5, 3, 4]


# --------------------------------------------------------------------------- Sinkhorn-Knopp


def _sinkhorn_reference(scores: torch.Tensor, eps: float, iters: int) -> list[list[float]]:
    """SwAV's algorithm as written (exp domain, Q is K x B): normalise the total, then alternate
    prototype rows to 1/K and sample columns to 1/B; finally multiply by B."""
    b, k = scores.shape
    q = [[math.exp(scores[i][j].item() / eps) for i in range(b)] for j in range(k)]
    total = sum(sum(row) for row in q)
    q = [[x / total for x in row] for row in q]
    for _ in range(iters):
        for j in range(k):
            s = sum(q[j])
            q[j] = [x / s / k for x in q[j]]
        for i in range(b):
            s = sum(q[j][i] for j in range(k))
            for j in range(k):
                q[j][i] = q[j][i] / s / b
    return [[q[j][i] * b for j in range(k)] for i in range(b)]


@pytest.mark.parametrize("b,k", [(4, 3), (10, 5), (6, 12)])
@pytest.mark.parametrize("eps", [0.05, 0.5])
@pytest.mark.parametrize("iters", [1, 3])
def test_sinkhorn_matches_slow_reference(b: int, k: int, eps: float, iters: int) -> None:
    scores = torch.tanh(_randn(b, k, seed=40))  # cosine-like scores in [-1, 1]
    expected = torch.tensor(_sinkhorn_reference(scores, eps, iters), dtype=torch.float64)
    torch.testing.assert_close(sinkhorn_knopp(scores, eps, iters), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("b,k", [(8, 4), (32, 10), (12, 30)])
def test_sinkhorn_marginals(b: int, k: int) -> None:
    scores = torch.tanh(_randn(b, k, seed=41))
    # After any number of rounds each sample's code sums to 1 (the last step is the sample one).
    codes = sinkhorn_knopp(scores, 0.05, 3)
    torch.testing.assert_close(codes.sum(1), torch.ones(b, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # Converged, every prototype gets B/K of the batch: the equipartition constraint.
    converged = sinkhorn_knopp(scores, 0.5, 500)
    torch.testing.assert_close(converged.sum(0), torch.full((k,), b / k, dtype=torch.float64), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(converged.sum(1), torch.ones(b, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_sinkhorn_closed_forms_and_invariances() -> None:
    # Equal scores: every code is uniform.
    codes = sinkhorn_knopp(torch.zeros(6, 4, dtype=torch.float64))
    torch.testing.assert_close(codes, torch.full((6, 4), 0.25, dtype=torch.float64))
    # A shift of one prototype's scores is a column factor of exp(scores / eps): the first
    # prototype rescaling absorbs it exactly. A shift of one sample's scores is absorbed at
    # convergence only (the rounds end with the sample rescaling, but start with the prototype one).
    scores = torch.tanh(_randn(6, 4, seed=42))
    torch.testing.assert_close(sinkhorn_knopp(scores + _randn(1, 4, seed=44)), sinkhorn_knopp(scores))
    shifted = scores + 0.01 * _randn(6, 1, seed=43)
    torch.testing.assert_close(sinkhorn_knopp(shifted, 0.05, 300), sinkhorn_knopp(scores, 0.05, 300))
    # A batch whose raw scores all prefer prototype 0 is still spread evenly: B/K = 2 each,
    # already close after the paper's 3 rounds.
    biased = torch.zeros(8, 4, dtype=torch.float64)
    biased[:, 0] = 1.0
    biased += 0.1 * torch.tanh(_randn(8, 4, seed=45))
    assert (biased.argmax(1) == 0).all()
    even = torch.full((4,), 2.0, dtype=torch.float64)
    torch.testing.assert_close(sinkhorn_knopp(biased, 0.05, 3).sum(0), even, atol=0.1, rtol=0)
    torch.testing.assert_close(sinkhorn_knopp(biased, 0.05, 50).sum(0), even)


def test_sinkhorn_is_stable_for_sharp_float32_scores() -> None:
    scores = torch.tanh(_randn(64, 16, seed=46)).float()  # exp(1 / 0.005) overflows float32
    codes = sinkhorn_knopp(scores, epsilon=0.005, iterations=3)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()
    torch.testing.assert_close(codes.sum(1), torch.ones(64), rtol=1e-5, atol=1e-5)


def test_sinkhorn_takes_no_gradient_and_rejects_bad_input() -> None:
    scores = _randn(4, 3, seed=47).requires_grad_(True)
    assert not sinkhorn_knopp(scores).requires_grad
    with pytest.raises(ValueError):
        sinkhorn_knopp(_randn(4, 3, 2))
    with pytest.raises(ValueError):
        sinkhorn_knopp(_randn(4, 3), epsilon=0.0)


# --------------------------------------------------------------------------- SwAV loss


def _swav_reference(scores: list[torch.Tensor], codes: list[torch.Tensor], tau: float) -> float:
    """Caron et al. 2020 eq. (1)-(2) with multi-crop: for each code q_s, mean over the other views t
    and the batch of -sum_k q_s^k log softmax(z_t^T C / tau)^k; then mean over the codes."""
    b, k = scores[0].shape
    total = 0.0
    for s, q in enumerate(codes):
        per_code = 0.0
        for t, sc in enumerate(scores):
            if t == s:
                continue
            for i in range(b):
                logits = [sc[i][j].item() / tau for j in range(k)]
                log_norm = math.log(sum(math.exp(x) for x in logits))
                per_code += -sum(q[i][j].item() * (logits[j] - log_norm) for j in range(k)) / b
        total += per_code / (len(scores) - 1)
    return total / len(codes)


@pytest.mark.parametrize("b,k", [(3, 4), (8, 5)])
@pytest.mark.parametrize("num_views", [2, 4])
@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_swav_loss_matches_slow_reference(b: int, k: int, num_views: int, tau: float) -> None:
    scores = [torch.tanh(_randn(b, k, seed=50 + v)) for v in range(num_views)]
    codes = [sinkhorn_knopp(s) for s in scores[:2]]
    expected = _swav_reference(scores, codes, tau)
    assert swav_loss(scores, codes, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_swav_loss_closed_forms() -> None:
    b, k = 6, 5
    # Uniform predictions: cross-entropy log K whatever the (normalised) codes.
    codes = [sinkhorn_knopp(torch.tanh(_randn(b, k, seed=60)))] * 2
    flat = [torch.zeros(b, k, dtype=torch.float64)] * 3
    assert swav_loss(flat, codes, 0.1).item() == pytest.approx(math.log(k), rel=1e-12)
    # One-hot codes predicted with near-certainty by every other view: loss near 0.
    target = torch.eye(k, dtype=torch.float64)[torch.arange(b) % k]
    sharp = [10.0 * target] * 3
    assert swav_loss(sharp, [target, target], 0.1).item() < 1e-30


def test_swav_loss_gradient_reaches_scores_not_codes() -> None:
    scores = [_randn(4, 3, seed=61).requires_grad_(True) for _ in range(3)]
    codes = [torch.softmax(_randn(4, 3, seed=62), 1).requires_grad_(True) for _ in range(2)]
    swav_loss(scores, codes).backward()
    assert all(s.grad is not None for s in scores)
    assert all(c.grad is None for c in codes)


# --------------------------------------------------------------------------- methods


def _method(name: str, **params):
    shape = (1, 8, 8)
    encoder = Encoder(create_backbone("resnet_tiny", shape), torch.zeros(1, 1, 1), torch.ones(1, 1, 1), shape)
    return create_method(name, encoder, **params)


def _train(method, steps: int, total_steps: int, batch: int = 32, seed: int = 0) -> None:
    views = create_views("auto", "image")
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.05)
    for step in range(steps):
        x = torch.rand(batch, 1, 8, 8, generator=g)
        out = method.training_step(views(x, g, method.num_global_views, method.num_local_views), StepContext(0, 1))
        optimizer.zero_grad()
        out.loss.backward()
        method.before_optimizer_step(StepContext(step, total_steps))
        optimizer.step()
        method.on_step_end(StepContext(step, total_steps))


def test_wmse_asks_for_its_number_of_positives() -> None:
    torch.manual_seed(0)
    method = _method("wmse", num_views=4, proj_dim=8, whitening_size=16)
    assert method.num_global_views == 4 and method.num_local_views == 0
    _train(method, 2, 10)
    with pytest.raises(ConfigError, match="num_views must be >= 2"):
        _method("wmse", num_views=1)


def test_mixed_barlow_twins_reduces_to_barlow_twins_without_the_regulariser() -> None:
    torch.manual_seed(0)
    method = _method("mixed_barlow_twins", lambda_reg=0.0, proj_hidden_dim=16, proj_dim=8).eval()
    views = create_views("auto", "image")(torch.rand(16, 1, 8, 8), torch.Generator().manual_seed(0), 2, 0)
    out = method.training_step(views, StepContext(0, 1))
    z = method.projector(method.encoder(torch.cat(views.global_views)))
    torch.testing.assert_close(out.loss, barlow_twins_loss(z[:16], z[16:], method.config.lambda_offdiag))
    assert float(out.metrics["loss_reg"]) > 0 and 0.0 <= out.metrics["mix"] <= 1.0


def test_swav_normalises_and_freezes_prototypes() -> None:
    torch.manual_seed(0)
    method = _method("swav", num_prototypes=7, proj_hidden_dim=16, freeze_prototypes=0.5)
    assert method.num_local_views == 2
    before = method.prototypes.weight.detach().clone()
    torch.testing.assert_close(before.norm(dim=1), torch.ones(7))
    _train(method, 2, total_steps=4)  # steps 0 and 1 < 0.5 * 4: frozen
    torch.testing.assert_close(method.prototypes.weight, before)
    _train(method, 2, total_steps=2)  # steps 0, 1 >= 0.5 * 2 only for step 1: it moves
    assert not torch.equal(method.prototypes.weight, before)
    method.training_step(# the forward renormalises them
        create_views("auto", "image")(torch.rand(8, 1, 8, 8), torch.Generator().manual_seed(1), 2, 2), StepContext(0, 1))
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(7))


def test_swav_queue_fills_then_joins_sinkhorn_and_is_checkpointed() -> None:
    torch.manual_seed(0)
    params = dict(num_prototypes=5, proj_hidden_dim=16, proj_dim=8, queue_size=48, queue_start=0.0, num_local_crops=1)
    method = _method("swav", **params)
    assert len(method.queues) == 2
    _train(method, 1, 10, batch=32)
    assert not method._use_queue  # 32 of 48 rows
    _train(method, 1, 10, batch=32)
    assert method._use_queue and int(method.queues[0].filled) == 48
    _train(method, 1, 10, batch=32)  # a step with the queue's scores in Sinkhorn
    # The queues are buffers: a new method restored from the state dict has them.
    restored = _method("swav", **params)
    restored.load_state_dict(method.state_dict())
    for a, b in zip(restored.queues, method.queues):
        torch.testing.assert_close(a.queue, b.queue)
        assert int(a.filled) == int(b.filled) and int(a.ptr) == int(b.ptr)


def test_swav_codes_with_queue_keep_only_the_batch_rows() -> None:
    torch.manual_seed(0)
    method = _method("swav", num_prototypes=5, proj_dim=8, queue_size=20)
    method._use_queue = True
    scores = torch.tanh(torch.randn(6, 5))
    codes = method._codes(scores, 0)
    queued = method.prototypes(method.queues[0].queue)
    expected = sinkhorn_knopp(torch.cat([queued, scores]))[-6:]
    torch.testing.assert_close(codes, expected)


# --------------------------------------------------------------------------- distributed

WORLD, BATCH, IN_DIM, OUT_DIM = 2, 12, 5, 4


def _family_losses(z: list[torch.Tensor], perm: torch.Tensor, world: int) -> dict[str, torch.Tensor]:
    """The three losses on gathered projections ``z`` (4 views); ``perm`` is the in-rank shuffle."""
    prototypes = torch.nn.functional.normalize(torch.arange(12.0, dtype=torch.float64).view(3, 4).cos(), dim=1)
    unit = [torch.nn.functional.normalize(v, dim=1) for v in z]
    scores = [u @ prototypes.T for u in unit]
    return {
        "wmse": wmse_loss(z[:2], 6, 2, 1e-3, torch.Generator().manual_seed(3)),
        "mixup": mixup_cross_correlation_loss(z[0], z[1], z[2], global_permutation(perm, world), 0.3),
        "swav": swav_loss(scores, [sinkhorn_knopp(s) for s in scores[:2]], 0.1),
    }


def _family_data():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(OUT_DIM, IN_DIM, generator=g, dtype=torch.float64)
    xs = [torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64) for _ in range(4)]
    perm = torch.randperm(BATCH // WORLD, generator=g)
    return weight, xs, perm


def _family_worker(rank: int) -> dict:
    weight, xs, perm = _family_data()
    part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    grads = {}
    for name in ("wmse", "mixup", "swav"):
        w = weight.clone().requires_grad_(True)
        z = [gather_with_grad(x[part] @ w.T) for x in xs]
        _family_losses(z, perm, WORLD)[name].backward()
        grads[name] = ddp_average(w.grad)
    return grads


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_family_losses_on_gathered_batches_match_one_process() -> None:
    """2 ranks x 6 samples give the gradients of 1 rank x 12: Sinkhorn, whitening and the
    cross-correlations all see the global batch, and the mixup shuffle is mapped across ranks."""
    out = run_on_ranks(_family_worker, WORLD)
    weight, xs, perm = _family_data()
    for name in ("wmse", "mixup", "swav"):
        w = weight.clone().requires_grad_(True)
        _family_losses([x @ w.T for x in xs], perm, WORLD)[name].backward()
        for rank in range(WORLD):
            torch.testing.assert_close(out[rank][name], w.grad, rtol=1e-9, atol=1e-10)
