"""MoCo v2, MoCo v3 and NNCLR: losses against slow references written from the papers, closed
forms, the nearest-neighbour lookup, the queue / support-set state of the methods, and gradients
of N ranks equal to those of one process (gloo, CPU).

References are deliberately naive (explicit Python loops, float64).
"""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.methods.base import StepContext
import torch.distributed as dist
import torch.nn.functional as F

from gloo import ddp_average, run_on_ranks
from selfsup.backbones import create_backbone
from selfsup.losses.moco import moco_loss, moco_v3_loss, nearest_neighbour, nnclr_loss
from selfsup.methods import Encoder, create_method
from selfsup.core.distributed import gather_with_grad
from selfsup.views import Views

# --------------------------------------------------------------------------- helpers


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.tolist(), b.tolist()
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _orthonormal_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(_randn(d, d, seed=seed))
    return q.T[:n].contiguous()


# --------------------------------------------------------------------------- MoCo (v1/v2) loss


def _moco_reference(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> float:
    """MoCo eq. (1): -log exp(q.k+/t) / (exp(q.k+/t) + sum_j exp(q.queue_j/t)), mean over queries."""
    total = 0.0
    for i in range(q.shape[0]):
        positive = math.exp(_cos(q[i], k[i]) / tau)
        negatives = sum(math.exp(_cos(q[i], queue[j]) / tau) for j in range(queue.shape[0]))
        total += -math.log(positive / (positive + negatives))
    return total / q.shape[0]


@pytest.mark.parametrize("n,d,size", [(1, 3, 1), (4, 8, 16), (9, 5, 7)])
@pytest.mark.parametrize("tau", [0.07, 0.2, 1.0])
def test_moco_loss_matches_slow_reference(n: int, d: int, size: int, tau: float) -> None:
    q = _randn(n, d, seed=1)
    k = q + 0.5 * _randn(n, d, seed=2)
    queue = _randn(size, d, seed=3)
    expected = _moco_reference(q, k, queue, tau)
    assert moco_loss(q, k, queue, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert moco_loss(q.float(), k.float(), queue.float(), tau).item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_moco_loss_closed_forms(tau: float) -> None:
    n, size, d = 3, 4, 8
    basis = _orthonormal_rows(n + size, d, seed=4)
    q, queue = basis[:n], basis[n:]
    # Query = key, every negative orthogonal: -log(e^(1/t) / (e^(1/t) + K)) = log(1 + K e^(-1/t)).
    expected = math.log(1 + size * math.exp(-1 / tau))
    assert moco_loss(q, q.clone(), queue, tau).item() == pytest.approx(expected, rel=1e-9)
    # Complete collapse: the positive and the K negatives all tie.
    same = torch.ones(n, d, dtype=torch.float64)
    assert moco_loss(same, same, torch.ones(size, d, dtype=torch.float64), tau).item() == pytest.approx(
        math.log(1 + size), rel=1e-9
    )


def test_moco_loss_only_the_queue_gives_negatives() -> None:
    # Other keys of the batch are not negatives: permuting the batch changes nothing, and the loss
    # of a batch is the mean of the per-sample losses.
    q, k, queue = _randn(6, 4, seed=5), _randn(6, 4, seed=6), _randn(10, 4, seed=7)
    base = moco_loss(q, k, queue, 0.2)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(moco_loss(q[perm], k[perm], queue, 0.2), base)
    per_sample = torch.stack([moco_loss(q[i : i + 1], k[i : i + 1], queue, 0.2) for i in range(6)])
    torch.testing.assert_close(per_sample.mean(), base)
    # Scale-invariant in every input (cosine similarities).
    torch.testing.assert_close(moco_loss(3 * q, 0.1 * k, 7 * queue, 0.2), base)


def test_moco_loss_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="query and key"):
        moco_loss(torch.randn(4, 3), torch.randn(5, 3), torch.randn(8, 3))
    with pytest.raises(ValueError, match="queue"):
        moco_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(8, 2))


# --------------------------------------------------------------------------- MoCo v3 loss


