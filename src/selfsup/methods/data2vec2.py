"""data2vec 2.0: predicting contextualised teacher representations of hidden tokens, efficiently.

Baevski, Babu, Hsu, Auli 2023, "Efficient Self-supervised Learning with Contextualized Target
Representations for Vision, Speech and Language", ICML 2023, arXiv 2212.07525. An EMA teacher
encodes the unmasked sample once; the targets are the average of its top K blocks' outputs, each
instance-normalised over the tokens, then layer-normalised
(:func:`~selfsup.losses.predictive.data2vec_targets`). The student encodes only the visible tokens
of M differently masked copies of each sample (multi-mask, amortising the teacher), the hidden
positions are filled with small Gaussian noise, and a light convolutional decoder (2-D over the
patch grid of images, 1-D over series patches: grouped conv, LayerNorm, GELU, residual, then a
linear projection) predicts the targets; the loss is the squared error at the hidden tokens
(:func:`~selfsup.losses.predictive.data2vec_loss`). The exported encoder is the student, as the
paper fine-tunes it.

Simplifications, stated: the targets use each block's output (the residual stream, from
``forward_intermediates``), not the FFN output before the last residual connection as the
reference code, because the token backbones expose block outputs; no CLS-token loss (the image
models' ``cls_loss``); the teacher's momentum rises linearly from ``base_momentum`` to
``final_momentum`` over the run (the paper: 0.9998 -> 0.99999 over its first 100k updates);
masks are inverse block masks (the paper's for images: visible square blocks, topped up or
trimmed at random to an exact count) or uniform random masks (``masking="random"``; on digits'
4x4 token grid both learnt alike, with 60% hidden and 2x2 visible blocks). Channel-independent
series backbones share one mask over a sample's channels; the student's rows are merged by the
backbone's ``merge_groups`` before the decoder, which predicts every channel's targets at each patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Annotated

import torch
import torch.nn as nn

from selfsup.config import Fraction, NonNegativeFloat, OneOf, PositiveInt, Range
from selfsup.core.teacher import EMATeacher
from selfsup.errors import ConfigError
from selfsup.losses.predictive import data2vec_loss, data2vec_targets
from selfsup.masking import TokenMask, block_mask_2d, random_token_mask, span_mask
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method
from selfsup.methods.ijepa import linear_schedule, merge_rows, token_grid
from selfsup.views import Views


@dataclass
class Data2Vec2Config:
    """Attributes:
    top_k_blocks: teacher blocks averaged into the targets, the last ones (all of them when the
        backbone has fewer; the paper averages the 10 blocks above ViT-B's 2-block stem).
    num_masks: masked copies of each sample the student encodes (16 for images in the paper).
    mask_ratio: fraction of tokens hidden (0.8 for images in the paper).
    masking: "inverse_block" (visible ``block_size`` squares, or spans on series) or "random".
    block_size: side of the visible blocks (3 patches in the paper).
    decoder_dim, decoder_layers, decoder_kernel, decoder_groups: the convolutional decoder
        (768, 6, 3, 16 for ViT-B images in the paper).
    mask_noise_std: std of the Gaussian noise that fills the hidden positions before the decoder.
    base_momentum, final_momentum: the teacher's EMA, rising linearly over the run.
    """

    top_k_blocks: PositiveInt = 8
    num_masks: PositiveInt = 4
    mask_ratio: Annotated[float, Range(gt=0, lt=1)] = 0.8
    masking: Annotated[str, OneOf("inverse_block", "random")] = "inverse_block"
    block_size: PositiveInt = 3
    decoder_dim: PositiveInt = 128
    decoder_layers: PositiveInt = 3
    decoder_kernel: PositiveInt = 3
    decoder_groups: PositiveInt = 16
    mask_noise_std: NonNegativeFloat = 0.01
    base_momentum: Fraction = 0.999
    final_momentum: Fraction = 0.9999

    def __post_init__(self) -> None:
        if self.decoder_kernel % 2 == 0:
            raise ValueError(f"decoder_kernel must be odd (same-size convolutions); got {self.decoder_kernel}")
        if self.decoder_dim % self.decoder_groups:
            raise ValueError(
                f"decoder_dim ({self.decoder_dim}) must be divisible by decoder_groups ({self.decoder_groups})"
            )


def inverse_block_mask(
    num_samples: int, grid: tuple[int, int], mask_ratio: float, block_size: int, generator: torch.Generator
) -> TokenMask:
    """data2vec 2.0's inverse block masking: the *visible* tokens are square blocks.

    Exactly ``H*W - round(mask_ratio * H*W)`` tokens stay visible per sample: ``ceil(visible /
    block_area)`` blocks of ``block_size`` (clipped to the grid) at uniform positions are kept,
    then visible tokens are dropped, or hidden ones added, at random to reach the count (as the
    reference code's ``require_same_masks``). A ``(1, L)`` grid gives spans of ``block_size``.
    Returns :class:`~selfsup.masking.TokenMask` (``mask [N, H*W]``, True = hidden).
    """
    H, W = grid
    L = H * W
    visible = L - round(mask_ratio * L)
    if not 1 <= visible < L:
        raise ValueError(f"mask_ratio={mask_ratio} leaves {visible} of {L} tokens visible; need 1 to {L - 1}")
    if H == 1:  # a sequence: visible spans are span_mask's hidden spans
        return TokenMask.from_mask(~span_mask(num_samples, L, visible / L, generator, block_size).mask)
    bh, bw = min(block_size, H), min(block_size, W)
    num_blocks = math.ceil(visible / (bh * bw))
    dev = generator.device
    top = torch.randint(0, H - bh + 1, (num_samples, num_blocks), generator=generator, device=dev)
    left = torch.randint(0, W - bw + 1, (num_samples, num_blocks), generator=generator, device=dev)
    in_blocks = block_mask_2d(grid, top, left, bh, bw).any(dim=1)  # [N, L]
    # Block tokens first (in random order), then the others: the first `visible` stay visible.
    score = in_blocks.float() + torch.rand(num_samples, L, generator=generator, device=dev)
    keep = score.topk(visible, dim=1).indices
    mask = torch.ones(num_samples, L, dtype=torch.bool, device=dev).scatter_(1, keep, False)
    return TokenMask.from_mask(mask)


class ConvDecoder(nn.Module):
    """data2vec 2.0's decoder: ``layers`` x (grouped conv, LayerNorm without affine, GELU), a
    residual connection around every layer whose input has the decoder's width, then a linear
    projection. 2-D convolutions over a ``grid`` of tokens, 1-D ones when ``grid`` is None.

    ``x [N, L, in_dim]`` (``L = H * W`` for a grid) -> ``[N, L, out_dim]``.
    """

    def __init__(self, in_dim: int, dim: int, out_dim: int, layers: int, kernel: int, groups: int,
                 grid: tuple[int, int] | None) -> None:
        super().__init__()
        conv = nn.Conv2d if grid is not None else nn.Conv1d
        self.grid = grid
        # The first layer's groups must also divide its input width (the encoder's).
        self.convs = nn.ModuleList(
            conv(dim if i else in_dim, dim, kernel, padding=kernel // 2, groups=groups if i else math.gcd(groups, in_dim))
            for i in range(layers)
        )
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, L, _ = x.shape
        h = x.transpose(1, 2)  # [N, C, L]
        if self.grid is not None:
            h = h.reshape(N, -1, *self.grid)  # [N, C, H, W]
        for conv in self.convs:
            out = conv(h)
            out = nn.functional.layer_norm(out.movedim(1, -1), out.shape[1:2]).movedim(-1, 1)  # over channels
            out = nn.functional.gelu(out)
            h = out + h if out.shape == h.shape else out
        return self.proj(h.reshape(N, h.shape[1], L).transpose(1, 2))


@register_method("data2vec2")
class Data2Vec2(Method):
    Config = Data2Vec2Config
    paper = "Baevski et al. 2023, arXiv 2212.07525"
    requires = frozenset({"tokens"})
    num_global_views = 1  # teacher and student see the same sample; masks do the rest
    default_views = "masked_crops"  # with views "auto": a random resized crop and flip, as the paper
    probe_pooling = "mean"
    headline_protocol = "finetune"  # the paper reports fine-tuning
    # Mean-pooled ViT tokens share a large common component; MAE's probe (BatchNorm first) removes it.
    linear_probe_batch_norm = True
    # Adam(W) with weight decay 0.05, warm-up and cosine decay, as the paper's image recipe.
    run_defaults = {"train": {"optimizer": "adamw", "weight_decay": 0.05, "lr": 1e-3}}

    def __init__(self, encoder: Encoder, config: Data2Vec2Config) -> None:
        super().__init__(encoder, config)
        backbone = encoder.backbone
        depth = len(backbone.transformer_blocks())
        self.layers = list(range(max(0, depth - config.top_k_blocks), depth))  # the top K (all if fewer)
        grid = token_grid(backbone)
        self.grid = grid
        # Rows per sample (the channels of a channel-independent series backbone): the decoder
        # predicts every row's targets at each token.
        self.groups = backbone.tokenize(torch.zeros(1, *encoder.input_shape)).groups
        D = encoder.embed_dim
        self.decoder = ConvDecoder(D, config.decoder_dim, self.groups * D, config.decoder_layers,
                                   config.decoder_kernel, config.decoder_groups, grid if grid[0] > 1 else None)
        self.teacher = EMATeacher(encoder)
        self.momentum = config.base_momentum

    def masks(self, num_samples: int, num_tokens: int, generator: torch.Generator) -> TokenMask:
        c = self.config
        try:
            if c.masking == "random":
                return random_token_mask(num_samples, num_tokens, c.mask_ratio, generator)
            grid = self.grid if self.grid[0] > 1 else (1, num_tokens)
            return inverse_block_mask(num_samples, grid, c.mask_ratio, c.block_size, generator)
        except ValueError as error:
            raise ConfigError(f"method 'data2vec2': {error}; change method.mask_ratio") from None

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x = views.global_views[0]
        N, M = x.shape[0], self.config.num_masks
        tokens = self.encoder.tokenize(x)  # rows [N * G, L, D]
        G, L, D = tokens.groups, tokens.x.shape[1], tokens.x.shape[2]
        sample_padding = None if tokens.padding is None else tokens.padding[::G]  # [N, L]
        with torch.no_grad():
            teacher = self.teacher.module
            outputs = teacher.forward_intermediates(x, self.layers)  # K x [N * G, L, D]
            targets = data2vec_targets(outputs, tokens.padding)  # [N * G, L, D]
            targets = targets.reshape(N, G, L, D).permute(0, 2, 1, 3).reshape(N, L, G * D)
            final = replace(tokens, x=teacher.backbone.norm(outputs[-1]))  # the teacher's encode() output
            embeddings = teacher.backbone.pool(final)
        # M masked copies of every sample (the rows of one sample stay together).
        def copies(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(N, G, *t.shape[1:]).repeat_interleave(M, dim=0).flatten(0, 1)

        repeated = replace(tokens, x=copies(tokens.x), positions=copies(tokens.positions),
                           padding=None if tokens.padding is None else copies(tokens.padding))
        generator = ctx.generator_on(x.device)
        masks = self.masks(N * M, L, generator)
        visible = self.encoder.encode(repeated, keep=masks.keep.repeat_interleave(G, dim=0))
        z, _ = merge_rows(self.encoder.backbone, visible)  # [N * M, L_keep, D]
        noise = torch.randn(N * M, L, D, generator=generator, device=x.device).to(z.dtype) * self.config.mask_noise_std
        filled = noise.scatter(1, masks.keep.unsqueeze(-1).expand(-1, -1, D), z)  # hidden positions: noise
        predictions = self.decoder(filled)  # [N * M, L, G * D]
        counted = masks.mask if sample_padding is None else masks.mask & ~sample_padding.repeat_interleave(M, dim=0)
        loss = data2vec_loss(predictions.float(), targets.repeat_interleave(M, dim=0), counted)
        return StepOutput(loss, {"momentum": self.momentum}, embeddings)

    @torch.no_grad()
    def on_step_end(self, ctx: StepContext) -> None:
        c = self.config
        self.momentum = linear_schedule(ctx.step + 1, ctx.total_steps, c.base_momentum, c.final_momentum)
        self.teacher.update(self.encoder, self.momentum)
