"""N ranks with batch B/N give the same gradients as one rank with batch B (gloo, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from gloo import ddp_average, run_on_ranks
from selfsup.losses import barlow_twins_loss, info_nce, vicreg_loss
from selfsup.core.distributed import gather_with_grad

LOSSES = {
    "info_nce": lambda z1, z2: info_nce(z1, z2, 0.3),
    "barlow_twins": lambda z1, z2: barlow_twins_loss(z1, z2, 5e-3),
    "vicreg": lambda z1, z2: vicreg_loss(z1, z2),
}
WORLD, BATCH, IN_DIM, OUT_DIM = 2, 12, 5, 6


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(OUT_DIM, IN_DIM, generator=g, dtype=torch.float64)
    x1 = torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64)
    x2 = x1 + 0.3 * torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64)
    return weight, x1, x2


def _single_process_grad(loss_name: str) -> torch.Tensor:
    weight, x1, x2 = _data()
    weight.requires_grad_(True)
    LOSSES[loss_name](x1 @ weight.T, x2 @ weight.T).backward()
    return weight.grad


def _worker(rank: int, loss_name: str) -> torch.Tensor:
    weight, x1, x2 = _data()
    weight.requires_grad_(True)
    part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    z1 = gather_with_grad(x1[part] @ weight.T)
    z2 = gather_with_grad(x2[part] @ weight.T)
    LOSSES[loss_name](z1, z2).backward()
    return ddp_average(weight.grad)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_gathered_loss_gradients_equal_single_process(loss_name: str) -> None:
    grads = run_on_ranks(_worker, WORLD, loss_name)
    expected = _single_process_grad(loss_name)
    for grad in grads:
        torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-10)


def test_gather_is_identity_without_process_group() -> None:
    x = torch.randn(3, 4)
    assert gather_with_grad(x) is x
