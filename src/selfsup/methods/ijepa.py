"""I-JEPA: predicting the representations of image blocks from a context block.

Assran, Duval, Misra, Bojanowski, Vincent, Rabbat, LeCun, Ballas 2023, "Self-Supervised Learning
from Images with a Joint-Embedding Predictive Architecture", CVPR 2023, arXiv 2301.08243. One
view, whose random resized crop (scale 0.3-1 in the paper) is the only augmentation: the views
default to ``masked_crops`` (crop and flip; ``recipes/ijepa-digits.yaml`` sets the paper's). Per sample, M target blocks (scale
0.15-0.2 of the patch grid, aspect 0.75-1.5) and one large context block (scale 0.85-1) without
the target tokens are drawn (:func:`~selfsup.masking.multi_block_mask`). The context encoder
sees only the context tokens; the target encoder, an EMA of it (momentum 0.996 -> 1, linear),
sees every token and its outputs are layer-normalised; a narrow transformer predictor gets the
context outputs plus, for each target block, a mask token with the position embedding of every
target token, and regresses the targets (one predictor pass per block, the context repeated).
The loss is averaged over the blocks (:func:`~selfsup.losses.predictive.ijepa_loss`); weight
decay follows the paper's cosine 0.04 -> 0.4.

On series (``patch_transformer``) the same with 1-D spans over the patch tokens
(:func:`multi_span_mask`). Channel-independent series backbones encode each channel as its own
row; the rows of a sample are merged into one token per patch by the backbone's ``merge_groups``
(its ``channel_merge``, as its ``pool`` does), so targets and predictions are per sample and patch.

As in the paper, the exported encoder (``self.encoder``, used by the probes) is the target
encoder; ``trained_encoder`` is the context encoder the gradients reach
(``export_target_encoder=false`` exports the context encoder instead). Not reproduced: the
paper's context/target overlap relaxation (here the context never holds a target token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.backbones.tokens import Tokens, TransformerBlock, gather_tokens, init_transformer_weights, sincos_2d
from selfsup.config import Fraction, NonNegativeFloat, OneOf, PositiveFloat, PositiveInt, Range
from selfsup.config_checks import coerce_optional
from selfsup.core.schedules import cosine_schedule
from selfsup.core.teacher import EMATeacher
from selfsup.errors import ConfigError
from selfsup.losses.predictive import REGRESSIONS, ijepa_loss
from selfsup.masking import BlockMasks, block_indices_2d, block_mask_2d, multi_block_mask
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.views import Views

Scale = Annotated[float, Range(gt=0, le=1)]


@dataclass
class IJEPAConfig:
    """Attributes:
    num_targets: target blocks per sample (M = 4 in the paper).
    target_scale, target_aspect, context_scale: block sizes as fractions of the grid (paper values).
    min_context: least number of context tokens per sample (lowered on grids too small to keep
        that many beside ``num_targets`` blocks of the largest target scale).
    predictor_dim, predictor_depth, predictor_heads: the predictor transformer (the paper: width
        384, depth 12 for ViT-H; here narrow and shallow for small backbones).
    regression: "mse" (the paper's L2) or "smooth_l1" (the released code).
    base_momentum, final_momentum: the target encoder's EMA, linear over training (0.996 -> 1).
    weight_decay_start, weight_decay_end: cosine weight-decay schedule (0.04 -> 0.4 in the
        paper); None (both): ``train.weight_decay`` throughout.
    export_target_encoder: probes and exports use the target (EMA) encoder, as the paper evaluates.
    """

    num_targets: PositiveInt = 4
    target_scale: tuple[Scale, Scale] = (0.15, 0.2)
    target_aspect: tuple[PositiveFloat, PositiveFloat] = (0.75, 1.5)
    context_scale: tuple[Scale, Scale] = (0.85, 1.0)
    min_context: PositiveInt = 4
    predictor_dim: Annotated[int, Range(ge=4)] = 64
    predictor_depth: PositiveInt = 2
    predictor_heads: PositiveInt = 4
    regression: Annotated[str, OneOf(*REGRESSIONS)] = "mse"
    base_momentum: Fraction = 0.996
    final_momentum: Fraction = 1.0
    weight_decay_start: NonNegativeFloat | None = 0.04
    weight_decay_end: NonNegativeFloat | None = 0.4
    export_target_encoder: bool = True

    def __post_init__(self) -> None:
        coerce_optional(self, "weight_decay_start", "weight_decay_end")
        for name in ("target_scale", "target_aspect", "context_scale"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be (min, max) with min <= max; got {getattr(self, name)}")
        if (self.weight_decay_start is None) != (self.weight_decay_end is None):
            raise ValueError("weight_decay_start and weight_decay_end go together; give both or neither")
        if self.predictor_dim % 4 or self.predictor_dim % self.predictor_heads:
            raise ValueError(
                f"predictor_dim ({self.predictor_dim}) must be divisible by 4 (2-D sin-cos positions) "
                f"and by predictor_heads ({self.predictor_heads})"
            )


def merge_rows(backbone: nn.Module, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One token sequence per sample: ``Tokens.x [N * G, L, D]`` -> ``([N, L, D], padding [N, L] or None)``.

    ``G = tokens.groups`` rows per sample (the channels of a channel-independent series backbone)
    are merged per token by the backbone's ``merge_groups`` (its ``channel_merge``, as its ``pool``
    does); every row of a sample must hold the same token positions.
    """
    padding = None if tokens.padding is None else tokens.padding[:: tokens.groups]
    return backbone.merge_groups(tokens.x, tokens.groups), padding


def linear_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """From ``start`` at step 0 to ``end`` at ``total_steps``, linearly (I-JEPA's momentum schedule)."""
    return start + (end - start) * min(1.0, max(step, 0) / max(1, total_steps))


def token_grid(backbone: nn.Module) -> tuple[int, int]:
    """The token layout: the patch grid ``(H, W)`` of an image backbone, ``(1, L)`` for a sequence."""
    return tuple(getattr(backbone, "grid", (1, backbone.sequence_length)))  # type: ignore[return-value]


def multi_span_mask(
    num_samples: int, length: int, generator: torch.Generator, num_targets: int = 4,
    target_scale: tuple[float, float] = (0.15, 0.2), context_scale: tuple[float, float] = (0.85, 1.0),
    min_keep: int = 4, max_tries: int = 20,
) -> BlockMasks:
    """I-JEPA's multi-block masking on a sequence of ``length`` tokens (a ``1 x length`` grid).

    One target span length (``target_scale`` of the length) and one context length are drawn for
    the batch; per sample, ``num_targets`` target spans and one context span at uniform positions;
    target tokens are removed from the context, short samples redrawn (fewer than ``min_keep``),
    and every context truncated to the batch's smallest, as :func:`~selfsup.masking.multi_block_mask`.
    Returns :class:`~selfsup.masking.BlockMasks` with ``context [N, L_ctx]`` and ``num_targets``
    tensors ``[N, t]``.
    """
    def draw(scale: tuple[float, float]) -> int:
        s = scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=generator, device=generator.device).item()
        return min(max(int(s * length), 1), length)

    def starts(size: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(0, length - size + 1, shape, generator=generator, device=generator.device)

    t, c = draw(target_scale), draw(context_scale)
    zeros = torch.zeros(num_samples, num_targets, dtype=torch.long, device=generator.device)
    target_left, context_left = starts(t, (num_samples, num_targets)), starts(c, (num_samples,))
    for _ in range(max_tries):
        in_targets = block_mask_2d((1, length), zeros, target_left, 1, t).any(dim=1)  # [N, L]
        context = block_mask_2d((1, length), zeros[:, 0], context_left, 1, c) & ~in_targets
        short = (context.sum(dim=1) < min_keep).nonzero().squeeze(1)
        if short.numel() == 0:
            break
        target_left[short], context_left[short] = starts(t, (short.numel(), num_targets)), starts(c, (short.numel(),))
    if int(context.sum(dim=1).min()) < min_keep:
        raise ValueError(
            f"{length} tokens leave fewer than min_context={min_keep} context tokens next to {num_targets} "
            f"target spans of {t}; lower num_targets, target_scale or min_context"
        )
    order = torch.argsort((~context).to(torch.uint8), dim=1, stable=True)  # context tokens first, ascending
    targets = block_indices_2d((1, length), zeros, target_left, 1, t)  # [N, M, t]
    kept = int(context.sum(dim=1).min())
    return BlockMasks(order[:, :kept], list(targets.unbind(dim=1)), (1, length), (1, t), (1, c))


class Predictor(nn.Module):
    """I-JEPA's narrow transformer predictor.

    ``forward(context [B, L_ctx, D], context_positions [B, L_ctx], target_positions [B, T],
    context_padding [B, L_ctx] or None) -> [B, T, D]``: the context features are projected to the
    predictor's width, fixed sin-cos position embeddings of the ``grid`` are added, one learned
    mask token plus its position embedding stands at each target position, the blocks mix them,
    and the target tokens' outputs are normalised and projected back to ``D``.
    """

    def __init__(self, embed_dim: int, dim: int, depth: int, num_heads: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.embed = nn.Linear(embed_dim, dim)
        self.register_buffer("pos_embed", sincos_2d(*grid, dim), persistent=False)  # [L, dim]
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, embed_dim)
        self.apply(init_transformer_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self, context: torch.Tensor, context_positions: torch.Tensor, target_positions: torch.Tensor,
        context_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T = target_positions.shape
        x = self.embed(context) + self.pos_embed[context_positions]  # [B, L_ctx, dim]
        queries = self.mask_token + self.pos_embed[target_positions]  # [B, T, dim]
        h = torch.cat([x, queries.to(x.dtype)], dim=1)
        padding = None if context_padding is None else F.pad(context_padding, (0, T), value=False)
        for block in self.blocks:
            h = block(h, padding)
        return self.proj(self.norm(h[:, -T:]))


@register_method("ijepa")
class IJEPA(Method):
    Config = IJEPAConfig
    paper = "Assran et al. 2023, arXiv 2301.08243"
    requires = frozenset({"tokens"})
    num_global_views = 1  # one view; its crop is the only augmentation
    default_views = "masked_crops"  # with views "auto": a random resized crop (and flip), no colour changes
    probe_pooling = "mean"  # no CLS token: the paper average-pools the target encoder's outputs
    # AdamW with warm-up and cosine decay (weight decay 0.04 -> 0.4 through the config's schedule).
    run_defaults = {"train": {"optimizer": "adamw", "weight_decay": 0.04, "lr": 1e-3}}

    def __init__(self, encoder: Encoder, config: IJEPAConfig) -> None:
        super().__init__(encoder, config)
        self.grid = token_grid(encoder.backbone)
        self.predictor = Predictor(
            encoder.embed_dim, config.predictor_dim, config.predictor_depth, config.predictor_heads, self.grid
        )
        self.online = encoder  # the context encoder, trained
        self.teacher = EMATeacher(encoder)  # the target encoder
        if config.export_target_encoder:
            self.encoder = self.teacher.module
        self.momentum = config.base_momentum

    @property
    def trained_encoder(self) -> Encoder:
        """The context encoder, the one the gradients reach."""
        return self.online

    def masks(self, num_samples: int, num_tokens: int, generator: torch.Generator) -> BlockMasks:
        """Context and target token indices for ``num_samples`` samples of ``num_tokens`` tokens."""
        c = self.config
        # Tiny grids cannot keep min_context tokens beside M large targets: ask for what can remain.
        grid_tokens = num_tokens if self.grid[0] == 1 else self.grid[0] * self.grid[1]
        most = int(c.target_scale[1] * grid_tokens)
        min_keep = min(c.min_context, max(1, num_tokens - c.num_targets * max(1, most)))
        try:
            if self.grid[0] == 1:  # a sequence (series patches); its tokens may be fewer than the built length
                return multi_span_mask(num_samples, num_tokens, generator, c.num_targets, c.target_scale,
                                       c.context_scale, min_keep)
            return multi_block_mask(num_samples, self.grid, generator, c.num_targets, c.target_scale,
                                    c.target_aspect, c.context_scale, min_keep)
        except ValueError as error:
            raise ConfigError(f"method 'ijepa': masks do not fit the {self.grid} token grid: {error}") from None

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x = views.global_views[0]
        N = x.shape[0]
        tokens = self.online.tokenize(x)  # rows [N * G, L, D]
        G, L = tokens.groups, tokens.x.shape[1]
        masks = self.masks(N, L, ctx.generator_on(x.device))
        context = self.online.encode(tokens, keep=masks.context.repeat_interleave(G, dim=0))
        z, context_padding = merge_rows(self.online.backbone, context)  # [N, L_ctx, D]
        with torch.no_grad():
            target = self.teacher.module
            full = target.encode(target.tokenize(x))
            h, padding = merge_rows(target.backbone, full)  # [N, L, D]
            h = F.layer_norm(h, h.shape[-1:])  # the paper normalises the target encoder's outputs
            embeddings = target.backbone.pool(full)
        # Each target block is predicted on its own: the context is repeated once per block.
        M = len(masks.targets)
        target_positions = torch.cat(masks.targets)  # [M * N, T]
        predictions = self.predictor(
            z.repeat(M, 1, 1), masks.context.repeat(M, 1), target_positions,
            None if context_padding is None else context_padding.repeat(M, 1),
        ).chunk(M)
        targets = [gather_tokens(h, block) for block in masks.targets]
        valid = None if padding is None else [~padding.gather(1, block) for block in masks.targets]
        loss = ijepa_loss(predictions, targets, self.config.regression, valid)
        return StepOutput(loss, {"momentum": self.momentum}, embeddings)

    @torch.no_grad()
    def on_step_end(self, ctx: StepContext) -> None:
        # Linear from base to final over the run (the paper's schedule), a function of the step alone.
        c = self.config
        self.momentum = linear_schedule(ctx.step + 1, ctx.total_steps, c.base_momentum, c.final_momentum)
        self.teacher.update(self.online, self.momentum)

    def optimizer_schedules(self, ctx: StepContext) -> dict[str, float]:
        c = self.config
        if c.weight_decay_start is None:
            return {}
        return {"weight_decay": cosine_schedule(ctx.step, ctx.total_steps, c.weight_decay_start, c.weight_decay_end)}
