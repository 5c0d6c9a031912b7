"""Time series ``[N, C, T]`` with NaN for a missing value (unequal lengths NaN-padded at the end).

Statistics follow the TS2Vec protocol (Yue et al. 2022, arXiv 2106.10466): one mean and std per
channel over samples and time, missing values ignored, divided by ``n``. The raw-input baseline is
the standardised series with missing values set to 0, as in that paper's raw baseline.
"""

from __future__ import annotations

import torch

from selfsup.data.modalities import Modality, register_modality


@register_modality("timeseries")
class SeriesModality(Modality):
    default_views = "timeseries"
    default_backbone = "ts2vec_encoder"
    stat_dims = (0, 2)
    unbiased_std = False

    def raw_features(self, x: torch.Tensor, standardized: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(standardized, nan=0.0).flatten(1)
