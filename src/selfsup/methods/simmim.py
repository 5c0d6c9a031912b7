"""SimMIM: a simple framework for masked image modelling.

Xie, Zhang, Cao, Lin, Bao, Yao, Dai, Hu 2022, "SimMIM: A Simple Framework for Masked Image
Modeling", CVPR 2022, arXiv 2111.09886. Unlike MAE, the encoder sees every position: the hidden
tokens are replaced in place by a learned mask token (plus their position embedding), a single
linear layer predicts the raw (standardised) values under every token from the encoder's output,
and the loss is the l1 error on the hidden tokens only.

Masking: the paper hides 60% of 32 px square blocks of 192 px images (2x2 ViT patches of 16 px).
On this project's small images (8x8 digits in 2 px patches, 28 px images in 4 px patches) a block
of several patches would leave very few blocks, so the mask here is a random token mask of the
same ratio (one token = one patch; ``mask_ratio`` 0.6 as the paper). Series (patch transformer):
one mask per sample, shared by the channels of channel-independent backbones; missing steps are
left out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from selfsup.backbones.tokens import make_mask_token
from selfsup.losses.masked import masked_patch_l1
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method, split_decay
from selfsup.methods.mae import (
    MaskRatio, adamw_betas, check_ratio_leaves_tokens, check_values_to_reconstruct, merge_values, sample_mask,
    values_per_token,
)
from selfsup.views import Views


@dataclass
class SimMIMConfig:
    """Attributes:
    mask_ratio: share of each sample's tokens replaced by the mask token (0.6 in the paper).
    """

    mask_ratio: MaskRatio = 0.6


@register_method("simmim")
class SimMIM(Method):
    Config = SimMIMConfig
    paper = "Xie et al. 2022, arXiv 2111.09886"
    modalities = frozenset({"image", "timeseries", "table"})
    requires = frozenset({"tokens"})
    can_collapse_completely = False  # the decoder must rebuild the input from the encoding
    num_global_views = 1
    # The paper's views: a random resized crop (area 67-100%) and a flip; we reuse MAE's light
    # views (area 20-100%); --set views.params.crop.scale=[0.67,1.0] gives the paper's.
    default_views = "masked_crops"
    # The paper's recipe for ViT-B (AdamW, betas (0.9, 0.999), weight decay 0.05, base lr 8e-4 per
    # 2048 samples with warm-up and cosine decay), with a larger lr for short runs on small data.
    run_defaults = {"train": {"optimizer": "adamw", "weight_decay": 0.05, "lr": 1e-3}}
    probe_pooling = "mean"
    headline_protocol = "finetune"  # the paper evaluates by fine-tuning (its linear probe is weak)

    def __init__(self, encoder: Encoder, config: SimMIMConfig) -> None:
        super().__init__(encoder, config)
        check_ratio_leaves_tokens("simmim", config.mask_ratio, encoder.backbone.sequence_length)
        check_values_to_reconstruct("simmim", encoder)
        self.mask_token = make_mask_token(encoder.embed_dim)
        self.head = nn.Linear(encoder.embed_dim, values_per_token(encoder))  # the paper's one-layer prediction head

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        (x,) = views.global_views[:1]
        tokens = self.encoder.tokenize(x)  # [N * g, L, D], g rows (channels) per sample
        g = tokens.groups
        mask = sample_mask(tokens, self.config.mask_ratio, ctx.generator_on(x.device))
        # Every position is encoded; the hidden ones hold the mask token and their position embedding.
        encoded = self.encoder.encode(tokens, mask=mask.mask, mask_token=self.mask_token)  # [N * g, L, D]
        pred = self.head(self.encoder.backbone.merge_groups(encoded.x, g))  # [N, L, K]
        hidden = mask.mask[::g]  # [N, L], shared by a sample's rows
        loss = masked_patch_l1(pred, merge_values(self.encoder.patchify(x), g), hidden)
        embeddings = self.encoder.backbone.pool(encoded).detach()  # [N, D], the masked input's features
        return StepOutput(loss, {"mask_ratio": hidden.float().mean()}, embeddings)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        params = [p for p in self.parameters() if p.requires_grad]
        return adamw_betas(split_decay(params, weight_decay), (0.9, 0.999))
