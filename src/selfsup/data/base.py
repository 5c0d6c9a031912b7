"""The data contract: sample sources read on demand, and batches of named tensors.

A **source** is a map-style :class:`torch.utils.data.Dataset` that reads one sample when asked
(``source[i] -> {"x": ..., "y": ..., "index": i}``), so a folder of 100,000 images is never held in
memory: DataLoader workers decode the files and the modality's collate stacks them into a
:class:`Batch`. Sources that hold their data in memory (or memory-mapped) also answer
``source.__getitems__(indices)`` with a whole batch at once, which DataLoader uses when present.

Every sample has a stable id: its index in the source, and for file-backed sources its path
(``source.sample_id(i)``), so later tools (scans, exclusion lists) can name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch


class Batch:
    """A batch: a small mapping of named tensors with ``len()`` (samples) and ``.to(device)``.

    Fields in use: ``"x"`` (samples as the source gives them: images ``[N, C, H, W]`` uint8 or
    float in ``[0, 1]``, vectors ``[N, D]``, series ``[N, C, T]``), ``"y"`` (labels ``[N]``, when
    known), ``"index"`` (each sample's index in its source ``[N]``). Later modalities add their own
    (``"edge_index"``, ``"batch"``, ``"pad"``, ``"text"``); the trainer only moves them.

    Attributes:
        bad: ``(sample id, reason)`` of samples that could not be read and are not in the batch;
            the consumer raises or warns (see :func:`selfsup.data.loader.check_batch`), so an error
            raised in a worker reaches the user as one line.
    """

    def __init__(self, fields: dict[str, torch.Tensor] | None = None, bad: list[tuple[str, str]] | None = None) -> None:
        self.fields: dict[str, torch.Tensor] = dict(fields or {})
        self.bad: list[tuple[str, str]] = list(bad or [])

    def __len__(self) -> int:
        first = self.fields.get("x", self.fields.get("index"))
        return 0 if first is None else int(first.shape[0])

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.fields[key]

    def __setitem__(self, key: str, value: torch.Tensor) -> None:
        self.fields[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.fields

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def keys(self) -> Iterator[str]:
        return iter(self.fields)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """The same batch on ``device`` (dtypes kept: uint8 images stay uint8 until the views)."""
        moved = {k: v.to(device, non_blocking=non_blocking) for k, v in self.fields.items()}
        return Batch(moved, self.bad)

    def pin_memory(self) -> "Batch":
        """Called by DataLoader with ``pin_memory=True``: page-locked copies for fast host-to-GPU copies."""
        return Batch({k: v.pin_memory() for k, v in self.fields.items()}, self.bad)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}" for k, v in self.fields.items())
        return f"Batch({shapes})"


@dataclass
class BadSample:
    """What a source returns for a sample it cannot read (the collate drops it and records why)."""

    sample_id: str
    reason: str


class SampleSource(torch.utils.data.Dataset):
    """Base of every source of samples (see the module docstring).

    Attributes:
        name: where the data came from (a dataset name or a path), for messages and reports.
        modality: the registered modality that collates, standardises and views these samples.
        class_names: class ``i``'s name at index ``i``, when known.
        labels: ``[N]`` int64 labels known without reading the samples (from a file or a folder
            name), or ``None`` for unlabeled data.
        in_memory: the samples are in memory or memory-mapped (no decoding: worker processes
            would only add overhead).
        data_info: what the modality needs to know beyond shapes, JSON-able (a table's schema:
            column types and vocabularies), stored with a run so new data is read the same way;
            None for most data.
    """

    name: str
    modality: str
    class_names: list[str] | None = None
    labels: torch.Tensor | None = None
    in_memory: bool = False
    data_info: dict[str, Any] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any] | BadSample:
        raise NotImplementedError

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample's ``"x"``, e.g. ``(1, 28, 28)``."""
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """A stable name for sample ``index`` (its index; file-backed sources give the path)."""
        return str(index)

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "SampleSource":
        """The samples at ``indices``, as a source of the same kind (a view: nothing is copied)."""
        return Subset(self, torch.as_tensor(indices, dtype=torch.int64))

    # Compatibility with the in-memory datasets that came before sources.
    @property
    def y(self) -> torch.Tensor | None:
        return self.labels

    @property
    def num_classes(self) -> int | None:
        return None if self.labels is None else int(self.labels.max().item()) + 1


class Subset(SampleSource):
    """Some samples of another source; indices in batches are the parent's, so ids stay stable."""

    def __init__(self, parent: SampleSource, indices: torch.Tensor) -> None:
        self.parent = parent
        self.indices = indices
        self.name, self.modality, self.class_names = parent.name, parent.modality, parent.class_names
        self.in_memory, self.data_info = parent.in_memory, parent.data_info
        self.labels = None if parent.labels is None else parent.labels[indices]

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, index: int) -> dict[str, Any] | BadSample:
        return self.parent[int(self.indices[index])]

    def __getitems__(self, indices: list[int]) -> Any:
        picked = [int(self.indices[i]) for i in indices]
        if hasattr(self.parent, "__getitems__"):
            return self.parent.__getitems__(picked)
        return [self.parent[i] for i in picked]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.parent.sample_shape

    def sample_id(self, index: int) -> str:
        return self.parent.sample_id(int(self.indices[index]))


