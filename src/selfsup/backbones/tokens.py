"""The token-backbone interface for masked and predictive methods, and the transformer pieces it shares.

Masked image modelling (MAE, SimMIM), latent prediction (I-JEPA) and data2vec 2.0 need more than a
pooled vector: the tokens before the transformer, a way to encode only some of them or to hide some
in place, and the outputs of inner blocks. A :class:`TokenBackbone` gives these in one shape for
every modality (image patches, series patches), so a method is written once:

.. code-block:: python

    tokens = backbone.tokenize(x)                         # all L tokens, positions added
    visible = backbone.encode(tokens, keep=keep)          # MAE / I-JEPA: the others are dropped
    hidden = backbone.encode(tokens, mask=mask, mask_token=self.mask_token)  # SimMIM: in place
    targets = backbone.forward_intermediates(x, layers=range(depth - 8, depth))  # data2vec 2.0

Shared here, once: the pre-norm transformer block (multi-head attention through
``F.scaled_dot_product_attention`` with a key padding mask), stochastic depth, fixed sin-cos
position embeddings (1-D and 2-D, as MAE), the ViT/MAE weight init and the mask-token helper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Tokens:
    """Token features and where each token sits in its sample.

    Attributes:
        x: token features ``[N, L, D]``.
        positions: index of each token in the full sequence of its sample, long ``[N, L]``
            (``0 <= positions < sequence_length``; ``arange(L)`` straight after ``tokenize``).
        padding: bool ``[N, L]``, True = a padding token that attention and pooling ignore
            (a series patch without an observed step); None = no padding.
        cls: the CLS token's output ``[N, D]`` after ``encode`` when the backbone has one, else None.
            It is never part of ``x``, so ``x`` and ``positions`` always line up.
        groups: consecutive rows per sample. 1, except for channel-independent series backbones,
            which encode each of the C channels as its own row (``N = samples * C``); ``pool``
            merges the groups back into one vector per sample.
    """

    x: torch.Tensor
    positions: torch.Tensor
    padding: torch.Tensor | None = None
    cls: torch.Tensor | None = None
    groups: int = 1

    def select(self, keep: torch.Tensor) -> Tokens:
        """Only the tokens at indices ``keep [N, L_keep]`` (of this ``x``'s token axis), in that order."""
        return replace(
            self,
            x=gather_tokens(self.x, keep),
            positions=self.positions.gather(1, keep),
            padding=None if self.padding is None else self.padding.gather(1, keep),
        )


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [N, L, D]`` at token indices ``index [N, K]`` -> ``[N, K, D]``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def attention_padding(padding: torch.Tensor | None) -> torch.Tensor | None:
    """The key padding mask attention uses: ``padding [N, L]``, except that a row made only of
    padding attends to all its tokens (an all-masked softmax would give NaN)."""
    if padding is None:
        return None
    return padding & ~padding.all(dim=1, keepdim=True)


def mean_over_tokens(x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x [N, L, D]`` over the tokens that are not padding -> ``[N, D]`` (zeros if none)."""
    if padding is None:
        return x.mean(dim=1)
    weights = (~padding).to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def cls_or_mean(tokens: "Tokens", pool: str) -> torch.Tensor:
    """``[N, D]``: the CLS output (``pool == "cls"``) or the mean over the non-padding tokens."""
    if pool == "cls":
        if tokens.cls is None:
            raise ValueError("pool='cls' needs encoded tokens with a CLS output (from encode)")
        return tokens.cls
    return mean_over_tokens(tokens.x, tokens.padding)


# ----------------------------------------------------------------------------- position embeddings


def sincos_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed sin-cos embeddings (Vaswani et al. 2017, arXiv 1706.03762) of ``positions [...]`` ->
    ``[..., dim]``: ``sin(p * w_i)`` in the first half, ``cos(p * w_i)`` in the second,
    ``w_i = temperature^(-i / (dim / 2))`` (MAE's ``get_1d_sincos_pos_embed_from_grid``)."""
    if dim % 2:
        raise ValueError(f"sin-cos embeddings need an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2)
    omega = temperature**-omega  # [dim / 2]
    angles = positions.to(torch.float64).unsqueeze(-1) * omega  # [..., dim / 2]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


def sincos_2d(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embeddings of a ``grid_h x grid_w`` patch grid, row-major -> ``[grid_h * grid_w, dim]``.

    Half the dimensions encode the row, half the column (MAE, He et al. 2022, arXiv 2111.06377).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embeddings need a dimension divisible by 4, got {dim}")
    rows = torch.arange(grid_h).repeat_interleave(grid_w)  # token t sits in row t // grid_w
    cols = torch.arange(grid_w).repeat(grid_h)
    return torch.cat([sincos_1d(rows, dim // 2), sincos_1d(cols, dim // 2)], dim=-1)


# ----------------------------------------------------------------------------- transformer pieces


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016, arXiv 1603.09382): in training, drop the residual
    branch of a whole sample with probability ``p`` and rescale the others by ``1 / (1 - p)``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention. ``x [N, L, D]``, ``padding [N, L]`` (True = key ignored) -> ``[N, L, D]``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        N, L, D = x.shape
        qkv = self.qkv(x).reshape(N, L, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [N, heads, L, D / heads]
        # scaled_dot_product_attention's boolean mask says where attention is *allowed*.
        allowed = None if padding is None else ~padding[:, None, None, :]  # [N, 1, 1, L]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(out.transpose(1, 2).reshape(N, L, D))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (ViT): ``x + attn(norm(x))``, then ``x + mlp(norm(x))``, each
    residual branch under stochastic depth. ``x [N, L, D]``, ``padding [N, L]`` -> ``[N, L, D]``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0, qkv_bias: bool = True
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), padding))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_transformer_weights(module: nn.Module) -> None:
    """ViT/MAE init, for ``module.apply``: linear weights truncated normal (std 0.02), biases 0,
    LayerNorm weight 1 and bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def make_mask_token(dim: int) -> nn.Parameter:
    """A learned mask token ``[dim]`` (truncated normal, std 0.02, as SimMIM) for ``encode(mask=...)``.

    The method that hides tokens owns it (it is a training-time parameter, not part of the exported
    encoder, and a backbone parameter unused by ``forward`` would get no gradient).
    """
    return nn.Parameter(nn.init.trunc_normal_(torch.empty(dim), std=0.02))


# ----------------------------------------------------------------------------- the interface


class TokenBackbone(nn.Module):
    """Base of backbones that expose their tokens. Every token backbone has:

    - ``embed_dim``: the token (and pooled) width D.
    - ``sequence_length``: the number of tokens of one full sample (patches; a CLS token is not
      counted); masks from ``masking/`` are drawn over ``range(sequence_length)``.
    - ``tokenize(x) -> Tokens``: patches embedded, position embeddings added, all L tokens.
    - ``patchify(x) -> [N, L, K]``: the raw values under each token, in token order (the
      reconstruction target of MAE and SimMIM).
    - ``encode(tokens, keep=None, mask=None, mask_token=None) -> Tokens``: the transformer and its
      final norm (see :meth:`encode`).
    - ``forward_intermediates(x, layers, ...) -> list[[N, L', D]]``: block outputs before the final norm.
    - ``pool(tokens) -> [N, D]`` and ``forward(x) = pool(encode(tokenize(x)))``.

    ``provides`` names what the backbone offers; the trainer checks a method's requirements
    against it. Subclasses implement ``tokenize``, ``patchify`` and ``position_embedding``, set
    ``embed_dim``, ``sequence_length`` and a final ``norm``, and keep their blocks in ``blocks``
    (or override ``transformer_blocks`` / ``run_block``); ``prefix_tokens`` adds a CLS token.
    """

    provides: ClassVar[frozenset[str]] = frozenset({"tokens"})
    embed_dim: int
    sequence_length: int
    norm: nn.Module

    # --- implemented by each backbone

    def tokenize(self, x: torch.Tensor) -> Tokens:
        """All tokens of ``x``: ``Tokens(x [N, L, D], positions [N, L], padding)``."""
        raise NotImplementedError

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """The input values under each token ``[N, L, K]``, in the order of ``tokenize``."""
        raise NotImplementedError

    def position_embedding(self, positions: torch.Tensor) -> torch.Tensor:
        """The position embeddings ``tokenize`` adds, at ``positions [N, L]`` -> ``[N, L, D]``."""
        raise NotImplementedError

    def transformer_blocks(self) -> Sequence[nn.Module]:
        """The transformer blocks, in order (default: ``self.blocks``)."""
        return self.blocks  # type: ignore[return-value]

    def run_block(self, block: nn.Module, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        """One block on ``x [N, L, D]`` with key padding mask ``padding [N, L]`` (True = ignored)."""
        return block(x, padding)

    def prefix_tokens(self, batch_size: int) -> torch.Tensor | None:
        """Tokens put before the sequence inside ``encode`` (a CLS token) ``[N, P, D]``, or None."""
        return None

    def pool(self, tokens: Tokens) -> torch.Tensor:
        """One vector per sample ``[N, D]``: the mean over the tokens that are not padding."""
        return mean_over_tokens(tokens.x, tokens.padding)

    def merge_groups(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        """Token rows ``[N * groups, L, D]`` -> one row per sample ``[N, L, D]``, as ``pool`` merges
        them (channel-independent series backbones override this; one row per sample: unchanged)."""
        if groups != 1:
            raise ValueError(f"{type(self).__name__} makes one token row per sample, got groups={groups}")
        return x

    # --- shared by every token backbone

    def encode(
        self,
        tokens: Tokens,
        keep: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        mask_token: torch.Tensor | None = None,
    ) -> Tokens:
        """Run the transformer and the final norm on ``tokens``.

        Args:
            tokens: from ``tokenize``, ``x [N, L, D]``.
            keep: long ``[N, L_keep]``: only these token indices are gathered and computed, the
                others are dropped (MAE, I-JEPA). The output has ``L_keep`` tokens, in ``keep``'s order.
            mask: bool ``[N, L]``, True = the token is replaced in place by ``mask_token`` plus its
                position embedding (SimMIM); its input values then do not matter. Applied before ``keep``.
            mask_token: the learned ``[D]`` vector the method owns (see :func:`make_mask_token`).

        Returns:
            ``Tokens`` with the final-normed features ``x [N, L', D]``, their ``positions`` and
            ``padding`` (honoured as the attention key padding mask), and ``cls [N, D]`` if the
            backbone has a CLS token.
        """
        x, _, tokens = self._run(tokens, keep, mask, mask_token, layers=())
        x = self.norm(x)
        prefix = x.shape[1] - tokens.x.shape[1]
        return replace(tokens, x=x[:, prefix:], cls=x[:, 0] if prefix else None)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        layers: Sequence[int],
        keep: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        mask_token: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Outputs ``[N, L', D]`` of the blocks ``layers`` (indices into the blocks, negative from the
        end), before the final norm and without the CLS token, in the order asked (data2vec 2.0
        averages the top K). ``keep`` / ``mask`` / ``mask_token`` as in :meth:`encode`; blocks after
        the last one asked are not run."""
        depth = len(self.transformer_blocks())
        bad = [i for i in layers if not -depth <= i < depth]
        if bad:
            raise ValueError(f"layers {bad} out of range for {depth} blocks (0..{depth - 1}, or negative from the end)")
        wanted = [i % depth for i in layers]
        if not wanted:
            return []
        h, outputs, tokens = self._run(self.tokenize(x), keep, mask, mask_token, layers=wanted)
        prefix = h.shape[1] - tokens.x.shape[1]  # the CLS token, if any
        return [outputs[i][:, prefix:] for i in wanted]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[N, embed_dim]``."""
        return self.pool(self.encode(self.tokenize(x)))

    def _run(
        self,
        tokens: Tokens,
        keep: torch.Tensor | None,
        mask: torch.Tensor | None,
        mask_token: torch.Tensor | None,
        layers: Sequence[int],
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor], Tokens]:
        """Masking, keeping, prefix tokens and the blocks. Returns the last block's output (with the
        prefix tokens), the outputs of ``layers`` by index, and the selected tokens (their input)."""
        N, L, D = tokens.x.shape
        if mask is not None:
            if mask.dtype != torch.bool or mask.shape != (N, L):
                raise ValueError(f"mask must be bool [N, L] = {(N, L)}; got {mask.dtype} {tuple(mask.shape)}")
            if mask_token is None:
                raise ValueError("encode(mask=...) needs mask_token=, the learned [D] vector the method owns")
            fill = mask_token.to(tokens.x.dtype) + self.position_embedding(tokens.positions)  # [N, L, D]
            tokens = replace(tokens, x=torch.where(mask.unsqueeze(-1), fill, tokens.x))
        if keep is not None:
            if keep.dtype != torch.long or keep.ndim != 2 or keep.shape[0] != N:
                raise ValueError(f"keep must be long [N, L_keep] with N = {N}; got {keep.dtype} {tuple(keep.shape)}")
            tokens = tokens.select(keep)
        h, padding = tokens.x, tokens.padding
        prefix = self.prefix_tokens(N)
        if prefix is not None:
            h = torch.cat([prefix.to(h.dtype), h], dim=1)
            if padding is not None:
                padding = F.pad(padding, (prefix.shape[1], 0), value=False)
        key_padding = attention_padding(padding)
        outputs: dict[int, torch.Tensor] = {}
        last = max(layers) if layers else None
        for i, block in enumerate(self.transformer_blocks()):
            h = self.run_block(block, h, key_padding)
            if i in layers:
                outputs[i] = h
            if i == last:
                break
        return h, outputs, tokens


__all__ = [
    "Tokens",
    "TokenBackbone",
    "TransformerBlock",
    "Attention",
    "DropPath",
    "attention_padding",
    "gather_tokens",
    "mean_over_tokens",
    "sincos_1d",
    "sincos_2d",
    "init_transformer_weights",
    "make_mask_token",
]
