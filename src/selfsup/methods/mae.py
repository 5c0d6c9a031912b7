"""MAE: masked autoencoders.

He, Chen, Xie, Li, Dollár, Girshick 2022, "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022, arXiv 2111.06377. A random 75% of each sample's tokens is hidden; the encoder runs on
the visible ones only; a light transformer decoder gets the encoded visible tokens back in place,
a learned mask token at every hidden place and its own (fixed sin-cos) position embeddings, and
predicts the values under every token with a linear layer. The loss is the mean squared error on
the hidden tokens only, against each patch's own standardised values (``norm_pix_loss``).

Images (ViT) and series (patch transformer) alike: the target is the backbone's ``patchify`` of
the standardised input. In channel-independent series backbones each channel is a row of its own
(``Tokens.groups``); one mask is drawn per sample and shared by its channels (pooling merges the
channels token by token, so they must keep the same tokens); missing steps are left out of the loss.
Tables (``ft_transformer``, one token per column): only numeric columns are reconstructed (their
standardised values, without ``norm_pix_loss``, which would make a single value 0); categorical
columns are hidden like the others but not scored, since a category index is not a value to regress.

Also here, shared by the masked family: :class:`MaskedDecoder` and the mask drawing helpers. The
family's views, ``masked_crops`` (the random resized crop and flip MAE trains with, series
unchanged), are in :mod:`selfsup.views.masked`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import torch
import torch.nn as nn

from selfsup.backbones.tokens import (
    Tokens, TransformerBlock, attention_padding, init_transformer_weights, sincos_1d, sincos_2d,
)
from selfsup.config import PositiveFloat, PositiveInt, Range
from selfsup.errors import ConfigError
from selfsup.losses.masked import masked_patch_mse
from selfsup.masking import TokenMask, random_token_mask, restore
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method, split_decay
from selfsup.views import Views

MaskRatio = Annotated[float, Range(gt=0, lt=1)]  # hide something, keep something


# ----------------------------------------------------------------------------- shared helpers


def sample_mask(tokens: Tokens, ratio: float, generator: torch.Generator) -> TokenMask:
    """One random token mask per sample (:func:`random_token_mask`), repeated over the sample's
    ``tokens.groups`` rows (its channels) -> ``TokenMask`` over the rows ``[N * groups, L]``."""
    rows, L = tokens.x.shape[:2]
    mask = random_token_mask(rows // tokens.groups, L, ratio, generator, device=tokens.x.device)
    if tokens.groups == 1:
        return mask
    g = tokens.groups
    return TokenMask(*(t.repeat_interleave(g, dim=0) for t in (mask.keep, mask.masked, mask.mask)))


def merge_values(values: torch.Tensor, groups: int) -> torch.Tensor:
    """Patch values of the rows ``[N * groups, L, P]`` -> per sample ``[N, L, groups * P]`` (channel-major)."""
    if groups == 1:
        return values
    rows, L, P = values.shape
    return values.view(rows // groups, groups, L, P).permute(0, 2, 1, 3).reshape(rows // groups, L, groups * P)


def values_per_token(encoder: Encoder) -> int:
    """``K``: the values under one token of a whole sample (all its rows): ``rows * P`` of ``patchify``."""
    patches = encoder.backbone.patchify(torch.zeros(1, *encoder.input_shape))  # [rows, L, P]
    return patches.shape[0] * patches.shape[-1]


@dataclass
class DecoderConfig:
    """MAE's decoder, scaled down (the paper: width 512, 8 blocks, 16 heads for ViT-L). On digits a
    decoder as wide as vit_tiny and 4 blocks deep gave the encoder better features than a 64-wide,
    2-block one (linear probe 0.913 against 0.858 after 25 epochs): a weak decoder leaves part of
    the pixel prediction to the encoder's last blocks (the paper's decoder-depth ablation)."""

    dim: PositiveInt = 128
    depth: PositiveInt = 4
    num_heads: PositiveInt = 4
    mlp_ratio: PositiveFloat = 4.0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads or self.dim % 2:
            raise ValueError(f"decoder.dim ({self.dim}) must be even and divisible by decoder.num_heads ({self.num_heads})")


class MaskedDecoder(nn.Module):
    """MAE's light decoder: ``embed`` maps encoder features ``[..., D]`` to its width; ``forward``
    adds fixed sin-cos position embeddings (2-D on a ViT's patch grid, 1-D along a series) to a
    full sequence ``[N, L, Dd]`` (encoded tokens and mask tokens in place), runs its blocks and
    predicts the ``K`` values under each token -> ``[N, L, K]``."""

    def __init__(self, encoder: Encoder, config: DecoderConfig) -> None:
        super().__init__()
        backbone = encoder.backbone
        D, Dd = encoder.embed_dim, config.dim
        values = values_per_token(encoder)  # K
        grid = getattr(backbone, "grid", None)
        L = backbone.sequence_length
        pos = sincos_2d(*grid, Dd) if grid is not None and Dd % 4 == 0 else sincos_1d(torch.arange(L), Dd)
        self.register_buffer("pos_embed", pos, persistent=False)  # [L, Dd], fixed
        self.embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(Dd))
        self.blocks = nn.ModuleList(TransformerBlock(Dd, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(Dd)
        self.pred = nn.Linear(Dd, values)
        self.apply(init_transformer_weights)
        nn.init.normal_(self.mask_token, std=0.02)  # as MAE

    def forward(self, x: torch.Tensor, positions: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """``x [N, L, Dd]`` at ``positions [N, L]``; ``padding [N, L]`` (True = ignored) -> ``[N, L, K]``."""
        x = x + self.pos_embed[positions].to(x.dtype)
        key_padding = attention_padding(padding)
        for block in self.blocks:
            x = block(x, key_padding)
        return self.pred(self.norm(x))


def adamw_betas(groups: list[dict[str, Any]], betas: tuple[float, float]) -> list[dict[str, Any]]:
    """The groups with AdamW's ``betas`` (MAE: (0.9, 0.95)); other optimisers ignore the key."""
    return [{**group, "betas": betas} for group in groups]


# ----------------------------------------------------------------------------- MAE


@dataclass
class MAEConfig:
    """Attributes:
    mask_ratio: share of each sample's tokens hidden from the encoder (0.75 in the paper).
    norm_pix_loss: the target of each patch is its own standardised values (the paper's default).
    decoder: width, depth, heads and MLP ratio of the light decoder.
    """

    mask_ratio: MaskRatio = 0.75
    norm_pix_loss: bool = True
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


# The paper's recipe (AdamW, betas (0.9, 0.95), weight decay 0.05, base lr 1.5e-4 per 256 samples,
# cosine after a warm-up), with a larger lr for short runs on small data (our choice).
MAE_RUN_DEFAULTS: dict[str, Any] = {"train": {"optimizer": "adamw", "weight_decay": 0.05, "lr": 1e-3}}


@register_method("mae")
class MAE(Method):
    Config = MAEConfig
    paper = "He et al. 2022, arXiv 2111.06377"
    modalities = frozenset({"image", "timeseries", "table"})
    requires = frozenset({"tokens"})
    can_collapse_completely = False  # the decoder must rebuild the input from the encoding
    num_global_views = 1
    default_views = "masked_crops"
    run_defaults = MAE_RUN_DEFAULTS
    probe_pooling = "mean"
    linear_probe_batch_norm = True  # MAE's linear probe: a BatchNorm without affine before the linear layer
    headline_protocol = "finetune"
    betas = (0.9, 0.95)

    def __init__(self, encoder: Encoder, config: MAEConfig) -> None:
        super().__init__(encoder, config)
        check_ratio_leaves_tokens("mae", config.mask_ratio, encoder.backbone.sequence_length)
        check_values_to_reconstruct("mae", encoder)
        self.decoder = MaskedDecoder(encoder, config.decoder)
        # One value per token (a table column): normalised by its own statistics it would always be 0.
        self.norm_pix = config.norm_pix_loss and values_per_token(encoder) > 1

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        (x,) = views.global_views[:1]
        tokens = self.encoder.tokenize(x)  # all L tokens, positions added: [N * g, L, D], g rows per sample
        g, L = tokens.groups, tokens.x.shape[1]
        mask = sample_mask(tokens, self.config.mask_ratio, ctx.generator_on(x.device))
        visible = self.encoder.encode(tokens, keep=mask.keep)  # the encoder sees the kept tokens only
        keep, hidden = mask.keep[::g], mask.mask[::g]  # per sample (its rows share the mask)
        # The decoder's full sequence: encoded visible tokens back in place, the mask token elsewhere.
        z = self.decoder.embed(self.encoder.backbone.merge_groups(visible.x, g))  # [N, L_keep, Dd]
        full = restore(z, keep, L, self.decoder.mask_token)  # [N, L, Dd]
        padding = None if tokens.padding is None else tokens.padding[::g]
        pred = self.decoder(full, tokens.positions[::g], padding)  # [N, L, K]
        target = merge_values(self.encoder.patchify(x), g)  # [N, L, K], standardised values (NaN = missing)
        loss = masked_patch_mse(pred, target, hidden, self.norm_pix)
        embeddings = self.encoder.backbone.pool(visible).detach()  # [N, D], pooled visible tokens
        return StepOutput(loss, {"mask_ratio": hidden.float().mean()}, embeddings)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        params = [p for p in self.parameters() if p.requires_grad]
        return adamw_betas(split_decay(params, weight_decay), self.betas)


def check_values_to_reconstruct(name: str, encoder: Encoder) -> None:
    """A backbone whose ``patchify`` holds no value to reconstruct (a table of categorical columns
    only: NaN everywhere) is a one-line ConfigError rather than a loss that is always 0."""
    if torch.isnan(encoder.backbone.patchify(torch.zeros(1, *encoder.input_shape))).all():
        raise ConfigError(
            f"method {name!r} reconstructs numeric values, and these samples have none (every column is "
            "categorical); choose a method that predicts representations (tjepa, ijepa, data2vec2)"
        )


def check_ratio_leaves_tokens(name: str, ratio: float, num_tokens: int) -> None:
    """A ratio that hides every token (or none) of ``num_tokens`` is a one-line ConfigError."""
    hidden = int(round(ratio * num_tokens))
    if not 0 < hidden < num_tokens:
        raise ConfigError(
            f"method {name!r}: mask_ratio={ratio} hides {hidden} of the backbone's {num_tokens} tokens; "
            f"choose a ratio that hides at least one and keeps at least one (e.g. 0.75)"
        )


__all__ = [
    "MAE", "MAEConfig", "MaskedDecoder", "DecoderConfig", "check_values_to_reconstruct", "merge_values", "sample_mask",
    "values_per_token",
]
