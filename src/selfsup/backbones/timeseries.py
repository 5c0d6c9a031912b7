"""Encoders for time series ``[N, C, T]`` (NaN = missing), registered by name.

Every backbone here has ``embed_dim``, ``forward(x) -> [N, embed_dim]`` (pooled over the observed
timestamps) and ``forward_tokens(x, mask=None) -> [N, T', embed_dim]`` (one token per timestamp,
``T' = T``, or per patch for the patch transformer). Missing timestamps (NaN in any channel) are
read as 0 and treated as masked; ``mask [N, T]`` (False = masked) masks further timestamps, as
TS2Vec's timestamp masking does. Series of any length ``T >= 2`` and any number of channels.

- ``ts2vec_encoder``: TS2Vec's dilated convolutional encoder (Yue et al. 2022, arXiv 2106.10466).
- ``resnet1d``: the 1-D ResNet baseline of Wang, Yan, Oates 2017 (arXiv 1611.06455).
- ``patch_transformer``: a PatchTST-style transformer over patches (Nie et al. 2023, arXiv 2211.14730).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.backbones.base import register_backbone
from selfsup.backbones.tokens import TokenBackbone, Tokens
from selfsup.config import NonNegativeInt, OneOf, PositiveFloat, PositiveInt, Range
from selfsup.config_checks import check_not_empty
from selfsup.errors import ConfigError, DataError

MIN_LENGTH = 2


def _series_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(C, T)`` of the samples, or a ConfigError that says which backbone to use instead."""
    if len(input_shape) != 2:
        hint = "Use resnet_tiny/resnet18 for images [C, H, W] and mlp for vectors [D]."
        raise ConfigError(f"backbone {name!r} takes series [C, T]; got samples of shape {tuple(input_shape)}. {hint}")
    C, T = (int(s) for s in input_shape)
    if C < 1 or T < MIN_LENGTH:
        raise ConfigError(
            f"backbone {name!r} needs series with at least 1 channel and {MIN_LENGTH} timestamps; "
            f"got samples of shape (C={C}, T={T})"
        )
    return C, T


def _check_batch(name: str, x: torch.Tensor, channels: int, mask: torch.Tensor | None) -> None:
    if x.ndim != 3 or x.shape[1] != channels or x.shape[2] < MIN_LENGTH:
        raise DataError(
            f"backbone {name!r} was built for series [N, {channels}, T >= {MIN_LENGTH}]; got a batch of shape "
            f"{tuple(x.shape)}. Build it for the data's channels, and pass series of at least {MIN_LENGTH} steps."
        )
    if mask is not None and (mask.shape != (x.shape[0], x.shape[2]) or mask.dtype != torch.bool):
        raise DataError(f"mask must be bool [N, T] = {(x.shape[0], x.shape[2])}; got {mask.dtype} {tuple(mask.shape)}")


