"""In-memory datasets: the common form every source is turned into."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ArrayDataset:
    """A dataset held in memory as one tensor.

    Attributes:
        x: samples, ``[N, C, H, W]`` float32 in ``[0, 1]`` for images, ``[N, D]`` for vectors,
            ``[N, C, T]`` for series (NaN marks a missing value; series of unequal length are
            padded at the end with NaN).
        y: integer labels ``[N]`` (int64), or ``None`` for unlabeled data.
        name: where it came from (a dataset name or a path), for messages and reports.
        modality: ``"image"``, ``"vector"`` or ``"timeseries"``; picks the default views.
        class_names: names of the classes, index ``i`` for label ``i``, when known.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    name: str
    modality: str
    class_names: list[str] | None = field(default=None)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 8, 8)``."""
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return None if self.y is None else int(self.y.max().item()) + 1


@dataclass
class DatasetSplits:
    """The train split (used for pretraining and to fit probes) and an optional test split.

    When ``test`` is ``None``, evaluation holds out a stratified part of ``train`` itself.
    """

    train: ArrayDataset
    test: ArrayDataset | None
