"""MixedAE: masked autoencoding of mixed samples, with homologous recognition.

Chen, Liu, Hong, Xu, Li, Yeung 2023, "Mixed Autoencoder for Self-supervised Visual Representation
Learning", CVPR 2023, arXiv 2303.17152. Mixing is the augmentation: the batch is cut into groups of
``mix_size`` samples, and each group becomes one sequence whose every position holds the token of
one member, each member owning ``1 / mix_size`` of the positions (drawn at random per group). With
``mix_size`` 4 every sample shows a quarter of its tokens, as MAE's 75% mask, and the encoder runs
on as many tokens as MAE's. Naive mixing makes reconstruction easier (the other images' patches
raise the mutual information between input and target), so MixedAE adds *homologous
recognition*: each token has to tell which tokens of the mixed sequence come from its own image,
verified by a homologous contrastive loss (a supervised contrastive loss over the tokens of each
mixed sequence, the source image as label). Unmixing: for each member, the decoder (MAE's) gets the
encoded tokens at the positions it owns and the mask token elsewhere, and reconstructs the member's
hidden patches (MSE, per-patch normalised targets).

What is implemented: mixing at the token level (the same as mixing patches of the inputs, since
patch and position embeddings act per patch), the unmixing decoder and reconstruction loss, and the
homologous contrastive loss on the encoder's output tokens. Not implemented: the paper's homologous
attention (each query attends only to its top-k keys, k = the number of homologous tokens), which
needs a per-query attention mask the token backbones do not take, and its segment embeddings; the
encoder attends over the whole mixed sequence. The contrastive temperature and weight are our
choices. A batch that ``mix_size`` does not divide fills its last group again with its first
samples, whose loss terms are dropped. Distributed: groups are formed within each process's share
of the batch (mixing never crosses processes), and the losses are means over that share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import torch

from selfsup.backbones.tokens import Tokens
from selfsup.config import NonNegativeFloat, PositiveFloat, Range
from selfsup.errors import ConfigError
from selfsup.losses.masked import homologous_contrastive_loss, masked_patch_mse
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput, register_method, split_decay
from selfsup.methods.mae import (
    MAE_RUN_DEFAULTS, DecoderConfig, MaskedDecoder, adamw_betas, merge_values,
)
from selfsup.views import Views


@dataclass
class MixedAEConfig:
    """Attributes:
    mix_size: samples mixed into one sequence; each shows ``1 / mix_size`` of its tokens (4: MAE's 75% hidden).
    homologous_weight: weight of the homologous contrastive loss beside the reconstruction loss.
    temperature: of the homologous contrastive loss.
    norm_pix_loss: per-patch normalised reconstruction targets (as MAE).
    decoder: the light decoder (as MAE's).
    """

    mix_size: Annotated[int, Range(ge=2)] = 4
    homologous_weight: NonNegativeFloat = 0.1
    temperature: PositiveFloat = 0.1
    norm_pix_loss: bool = True
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


def mixing_assignment(num_groups: int, num_tokens: int, mix_size: int, generator: torch.Generator) -> torch.Tensor:
    """Which member of its group each position takes its token from: long ``[G, L]`` in
    ``[0, mix_size)``, each member owning ``floor`` or ``ceil`` of ``L / mix_size`` positions, at random."""
    noise = torch.rand(num_groups, num_tokens, generator=generator, device=generator.device)
    rank = noise.argsort(dim=1).argsort(dim=1)  # a uniform random rank per position
    return rank % mix_size


@register_method("mixed_ae")
class MixedAE(Method):
    Config = MixedAEConfig
    paper = "Chen et al. 2023, arXiv 2303.17152"
    modalities = frozenset({"image", "timeseries"})
    requires = frozenset({"tokens"})
    can_collapse_completely = False  # the decoder must rebuild the input from the encoding
    num_global_views = 1
    default_views = "masked_crops"
    run_defaults = MAE_RUN_DEFAULTS  # MixedAE trains with MAE's recipe
    probe_pooling = "mean"
    linear_probe_batch_norm = True
    headline_protocol = "finetune"

    def __init__(self, encoder: Encoder, config: MixedAEConfig) -> None:
        super().__init__(encoder, config)
        L = encoder.backbone.sequence_length
        if L < config.mix_size:
            raise ConfigError(
                f"method 'mixed_ae': mix_size={config.mix_size} samples cannot share the backbone's {L} tokens "
                f"(each needs one at least); use mix_size <= {L}"
            )
        self.decoder = MaskedDecoder(encoder, config.decoder)

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        (x,) = views.global_views[:1]
        tokens = self.encoder.tokenize(x)  # [N * g, L, D]; g rows (channels) per sample
        g, (rows, L, D) = tokens.groups, tokens.x.shape
        N = rows // g
        r = min(self.config.mix_size, N)
        G = -(-N // r)  # groups; the last one is filled up with the first samples
        members = (torch.arange(G * r, device=x.device) % N).view(G, r)  # sample of each member
        assign = mixing_assignment(G, L, r, ctx.generator_on(x.device))  # [G, L], member per position
        channel = torch.arange(g, device=x.device).view(1, g, 1)
        source_rows = (members.gather(1, assign).unsqueeze(1) * g + channel).reshape(G * g, L)  # [G * g, L]
        position = torch.arange(L, device=x.device).expand(G * g, L)
        padding = None if tokens.padding is None else tokens.padding[source_rows, position]
        mixed = Tokens(tokens.x[source_rows, position], tokens.positions[source_rows, position], padding, groups=g)
        encoded = self.encoder.encode(mixed)  # [G * g, L, D]: every position of the mixed sequences
        merged = self.encoder.backbone.merge_groups(encoded.x, g)  # [G, L, D], a sample's rows share positions

        # Unmixing: member j of a group keeps the positions it owns, the mask token elsewhere.
        own = assign.unsqueeze(1) == torch.arange(r, device=x.device).view(1, r, 1)  # [G, r, L]
        own = own.reshape(G * r, L)[:N]  # per sample; members N.. (the repeats) are dropped
        z = self.decoder.embed(merged).unsqueeze(1).expand(G, r, L, -1).reshape(G * r, L, -1)[:N]  # [N, L, Dd]
        full = torch.where(own.unsqueeze(-1), z, self.decoder.mask_token.to(z.dtype))
        padding = None if tokens.padding is None else tokens.padding[::g]
        pred = self.decoder(full, tokens.positions[::g], padding)  # [N, L, K]
        target = merge_values(self.encoder.patchify(x), g)  # [N, L, K]
        reconstruction = masked_patch_mse(pred, target, ~own, self.config.norm_pix_loss)

        # Homologous recognition: tokens of the same source are positives, within each mixed sequence.
        valid = None if mixed.padding is None else ~mixed.padding[::g]
        homologous = homologous_contrastive_loss(merged, assign, self.config.temperature, valid)
        loss = reconstruction + self.config.homologous_weight * homologous

        # Monitors: each sample's features pooled over the positions it owns in its mixed sequence.
        h = encoded.x.detach().view(G, 1, g, L, D).expand(G, r, g, L, D).reshape(G * r * g, L, D)[: N * g]
        own_rows = own.repeat_interleave(g, dim=0)  # [N * g, L]
        hidden = ~own_rows if tokens.padding is None else ~own_rows | tokens.padding
        cls = None
        if encoded.cls is not None:  # a CLS-pooling ViT: each sample gets its sequence's CLS output
            cls = encoded.cls.detach().view(G, 1, g, D).expand(G, r, g, D).reshape(-1, D)[: N * g]
        embeddings = self.encoder.backbone.pool(Tokens(h, tokens.positions, hidden, cls=cls, groups=g))
        metrics = {"reconstruction": reconstruction.detach(), "homologous": homologous.detach()}
        return StepOutput(loss, metrics, embeddings.detach())

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        params = [p for p in self.parameters() if p.requires_grad]
        return adamw_betas(split_decay(params, weight_decay), (0.9, 0.95))
