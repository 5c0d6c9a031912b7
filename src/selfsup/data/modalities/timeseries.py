"""Time series ``[N, C, T]`` with NaN for a missing value (unequal lengths NaN-padded at the end).

Statistics follow the TS2Vec protocol (Yue et al. 2022, arXiv 2106.10466): one mean and std per
channel over samples and time, missing values ignored, divided by ``n``. The raw-input baseline is
the standardised series with missing values set to 0, as in that paper's raw baseline.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from selfsup.data.modalities import Modality, register_modality


@register_modality("timeseries")
class SeriesModality(Modality):
    default_views = "timeseries"
    default_backbone = "ts2vec_encoder"
    stat_dims = (0, 2)
    unbiased_std = False

    def token_backbone(self, sample_shape: tuple[int, ...] | None) -> tuple[str, dict[str, Any]]:
        """``patch_transformer`` with non-overlapping patches (masked methods: an overlapping
        neighbour would give a hidden patch away) sized for about 32 tokens per series
        (``max(2, ceil(T / 32))`` steps: 12 tokens on 24 steps, 32 on 1,460)."""
        if sample_shape is None or len(sample_shape) != 2:
            return "patch_transformer", {}
        patch = max(2, math.ceil(sample_shape[-1] / 32))
        return "patch_transformer", {"patch_len": patch, "stride": patch}

    def raw_features(self, x: torch.Tensor, standardized: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(standardized, nan=0.0).flatten(1)
