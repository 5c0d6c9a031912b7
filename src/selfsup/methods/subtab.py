"""SubTab: subsets of a table's columns, each reconstructing the whole row, contrasted with each other.

Ucar, Hajiramezanali, Edwards 2021, "SubTab: Subsetting Features of Tabular Data for
Self-Supervised Representation Learning", NeurIPS 2021, arXiv 2110.04361. The columns are cut
into ``S`` overlapping subsets (4 with 75% overlap in the paper's settings); each subset of a
row gets noise (swap noise on a share ``p_m = 0.3`` of its entries: the ``subtab`` views). A
shared encoder maps each subset to a representation ``h``; a linear decoder reconstructs the
*whole* row from each ``h``, and a projection ``z = normalize(g(h))`` of the subsets of one row
are pulled together by NT-Xent (temperature 0.1) and a squared-distance loss, over every pair of
subsets. The loss is ``reconstruction + contrastive + distance``, the first averaged over the
subsets, the others over the pairs.

How a subset reaches the encoder: in the paper the encoder takes the subset's columns only
(every subset has the same width). Here the encoder takes whole rows, as every encoder of the
library, so a subset is its row with the columns outside the subset *missing* (the views set
them to NaN; the table modality's standardisation turns a missing numeric value into 0, the
mean, and a missing category into its "missing" index). A column thus keeps its own input
weights in every subset, and the encoder learns from which columns are present.

What the probes see: the paper aggregates the subsets' representations of a test row by their
mean. The exported encoder of a run is the backbone on the whole row (the Encoder contract:
backbone and standardisation, rebuilt from the backbone's name alone), so the probes, the
exported encoder and ``selfsup embed`` see the encoder of the complete row, every column
present, an input it never saw in training. The paper's representation is
:func:`subset_mean_embedding` (Python only); on the synthetic XOR table of the tests its linear
probe was 3 points above the whole row's (0.94-0.96 against 0.91-0.92, 3 runs). Other differences: the reconstruction is the mixed loss of VIME (squared error on
standardised numeric columns, cross-entropy over ``K + 1`` classes on categorical ones), mean
over the columns where SubTab sums; Gaussian noise is not offered (it has no meaning for a
category index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F

from selfsup.config import PositiveFloat, PositiveInt, Range
from selfsup.core.distributed import gather_with_grad
from selfsup.errors import ConfigError
from selfsup.heads import mlp_head
from selfsup.heads.tabular import ColumnReconstructionHead
from selfsup.losses.tabular import mixed_reconstruction_loss, subset_contrastive_loss, subset_distance_loss
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.methods.vime import column_cardinalities, reconstruction_target
from selfsup.views import Views
from selfsup.views.table import subset_columns


@dataclass
class SubTabConfig:
    """Attributes:
    num_subsets: ``S``, the subsets of the columns (4 in the paper's settings); their overlap and
        noise are the views' (``--set views.overlap=0.75``, ``views.noise=swap``, ``views.mask_prob=0.3``).
    temperature: NT-Xent's tau (0.1).
    proj_hidden_dim / proj_dim: the projection ``g``, 2 layers (the paper: the encoder's width).
    contrastive / distance: use the contrastive and the distance loss (both on in the paper's
        best setting).
    """

    num_subsets: Annotated[int, Range(ge=2)] = 4
    temperature: PositiveFloat = 0.1
    proj_hidden_dim: PositiveInt = 256
    proj_dim: PositiveInt = 256
    contrastive: bool = True
    distance: bool = True


@register_method("subtab")
class SubTab(Method):
    Config = SubTabConfig
    paper = "Ucar et al. 2021, arXiv 2110.04361"
    modalities = frozenset({"table", "vector"})
    default_views = "subtab"  # [row, subset_1, ..., subset_S]
    can_collapse_completely = False  # every subset must rebuild the whole row
    # The paper's settings: batch 32, Adam(W) at lr 1e-3.
    run_defaults = {"train": {"batch_size": 32, "lr": 1e-3}}

    def __init__(self, encoder: Encoder, config: SubTabConfig) -> None:
        super().__init__(encoder, config)
        self.cardinalities = column_cardinalities(encoder, "subtab")
        if config.num_subsets > len(self.cardinalities):
            raise ConfigError(
                f"method 'subtab': num_subsets={config.num_subsets} is more than the data's "
                f"{len(self.cardinalities)} columns; choose at most {len(self.cardinalities)}"
            )
        self.projector = mlp_head(encoder.embed_dim, config.proj_hidden_dim, config.proj_dim, num_layers=2, batch_norm=False)
        self.decoder = ColumnReconstructionHead(encoder.embed_dim, self.cardinalities)

    @property
    def num_global_views(self) -> int:  # type: ignore[override]  # the trainer reads it on the instance
        return self.config.num_subsets + 1

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x, *subsets = views.global_views  # the row, then its S subsets (other columns missing)
        S, N = len(subsets), x.shape[0]
        # Every subset through the shared encoder in one pass: [S * N, D].
        h = self.encoder.backbone(torch.nan_to_num(self.encoder.standardize(torch.cat(subsets))))
        target = reconstruction_target(self.encoder, x, self.cardinalities).repeat(S, 1)
        reconstruction = mixed_reconstruction_loss(self.decoder(h), target, self.cardinalities)
        z = F.normalize(self.projector(h), dim=1).view(S, N, -1)  # [S, N, P]
        loss, metrics = reconstruction, {"reconstruction": reconstruction.detach()}
        if self.config.contrastive:
            contrastive = subset_contrastive_loss([gather_with_grad(z[s]) for s in range(S)], self.config.temperature)
            loss, metrics["contrastive"] = loss + contrastive, contrastive.detach()
        if self.config.distance:
            distance = subset_distance_loss(z)
            loss, metrics["distance"] = loss + distance, distance.detach()
        embeddings = h.detach().view(S, N, -1).mean(dim=0)  # the paper's aggregate of a row's subsets
        return StepOutput(loss, metrics, embeddings)


def subset_mean_embedding(encoder: Encoder, x: torch.Tensor, num_subsets: int = 4, overlap: float = 0.75) -> torch.Tensor:
    """SubTab's representation of raw rows ``x [N, F]`` (the paper's test time): the mean of the
    encoder's outputs on each subset of the columns (:func:`~selfsup.views.table.subset_columns`;
    the other columns missing, no noise) -> ``[N, D]``. Give the run's ``method.num_subsets``
    and ``views.overlap``; call it on an encoder in eval mode, under ``torch.no_grad()`` for
    features."""
    outputs = []
    for start, stop in subset_columns(x.shape[1], num_subsets, overlap):
        outside = torch.ones(x.shape[1], dtype=torch.bool, device=x.device)
        outside[start:stop] = False
        subset = x.masked_fill(outside, float("nan"))
        outputs.append(encoder.backbone(torch.nan_to_num(encoder.standardize(subset))))
    return torch.stack(outputs).mean(dim=0)


__all__ = ["SubTab", "SubTabConfig", "subset_mean_embedding"]
