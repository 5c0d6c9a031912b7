"""Projector and predictor heads built from one small block type."""

from __future__ import annotations

import torch.nn as nn


def mlp_head(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int = 2,
    batch_norm: bool = True,
    last_batch_norm: bool = False,
) -> nn.Sequential:
    """An MLP head ``[N, in_dim] -> [N, out_dim]``.

    ``num_layers`` linear layers; every layer but the last is followed by (BatchNorm and) ReLU.
    ``last_batch_norm`` adds a BatchNorm without affine parameters after the last layer
    (SimSiam's projector). SimCLR's projector is ``num_layers=2``; BYOL's projector and predictor
    are ``num_layers=2`` with hidden BatchNorm; Barlow Twins' and VICReg's are ``num_layers=3``.
    """
    if num_layers < 1:
        raise ValueError("a head needs at least one layer")
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    for i in range(num_layers):
        last = i == num_layers - 1
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=not (batch_norm and not last)))
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            layers.append(nn.ReLU(inplace=True))
    if last_batch_norm:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


__all__ = ["mlp_head"]
