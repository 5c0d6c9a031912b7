"""LARS against a slow reference written from You et al. 2017, and optimiser building."""

from __future__ import annotations

import copy

import pytest
import torch

from selfsup.errors import ConfigError
from selfsup.train.optim import LARS, build_optimizer


def _reference_lars(weights, grads_per_step, lr, momentum, weight_decay, eta, exclude):
    """Algorithm 1 of arXiv 1708.03888, one tensor at a time, in float64."""
    w = [t.double().clone() for t in weights]
    buffers = [None] * len(w)
    for grads in grads_per_step:
        for i, (p, g) in enumerate(zip(w, grads)):
            g = g.double()
            if not exclude[i]:
                g = g + weight_decay * p
                w_norm, g_norm = p.norm().item(), g.norm().item()
                trust = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
                g = trust * g
            buffers[i] = g.clone() if buffers[i] is None else momentum * buffers[i] + g
            w[i] = p - lr * buffers[i]
    return w


@pytest.mark.parametrize("weight_decay", [0.0, 1e-4, 1e-2])
@pytest.mark.parametrize("eta", [1e-3, 0.02])
def test_lars_matches_reference(weight_decay: float, eta: float) -> None:
    torch.manual_seed(0)
    weights = [torch.randn(5, 3), torch.randn(3), torch.zeros(4, 2)]
    exclude = [False, True, False]
    grads_per_step = [[torch.randn_like(w) for w in weights] for _ in range(4)]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    groups = [
        {"params": [params[0], params[2]], "weight_decay": weight_decay},
        {"params": [params[1]], "weight_decay": 0.0, "lars_exclude": True},
    ]
    optimizer = LARS(groups, lr=0.1, momentum=0.9, eta=eta)
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
    expected = _reference_lars(weights, grads_per_step, 0.1, 0.9, weight_decay, eta, exclude)
    # the excluded bias has weight_decay 0 in its group; the reference uses the same
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-5, atol=1e-6)


def test_lars_state_round_trips() -> None:
    p = torch.nn.Parameter(torch.randn(4, 4))
    optimizer = LARS([p], lr=0.1)
    p.grad = torch.randn(4, 4)
    optimizer.step()
    state = copy.deepcopy(optimizer.state_dict())  # load_state_dict would share the buffers
    q = torch.nn.Parameter(p.detach().clone())
    other = LARS([q], lr=0.1)
    other.load_state_dict(state)
    grad = torch.randn(4, 4)
    p.grad, q.grad = grad.clone(), grad.clone()
    optimizer.step()
    other.step()
    torch.testing.assert_close(p, q)


@pytest.mark.parametrize("name,cls", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD), ("lars", LARS)])
def test_build_optimizer_applies_lr_scale(name: str, cls: type) -> None:
    a, b = torch.nn.Parameter(torch.randn(3, 3)), torch.nn.Parameter(torch.randn(3))
    groups = [{"params": [a], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0, "lars_exclude": True, "lr_scale": 0.5}]
    optimizer = build_optimizer(groups, name, lr=0.2)
    assert isinstance(optimizer, cls)
    assert [g["lr"] for g in optimizer.param_groups] == [0.2, 0.1]


def test_unknown_optimizer_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="lars"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))]}], "adam", lr=0.1)
