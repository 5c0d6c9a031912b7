"""Gathering across processes with a correct backward.

Batch-wide losses (negatives, cross-correlation, covariance) must see the global batch. Each rank
gathers every rank's embeddings with an autograd-aware all-gather and evaluates the loss on the
global batch. The backward of the gather sums, over ranks, the gradient each rank's copy of the
loss sends to this rank's slice; with ``W`` ranks computing the same loss that is ``W`` times the
true gradient, and DDP's gradient averaging divides by ``W`` again: the parameter gradients equal
those of one process that sees the whole batch (checked by a gloo test).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [n, ...]`` from every rank along dim 0 -> ``[W * n, ...]``, differentiably.

    Returns ``x`` itself when not running distributed. All ranks must pass the same shape.
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat([_ContiguousGrad.apply(part) for part in all_gather(x)], dim=0)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous.

    Placed after the all-gather, so the gradients the gather's backward reduces with a
    collective are contiguous: on gloo a non-contiguous gradient (e.g. from a transposed matmul
    in the loss) was reduced in the wrong element order.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()
