"""A first-in-first-out queue of past embeddings, for negatives (MoCo) or support sets (NNCLR).

The state lives in buffers, so it is saved and restored with the method's checkpoint. Writing is
done without host synchronisation (the write pointer is a tensor).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class FeatureQueue(nn.Module):
    """Keeps the ``size`` most recent embeddings of dimension ``dim``.

    The queue starts filled with random unit vectors (as MoCo's does), so it can be used from the
    first step; ``filled`` counts how many real embeddings have been written (at most ``size``).

    Args:
        size: number of embeddings kept.
        dim: embedding dimension.
        normalize: L2-normalise embeddings as they are written.
    """

    def __init__(self, size: int, dim: int, normalize: bool = True) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"a queue needs size >= 1 and dim >= 1; got size={size}, dim={dim}")
        self.size, self.dim, self.normalize = size, dim, normalize
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def features(self) -> torch.Tensor:
        """A copy of the stored embeddings ``[size, dim]`` (oldest position first in memory order)."""
        return self.queue.clone()

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Write ``x [n, dim]`` (detached) over the oldest entries, wrapping around."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"queue of dim {self.dim} got a batch of shape {tuple(x.shape)}")
        x = x.detach().to(self.queue.dtype)
        if self.normalize:
            x = F.normalize(x, dim=1)
        n = x.shape[0]
        if n > self.size:  # only the newest `size` rows survive
            x, n = x[-self.size :], self.size
        index = (self.ptr + torch.arange(n, device=x.device)) % self.size
        self.queue.index_copy_(0, index, x)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))