class ArrayDataset(SampleSource):
    """Samples held in one array in memory, or memory-mapped from a ``.npy`` file.

    Attributes:
        x: samples ``[N, ...]``: a torch tensor, or a numpy array (memory-mapped ``.npy``) whose
            rows are read only when a batch asks for them. Images are ``[N, C, H, W]``, uint8
            (0..255) or float32 in ``[0, 1]``; vectors ``[N, D]`` float32; series ``[N, C, T]``
            float32 with NaN for a missing value (unequal lengths NaN-padded at the end).
        y: integer labels ``[N]`` (int64), or ``None`` for unlabeled data.
    """

    in_memory = True

    def __init__(
        self, x: torch.Tensor | np.ndarray, y: torch.Tensor | None, name: str, modality: str,
        class_names: list[str] | None = None,
    ) -> None:
        self.x = x
        self.labels = y
        self.name = name
        self.modality = modality
        self.class_names = class_names

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    def take(self, indices: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
        """Fields of the samples at ``indices`` as tensors (rows of a memory map are read here)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        if isinstance(self.x, torch.Tensor):
            x = self.x[index]
        else:  # numpy (memory map): sorted reads are sequential on disk
            x = torch.from_numpy(np.ascontiguousarray(self.x[index.numpy()]))
        fields = {"x": x, "index": index}
        if self.labels is not None:
            fields["y"] = self.labels[index]
        return fields

    def __getitem__(self, index: int) -> dict[str, Any]:
        fields = self.take([int(index)])
        return {k: v[0] for k, v in fields.items()}

    def __getitems__(self, indices: list[int]) -> Batch:
        """A whole batch at once (DataLoader calls this when it exists): one gather, no per-sample Python."""
        return Batch(self.take(indices))


@dataclass
class DatasetSplits:
    """The train split (used for pretraining and to fit probes) and an optional test split.

    When ``test`` is ``None``, evaluation holds out a stratified part of ``train`` itself.
    ``pretrain``: the samples pretraining reads when they are more than ``train`` (the probes'
    labelled samples): every node of a graph whose public split labels a few (transductive
    node-level learning); ``None``: ``train``. See :attr:`pretraining`.
    """

    train: SampleSource
    test: SampleSource | None
    pretrain: SampleSource | None = None

    @property
    def pretraining(self) -> SampleSource:
        """The source pretraining (and its input statistics) reads."""
        return self.pretrain if self.pretrain is not None else self.train


def collate_samples(samples: list[dict[str, Any] | BadSample] | Batch) -> Batch:
    """Stack samples' fields into a :class:`Batch` (the default collate of every modality).

    A batch made whole by ``__getitems__`` passes through; unreadable samples are left out and
    recorded in ``Batch.bad``.
    """
    if isinstance(samples, Batch):
        return samples
    good = [s for s in samples if not isinstance(s, BadSample)]
    bad = [(s.sample_id, s.reason) for s in samples if isinstance(s, BadSample)]
    if not good:
        return Batch({}, bad)
    in_worker = torch.utils.data.get_worker_info() is not None
    fields = {}
    for key in good[0]:
        values = [torch.as_tensor(s[key]) for s in good]
        out = None
        if in_worker:
            # Stack straight into shared memory (as torch's default collate does): the batch is
            # sent to the main process without a copy, and the worker's heap does not keep a
            # freed batch-sized block per batch (measured: a worker's RSS then stays flat).
            first = values[0]
            storage = first.untyped_storage()._new_shared(len(values) * first.numel() * first.element_size())
            out = first.new(storage).resize_(len(values), *first.shape)
        fields[key] = torch.stack(values, out=out)
    return Batch(fields, bad)
