"""T-JEPA: predicting the representations of some table columns from others, without augmentation.

Thimonier, Costa, Popineau, Rimmel, Doan 2024, "T-JEPA: Augmentation-Free Self-Supervised Learning
for Tabular Data", ICLR 2025, arXiv 2410.05016. I-JEPA (Assran et al. 2023, arXiv 2301.08243) on
table rows, with columns as tokens (``ft_transformer``, the feature tokenizer of Gorishniy et al.
2021) and no view at all: the rows are used as they are. Per batch a context size and a target size
are drawn (shares of the F columns, 0.2-0.4 each by default, resampled until they fit together);
per row, a random context subset of that many columns and M = 4 random target subsets of the
columns outside the context (targets may overlap each other, never the context:
:func:`feature_subset_masks`). The context encoder sees only the context columns; the target
encoder, an EMA of it (momentum 0.996 -> 1, linear), encodes the whole row, and its outputs at each
target subset are the targets; a narrow transformer predictor gets the context outputs plus one
mask token per target column (with that column's position embedding) and regresses the targets;
the loss is the squared L2 distance, averaged over the target columns and the M subsets
(:func:`~selfsup.losses.predictive.ijepa_loss`, which with equal subset sizes is the released
code's mean squared error over all predicted tokens).

The paper's **regularisation tokens** ([REG]), which it finds critical to train without collapse,
are learned tokens added to each row's sequence (the released code puts one before the column
tokens, as a [CLS] token). Here [REG] is the backbone's [CLS] token (``ft_transformer``'s
``cls_token``, on by default): ``encode`` puts it before the kept columns in both encoders, and its
output (``Tokens.cls``) stays out of the predictor and the loss. (The released code draws its
masks over positions ``0 .. F-1`` of the sequence that starts with [REG], so there [REG] is
sometimes in the context or a target and the last column never is; here it is always seen and
every column can be masked.) ``--set backbone.cls_token=false`` trains without it.

What I-JEPA here already does and T-JEPA shares, reused from :mod:`selfsup.methods.ijepa`: the
predictor (fixed sin-cos embeddings of the column index, as the released code), the EMA target
encoder, the momentum and weight-decay schedules, the target encoder exported for evaluation (the
paper embeds downstream data with the target encoder). Departures, stated: the target encoder's
outputs are layer-normalised (without affine parameters) before the loss, as I-JEPA's (the
released code's encoder ends in a LayerNorm whose learned scale the loss could shrink); one
context subset per row (the released code's ``num_encs`` default); the paper's downstream models
read the target encoder's column tokens flattened (``F * D`` features), while the probes here read
one ``D``-wide vector, the mean over the column tokens (``probe_pooling="mean"``). Defaults are the
released code's (shares 0.2-0.4, M = 4, predictor width 64 and depth 2, EMA 0.996 -> 1, weight
decay 1e-5 -> 1e-2 cosine), with a larger learning rate for short runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from selfsup.config import Fraction, NonNegativeFloat, OneOf, PositiveInt, Range
from selfsup.config_checks import check_pairs, coerce_optional
from selfsup.errors import ConfigError
from selfsup.losses.predictive import REGRESSIONS
from selfsup.masking import BlockMasks
from selfsup.methods.base import Encoder, register_method
from selfsup.methods.ijepa import IJEPA

Share = Annotated[float, Range(gt=0, lt=1)]


@dataclass
class TJEPAConfig:
    """Attributes:
    num_targets: target subsets per row (M = 4, the released code's ``mask_num_preds``).
    context_share, target_share: ``[low, high]`` shares of the columns in the context and in each
        target subset; one size of each is drawn per batch (0.2-0.4, the released code's defaults).
    predictor_dim, predictor_depth, predictor_heads: the predictor transformer (64, 2, 4 as the
        released code's defaults).
    regression: "mse" (the paper's squared L2) or "smooth_l1".
    base_momentum, final_momentum: the target encoder's EMA, linear over training (0.996 -> 1).
    weight_decay_start, weight_decay_end: cosine weight-decay schedule (1e-5 -> 1e-2, the released
        code's defaults); None (both): ``train.weight_decay`` throughout.
    export_target_encoder: probes and exports use the target (EMA) encoder, as the paper does.
    """

    num_targets: PositiveInt = 4
    context_share: tuple[Share, Share] = (0.2, 0.4)
    target_share: tuple[Share, Share] = (0.2, 0.4)
    predictor_dim: Annotated[int, Range(ge=4)] = 64
    predictor_depth: PositiveInt = 2
    predictor_heads: PositiveInt = 4
    regression: Annotated[str, OneOf(*REGRESSIONS)] = "mse"
    base_momentum: Fraction = 0.996
    final_momentum: Fraction = 1.0
    weight_decay_start: NonNegativeFloat | None = 1e-5
    weight_decay_end: NonNegativeFloat | None = 1e-2
    export_target_encoder: bool = True

    def __post_init__(self) -> None:
        coerce_optional(self, "weight_decay_start", "weight_decay_end")
        check_pairs(self, "context_share", "target_share")
        if (self.weight_decay_start is None) != (self.weight_decay_end is None):
            raise ValueError("weight_decay_start and weight_decay_end go together; give both or neither")
        if self.predictor_dim % 4 or self.predictor_dim % self.predictor_heads:
            raise ValueError(
                f"predictor_dim ({self.predictor_dim}) must be divisible by 4 (sin-cos positions) "
                f"and by predictor_heads ({self.predictor_heads})"
            )


def _size_range(num_features: int, share: tuple[float, float]) -> tuple[int, int]:
    """Column counts ``[low, high]`` for a share range, each in ``1 .. F - 1`` (one column left over)."""
    low = min(max(1, round(share[0] * num_features)), num_features - 1)
    return low, min(max(low, round(share[1] * num_features)), num_features - 1)


def feature_subset_masks(
    num_samples: int, num_features: int, generator: torch.Generator, num_targets: int = 4,
    context_share: tuple[float, float] = (0.2, 0.4), target_share: tuple[float, float] = (0.2, 0.4),
    max_tries: int = 20,
) -> BlockMasks:
    """T-JEPA's masks over the ``F`` columns of each row (Thimonier et al. 2024, arXiv 2410.05016).

    One context size ``c`` and one target size ``t`` are drawn for the batch, uniformly among the
    counts of ``context_share`` / ``target_share`` of ``F`` (at least 1 each), redrawn until
    ``c + t <= F`` (after ``max_tries`` draws, ``t`` is cut to ``F - c``); per row, ``c`` columns
    at random form the context, and each of the ``num_targets`` target subsets is ``t`` columns
    at random among the ``F - c`` others (subsets may overlap each other, never the context).

    Returns :class:`~selfsup.masking.BlockMasks` on ``generator.device``: ``context [N, c]`` and
    ``num_targets`` tensors ``[N, t]``, column indices ascending in each row; ``grid = (1, F)``.
    """
    if num_features < 2:
        raise ValueError(f"T-JEPA masks need at least 2 columns (a context and a target); got {num_features}")
    device = generator.device
    c_range, t_range = _size_range(num_features, context_share), _size_range(num_features, target_share)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator, device=device))

    for _ in range(max_tries):
        c, t = draw(*c_range), draw(*t_range)
        if c + t <= num_features:
            break
    t = min(t, num_features - c)
    # A random permutation per row (argsort of uniform noise); the first c columns are the context.
    context = torch.rand(num_samples, num_features, generator=generator, device=device).argsort(dim=1)[:, :c]
    in_context = torch.zeros(num_samples, num_features, dtype=torch.bool, device=device).scatter_(1, context, True)
    targets = []
    for _ in range(num_targets):
        noise = torch.rand(num_samples, num_features, generator=generator, device=device)
        noise = noise.masked_fill(in_context, 2.0)  # context columns sort last: never a target
        targets.append(noise.argsort(dim=1)[:, :t].sort(dim=1).values)
    return BlockMasks(context.sort(dim=1).values, targets, (1, num_features), (1, t), (1, c))


@register_method("tjepa")
class TJEPA(IJEPA):
    Config = TJEPAConfig
    paper = "Thimonier et al. 2024, arXiv 2410.05016"
    modalities = frozenset({"table"})
    requires = frozenset({"tokens"})
    num_global_views = 1  # the row itself: no augmentation
    default_views = "masked_crops"  # with views "auto": rows pass through unchanged
    probe_pooling = "mean"  # the mean over the target encoder's column tokens (the paper flattens them)
    # AdamW with warm-up and cosine decay (weight decay 1e-5 -> 1e-2 through the config's schedule);
    # the released code's lr is 1e-4 (tuned 1e-5 .. 1e-3 per data set, batch 512, 300 epochs): a
    # larger one for short runs on small data.
    run_defaults = {"train": {"optimizer": "adamw", "weight_decay": 1e-5, "lr": 1e-3}}

    def __init__(self, encoder: Encoder, config: TJEPAConfig) -> None:
        columns = getattr(encoder.backbone, "sequence_length", 0)
        if self.requires <= encoder.provides and columns < 2:
            raise ConfigError(
                f"method 'tjepa' predicts some columns from others and needs at least 2 feature columns; "
                f"the table has {columns}"
            )
        super().__init__(encoder, config)

    def masks(self, num_samples: int, num_tokens: int, generator: torch.Generator) -> BlockMasks:
        """Context and target column indices for ``num_samples`` rows of ``num_tokens`` columns."""
        c = self.config
        return feature_subset_masks(num_samples, num_tokens, generator, c.num_targets, c.context_share, c.target_share)


__all__ = ["TJEPA", "TJEPAConfig", "feature_subset_masks"]