def _moco_v3_reference(q: torch.Tensor, k: torch.Tensor, tau: float) -> float:
    """MoCo v3 Algorithm 1: ctr(q, k) = CE(q k^T / t, labels = diagonal) * 2t."""
    n = q.shape[0]
    total = 0.0
    for i in range(n):
        denominator = sum(math.exp(_cos(q[i], k[j]) / tau) for j in range(n))
        total += -math.log(math.exp(_cos(q[i], k[i]) / tau) / denominator)
    return 2 * tau * total / n


@pytest.mark.parametrize("n,d", [(1, 2), (2, 3), (5, 16), (16, 8)])
@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_moco_v3_loss_matches_slow_reference(n: int, d: int, tau: float) -> None:
    q = _randn(n, d, seed=8)
    k = q + 0.5 * _randn(n, d, seed=9)
    expected = _moco_v3_reference(q, k, tau)
    assert moco_v3_loss(q, k, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert moco_v3_loss(q.float(), k.float(), tau).item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("n,d", [(1, 1), (3, 8), (8, 8)])
@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_moco_v3_loss_closed_form_orthogonal_aligned(n: int, d: int, tau: float) -> None:
    basis = _orthonormal_rows(n, d, seed=10)
    expected = 2 * tau * math.log(1 + (n - 1) * math.exp(-1 / tau))
    assert moco_v3_loss(basis, basis.clone(), tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_moco_v3_loss_invariant_to_batch_order_but_not_to_swapping_query_and_key() -> None:
    q, k = _randn(7, 4, seed=11), _randn(7, 4, seed=12)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(moco_v3_loss(q[perm], k[perm], 0.2), moco_v3_loss(q, k, 0.2))
    assert not torch.allclose(moco_v3_loss(q, k, 0.2), moco_v3_loss(k, q, 0.2))


# --------------------------------------------------------------------------- NNCLR


def _nearest_reference(z: torch.Tensor, support: torch.Tensor, valid: list[bool]) -> list[int]:
    """Eq. (2)'s NN(z, Q) = argmin_q ||z/|z| - q/|q|||, by explicit search."""
    chosen = []
    for i in range(z.shape[0]):
        zi = [x / math.sqrt(sum(v * v for v in z[i].tolist())) for x in z[i].tolist()]
        best, best_distance = -1, float("inf")
        for j in range(support.shape[0]):
            if not valid[j]:
                continue
            sj = support[j].tolist()
            norm = math.sqrt(sum(v * v for v in sj))
            distance = sum((a - b / norm) ** 2 for a, b in zip(zi, sj))
            if distance < best_distance:
                best, best_distance = j, distance
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("n,size,d", [(1, 1, 3), (5, 12, 4), (16, 40, 8)])
@pytest.mark.parametrize("masked", [False, True])
def test_nearest_neighbour_matches_brute_force(n: int, size: int, d: int, masked: bool) -> None:
    z, support = _randn(n, d, seed=13), _randn(size, d, seed=14)
    valid = torch.arange(size) < max(1, size // 2) if masked else torch.ones(size, dtype=torch.bool)
    expected = _nearest_reference(z, support, valid.tolist())
    out = nearest_neighbour(z, support, valid if masked else None)
    torch.testing.assert_close(out, support[expected])


def test_nearest_neighbour_returns_the_stored_row_without_gradient() -> None:
    support = _randn(6, 3, seed=15)
    z = (support[[4, 1]] * torch.tensor([[3.0], [0.2]], dtype=torch.float64)).requires_grad_(True)
    out = nearest_neighbour(z, support)
    torch.testing.assert_close(out, support[[4, 1]])  # scale does not matter: cosine
    assert not out.requires_grad


def _nnclr_reference(neighbour: torch.Tensor, prediction: torch.Tensor, tau: float) -> float:
    """NNCLR eq. (2): -log exp(NN(z_i).z_i+/t) / sum_k exp(NN(z_i).z_k+/t), mean over i."""
    n = neighbour.shape[0]
    total = 0.0
    for i in range(n):
        denominator = sum(math.exp(_cos(neighbour[i], prediction[k]) / tau) for k in range(n))
        total += -math.log(math.exp(_cos(neighbour[i], prediction[i]) / tau) / denominator)
    return total / n


@pytest.mark.parametrize("n,d", [(1, 2), (4, 3), (12, 16)])
@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5])
def test_nnclr_loss_matches_slow_reference(n: int, d: int, tau: float) -> None:
    neighbour = _randn(n, d, seed=16)
    prediction = neighbour + 0.7 * _randn(n, d, seed=17)
    expected = _nnclr_reference(neighbour, prediction, tau)
    assert nnclr_loss(neighbour, prediction, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert nnclr_loss(neighbour.float(), prediction.float(), tau).item() == pytest.approx(
        expected, rel=1e-4, abs=1e-4
    )


def test_nnclr_loss_closed_form_and_relation_to_moco_v3() -> None:
    n, d, tau = 5, 8, 0.1
    basis = _orthonormal_rows(n, d, seed=18)
    expected = math.log(1 + (n - 1) * math.exp(-1 / tau))
    assert nnclr_loss(basis, basis.clone(), tau).item() == pytest.approx(expected, rel=1e-9)
    # The same cross-view InfoNCE as MoCo v3's ctr, without its 2-tau factor.
    a, b = _randn(n, d, seed=19), _randn(n, d, seed=20)
    torch.testing.assert_close(moco_v3_loss(a, b, tau), 2 * tau * nnclr_loss(a, b, tau))


def test_nnclr_loss_gradient_reaches_only_the_prediction() -> None:
    neighbour = _randn(4, 3, seed=21).requires_grad_(True)
    prediction = _randn(4, 3, seed=22).requires_grad_(True)
    nnclr_loss(nearest_neighbour(neighbour, _randn(9, 3, seed=23)), prediction, 0.1).backward()
    assert neighbour.grad is None and prediction.grad is not None


# --------------------------------------------------------------------------- methods' state


def _method(name: str, **params):
    torch.manual_seed(0)
    shape = (1, 8, 8)
    encoder = Encoder(create_backbone("resnet_tiny", shape), torch.zeros(1, 1, 1), torch.ones(1, 1, 1), shape)
    return create_method(name, encoder, **params)


def _views(n: int = 8, seed: int = 0) -> Views:
    g = torch.Generator().manual_seed(seed)
    return Views([torch.rand(n, 1, 8, 8, generator=g), torch.rand(n, 1, 8, 8, generator=g)])


def test_moco_v2_pushes_both_views_keys_and_saves_its_queue() -> None:
    method = _method("moco_v2", queue_size=40, momentum=0.0)
    views = _views(8)
    before = method.queue.features
    method.training_step(views, StepContext(0, 1))
    assert int(method.queue.ptr) == 16 and int(method.queue.filled) == 16
    # The keys written are the key encoder's projections of the two views (normalised).
    with torch.no_grad():
        keys = method.key_encoder(torch.cat(views.global_views))
    torch.testing.assert_close(method.queue.features[:16], F.normalize(keys, dim=1))
    torch.testing.assert_close(method.queue.features[16:], before[16:])
    # The queue is a buffer: it travels with the method's state dict.
    state = method.state_dict()
    assert "queue.queue" in state and "queue.ptr" in state
    other = _method("moco_v2", queue_size=40)
    other.load_state_dict(state)
    torch.testing.assert_close(other.queue.features, method.queue.features)
    assert int(other.queue.ptr) == 16


def test_moco_v2_key_encoder_follows_with_fixed_momentum() -> None:
    method = _method("moco_v2", momentum=0.0)
    with torch.no_grad():
        for p in method.projector.parameters():
            p.add_(1.0)  # move the query branch away from the key encoder
    method.on_step_end(StepContext(0, 10))  # momentum 0: the key encoder copies the query branch
    query_params = [*method.encoder.parameters(), *method.projector.parameters()]
    for key_param, query_param in zip(method.key_encoder.module.parameters(), query_params):
        torch.testing.assert_close(key_param, query_param)


def test_moco_v3_momentum_rises_to_one_and_freezes_the_key_encoder() -> None:
    method = _method("moco_v3")
    method.on_step_end(StepContext(-1, 10))
    assert method.momentum == pytest.approx(0.99)
    frozen = [p.clone() for p in method.momentum_encoder.parameters()]
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(1.0)
    method.on_step_end(StepContext(9, 10))
    assert method.momentum == pytest.approx(1.0)
    for before, after in zip(frozen, method.momentum_encoder.parameters()):
        torch.testing.assert_close(before, after)


def test_moco_v3_loss_in_the_method_is_the_symmetric_sum() -> None:
    method = _method("moco_v3", temperature=0.5)
    views = _views(8, seed=1)
    torch.manual_seed(1)
    out = method.training_step(views, StepContext(0, 1))
    x = torch.cat(views.global_views)
    with torch.no_grad():
        q = method.predictor(method.projector(method.encoder(x)))
        k = method.momentum_encoder(x)
    expected = moco_v3_loss(q[:8], k[8:], 0.5) + moco_v3_loss(q[8:], k[:8], 0.5)
    torch.testing.assert_close(out.loss.detach(), expected)


def test_nnclr_first_step_uses_itself_then_neighbours_from_the_first_view() -> None:
    method = _method("nnclr", support_size=32, temperature=0.2)
    views = _views(8, seed=2)
    x = torch.cat(views.global_views)
    out = method.training_step(views, StepContext(0, 1))
    with torch.no_grad():
        z = method.projector(method.encoder(x))
        p = method.predictor(z)
    # Empty support set: each projection is its own positive.
    expected = 0.5 * (nnclr_loss(z[:8], p[8:], 0.2) + nnclr_loss(z[8:], p[:8], 0.2))
    torch.testing.assert_close(out.loss.detach(), expected)
    # Only the first view's projections were written.
    assert int(method.support.filled) == 8
    torch.testing.assert_close(method.support.features[:8], F.normalize(z[:8], dim=1))
    # Second step: the positives are nearest neighbours among the 8 written rows only.
    out = method.training_step(views, StepContext(0, 1))
    with torch.no_grad():
        z = method.projector(method.encoder(x))
        p = method.predictor(z)
    support = method.support.features[:8]
    nn1, nn2 = nearest_neighbour(z[:8], support), nearest_neighbour(z[8:], support)
    expected = 0.5 * (nnclr_loss(nn1, p[8:], 0.2) + nnclr_loss(nn2, p[:8], 0.2))
    torch.testing.assert_close(out.loss.detach(), expected)
    assert int(method.support.filled) == 16
    state = method.state_dict()
    assert "support.queue" in state and "support.filled" in state


# --------------------------------------------------------------------------- distributed gradients

WORLD, BATCH, IN_DIM, OUT_DIM, QUEUE = 2, 12, 5, 6, 7
LOSS_NAMES = ("moco_v2", "moco_v3", "nnclr")


def _data():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(OUT_DIM, IN_DIM, generator=g, dtype=torch.float64)
    x1 = torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64)
    x2 = x1 + 0.3 * torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64)
    fixed = torch.randn(BATCH, OUT_DIM, generator=g, dtype=torch.float64)  # keys / neighbours
    queue = torch.randn(QUEUE, OUT_DIM, generator=g, dtype=torch.float64)
    return weight, x1, x2, fixed, queue


