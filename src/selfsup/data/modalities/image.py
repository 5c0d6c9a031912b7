"""Images ``[N, C, H, W]``: uint8 (0..255) from files and IDX archives, or float in ``[0, 1]``.

Images stay uint8 through the DataLoader (a quarter of float32's bytes to copy) and become floats
on the device, where the views run batched. Statistics are one mean and std per channel.
"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.data.modalities import Modality, register_modality


@register_modality("image")
class ImageModality(Modality):
    default_views = "image"
    default_backbone = "resnet_tiny"
    stat_dims = (0, 2, 3)

    def token_backbone(self, sample_shape: tuple[int, ...] | None) -> tuple[str, dict[str, Any]]:
        """``vit_tiny`` with patches that give a usable grid: 16 px from 128 px up (196 tokens at
        224 px), else the largest of 4, 2, 1 px that divides the image and leaves at least 16
        tokens (28 px: 4 px, 49 tokens; 8 px digits: 2 px, 16 tokens)."""
        if sample_shape is None or len(sample_shape) != 3:
            return "vit_tiny", {}
        _, H, W = sample_shape
        if min(H, W) >= 128 and H % 16 == 0 and W % 16 == 0:
            return "vit_tiny", {"patch_size": 16}
        for patch in (4, 2, 1):
            if H % patch == 0 and W % patch == 0 and (H // patch) * (W // patch) >= 16:
                return "vit_tiny", {"patch_size": patch}
        return "vit_tiny", {"patch_size": 1}

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.float()
