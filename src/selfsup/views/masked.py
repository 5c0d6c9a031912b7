"""Light views for masked and predictive methods (MAE, SimMIM, Mixed AE, data2vec 2.0).

Masked modelling makes the task hard by hiding tokens, not by augmenting: He et al. 2022
(arXiv 2111.06377) train MAE with a random resized crop and a flip only (adding colour jitter
lowered their fine-tuning accuracy slightly). Images get exactly that; other samples (series, vectors) are returned unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from selfsup.views.base import Views, register_views
from selfsup.views.image import HorizontalFlip, RandomResizedCrop, random_resized_crop_and_flip


@dataclass
class MaskedCropsConfig:
    """MAE's only augmentation: a random resized crop (area 20-100%) and a horizontal flip."""

    crop: RandomResizedCrop = field(default_factory=lambda: RandomResizedCrop(scale=(0.2, 1.0)))
    flip: HorizontalFlip = field(default_factory=HorizontalFlip)


@register_views("masked_crops")
class MaskedCrops:
    """Light views for masked modelling: images ``[N, C, H, W]`` get one random resized crop and
    flip per sample; other samples (series ``[N, C, T]``, vectors) are returned unchanged."""

    Config = MaskedCropsConfig

    def __init__(self, config: MaskedCropsConfig) -> None:
        self.config = config

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 1, num_local_views: int = 0
    ) -> Views:
        if batch.shape[0] == 0:
            raise ValueError(f"masked_crops views take non-empty batches; got shape {tuple(batch.shape)}")
        if batch.ndim != 4:
            return Views([batch.clone() for _ in range(num_views)], [batch.clone() for _ in range(num_local_views)])
        crop, flip = self.config.crop, self.config.flip
        views = [random_resized_crop_and_flip(batch, crop, flip, generator) for _ in range(num_views + num_local_views)]
        return Views(views[:num_views], views[num_views:])  # no small crops: local views are like the others


__all__ = ["MaskedCrops", "MaskedCropsConfig"]
