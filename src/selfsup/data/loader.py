"""DataLoaders over sample sources: workers decode, the modality collates, errors become one line.

Every consumer (training, the input statistics, the monitors, ``embed``, the probes, the report)
reads a source through :func:`make_loader`, in batches, so memory does not grow with the dataset.
"""

from __future__ import annotations

import os
import warnings
from typing import Iterator

import torch

from selfsup.data.base import Batch, SampleSource
from selfsup.data.modalities import get_modality
from selfsup.errors import DataError


def default_num_workers(source: SampleSource) -> int:
    """Worker processes for ``source``: none for samples in memory (workers would only add
    copies), else one per CPU core but one, at most 8."""
    if source.in_memory:
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def make_loader(
    source: SampleSource,
    batch_size: int,
    shuffle: bool = False,
    drop_last: bool = False,
    num_workers: int = -1,
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
    persistent_workers: bool = False,
    batch_sampler: torch.utils.data.Sampler | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader of :class:`Batch` over ``source`` (``num_workers=-1``: :func:`default_num_workers`).

    With a ``batch_sampler`` (training: :class:`~selfsup.data.sampler.EpochBatchSampler`), it
    chooses the batches and ``batch_size``, ``shuffle`` and ``drop_last`` are not used.
    """
    workers = default_num_workers(source) if num_workers < 0 else num_workers
    batching = (
        {"batch_sampler": batch_sampler} if batch_sampler is not None
        else {"batch_size": batch_size, "shuffle": shuffle, "drop_last": drop_last}
    )
    return torch.utils.data.DataLoader(
        source,
        **batching,
        num_workers=workers,
        collate_fn=get_modality(source.modality).collate,
        pin_memory=pin_memory,
        generator=generator,
        persistent_workers=persistent_workers and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def check_batch(batch: Batch, skip_bad_files: bool, warned: set[str] | None = None) -> Batch:
    """Raise one :class:`DataError` line for an unreadable sample, or warn about it when skipping
    (once per file for the files already in ``warned``, which collects them)."""
    warned = set() if warned is None else warned
    for sample_id, reason in batch.bad:
        if not skip_bad_files:
            raise DataError(
                f"{sample_id} is not a readable sample ({reason}); remove it or pass --skip-bad-files"
            )
        if sample_id not in warned:
            warned.add(sample_id)
            warnings.warn(f"skipped unreadable sample {sample_id} ({reason})", stacklevel=2)
    return batch


def iterate(
    source: SampleSource, batch_size: int = 512, num_workers: int = -1, skip_bad_files: bool = True,
) -> Iterator[Batch]:
    """Every sample of ``source`` once, in order, in batches (bad files skipped with a warning by default)."""
    warned: set[str] = set()
    # A generator of its own: creating a DataLoader iterator draws a seed, and reading data for
    # statistics, checks or evaluation must not move the global random stream that initialises
    # the model and shuffles the training data.
    loader = make_loader(source, batch_size, num_workers=num_workers, generator=torch.Generator())
    for batch in loader:
        check_batch(batch, skip_bad_files, warned)
        if len(batch):
            yield batch


def materialize(source: SampleSource, batch_size: int = 512, skip_bad_files: bool = True) -> Batch:
    """All samples of ``source`` in one in-memory batch (small labelled sets: fine-tuning, monitors)."""
    if hasattr(source, "__getitems__") and source.in_memory:
        return get_modality(source.modality).collate(source.__getitems__(list(range(len(source)))))
    parts = list(iterate(source, batch_size, skip_bad_files=skip_bad_files))
    if not parts:
        raise DataError(f"{source.name} has no readable samples")
    return Batch({k: torch.cat([p[k] for p in parts]) for k in parts[0].keys()})
