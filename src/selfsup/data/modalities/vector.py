"""Feature vectors ``[N, D]``: one mean and std per feature; the raw baseline is the vector itself,
and gradient-boosted trees on it run beside the probes (``eval.trees: auto``). A missing value
(NaN) is left out of the statistics and standardised to 0, the feature's mean, so an encoder
never sees NaN (SubTab's column subsets mark the columns outside a subset as missing)."""

from __future__ import annotations

import torch

from selfsup.data.modalities import Modality, register_modality


@register_modality("vector")
class VectorModality(Modality):
    default_views = "vector"
    default_backbone = "mlp"
    stat_dims = (0,)
    tree_baseline = True

    def standardize(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std``, a missing value at 0 (the feature's mean)."""
        return torch.nan_to_num((x - mean) / std, nan=0.0)