def _fill_and_mask(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Missing values read as 0; ``observed [N, T]`` (all channels present) and ``keep = observed & mask``."""
    missing = torch.isnan(x)
    observed = ~missing.any(dim=1)
    keep = observed if mask is None else observed & mask
    return x.masked_fill(missing, 0.0), observed, keep


def pool_over_observed(tokens: torch.Tensor, observed: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Max or mean of ``tokens [N, T, D]`` over the timestamps where ``observed [N, T]`` -> ``[N, D]``.

    A series with no observed timestamp gets zeros.
    """
    any_observed = observed.any(dim=1, keepdim=True)  # [N, 1]
    if mode == "max":
        pooled = tokens.masked_fill(~observed.unsqueeze(-1), float("-inf")).amax(dim=1)
        return torch.where(any_observed, pooled, torch.zeros_like(pooled))
    weights = observed.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


# ----------------------------------------------------------------------------- TS2Vec encoder


class SamePadConv(nn.Module):
    """Dilated 1-D convolution whose output has the input's length. ``[N, C_in, T] -> [N, C_out, T]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        receptive_field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=receptive_field // 2, dilation=dilation)
        self.trim = 1 if receptive_field % 2 == 0 else 0  # even fields pad one step too many

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out[:, :, : out.shape[-1] - self.trim]


class DilatedConvBlock(nn.Module):
    """``x + conv(gelu(conv(gelu(x))))``, both convolutions dilated; a 1x1 projection on the
    residual path when the width changes or for the last block (as the reference code).
    ``[N, C_in, T] -> [N, C_out, T]``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, final: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = SamePadConv(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = SamePadConv(out_channels, out_channels, kernel_size, dilation)
        needs_projection = in_channels != out_channels or final
        self.projector: nn.Module = nn.Conv1d(in_channels, out_channels, 1) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.projector(x)
        x = self.conv1(F.gelu(x))
        x = self.conv2(F.gelu(x))
        return x + residual


@dataclass
class TS2VecEncoderConfig:
    """The reference code's defaults: hidden 64, output 320, depth 10, kernel 3, dropout 0.1.

    ``pool``: how ``forward`` turns timestamps into one vector ("max": TS2Vec's instance
    representation, max over the observed timestamps).
    """

    hidden_dim: PositiveInt = 64
    output_dim: PositiveInt = 320
    depth: NonNegativeInt = 10  # dilated blocks before the last one (which maps to output_dim)
    kernel_size: PositiveInt = 3
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1
    pool: Annotated[str, OneOf("max", "mean")] = "max"


@register_backbone("ts2vec_encoder")
class TS2VecEncoder(nn.Module):
    """TS2Vec's encoder: input projection, timestamp masking, dilated convolutions.

    Yue, Wang, Duan, Yang, Huang, Tong, Xu 2022, "TS2Vec: Towards Universal Representation of Time
    Series", AAAI 2022, arXiv 2106.10466, sec. 3.1: a linear projection of each timestamp to
    ``hidden_dim``; the features of masked timestamps are set to 0 (missing ones always); then
    ``depth`` residual blocks of two dilated convolutions (dilation ``2^i`` in block i, GELU before
    each) and a last block to ``output_dim`` (dilation ``2^depth``); dropout on the output in
    training. ``forward_tokens: [N, C, T] -> [N, T, output_dim]``; ``forward``: max over the
    observed timestamps -> ``[N, output_dim]``.
    """

    provides = frozenset({"timesteps"})  # forward_tokens: one feature per timestamp

    Config = TS2VecEncoderConfig
    modality: ClassVar[str] = "timeseries"

    def __init__(self, input_shape: tuple[int, ...], config: TS2VecEncoderConfig) -> None:
        super().__init__()
        self.in_channels, _ = _series_shape("ts2vec_encoder", input_shape)
        self.config = config
        self.input_fc = nn.Linear(self.in_channels, config.hidden_dim)
        widths = [config.hidden_dim] * config.depth + [config.output_dim]
        blocks = []
        in_width = config.hidden_dim
        for i, width in enumerate(widths):
            blocks.append(DilatedConvBlock(in_width, width, config.kernel_size, 2**i, final=i == len(widths) - 1))
            in_width = width
        self.blocks = nn.Sequential(*blocks)
        self.repr_dropout = nn.Dropout(config.dropout)
        self.embed_dim = config.output_dim

    def forward_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Timestamp representations ``[N, T, D]``; ``mask [N, T]`` bool, False = masked."""
        _check_batch("ts2vec_encoder", x, self.in_channels, mask)
        filled, _, keep = _fill_and_mask(x, mask)
        h = self.input_fc(filled.transpose(1, 2))  # [N, T, hidden]
        h = h * keep.unsqueeze(-1).to(h.dtype)  # masked timestamps: zero features after the projection
        h = self.blocks(h.transpose(1, 2))  # [N, D, T]
        return self.repr_dropout(h).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch("ts2vec_encoder", x, self.in_channels, None)
        observed = ~torch.isnan(x).any(dim=1)  # [N, T]
        return pool_over_observed(self.forward_tokens(x), observed, self.config.pool)


# ----------------------------------------------------------------------------- 1-D ResNet


class ResidualBlock1d(nn.Module):
    """Three convolutions (kernels 8, 5, 3 by default) with batch norm and ReLU, plus a shortcut
    (1x1 convolution + batch norm when the width changes, batch norm otherwise).
    ``[N, C_in, T] -> [N, C_out, T]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, k in enumerate(kernel_sizes):
            layers += [SamePadConv(channels, out_channels, k, dilation=1), nn.BatchNorm1d(out_channels)]
            if i < len(kernel_sizes) - 1:
                layers.append(nn.ReLU(inplace=True))
            channels = out_channels
        self.body = nn.Sequential(*layers)
        shortcut: list[nn.Module] = []
        if in_channels != out_channels:
            shortcut.append(nn.Conv1d(in_channels, out_channels, 1))
        shortcut.append(nn.BatchNorm1d(out_channels))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


@dataclass
class ResNet1dConfig:
    """Wang et al. 2017: 3 blocks of 64, 128, 128 filters, kernels 8/5/3 in each block, global
    average pooling (``pool="mean"``, over the observed timestamps; "max" also possible)."""

    widths: tuple[PositiveInt, ...] = (64, 128, 128)
    kernel_sizes: tuple[PositiveInt, ...] = (8, 5, 3)
    pool: Annotated[str, OneOf("max", "mean")] = "mean"

    def __post_init__(self) -> None:
        check_not_empty(self, "widths", "kernel_sizes")  # at least one block of one convolution


@register_backbone("resnet1d")
class ResNet1d(nn.Module):
    """A 1-D ResNet for series classification.

    Wang, Yan, Oates 2017, "Time Series Classification from Scratch with Deep Neural Networks: A
    Strong Baseline", arXiv 1611.06455. ``forward_tokens: [N, C, T] -> [N, T, widths[-1]]``
    (stride 1 everywhere, so one token per timestamp); masked and missing timestamps are zeroed
    at the input (the network has no separate input projection); ``forward`` pools over the
    observed timestamps -> ``[N, widths[-1]]``.
    """

    provides = frozenset({"timesteps"})  # forward_tokens: one feature per timestamp

    Config = ResNet1dConfig
    modality: ClassVar[str] = "timeseries"

    def __init__(self, input_shape: tuple[int, ...], config: ResNet1dConfig) -> None:
        super().__init__()
        self.in_channels, _ = _series_shape("resnet1d", input_shape)
        self.config = config
        blocks = []
        channels = self.in_channels
        for width in config.widths:
            blocks.append(ResidualBlock1d(channels, width, config.kernel_sizes))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.embed_dim = channels

    def forward_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Timestamp features ``[N, T, D]``; ``mask [N, T]`` bool, False = masked."""
        _check_batch("resnet1d", x, self.in_channels, mask)
        filled, _, keep = _fill_and_mask(x, mask)
        filled = filled * keep.unsqueeze(1).to(filled.dtype)
        return self.blocks(filled).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch("resnet1d", x, self.in_channels, None)
        observed = ~torch.isnan(x).any(dim=1)  # [N, T]
        return pool_over_observed(self.forward_tokens(x), observed, self.config.pool)


# ----------------------------------------------------------------------------- patch transformer


@dataclass
class PatchTransformerConfig:
    """PatchTST-style settings (Nie et al. 2023 use patches of 16 with stride 8, width 128, 3 layers).

    Attributes:
        patch_len, stride: patch length and step in timestamps.
        channel_mode: "independent" (PatchTST: each channel patched and encoded on its own with
            shared weights; the channels' tokens are then concatenated and projected back to
            ``dim``) or "mixed" (one token per patch of all channels).
        dim, depth, num_heads, mlp_ratio, dropout: the transformer.
        pool: "mean" or "max" over the patches that hold an observed timestamp.
    """

    patch_len: PositiveInt = 16
    stride: PositiveInt = 8
    channel_mode: Annotated[str, OneOf("independent", "mixed")] = "independent"
    dim: PositiveInt = 128
    depth: PositiveInt = 3
    num_heads: PositiveInt = 8
    mlp_ratio: PositiveFloat = 2.0
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1
    pool: Annotated[str, OneOf("max", "mean")] = "mean"

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")


def num_patches(length: int, patch_len: int, stride: int) -> int:
    """Patches of a series of ``length`` steps after PatchTST's end padding of ``stride`` steps
    (and, for series shorter than a patch, padding up to one patch)."""
    padded = max(length + stride, patch_len)
    return (padded - patch_len) // stride + 1


@register_backbone("patch_transformer")
class PatchTransformer(TokenBackbone):
    """A transformer over patches of the series, PatchTST-style.

    Nie, Nguyen, Sinthong, Kalagnanam 2023, "A Time Series is Worth 64 Words: Long-term
    Forecasting with Transformers", ICLR 2023, arXiv 2211.14730: the series is padded at the end
    by repeating its last step ``stride`` times and cut into patches of ``patch_len`` with step
    ``stride``; each patch is embedded linearly, a learned positional embedding is added, and a
    transformer encoder mixes the patches. Differences: pre-norm LayerNorm instead of BatchNorm
    and no instance normalisation (the run's Encoder standardises inputs). Masked and missing
    timestamps are zeroed in the patches; a patch without any observed timestamp is ignored by
    attention and pooling.

    ``forward_tokens: [N, C, T] -> [N, L, dim]`` (one token per patch, ``L = num_patches(T)``);
    ``forward`` pools the tokens -> ``[N, dim]``. Series up to the length the backbone was built
    for are accepted (the positional embedding has that many patches).

    Token interface (:class:`~selfsup.backbones.tokens.TokenBackbone`): ``tokenize`` gives one
    token per patch, padding = patches without an observed step; ``sequence_length`` is the
    number of patches of a series of the build length. In "independent" mode each channel is
    its own row (``Tokens.groups = C``, rows ``[N * C, L, dim]``, sample-major), as PatchTST
    masks and encodes each channel on its own; ``pool`` merges the channels (``channel_merge``)
    and pools over the observed patches, so ``forward(x) = pool(encode(tokenize(x)))``.
    """

    Config = PatchTransformerConfig
    modality: ClassVar[str] = "timeseries"

    def __init__(self, input_shape: tuple[int, ...], config: PatchTransformerConfig) -> None:
        super().__init__()
        self.in_channels, self.max_length = _series_shape("patch_transformer", input_shape)
        self.config = config
        C, D = self.in_channels, config.dim
        patch_inputs = config.patch_len if config.channel_mode == "independent" else C * config.patch_len
        self.patch_embed = nn.Linear(patch_inputs, D)
        self.max_patches = num_patches(self.max_length, config.patch_len, config.stride)
        self.sequence_length = self.max_patches
        self.pos_embed = nn.Parameter(torch.empty(self.max_patches, D).uniform_(-0.02, 0.02))
        layer = nn.TransformerEncoderLayer(
            D, config.num_heads, int(D * config.mlp_ratio), config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D)
        merge_channels = config.channel_mode == "independent" and C > 1
        self.channel_merge: nn.Module = nn.Linear(C * D, D) if merge_channels else nn.Identity()
        self.embed_dim = D

    def _check_length(self, T: int) -> None:
        if T > self.max_length:
            raise DataError(
                f"backbone 'patch_transformer' was built for series of at most {self.max_length} steps "
                f"({self.max_patches} patches); got {T}. Build it with the longest series length."
            )

    def _pad_end(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """PatchTST's end padding of ``values [..., T]``: the last step repeated ``stride`` times,
        then ``fill`` up to one patch for series shorter than a patch."""
        P, S = self.config.patch_len, self.config.stride
        T = values.shape[-1]
        values = torch.cat([values, values[..., -1:].expand(*values.shape[:-1], S)], dim=-1)
        if T + S < P:
            values = F.pad(values, (0, P - T - S), value=fill)
        return values

    def _patches(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches ``[N, C, L, P]`` (masked steps zeroed) and which patches hold an observed step ``[N, L]``."""
        P, S = self.config.patch_len, self.config.stride
        filled, _, keep = _fill_and_mask(x, mask)
        values = filled * keep.unsqueeze(1).to(filled.dtype)
        keep = keep.to(values.dtype)
        patches = self._pad_end(values).unfold(-1, P, S)  # [N, C, L, P]
        patch_observed = self._pad_end(keep).unfold(-1, P, S).amax(dim=-1) > 0  # [N, L]
        return patches, patch_observed

    def _rows(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N, C, L, P]`` -> the transformer's rows: ``[N * C, L, P]`` (independent) or ``[N, L, C * P]``."""
        N, C, L, P = patches.shape
        if self.config.channel_mode == "independent":
            return patches.reshape(N * C, L, P)
        return patches.permute(0, 2, 1, 3).reshape(N, L, C * P)

    def _tokenize(self, x: torch.Tensor, mask: torch.Tensor | None) -> Tokens:
        """``tokenize`` with a timestamp ``mask [N, T]`` (False = masked, as ``forward_tokens``)."""
        _check_batch("patch_transformer", x, self.in_channels, mask)
        self._check_length(x.shape[-1])
        patches, patch_observed = self._patches(x, mask)
        N, C, L, _ = patches.shape
        tokens = self.patch_embed(self._rows(patches))  # in "independent" mode the channels share weights
        padding = ~patch_observed
        groups = 1
        if self.config.channel_mode == "independent":
            padding, groups = padding.repeat_interleave(C, dim=0), C
        positions = torch.arange(L, device=x.device).expand(tokens.shape[0], L)
        return Tokens(tokens + self.pos_embed[:L], positions, padding, groups=groups)

    def tokenize(self, x: torch.Tensor) -> Tokens:
        """``x [N, C, T]`` -> tokens ``[N * C, L, dim]`` (independent) or ``[N, L, dim]`` (mixed);
        padding = patches without an observed step."""
        return self._tokenize(x, None)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """The steps under each token, end-padded as ``tokenize``: ``[N * C, L, patch_len]``
        (independent) or ``[N, L, C * patch_len]`` (mixed); NaN where a step is missing (leave
        those out of a reconstruction loss)."""
        _check_batch("patch_transformer", x, self.in_channels, None)
        self._check_length(x.shape[-1])
        P, S = self.config.patch_len, self.config.stride
        return self._rows(self._pad_end(x, fill=float("nan")).unfold(-1, P, S))

    def position_embedding(self, positions: torch.Tensor) -> torch.Tensor:
        return self.pos_embed[positions]

    def transformer_blocks(self) -> nn.ModuleList:
        return self.transformer.layers

    def run_block(self, block: nn.Module, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        return block(x, src_key_padding_mask=padding)

    def merge_groups(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        """Rows ``[N * C, L, D]`` -> ``[N, L, D]`` through ``channel_merge`` (mixed mode: unchanged)."""
        if groups == 1:
            return self.channel_merge(x)
        NC, L, D = x.shape
        return self.channel_merge(x.reshape(NC // groups, groups, L, D).permute(0, 2, 1, 3).reshape(-1, L, groups * D))

    def pool(self, tokens: Tokens) -> torch.Tensor:
        """``[N, dim]``: channels merged, then ``config.pool`` over the patches that are not padding.
        In "independent" mode every channel's row must hold the same token positions."""
        x = self.merge_groups(tokens.x, tokens.groups)
        padding = tokens.padding
        if padding is None:
            padding = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        observed = ~padding[:: tokens.groups]  # a patch is observed in all channels or in none
        return pool_over_observed(x, observed, self.config.pool)

    def forward_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patch tokens ``[N, L, dim]``; ``mask [N, T]`` bool, False = masked timestamp."""
        tokens = self.encode(self._tokenize(x, mask))
        return self.merge_groups(tokens.x, tokens.groups)


__all__ = [
    "TS2VecEncoder",
    "TS2VecEncoderConfig",
    "ResNet1d",
    "ResNet1dConfig",
    "PatchTransformer",
    "PatchTransformerConfig",
    "pool_over_observed",
    "num_patches",
]
