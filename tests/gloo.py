"""Run a function on several gloo ranks on the CPU and collect what each rank returns.

Shared by the tests that check N ranks with batch B/N give the gradients of one rank with batch B.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable[..., Any], world: int, port: int, out: dict, args: tuple) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out[rank] = fn(rank, *args)
    finally:
        dist.destroy_process_group()


def run_on_ranks(fn: Callable[..., Any], world: int, *args: Any) -> list[Any]:
    """``[fn(0, *args), ..., fn(world - 1, *args)]``, each in its own process of one gloo group.

    ``fn`` must be a module-level function (the processes are spawned and import it).
    """
    out = mp.Manager().dict()
    mp.spawn(_entry, args=(fn, world, free_port(), out, args), nprocs=world, join=True)
    return [out[rank] for rank in range(world)]


def ddp_average(grad: torch.Tensor) -> torch.Tensor:
    """What DDP does with a gradient: the mean over ranks."""
    grad = grad.clone()
    dist.all_reduce(grad)
    return grad / dist.get_world_size()
