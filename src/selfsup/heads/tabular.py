"""Heads that predict a table row from a representation, column by column.

VIME's feature vector estimator (Yoon, Zhang, Jordon, van der Schaar 2020, "VIME: Extending the
Success of Self- and Semi-supervised Learning to Tabular Domain", NeurIPS 2020) and SubTab's
decoder (Ucar, Hajiramezanali, Edwards 2021, arXiv 2110.04361) are single linear layers on the
encoder's output; so is this one. Its output layout is the one
:func:`selfsup.losses.tabular.mixed_reconstruction_loss` reads.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from selfsup.losses.tabular import column_slots


class ColumnReconstructionHead(nn.Module):
    """``h [N, D] -> [N, P]``: per column, one value (numeric) or ``K + 1`` logits (categorical,
    the last class "missing"), in column order (:func:`~selfsup.losses.tabular.column_slots`)."""

    def __init__(self, in_dim: int, cardinalities: Sequence[int]) -> None:
        super().__init__()
        self.cardinalities = tuple(int(k) for k in cardinalities)
        self.linear = nn.Linear(in_dim, sum(column_slots(self.cardinalities)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


__all__ = ["ColumnReconstructionHead"]
