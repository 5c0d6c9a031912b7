"""Optimisers: AdamW, SGD with momentum, and LARS, built from a method's parameter groups.

LARS (You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks",
arXiv 1708.03888) scales each layer's update by a trust ratio ``eta * ||w|| / ||g + wd * w||``;
BYOL, Barlow Twins, VICReg and SwAV train with it on ImageNet. PyTorch has no LARS, so it is here,
as the papers define it: weight decay is added to the gradient, the trust ratio multiplies the
learning rate, then SGD momentum. Groups with ``lars_exclude`` (biases, norms) get plain SGD and
no weight decay.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from selfsup.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd", "lars")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios.

    Args:
        params: parameters or groups; a group with ``lars_exclude=True`` skips the adaptation.
        lr: learning rate.
        momentum: heavy-ball momentum.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        eta: trust coefficient (BYOL and SwAV: 1e-3; solo-learn's small-data recipes use 0.02).
    """

    def __init__(
        self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3
    ) -> None:
        if lr < 0 or eta <= 0:
            raise ValueError(f"LARS needs lr >= 0 and eta > 0; got lr={lr}, eta={eta}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "lars_exclude": False})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"] != 0:
                        update = update.add(p, alpha=group["weight_decay"])
                    w_norm = torch.linalg.vector_norm(p)
                    u_norm = torch.linalg.vector_norm(update)
                    # Trust ratio 1 where either norm is 0 (fresh zero-initialised layers).
                    trust = torch.where(
                        (w_norm > 0) & (u_norm > 0), group["eta"] * w_norm / u_norm, torch.ones_like(w_norm)
                    )
                    update = update * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(
    groups: list[dict[str, Any]], name: str, lr: float, momentum: float = 0.9, eta: float = 1e-3
) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``groups``; a group's ``lr_scale`` multiplies ``lr``."""
    groups = [dict(g) for g in groups]
    for group in groups:
        group["lr"] = lr * group.pop("lr_scale", 1.0)
    if name == "adamw":
        for group in groups:
            group.pop("lars_exclude", None)
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        for group in groups:
            group.pop("lars_exclude", None)
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=eta)
    raise ConfigError(f"unknown optimizer {name!r}. Valid: {', '.join(OPTIMIZERS)}.")