def _loss(name: str, z1: torch.Tensor, z2: torch.Tensor, fixed: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
    """The losses as the methods call them: MoCo v3 and NNCLR on gathered tensors, MoCo v2 local."""
    if name == "moco_v2":
        return moco_loss(z1, fixed, queue, 0.2) + moco_loss(z2, fixed, queue, 0.2)
    if name == "moco_v3":
        return moco_v3_loss(gather_with_grad(z1), gather_with_grad(fixed), 0.2) + moco_v3_loss(
            gather_with_grad(z2), gather_with_grad(fixed), 0.2
        )
    return nnclr_loss(gather_with_grad(fixed), gather_with_grad(z2), 0.1)


def _worker(rank: int) -> dict:
    out = {}
    for name in LOSS_NAMES:  # one process group for all three: spawning is the slow part
        weight, x1, x2, fixed, queue = _data()
        weight.requires_grad_(True)
        part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        _loss(name, x1[part] @ weight.T, x2[part] @ weight.T, fixed[part], queue).backward()
        out[name] = ddp_average(weight.grad)
    return out


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_two_ranks_give_single_process_gradients() -> None:
    out = run_on_ranks(_worker, WORLD)
    for name in LOSS_NAMES:
        weight, x1, x2, fixed, queue = _data()
        weight.requires_grad_(True)
        _loss(name, x1 @ weight.T, x2 @ weight.T, fixed, queue).backward()
        for rank in range(WORLD):
            torch.testing.assert_close(out[rank][name], weight.grad, rtol=1e-9, atol=1e-10, msg=name)
