"""VIME (self-supervised part): mask estimation and feature reconstruction on tables.

Yoon, Zhang, Jordon, van der Schaar 2020, "VIME: Extending the Success of Self- and
Semi-supervised Learning to Tabular Domain", NeurIPS 2020, sec. 4.1. A mask ``m`` (each entry
Bernoulli(``p_m``)) picks entries of a row that are replaced by draws from their columns'
empirical marginals (the ``vime_mask`` views). The encoder sees the corrupted row ``x~``; two
heads on its output estimate which entries were replaced (the mask vector estimator, binary
cross-entropy per column) and the original row (the feature vector estimator: squared error on
standardised numeric columns, cross-entropy over the ``K + 1`` classes of a categorical column,
"missing" being the last). The loss is ``l_m + alpha * l_r`` (the paper's objective: ``alpha``
weighs the reconstruction; 2.0 in the authors' release).

Choices: the mask to estimate is "the entry changed" (a replacement drawn equal to the row's own
value is invisible, and cannot be estimated); a missing numeric value has no reconstruction
target and counts nowhere; both heads are linear (as in the authors' release); the marginals
are those of the batch. VIME-semi (consistency training with labels) is not part of this
method: fine-tuning and the probes take its place.

Also here, shared with SubTab: :func:`column_cardinalities` and :func:`reconstruction_target`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from selfsup.config import NonNegativeFloat
from selfsup.errors import ConfigError
from selfsup.heads.tabular import ColumnReconstructionHead
from selfsup.losses.tabular import mask_estimation_loss, mixed_reconstruction_loss
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.views import Views


def column_cardinalities(encoder: Encoder, method: str) -> list[int]:
    """Per column of the encoder's rows: its number of categories (a table's categorical
    column), 0 for a numeric one (every column of plain feature vectors)."""
    if len(encoder.input_shape) != 1:
        raise ConfigError(f"method {method!r} takes table rows [F]; got samples of shape {tuple(encoder.input_shape)}")
    num_features = encoder.input_shape[0]
    sizes = getattr(encoder.modality, "cardinalities", None)
    return list(sizes(num_features)) if sizes is not None else [0] * num_features


def reconstruction_target(encoder: Encoder, x: torch.Tensor, cardinalities: list[int]) -> torch.Tensor:
    """What a reconstruction head predicts, ``[N, F]``: the standardised row (numeric columns
    standardised, categorical ones their index, ``K`` for missing), NaN at a missing numeric
    value (no target there)."""
    target = encoder.standardize(x)
    numeric = torch.tensor([k == 0 for k in cardinalities], device=x.device)
    return target.masked_fill(torch.isnan(x) & numeric, float("nan"))


def changed(corrupted: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """bool ``[N, F]``: the entries of ``corrupted`` that differ from ``x`` (two missing values are equal)."""
    same = (corrupted == x) | (torch.isnan(corrupted) & torch.isnan(x))
    return ~same


@dataclass
class VIMEConfig:
    """Attributes:
    alpha: weight of the feature reconstruction loss against the mask estimation loss
        (``l_m + alpha * l_r``; 2.0 in the authors' release, tuned per data set in the paper).
    The mask probability ``p_m`` is the views' (``--set views.mask_prob=0.3``).
    """

    alpha: NonNegativeFloat = 2.0


@register_method("vime")
class VIME(Method):
    Config = VIMEConfig
    paper = "Yoon et al. 2020, NeurIPS 2020 (VIME)"
    modalities = frozenset({"table", "vector"})
    default_views = "vime_mask"  # [clean row, masked and replaced copy]
    can_collapse_completely = False  # the heads must rebuild the row and find the mask from the encoding
    # The authors' release: batch 128 (their optimiser is RMSprop; AdamW at lr 1e-3 here).
    run_defaults = {"train": {"batch_size": 128, "lr": 1e-3}}

    def __init__(self, encoder: Encoder, config: VIMEConfig) -> None:
        super().__init__(encoder, config)
        self.cardinalities = column_cardinalities(encoder, "vime")
        self.mask_head = nn.Linear(encoder.embed_dim, len(self.cardinalities))
        self.feature_head = ColumnReconstructionHead(encoder.embed_dim, self.cardinalities)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x, corrupted = views.global_views[:2]  # view 0: the row itself
        h = self.encoder.backbone(torch.nan_to_num(self.encoder.standardize(corrupted)))  # [N, D]
        mask_loss = mask_estimation_loss(self.mask_head(h), changed(corrupted, x))
        target = reconstruction_target(self.encoder, x, self.cardinalities)
        feature_loss = mixed_reconstruction_loss(self.feature_head(h), target, self.cardinalities)
        loss = mask_loss + self.config.alpha * feature_loss
        metrics = {"mask_loss": mask_loss.detach(), "feature_loss": feature_loss.detach()}
        return StepOutput(loss, metrics, h.detach())


__all__ = ["VIME", "VIMEConfig", "column_cardinalities", "reconstruction_target", "changed"]
