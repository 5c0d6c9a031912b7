"""Gathering across processes with a correct backward.

Batch-wide losses (negatives, cross-correlation, covariance) must see the global batch. Each rank
gathers every rank's embeddings with an autograd-aware all-gather and evaluates the loss on the
global batch. The backward of the gather sums, over ranks, the gradient each rank's copy of the
loss sends to this rank's slice; with ``W`` ranks computing the same loss that is ``W`` times the
true gradient, and DDP's gradient averaging divides by ``W`` again: the parameter gradients equal
those of one process that sees the whole batch (checked by a gloo test).
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.nn.functional import all_gather

# torch 2.13 marks the autograd-aware all_gather deprecated in favour of a private module; it is
# still the public API (and the only one on torch 2.11, the oldest we support).
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated", category=FutureWarning)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [n, ...]`` from every rank along dim 0 -> ``[W * n, ...]``, differentiably.

    Returns ``x`` itself when not running distributed. All ranks must pass the same shape.
    """
    if world_size() == 1:
        return x
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


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any backend.

    PyTorch's ``nn.SyncBatchNorm`` runs only on GPUs; on CPUs (gloo) each process would normalise
    with the statistics of its own share, so N processes would not train as one. Here every
    process all-gathers, differentiably, the count, mean and sum of squared deviations of its
    share per channel (one collective of ``2C + 1`` numbers per layer) and combines them with
    the parallel-variance formula (Chan, Golub, LeVeque 1979): ``M2 = sum_r M2_r +
    sum_r n_r (mean_r - mean)^2``. The gather's backward sums, over processes, the gradient of
    every process's copy of the statistics, the same scaling as :func:`gather_with_grad`, so
    after DDP's averaging the gradients equal those of one process with the whole batch.

    With one process, in evaluation, or when ``track_running_stats`` is off without a batch
    (plain BatchNorm's cases) it is ``nn.BatchNorm{1,2,3}d``. Running statistics are updated
    with the global mean and unbiased variance, as BatchNorm on the whole batch would. Input:
    ``[N, C]`` or ``[N, C, *spatial]``; the state-dict keys are BatchNorm's, so weights move
    freely between the two.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of shape [N, C, ...], got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or world_size() == 1:
            return super().forward(x)
        C = x.shape[1]
        dims = [0, *range(2, x.dim())]
        n_local = x.numel() // max(C, 1)
        mean_local = x.mean(dims)
        m2_local = ((x - _channels(mean_local, x.dim())) ** 2).sum(dims)
        count = torch.full((1,), float(n_local), dtype=x.dtype, device=x.device)
        stats = torch.stack(all_gather(torch.cat([count, mean_local, m2_local])))  # [W, 2C + 1]
        counts, means, m2s = stats[:, :1], stats[:, 1:C + 1], stats[:, C + 1:]
        n = counts.sum()
        mean = (counts * means).sum(0) / n
        m2 = m2s.sum(0) + (counts * (means - mean) ** 2).sum(0)
        var = m2 / n  # biased: what normalises, as in BatchNorm
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = m2 / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        y = (x - _channels(mean, x.dim())) * _channels(torch.rsqrt(var + self.eps), x.dim())
        if self.affine:
            y = y * _channels(self.weight, x.dim()) + _channels(self.bias, x.dim())
        return y


def _channels(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel vector ``[C]`` shaped to broadcast over ``[N, C, *spatial]``."""
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def convert_to_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm (1d/2d/3d) in ``module`` by a :class:`GlobalBatchNorm` with the same
    parameters and buffers, in place where possible; returns the module (the new one if
    ``module`` itself was a BatchNorm)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.train(module.training)
        with torch.no_grad():
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            if module.track_running_stats:
                new.running_mean, new.running_var = module.running_mean, module.running_var
                new.num_batches_tracked = module.num_batches_tracked
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_to_global_batchnorm(child))
    return module
