"""The training data order: a function of (seed, epoch), split across processes, resumable mid-epoch.

Epoch ``e`` visits the samples in the order ``randperm(n)`` drawn from a generator seeded with
``(seed, e)``; global batch ``k`` is ``order[k*B : (k+1)*B]`` (the last, partial batch is
dropped), and process ``r`` of ``w`` takes the ``r``-th of ``w`` equal slices of every global
batch. So:

- ``N`` processes see, at every step, exactly the samples one process sees with the same
  global batch ``B`` (each process holds ``B / N`` of them);
- the order does not depend on anything but the seed and the epoch (not on the global random
  stream, not on how many processes there are, not on whether the run was interrupted);
- a run resumed in the middle of an epoch skips the batches that epoch had already used
  (:meth:`EpochBatchSampler.resume_at`), which Lightning does not do by itself.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from selfsup.errors import ConfigError


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of indices for one process (a ``batch_sampler`` for a DataLoader).

    Args:
        num_samples: samples in the training set.
        batch_size: the **global** batch, over all processes.
        seed: the run's seed.
        shuffle: a new random order each epoch (else the natural order).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
        if batch_size > num_samples:
            raise ConfigError(f"batch size {batch_size} is larger than the {num_samples} samples")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        # Where the epoch comes from when a pass starts (the trainer's epoch counter: Lightning
        # calls set_epoch on a batch sampler's inner sampler only, not on the batch sampler).
        self.epoch_source: Callable[[], int] | None = None
        self.rank, self.world_size = 0, 1
        self._resume: tuple[int, int] | None = None

    def set_process(self, rank: int, world_size: int) -> None:
        """Take this process's share of every global batch (``world_size`` must divide the batch)."""
        if self.batch_size % world_size:
            raise ConfigError(
                f"train.batch_size {self.batch_size} is the global batch over {world_size} processes, which must "
                f"divide it; pass --batch-size {self.batch_size - self.batch_size % world_size} or "
                f"{self.batch_size + world_size - self.batch_size % world_size}"
            )
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (when no ``epoch_source`` says it)."""
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """The next pass over ``epoch`` starts after its first ``batches_done`` global batches."""
        self._resume = (epoch, batches_done)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch`` (the same on every process)."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        if self.epoch_source is not None:
            self.epoch = self.epoch_source()
        order = self.order(self.epoch)
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        share = self.batch_size // self.world_size
        for k in range(start, len(self)):
            batch = order[k * self.batch_size : (k + 1) * self.batch_size]
            yield batch[self.rank * share : (self.rank + 1) * share].tolist()
