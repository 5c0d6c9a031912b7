"""Images ``[N, C, H, W]``: uint8 (0..255) from files and IDX archives, or float in ``[0, 1]``.

Images stay uint8 through the DataLoader (a quarter of float32's bytes to copy) and become floats
on the device, where the views run batched. Statistics are one mean and std per channel.
"""

from __future__ import annotations

import torch

from selfsup.data.modalities import Modality, register_modality


@register_modality("image")
class ImageModality(Modality):
    default_views = "image"
    default_backbone = "resnet_tiny"
    stat_dims = (0, 2, 3)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.float()
