"""Tables ``[N, F]``: numeric columns and categorical columns held as category indices.

Raw samples are what :mod:`selfsup.data.table` encodes (numeric values, category indices
``0 .. K-1``, NaN for a missing value); the schema (``info``: the source's ``data_info``) says
which column is which. The backbone's input (:meth:`TableModality.standardize`): numeric columns
standardised with the training data's mean and std, a missing value at 0 (the mean);
categorical columns as the category index, a missing or unknown value at index ``K`` (one more
slot, so "missing" is a category of its own). Table backbones split the two with the
``cardinalities`` this modality fills into their params.

Views work on raw samples (swapping values between rows keeps every value a valid one of its
column), so they need no schema. The raw-input baseline: standardised numeric columns beside
one-hot categorical ones (missing as its own slot); the trees baseline: the raw values with
native categorical splits.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from selfsup.data.modalities import Modality, register_modality
from selfsup.data.table import cardinalities, categorical_columns


@register_modality("table")
class TableModality(Modality):
    default_views = "vector"
    default_backbone = "table_mlp"
    stat_dims = (0,)
    tree_baseline: ClassVar[bool] = True

    def token_backbone(self, sample_shape: tuple[int, ...] | None) -> tuple[str, dict[str, Any]] | None:
        """The feature-tokenizer transformer: one token per column."""
        return ("ft_transformer", {})

    def cardinalities(self, num_features: int) -> list[int]:
        """Per column: its number of categories, 0 for a numeric column."""
        return cardinalities(self.info, num_features)

    def backbone_inputs(self) -> dict[str, Any]:
        """``cardinalities`` for table backbones (a config field of that name)."""
        return {} if self.info is None else {"cardinalities": cardinalities(self.info, len(self.info["columns"]))}

    def _categorical_mask(self, num_features: int, device: torch.device) -> torch.Tensor:
        mask = torch.zeros(num_features, dtype=torch.bool, device=device)
        mask[categorical_columns(self.info)] = True
        return mask

    def standardize(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Numeric: ``(x - mean) / std``, missing at 0; categorical: the index, missing at ``K``."""
        categorical = self._categorical_mask(x.shape[-1], x.device)
        numeric = torch.nan_to_num((x - mean) / std, nan=0.0)
        if not categorical.any():
            return numeric
        sizes = torch.tensor(self.cardinalities(x.shape[-1]), dtype=x.dtype, device=x.device)
        codes = torch.where(torch.isnan(x), sizes.expand_as(x), x)
        return torch.where(categorical, codes, numeric)

    def raw_features(self, x: torch.Tensor, standardized: torch.Tensor) -> torch.Tensor:
        """Standardised numeric columns (missing at 0) and one-hot categorical ones (``K + 1``
        slots each, the last for missing), in column order."""
        sizes = self.cardinalities(x.shape[-1])
        parts = []
        for j, size in enumerate(sizes):
            column = standardized[:, j]
            if size:
                parts.append(torch.nn.functional.one_hot(column.long(), size + 1).to(standardized.dtype))
            else:
                parts.append(column[:, None])
        return torch.cat(parts, dim=1)

    def tree_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[bool] | None]:
        """Raw values (NaN kept: the trees route missing values themselves) and the categorical columns."""
        mask = self._categorical_mask(x.shape[-1], x.device).tolist()
        return x, (mask if any(mask) else None)
