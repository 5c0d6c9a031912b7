"""DCL / DCLW, NT-Xent-AM, MV-InfoNCE and SupCon: slow references written from the papers,
closed forms, relations to InfoNCE, gradients, and the methods built on them.

References are naive loops in float64 over Python floats, sharing no vectorisation trick with
the implementations under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.methods.base import StepContext
import torch.distributed as dist

from gloo import ddp_average, run_on_ranks
from selfsup.backbones import create_backbone
from selfsup.losses.contrastive import (
    dcl_loss,
    dclw_weight,
    info_nce,
    multiview_info_nce,
    ntxent_am_loss,
    supcon_loss,
)
from selfsup.methods import Encoder, create_method
from selfsup.core.distributed import gather_with_grad
from selfsup.errors import ConfigError
from selfsup.views import create_views

# --------------------------------------------------------------------------- helpers


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _views(v: int, n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``[V, N, D]`` correlated views: a shared centre per sample plus per-view noise."""
    centre = _randn(1, n, d, seed=seed)
    return centre + 0.6 * _randn(v, n, d, seed=seed + 1)


def _orthonormal_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(_randn(d, d, seed=seed))
    return q.T[:n].contiguous()


# --------------------------------------------------------------------------- DCL / DCLW


def _dclw_weight_reference(z1: torch.Tensor, z2: torch.Tensor, sigma: float) -> list[float]:
    """Yeh et al. 2022: w_i = 2 - exp(<z1_i, z2_i>/sigma) / E_j[exp(<z1_j, z2_j>/sigma)]."""
    a, b = z1.tolist(), z2.tolist()
    e = [math.exp(_cos(a[i], b[i]) / sigma) for i in range(len(a))]
    mean = sum(e) / len(e)
    return [2 - x / mean for x in e]


