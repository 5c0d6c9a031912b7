"""Distillation family: SimSiam, DirectPred and DINO losses, state modules and method mechanics.

Loss references are deliberately naive (explicit Python loops, float64) and written from the
papers, so that they share no vectorisation trick with the implementations under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.methods.base import StepContext

from selfsup.backbones import create_backbone
from selfsup.losses.distillation import dino_loss, negative_cosine
from selfsup.losses.distillation_state import DINOCenter, PredictorCorrelation, directpred_predictor
from selfsup.methods import Encoder, create_method
from selfsup.methods.dino import DINOConfig, clip_each_gradient, teacher_temperature
from selfsup.views import Views, create_views


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(_randn(d, d, seed=seed))
    return q


def _method(name: str, **params):
    torch.manual_seed(0)
    shape = (13,)
    encoder = Encoder(create_backbone("mlp", shape), torch.zeros(shape), torch.ones(shape), shape)
    return create_method(name, encoder, **params)


def _views(method, n: int = 16, seed: int = 0) -> Views:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 13, generator=g)
    return create_views("auto", "vector")(x, g, method.num_global_views, method.num_local_views)


# --------------------------------------------------------------------------- negative cosine (SimSiam)


def _negative_cosine_reference(p: torch.Tensor, z: torch.Tensor) -> float:
    """SimSiam eq. (1): D(p, z) = -p/||p|| . z/||z||, averaged over the batch."""
    total = 0.0
    for row_p, row_z in zip(p.tolist(), z.tolist()):
        dot = sum(a * b for a, b in zip(row_p, row_z))
        norm_p = math.sqrt(sum(a * a for a in row_p))
        norm_z = math.sqrt(sum(b * b for b in row_z))
        total += -dot / (norm_p * norm_z)
    return total / len(p)


@pytest.mark.parametrize("n", [1, 3, 16])
@pytest.mark.parametrize("d", [2, 7, 64])
def test_negative_cosine_matches_slow_reference(n: int, d: int) -> None:
    p, z = _randn(n, d, seed=1), _randn(n, d, seed=2)
    expected = _negative_cosine_reference(p, z)
    assert negative_cosine(p, z).item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert negative_cosine(p.float(), z.float()).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("d", [1, 4, 32])
def test_negative_cosine_closed_forms(d: int) -> None:
    p = _randn(5, d, seed=3)
    assert negative_cosine(p, p).item() == pytest.approx(-1.0)
    assert negative_cosine(p, -3.0 * p).item() == pytest.approx(1.0)  # scale-invariant, opposite
    if d >= 2:  # orthogonal rows: cosine 0
        q = _orthogonal(d, seed=4)
        assert negative_cosine(q[:, :1].T, q[:, 1:2].T).item() == pytest.approx(0.0, abs=1e-12)


def test_negative_cosine_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        negative_cosine(torch.zeros(2, 3), torch.zeros(2, 4))


def test_simsiam_stops_the_gradient_of_the_targets(monkeypatch) -> None:
    import selfsup.methods.simsiam as simsiam

    calls = []

    def recording(p, z):
        calls.append((p.requires_grad, z.requires_grad))
        return negative_cosine(p, z)

    monkeypatch.setattr(simsiam, "negative_cosine", recording)
    method = _method("simsiam")
    out = method.training_step(_views(method), StepContext(0, 1))
    assert calls == [(True, False), (True, False)]  # D(p1, sg(z2)) and D(p2, sg(z1))
    assert -1.0 <= out.loss.item() <= 1.0


def test_simsiam_heads_follow_the_paper() -> None:
    method = _method("simsiam", proj_dim=64, pred_hidden_dim=16)
    assert isinstance(method.projector[-1], torch.nn.BatchNorm1d) and not method.projector[-1].affine
    assert sum(isinstance(m, torch.nn.Linear) for m in method.projector) == 3
    linears = [m for m in method.predictor if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 16), (16, 64)]
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in method.predictor[-1:])  # no BN on the output


# --------------------------------------------------------------------------- DirectPred


@pytest.mark.parametrize("d", [1, 3, 16])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_directpred_predictor_matches_the_closed_form(d: int, eps: float) -> None:
    u = _orthogonal(d, seed=d)
    s = torch.linspace(0.0, 4.0, d + 1, dtype=torch.float64)[1:]  # positive eigenvalues, max 4
    correlation = u @ torch.diag(s) @ u.T
    weight = directpred_predictor(correlation, eps)
    # Tian et al. eq. (18), entry by entry: W_ik = sum_j U_ij (sqrt(s_j / max s) + eps) U_kj.
    expected = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d):
        for k in range(d):
            expected[i, k] = sum(u[i, j] * (math.sqrt(s[j] / 4.0) + eps) * u[k, j] for j in range(d))
    torch.testing.assert_close(weight, expected, rtol=1e-9, atol=1e-9)
    # The predictor shares F's eigenvectors: W u_j = p_j u_j.
    for j in range(d):
        torch.testing.assert_close(weight @ u[:, j], (math.sqrt(s[j] / 4.0) + eps) * u[:, j], rtol=1e-9, atol=1e-9)


def test_directpred_predictor_edge_cases() -> None:
    # Diagonal F: W is diagonal with p_j = sqrt(s_j / max s) + eps, independent of F's scale.
    s = torch.tensor([9.0, 1.0, 0.0], dtype=torch.float64)
    expected = torch.diag(torch.tensor([1.0, 1 / 3, 0.0], dtype=torch.float64) + 0.1)
    torch.testing.assert_close(directpred_predictor(torch.diag(s), 0.1), expected)
    torch.testing.assert_close(directpred_predictor(torch.diag(100 * s), 0.1), expected)
    # A slightly negative eigenvalue (round-off) counts as 0; an all-zero F gives eps * I.
    torch.testing.assert_close(directpred_predictor(torch.diag(torch.tensor([4.0, -1e-9], dtype=torch.float64)), 0.1),
                               torch.diag(torch.tensor([1.1, 0.1], dtype=torch.float64)))
    torch.testing.assert_close(directpred_predictor(torch.zeros(3, 3), 0.1), 0.1 * torch.eye(3))


def _batch_correlation_reference(f: torch.Tensor) -> list[list[float]]:
    rows = f.tolist()
    d = len(rows[0])
    return [[sum(r[a] * r[b] for r in rows) / len(rows) for b in range(d)] for a in range(d)]


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.9])
def test_predictor_correlation_running_average(rho: float) -> None:
    state = PredictorCorrelation(4, rho)
    batches = [_randn(6, 4, seed=s, dtype=torch.float32) for s in (1, 2, 3)]
    expected = [[0.0] * 4 for _ in range(4)]
    for f in batches:  # F = rho F + (1 - rho) E_B[f f^T], eq. (19), from F = 0
        state.update(f)
        batch = _batch_correlation_reference(f)
        expected = [[rho * expected[a][b] + (1 - rho) * batch[a][b] for b in range(4)] for a in range(4)]
    torch.testing.assert_close(state.correlation, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_predictor_correlation_state_round_trip() -> None:
    state = PredictorCorrelation(5, 0.3)
    state.update(_randn(8, 5, seed=7, dtype=torch.float32))
    restored = PredictorCorrelation(5, 0.3)
    restored.load_state_dict(state.state_dict())
    assert torch.equal(restored.correlation, state.correlation)
    torch.testing.assert_close(restored.predictor(0.1), state.predictor(0.1))


def test_directpred_predictor_is_set_not_trained() -> None:
    method = _method("directpred", proj_dim=16, proj_hidden_dim=32)
    weight = method.predictor.weight
    assert torch.equal(weight, torch.eye(16))  # the predictor of an isotropic F
    assert all(p is not weight for group in method.param_groups(1e-4) for p in group["params"])
    optimizer = torch.optim.SGD([{"params": g["params"]} for g in method.param_groups(1e-4)], lr=0.1)
    for step in (1, 2):
        out = method.training_step(_views(method, seed=step), StepContext(0, 1))
        optimizer.zero_grad()
        out.loss.backward()
        assert weight.grad is None  # no gradient reaches W_p...
        assert method.projector[0].weight.grad is not None  # ...but gradients flow through it
        optimizer.step()
        method.on_step_end(StepContext(step - 1, 10))
        # After each step W_p is the closed form of the running correlation.
        torch.testing.assert_close(weight, directpred_predictor(method.correlation.correlation, 0.1))
    assert not torch.equal(method.correlation.correlation, torch.zeros(16, 16))
    # The running correlation is a buffer: it travels with the method's checkpoint.
    state = method.state_dict()
    assert "correlation.correlation" in state
    fresh = _method("directpred", proj_dim=16, proj_hidden_dim=32)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.correlation.correlation, method.correlation.correlation)
    assert torch.equal(fresh.predictor.weight, weight)


def test_directpred_updates_the_predictor_every_n_steps() -> None:
    method = _method("directpred", proj_dim=8, proj_hidden_dim=16, update_every=3)
    for step in (1, 2):
        method.training_step(_views(method, seed=step), StepContext(0, 1))
        method.on_step_end(StepContext(step - 1, 10))
        assert torch.equal(method.predictor.weight, torch.eye(8))
    method.training_step(_views(method, seed=3), StepContext(0, 1))
    method.on_step_end(StepContext(2, 10))
    torch.testing.assert_close(method.predictor.weight, directpred_predictor(method.correlation.correlation, 0.1))


# --------------------------------------------------------------------------- DINO loss


def _dino_reference(student: list[torch.Tensor], teacher: list[torch.Tensor], tau_s: float) -> float:
    """DINO eq. (3) / Algorithm 1: mean over pairs (teacher view i, student view v != i) of the
    batch mean of H(P_t, P_s) = -sum_k P_t[k] log softmax(s / tau_s)[k]."""
    total, pairs = 0.0, 0
    for i, q in enumerate(teacher):
        for v, s in enumerate(student):
            if v == i:
                continue
            pair = 0.0
            for q_row, s_row in zip(q.tolist(), s.tolist()):
                scaled = [x / tau_s for x in s_row]
                top = max(scaled)
                log_normaliser = top + math.log(sum(math.exp(x - top) for x in scaled))
                pair += -sum(qk * (sk - log_normaliser) for qk, sk in zip(q_row, scaled))
            total += pair / len(q)
            pairs += 1
    return total / pairs


def _probs(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.softmax(_randn(n, k, seed=seed) / 0.3, dim=-1)


@pytest.mark.parametrize("n,k", [(1, 3), (4, 16), (8, 64)])
@pytest.mark.parametrize("num_local", [0, 1, 4])
@pytest.mark.parametrize("tau_s", [0.05, 0.1, 1.0])
def test_dino_loss_matches_slow_reference(n: int, k: int, num_local: int, tau_s: float) -> None:
    student = [_randn(n, k, seed=10 + v) for v in range(2 + num_local)]
    teacher = [_probs(n, k, seed=20 + i) for i in range(2)]
    expected = _dino_reference(student, teacher, tau_s)
    assert dino_loss(student, teacher, tau_s).item() == pytest.approx(expected, rel=1e-10, abs=1e-10)
    student32 = [s.float() for s in student]
    teacher32 = [t.float() for t in teacher]
    assert dino_loss(student32, teacher32, tau_s).item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("k", [2, 10, 1024])
@pytest.mark.parametrize("num_views", [2, 6])
def test_dino_loss_closed_forms(k: int, num_views: int) -> None:
    n = 3
    teacher = [_probs(n, k, seed=i) for i in range(2)]
    # A uniform student (all logits equal) has cross-entropy log K against any teacher.
    uniform = [torch.zeros(n, k, dtype=torch.float64) for _ in range(num_views)]
    assert dino_loss(uniform, teacher, 0.1).item() == pytest.approx(math.log(k))
    # A one-hot teacher and a student whose logit for that class is c above the rest:
    # H = -log(e^{c/t} / (e^{c/t} + K - 1)) = log(1 + (K - 1) e^{-c/t}).
    one_hot = torch.zeros(n, k, dtype=torch.float64)
    one_hot[:, 0] = 1.0
    peaked = torch.zeros(n, k, dtype=torch.float64)
    peaked[:, 0] = 0.5
    expected = math.log(1 + (k - 1) * math.exp(-0.5 / 0.1))
    assert dino_loss([peaked] * num_views, [one_hot, one_hot], 0.1).item() == pytest.approx(expected)


def test_dino_loss_skips_same_view_pairs() -> None:
    # Two views: only (teacher 0, student 1) and (teacher 1, student 0) count.
    k = 5
    teacher = [_probs(2, k, seed=1), _probs(2, k, seed=2)]
    student = [torch.log(teacher[0]), torch.log(teacher[1])]  # each student view equals its own teacher
    cross = lambda q, s: (-(q * torch.log_softmax(s, dim=-1)).sum(-1)).mean().item()
    expected = (cross(teacher[0], student[1]) + cross(teacher[1], student[0])) / 2
    assert dino_loss(student, teacher, 1.0).item() == pytest.approx(expected)


def test_dino_loss_gradient_reaches_only_the_student() -> None:
    student = [_randn(4, 8, seed=s).requires_grad_() for s in range(4)]
    teacher = [_probs(4, 8, seed=9), _probs(4, 8, seed=10)]
    dino_loss(student, teacher, 0.1).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)


def test_dino_loss_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        dino_loss([torch.zeros(2, 3)], [torch.zeros(2, 3)], 0.1)
    with pytest.raises(ValueError, match="shape"):
        dino_loss([torch.zeros(2, 3), torch.zeros(2, 4)], [torch.zeros(2, 3)], 0.1)


# --------------------------------------------------------------------------- DINO centre and method


def test_dino_center_update_rule_and_probabilities() -> None:
    center = DINOCenter(4, momentum=0.9)
    assert torch.equal(center.center, torch.zeros(4))
    t1, t2 = _randn(6, 4, seed=1, dtype=torch.float32), _randn(6, 4, seed=2, dtype=torch.float32)
    center.update(t1)
    torch.testing.assert_close(center.center, 0.1 * t1.mean(dim=0))
    center.update(t2)
    torch.testing.assert_close(center.center, 0.9 * 0.1 * t1.mean(dim=0) + 0.1 * t2.mean(dim=0))
    # Centred and sharpened: softmax((t - c) / tau), entry by entry.
    tau = 0.04
    probs = center(t2, tau)
    c = center.center.tolist()
    for row, p_row in zip(t2.tolist(), probs.tolist()):
        exps = [math.exp((x - ck) / tau) for x, ck in zip(row, c)]
        assert p_row == pytest.approx([e / sum(exps) for e in exps], rel=1e-4, abs=1e-6)
    assert not probs.requires_grad
    # A lower temperature sharpens: the entropy drops.
    entropy = lambda p: -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
    assert entropy(center(t2, 0.04)) < entropy(center(t2, 1.0))


def test_dino_center_state_round_trip() -> None:
    center = DINOCenter(8, momentum=0.9)
    center.update(_randn(5, 8, seed=3, dtype=torch.float32))
    restored = DINOCenter(8, momentum=0.9)
    restored.load_state_dict(center.state_dict())
    assert torch.equal(restored.center, center.center)


def test_dino_teacher_temperature_warms_up_linearly() -> None:
    config = DINOConfig(warmup_teacher_temperature=0.04, teacher_temperature=0.07, teacher_temperature_warmup=0.3)
    assert teacher_temperature(0, 100, config) == pytest.approx(0.04)
    assert teacher_temperature(15, 100, config) == pytest.approx(0.055)
    assert teacher_temperature(30, 100, config) == pytest.approx(0.07)
    assert teacher_temperature(99, 100, config) == pytest.approx(0.07)
    constant = DINOConfig(warmup_teacher_temperature=0.04, teacher_temperature=0.04, teacher_temperature_warmup=0.0)
    assert teacher_temperature(0, 100, constant) == pytest.approx(0.04)


def test_dino_multi_crop_teacher_sees_global_views_only() -> None:
    method = _method("dino", num_local_crops=3, num_prototypes=32, head_hidden_dim=16, bottleneck_dim=8)
    assert method.num_local_views == 3
    seen = []
    method.teacher.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    views = _views(method, n=10)
    assert len(views.local_views) == 3
    out = method.training_step(views, StepContext(0, 1))
    assert seen == [20]  # the 2 global views of 10 samples
    assert torch.isfinite(out.loss)
    assert not torch.equal(method.center.center, torch.zeros(32))  # the centre moved


def test_dino_freezes_the_prototypes_at_the_start() -> None:
    method = _method("dino", num_prototypes=32, head_hidden_dim=16, bottleneck_dim=8, freeze_last_layer=0.1)
    last = method.head.last_layer.weight
    for step, frozen in [(0, True), (9, True), (10, False), (50, False)]:
        method.zero_grad()
        method.training_step(_views(method, seed=step), StepContext(0, 1)).loss.backward()
        assert last.grad is not None
        method.before_optimizer_step(StepContext(step, 100))
        assert (last.grad is None) == frozen, f"step {step}"
        assert method.head.mlp[0].weight.grad is not None  # the rest of the head still learns


def test_dino_clips_each_gradient_separately() -> None:
    big, small, none = (torch.nn.Parameter(torch.zeros(3, 4)) for _ in range(3))
    big.grad = torch.full((3, 4), 10.0)  # norm sqrt(12) * 10 > 3: scaled down to norm 3
    small.grad = torch.full((3, 4), 0.1)  # norm < 3: untouched
    clip_each_gradient([big, small, none], 3.0)
    assert big.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    torch.testing.assert_close(big.grad, torch.full((3, 4), 3.0 / math.sqrt(12)))
    torch.testing.assert_close(small.grad, torch.full((3, 4), 0.1))
    assert none.grad is None


def test_dino_schedules_are_buffers_that_resume() -> None:
    method = _method("dino", num_prototypes=32, head_hidden_dim=16, bottleneck_dim=8,
                     warmup_teacher_temperature=0.04, teacher_temperature=0.07)
    method.training_step(_views(method), StepContext(0, 1))
    method.on_step_end(StepContext(14, 100))
    assert method.teacher_temp.item() == pytest.approx(0.055)
    fresh = _method("dino", num_prototypes=32, head_hidden_dim=16, bottleneck_dim=8,
                    warmup_teacher_temperature=0.04, teacher_temperature=0.07)
    fresh.load_state_dict(method.state_dict())
    assert fresh.teacher_temp.item() == pytest.approx(0.055)
    assert torch.equal(fresh.center.center, method.center.center)


# --------------------------------------------------------------------------- distributed state


def _state_worker(rank: int, port: int, world: int, out: dict) -> None:
    import os

    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        center, correlation = DINOCenter(4, 0.9), PredictorCorrelation(4, 0.3)
        for seed in (1, 2):
            batch = _randn(12, 4, seed=seed, dtype=torch.float32)
            part = batch[rank * 12 // world : (rank + 1) * 12 // world]
            center.update(part)
            correlation.update(part)
        out[rank] = (center.center.clone(), correlation.correlation.clone())
    finally:
        dist.destroy_process_group()


def test_states_reduce_over_ranks_like_one_process_with_the_whole_batch() -> None:
    import socket

    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed not built")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_state_worker, args=(port, 2, out), nprocs=2, join=True)
    center, correlation = DINOCenter(4, 0.9), PredictorCorrelation(4, 0.3)
    for seed in (1, 2):
        batch = _randn(12, 4, seed=seed, dtype=torch.float32)
        center.update(batch)
        correlation.update(batch)
    for rank in range(2):
        torch.testing.assert_close(out[rank][0], center.center)
        torch.testing.assert_close(out[rank][1], correlation.correlation)