def _dcl_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float, weights: list[float] | None = None) -> float:
    """Yeh et al. 2022, L_DC: per anchor -w <z_i^(1), z_i^(2)>/tau + log sum over j != i, both views."""
    n = z1.shape[0]
    views = [z1.tolist(), z2.tolist()]
    w = weights or [1.0] * n
    total = 0.0
    for k in range(2):
        for i in range(n):
            positive = w[i] * _cos(views[0][i], views[1][i]) / tau
            denominator = 0.0
            for l in range(2):
                for j in range(n):
                    if j != i:
                        denominator += math.exp(_cos(views[k][i], views[l][j]) / tau)
            total += -positive + math.log(denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("d", [3, 32])
@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5, 1.0])
def test_dcl_matches_slow_reference(n: int, d: int, tau: float) -> None:
    z = _views(2, n, d, seed=1)
    expected = _dcl_reference(z[0], z[1], tau)
    assert dcl_loss(z[0], z[1], tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert dcl_loss(z[0].float(), z[1].float(), tau).item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("sigma", [0.2, 0.5, 2.0])
def test_dclw_matches_slow_reference(n: int, tau: float, sigma: float) -> None:
    z = _views(2, n, 8, seed=2)
    weights = _dclw_weight_reference(z[0], z[1], sigma)
    assert dclw_weight(z[0], z[1], sigma).tolist() == pytest.approx(weights, rel=1e-12, abs=1e-12)
    expected = _dcl_reference(z[0], z[1], tau, weights)
    got = dcl_loss(z[0], z[1], tau, weight_fn=lambda a, b: dclw_weight(a, b, sigma)).item()
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n,d", [(2, 2), (3, 8), (8, 8), (16, 32)])
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_dcl_closed_form_orthogonal_aligned(n: int, d: int, tau: float) -> None:
    # z1 = z2 = orthonormal rows: positive term -1/tau, the 2N - 2 negatives all have cos 0.
    e = _orthonormal_rows(n, d, seed=3)
    expected = -1 / tau + math.log(2 * n - 2)
    assert dcl_loss(e, e.clone(), tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # Equal positive similarities make every DCLW weight 1: DCLW = DCL.
    torch.testing.assert_close(dclw_weight(e, e, 0.5), torch.ones(n, dtype=torch.float64))
    assert dcl_loss(e, e, tau, weight_fn=dclw_weight).item() == pytest.approx(expected, rel=1e-9)
    # Complete collapse: positive and all negatives have cos 1, so the loss is log(2N - 2).
    same = torch.ones(n, d, dtype=torch.float64)
    assert dcl_loss(same, same, tau).item() == pytest.approx(math.log(2 * n - 2), rel=1e-9)


@pytest.mark.parametrize("n", [2, 7, 32])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_dcl_is_infonce_without_the_positive_in_the_denominator(n: int, tau: float) -> None:
    # Per anchor, InfoNCE - DCL = log(1 + e^{s/tau} / Neg) = -log(1 - p_pos), p_pos the
    # positive's softmax probability in InfoNCE: DCL = InfoNCE + mean log(1 - p_pos) < InfoNCE.
    z1, z2 = _views(2, n, 6, seed=4)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    p_pos = torch.softmax(logits, dim=1)[torch.arange(2 * n), targets]
    expected = info_nce(z1, z2, tau) + torch.log1p(-p_pos).mean()
    torch.testing.assert_close(dcl_loss(z1, z2, tau), expected)
    assert dcl_loss(z1, z2, tau) < info_nce(z1, z2, tau)


def test_dclw_weights_average_to_one_and_favour_hard_pairs() -> None:
    z1 = _randn(10, 5, seed=5)
    z2 = z1.clone()
    z2[:3] = -z1[:3]  # three hard (opposite) positive pairs
    w = dclw_weight(z1, z2, 0.5)
    assert w.mean().item() == pytest.approx(1.0, rel=1e-12)
    assert (w[:3] > 1).all() and (w[3:] < 1).all()


def test_dcl_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        dcl_loss(torch.randn(1, 4), torch.randn(1, 4))  # no negative
    with pytest.raises(ValueError):
        dcl_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError):
        dclw_weight(torch.randn(4, 3), torch.randn(5, 3))


# --------------------------------------------------------------------------- NT-Xent-AM


def _ntxent_am_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float, margin: float) -> float:
    """Lepage & Dehak 2024: NT-Xent over 2N anchors with positive logit (cos - m)/tau."""
    n = z1.shape[0]
    z = z1.tolist() + z2.tolist()
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n
        numerator = math.exp((_cos(z[i], z[j]) - margin) / tau)
        denominator = numerator
        for k in range(2 * n):
            if k != i and k != j:
                denominator += math.exp(_cos(z[i], z[k]) / tau)
        total += -math.log(numerator / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n", [1, 4, 16])
@pytest.mark.parametrize("tau", [0.033, 0.2, 1.0])
@pytest.mark.parametrize("margin", [0.0, 0.1, 0.3, -0.2])
def test_ntxent_am_matches_slow_reference(n: int, tau: float, margin: float) -> None:
    z = _views(2, n, 7, seed=6)
    expected = _ntxent_am_reference(z[0], z[1], tau, margin)
    assert ntxent_am_loss(z[0], z[1], tau, margin).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    got32 = ntxent_am_loss(z[0].float(), z[1].float(), tau, margin).item()
    assert got32 == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_ntxent_am_without_margin_is_infonce(tau: float) -> None:
    z1, z2 = _views(2, 9, 5, seed=7)
    torch.testing.assert_close(ntxent_am_loss(z1, z2, tau, 0.0), info_nce(z1, z2, tau), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,d", [(1, 1), (3, 8), (16, 32)])
@pytest.mark.parametrize("tau,margin", [(0.1, 0.1), (0.5, 0.3), (1.0, 0.0)])
def test_ntxent_am_closed_form_orthogonal_aligned(n: int, d: int, tau: float, margin: float) -> None:
    e = _orthonormal_rows(n, d, seed=8)
    expected = math.log(1 + (2 * n - 2) * math.exp(-(1 - margin) / tau))
    assert ntxent_am_loss(e, e.clone(), tau, margin).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_ntxent_am_grows_with_the_margin() -> None:
    z1, z2 = _views(2, 8, 6, seed=9)
    losses = [ntxent_am_loss(z1, z2, 0.2, m).item() for m in (0.0, 0.1, 0.2, 0.4)]
    assert losses == sorted(losses) and losses[0] < losses[-1]


# --------------------------------------------------------------------------- MV-InfoNCE


def _multiview_reference(zs: torch.Tensor, tau: float) -> float:
    """Koromilas et al. 2025, MV-InfoNCE: per instance -log(sum_{l != l'} e^{s(u_il, u_il')} /
    sum_l sum_{(j, m) != (i, l)} e^{s(u_il, u_jm)}), averaged over instances."""
    v, n, _ = zs.shape
    u = zs.tolist()
    total = 0.0
    for i in range(n):
        alignment = 0.0
        for l in range(v):
            for l2 in range(v):
                if l2 != l:
                    alignment += math.exp(_cos(u[l][i], u[l2][i]) / tau)
        energy = 0.0
        for l in range(v):
            for j in range(n):
                for m in range(v):
                    if (j, m) != (i, l):
                        energy += math.exp(_cos(u[l][i], u[m][j]) / tau)
        total += -math.log(alignment / energy)
    return total / n


@pytest.mark.parametrize("v", [2, 3, 4, 6])
@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_multiview_matches_slow_reference(v: int, n: int, tau: float) -> None:
    zs = _views(v, n, 5, seed=10)
    expected = _multiview_reference(zs, tau)
    assert multiview_info_nce(zs, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert multiview_info_nce(list(zs), tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert multiview_info_nce(zs.float(), tau).item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("v", [2, 3, 5])
@pytest.mark.parametrize("n,d", [(1, 1), (4, 4), (8, 16)])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_multiview_closed_form_orthogonal_aligned(v: int, n: int, d: int, tau: float) -> None:
    # Every view of instance i is e_i: alignment V(V-1)e^{1/tau}, energy V[(V-1)e^{1/tau} + V(N-1)].
    # For V = 2 this is InfoNCE's log(1 + (2N - 2) e^{-1/tau}).
    e = _orthonormal_rows(n, d, seed=11)
    zs = e.expand(v, n, d)
    expected = math.log(1 + v * (n - 1) * math.exp(-1 / tau) / (v - 1))
    assert multiview_info_nce(zs, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    if v == 2:
        assert info_nce(e, e, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_multiview_two_views_relation_to_infonce(tau: float) -> None:
    # V = 2: MV-InfoNCE = mean_i -s_i/tau + log((D_i1 + D_i2) / 2), InfoNCE the same with the
    # geometric mean of the two anchors' denominators: MV >= InfoNCE, with equality when z1 = z2.
    z1, z2 = _views(2, 10, 6, seed=12)
    assert multiview_info_nce([z1, z2], tau) >= info_nce(z1, z2, tau)
    z = torch.cat([z1, z2])
    zn = torch.nn.functional.normalize(z, dim=1)
    logits = (zn @ zn.T / tau).fill_diagonal_(float("-inf"))
    log_d = torch.logsumexp(logits, dim=1)  # SimCLR denominators of the 2N anchors
    s = (zn[:10] * zn[10:]).sum(1) / tau
    expected = (-s + torch.logaddexp(log_d[:10], log_d[10:]) - math.log(2)).mean()
    torch.testing.assert_close(multiview_info_nce([z1, z2], tau), expected)
    torch.testing.assert_close(multiview_info_nce([z1, z1], tau), info_nce(z1, z1, tau))


def test_multiview_invariant_to_view_and_batch_order() -> None:
    zs = _views(4, 6, 5, seed=13)
    base = multiview_info_nce(zs, 0.3)
    torch.testing.assert_close(multiview_info_nce(zs[[2, 0, 3, 1]], 0.3), base)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(multiview_info_nce(zs[:, perm], 0.3), base)


def test_multiview_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        multiview_info_nce(torch.randn(1, 4, 3), 0.5)  # one view
    with pytest.raises(ValueError):
        multiview_info_nce(torch.randn(4, 3), 0.5)
    with pytest.raises(ValueError):
        multiview_info_nce([torch.randn(4, 3), torch.randn(5, 3)], 0.5)


# --------------------------------------------------------------------------- SupCon


def _supcon_reference(zs: torch.Tensor, labels: list[int], tau: float) -> float:
    """Khosla et al. 2020, eq. (2), L^sup_out: mean over anchors with a positive of
    -1/|P(i)| sum_p log(exp(z_i.z_p/tau) / sum_{a != i} exp(z_i.z_a/tau))."""
    v, n, _ = zs.shape
    z = [row for view in zs.tolist() for row in view]  # index l * n + i
    y = [labels[k % n] for k in range(v * n)]
    total, anchors = 0.0, 0
    for i in range(v * n):
        denominator = sum(math.exp(_cos(z[i], z[a]) / tau) for a in range(v * n) if a != i)
        positives = [p for p in range(v * n) if p != i and y[p] == y[i]]
        if not positives:
            continue
        total += -sum(math.log(math.exp(_cos(z[i], z[p]) / tau) / denominator) for p in positives) / len(positives)
        anchors += 1
    return total / anchors


@pytest.mark.parametrize("v", [1, 2, 3])
@pytest.mark.parametrize("n,num_classes", [(4, 2), (9, 3), (12, 12)])
@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5])
def test_supcon_matches_slow_reference(v: int, n: int, num_classes: int, tau: float) -> None:
    zs = _views(v, n, 6, seed=14)
    labels = torch.arange(n) % num_classes
    if v == 1 and num_classes == n:
        with pytest.raises(ValueError):
            supcon_loss(zs, labels, tau)
        return
    if v == 1:
        labels[0] = 99  # an anchor with no positive is left out of the mean
    expected = _supcon_reference(zs, labels.tolist(), tau)
    assert supcon_loss(zs, labels, tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert supcon_loss(zs.float(), labels, tau).item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("n", [2, 7, 16])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_supcon_with_distinct_labels_is_simclr(n: int, tau: float) -> None:
    z1, z2 = _views(2, n, 5, seed=15)
    torch.testing.assert_close(supcon_loss([z1, z2], torch.arange(n), tau), info_nce(z1, z2, tau))


@pytest.mark.parametrize("v", [1, 2, 4])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_supcon_closed_form_one_direction_per_class(v: int, tau: float) -> None:
    # Every sample of class c sits on the orthonormal direction e_c: positives have cos 1,
    # negatives cos 0. An anchor of class c (n_c samples): log((V n_c - 1) e^{1/tau} + V(N - n_c)) - 1/tau.
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    n = len(labels)
    e = _orthonormal_rows(3, 5, seed=16)
    zs = e[labels].expand(v, n, 5)
    counts = torch.bincount(labels).tolist()
    per_anchor = [
        math.log((v * counts[c] - 1) * math.exp(1 / tau) + v * (n - counts[c])) - 1 / tau for c in labels.tolist()
    ]
    expected = sum(per_anchor) / n  # every view of a sample gives the same term
    assert supcon_loss(zs, labels, tau).item() == pytest.approx(expected, rel=1e-9)
    # One class and complete collapse: every other embedding ties, loss log(VN - 1).
    if v * n > 1:
        same = torch.ones(v, n, 5, dtype=torch.float64)
        assert supcon_loss(same, torch.zeros(n, dtype=torch.long), tau).item() == pytest.approx(math.log(v * n - 1))


def test_supcon_rejects_bad_labels() -> None:
    with pytest.raises(ValueError):
        supcon_loss(torch.randn(2, 4, 3), torch.arange(5), 0.1)


# --------------------------------------------------------------------------- gradients

LOSSES = {
    "dcl": lambda a, b: dcl_loss(a, b, 0.3),
    "dclw": lambda a, b: dcl_loss(a, b, 0.3, weight_fn=dclw_weight),
    "ntxent_am": lambda a, b: ntxent_am_loss(a, b, 0.3, 0.1),
    "multiview": lambda a, b: multiview_info_nce([a, b, a.flip(1)], 0.3),
    "supcon": lambda a, b: supcon_loss([a, b], torch.tensor([0, 1, 0, 2, 1]), 0.3),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_losses_backward_finite_gradients(name: str, dtype: torch.dtype) -> None:
    z1 = _randn(5, 6, seed=40, dtype=dtype).requires_grad_(True)
    z2 = _randn(5, 6, seed=41, dtype=dtype).requires_grad_(True)
    loss = LOSSES[name](z1, z2)
    assert loss.ndim == 0 and loss.dtype == dtype and torch.isfinite(loss)
    loss.backward()
    for z in (z1, z2):
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_gradient_matches_finite_differences(name: str) -> None:
    z1 = _randn(5, 4, seed=42).requires_grad_(True)
    z2 = _randn(5, 4, seed=43).requires_grad_(True)
    assert torch.autograd.gradcheck(LOSSES[name], (z1, z2), eps=1e-6, atol=1e-5)


# --------------------------------------------------------------------------- methods


def _encoder() -> Encoder:
    shape = (1, 8, 8)
    return Encoder(create_backbone("resnet_tiny", shape), torch.zeros(1, 1, 1), torch.ones(1, 1, 1), shape)


@pytest.mark.parametrize("num_views", [2, 3, 5])
def test_multiview_method_asks_for_its_configured_views(num_views: int) -> None:
    torch.manual_seed(0)
    method = create_method("multiview_infonce", _encoder(), num_views=num_views)
    # The trainer reads the instance attribute; the property overrides the base class default.
    assert method.num_global_views == num_views
    make_views = create_views("auto", "image")
    views = make_views(torch.rand(6, 1, 8, 8), torch.Generator().manual_seed(0), method.num_global_views)
    assert len(views.global_views) == num_views
    out = method.training_step(views, StepContext(0, 1))
    assert torch.isfinite(out.loss) and out.embeddings.shape == (6, method.encoder.embed_dim)
    assert create_method("multiview_infonce", _encoder()).num_global_views == 4  # the default
    with pytest.raises(ConfigError, match="num_views must be >= 2"):
        create_method("multiview_infonce", _encoder(), num_views=1)


def test_supcon_method_needs_labels_and_uses_them() -> None:
    torch.manual_seed(0)
    method = create_method("supcon", _encoder())
    assert method.requires_labels and not create_method("dcl", _encoder()).requires_labels
    views = create_views("auto", "image")(torch.rand(8, 1, 8, 8), torch.Generator().manual_seed(0), 2)
    with pytest.raises(ValueError, match="labels"):
        method.training_step(views, StepContext(0, 1))
    views.labels = torch.arange(8)  # all distinct: the loss equals SimCLR's on the same projections
    loss_distinct = method.training_step(views, StepContext(0, 1)).loss
    views.labels = torch.zeros(8, dtype=torch.long)
    assert not torch.isclose(method.training_step(views, StepContext(0, 1)).loss, loss_distinct)


def test_trainer_asks_for_the_instance_views_and_passes_labels() -> None:
    # The Lightning module reads num_global_views / requires_labels on the method instance.
    from selfsup.config import TrainConfig
    from selfsup.train.module import PretrainModule

    make_views = create_views("auto", "image")
    calls: list[tuple[int, torch.Tensor | None]] = []

    def recording(method):
        step = method.training_step

        def training_step(views, ctx):
            calls.append((len(views.global_views), views.labels))
            return step(views, ctx)

        method.training_step = training_step  # an instance attribute shadows the method
        return method

    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 3
    for name, params, views_expected, labels_expected in [
        ("multiview_infonce", {"num_views": 3}, 3, False),
        ("supcon", {}, 2, True),
    ]:
        torch.manual_seed(0)
        module = PretrainModule(recording(create_method(name, _encoder(), **params)), make_views, TrainConfig(), 1)
        module.log = lambda *args, **kwargs: None  # no Lightning trainer attached
        module.training_step([x, y], 0)
        num_views, labels = calls[-1]
        assert num_views == views_expected
        assert (labels is not None) == labels_expected
        if labels_expected:
            assert torch.equal(labels, y)


@pytest.mark.parametrize("name", ["dcl", "dclw"])
def test_dcl_methods_use_their_loss(name: str) -> None:
    method = create_method(name, _encoder(), temperature=0.3)
    z1, z2 = _views(2, 6, 4, seed=44)
    weight = dclw_weight if name == "dclw" else None
    torch.testing.assert_close(method.loss(z1, z2), dcl_loss(z1, z2, 0.3, weight_fn=weight))


# --------------------------------------------------------------------------- distributed

WORLD, BATCH, IN_DIM, OUT_DIM = 2, 8, 5, 6
DIST_LABELS = torch.tensor([0, 1, 2, 0, 1, 1, 3, 0])


def _dist_losses(zs: list[torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "dcl": dcl_loss(zs[0], zs[1], 0.3),
        "dclw": dcl_loss(zs[0], zs[1], 0.3, weight_fn=dclw_weight),
        "ntxent_am": ntxent_am_loss(zs[0], zs[1], 0.3, 0.1),
        "multiview": multiview_info_nce(zs, 0.3),
        "supcon": supcon_loss(zs[:2], labels, 0.3),
    }


def _dist_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(OUT_DIM, IN_DIM, generator=g, dtype=torch.float64)
    x = torch.randn(1, BATCH, IN_DIM, generator=g, dtype=torch.float64)
    return weight, x + 0.3 * torch.randn(3, BATCH, IN_DIM, generator=g, dtype=torch.float64)


def _single_process_grads() -> dict[str, torch.Tensor]:
    grads = {}
    for name in _dist_losses([torch.zeros(2, 1)] * 3, torch.zeros(2, dtype=torch.long)):
        weight, xs = _dist_data()
        weight.requires_grad_(True)
        _dist_losses([x @ weight.T for x in xs], DIST_LABELS)[name].backward()
        grads[name] = weight.grad
    return grads


def _worker(rank: int) -> dict:
    from selfsup.methods.supcon import gather_labels

    part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    labels = gather_labels(DIST_LABELS[part])
    out = {"labels": labels}
    for name in _dist_losses([torch.zeros(2, 1)] * 3, torch.zeros(2, dtype=torch.long)):
        weight, xs = _dist_data()
        weight.requires_grad_(True)
        zs = [gather_with_grad(x[part] @ weight.T) for x in xs]
        _dist_losses(zs, labels)[name].backward()
        out[name] = ddp_average(weight.grad)
    return out


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_gathered_losses_and_labels_equal_single_process() -> None:
    out = run_on_ranks(_worker, WORLD)
    for rank in range(WORLD):
        assert torch.equal(out[rank]["labels"], DIST_LABELS)
    for name, expected in _single_process_grads().items():
        for rank in range(WORLD):
            torch.testing.assert_close(out[rank][name], expected, rtol=1e-9, atol=1e-10)
