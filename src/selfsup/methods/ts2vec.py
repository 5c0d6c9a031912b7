"""TS2Vec: hierarchical contrastive learning of timestamp-level representations of series.

Yue, Wang, Duan, Yang, Huang, Tong, Xu 2022, "TS2Vec: Towards Universal Representation of Time
Series", AAAI 2022, arXiv 2106.10466. Two overlapping random crops of each series (the
"ts2vec_crops" views; contextual consistency, sec. 3.2) are encoded timestamp by timestamp with
an independent binomial timestamp mask each (the masked timestamps' features are zeroed after the
input projection); the representations of the overlapping timestamps, which saw different
contexts, are contrasted by the hierarchical loss (instance-wise + temporal, over max-pooled
scales; sec. 3.3). There are no projection heads: the loss acts on the encoder's own
representations, and the instance representation is their max over time.

As in the paper's reference code (``torch.optim.swa_utils.AveragedModel`` updated after every
step), the exported encoder is the running mean of the weights of every iterate, the initial ones
included (``average_weights``); the network that gets the gradients is a copy of it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn as nn

from selfsup.config import Fraction, NonNegativeInt, Range
from selfsup.errors import ConfigError
from selfsup.losses.timeseries import hierarchical_contrastive_loss
from selfsup.core.distributed import gather_with_grad
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.views import Views


@dataclass
class TS2VecConfig:
    """TS2Vec's knobs. The encoder's widths (hidden 64, output 320, depth 10) are the backbone's,
    the crop lengths (at most 3000 steps) the views' (``ts2vec_crops``).

    Attributes:
        alpha: weight of the instance-wise term, ``1 - alpha`` of the temporal term (0.5 in the
            reference code: equal weights as in the paper's eq. 3).
        temporal_unit: first pyramid scale at which the temporal term is used (0: all scales);
            give the views the same value (``--set views.temporal_unit=...``): it sets their
            shortest overlap, ``2 ** (temporal_unit + 1)``, as in the reference code.
        timestamp_keep_prob: probability that the binomial mask keeps a timestamp (0.5, as the
            reference code; masked timestamps are zeroed after the input projection).
        average_weights: export the mean of the weights of all iterates (the reference code's
            ``AveragedModel``) instead of the last weights.
    """

    alpha: Fraction = 0.5
    temporal_unit: NonNegativeInt = 0
    timestamp_keep_prob: Annotated[float, Range(gt=0, le=1)] = 0.5  # 0 would mask every timestamp
    average_weights: bool = True


def binomial_timestamp_mask(
    num_series: int, length: int, keep_prob: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """TS2Vec's timestamp mask: each timestamp kept independently with probability ``keep_prob``.

    Returns:
        bool ``[num_series, length]``, True = kept, False = masked (its features are zeroed).
    """
    return torch.rand(num_series, length, device=device, generator=generator) < keep_prob


@register_method("ts2vec")
class TS2Vec(Method):
    Config = TS2VecConfig
    paper = "Yue et al. 2022, arXiv 2106.10466"
    modalities = frozenset({"timeseries"})
    requires = frozenset({"timesteps"})  # one representation per timestamp (checked when built)
    default_views = "ts2vec_crops"  # the two overlapping crops; the runner uses them for views "auto"
    # The published protocol (batch 8, AdamW at a constant lr 1e-3 with weight decay 0.01; about
    # 200 iterations on small UCR sets) and its SVM evaluation, unless the user says otherwise.
    run_defaults = {
        "train": {
            "batch_size": 8, "lr": 1e-3, "weight_decay": 0.01, "epochs": 40, "warmup_epochs": 0,
            "min_lr_ratio": 1.0, "monitor_every_n_epochs": 10,
        },
        "eval": {"probes": ["svm"]},
    }

    def __init__(self, encoder: Encoder, config: TS2VecConfig) -> None:
        super().__init__(encoder, config)
        if config.average_weights:
            # self.encoder (exported) holds the running mean; self.online is trained.
            self.online = copy.deepcopy(encoder)
            for parameter in self.encoder.parameters():
                parameter.requires_grad_(False)

    @property
    def trained_encoder(self) -> Encoder:
        """The encoder the gradients reach (``self.encoder`` itself without weight averaging)."""
        return self.online if self.config.average_weights else self.encoder

    def _timestamp_features(self, view: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Masked timestamp representations of one view ``[N, C, T] -> [N, T, D]``."""
        N, _, T = view.shape
        mask = binomial_timestamp_mask(N, T, self.config.timestamp_keep_prob, view.device, generator)
        z = self.trained_encoder.forward_tokens(view, mask=mask)
        if z.shape[:2] != (N, T):
            raise ConfigError(
                f"method 'ts2vec' needs one representation per timestamp, but the backbone "
                f"{type(self.trained_encoder.backbone).__name__} turned {T} timestamps into {z.shape[1]} tokens; "
                "use a backbone without patching or striding (--backbone ts2vec_encoder)"
            )
        return z

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        if "overlap" not in views.extras:
            raise ConfigError(
                "method 'ts2vec' needs the two overlapping crops of the 'ts2vec_crops' views "
                "(views.extras has no 'overlap'); pass --set views.name=ts2vec_crops or leave views at auto"
            )
        x1, x2 = views.global_views  # [N, C, T1], [N, C, T2]
        overlap = int(views.extras["overlap"])
        if not 1 <= overlap <= min(x1.shape[-1], x2.shape[-1]):
            raise ValueError(f"overlap {overlap} does not fit views of lengths {x1.shape[-1]} and {x2.shape[-1]}")
        h1 = self._timestamp_features(x1, ctx.generator)  # [N, T1, D]
        h2 = self._timestamp_features(x2, ctx.generator)  # [N, T2, D]
        # The overlap is the last `overlap` timestamps of view 1 and the first of view 2. Gathered
        # over processes: the instance term compares the whole global batch at each timestamp
        # (every process crops the same lengths: the views draw them from a shared generator).
        z1, z2 = gather_with_grad(h1[:, -overlap:]), gather_with_grad(h2[:, :overlap])
        loss = hierarchical_contrastive_loss(z1, z2, self.config.alpha, self.config.temporal_unit)
        return StepOutput(loss, {}, _max_over_observed(h1.detach(), x1))

    @torch.no_grad()
    def on_step_end(self, ctx: StepContext) -> None:
        if self.config.average_weights:
            # After step ctx.step (from 0) the mean covers ctx.step + 2 iterates (the initial
            # weights count, as in AveragedModel): mean <- mean + (w - mean) / count. A function
            # of the step alone, so a resumed run continues the same average.
            _running_mean_(self.encoder, self.online, count=ctx.step + 2)


def _running_mean_(average: nn.Module, current: nn.Module, count: int) -> None:
    """Fold ``current``'s parameters into ``average``, the mean of ``count - 1`` earlier iterates;
    buffers (normalisation statistics) are copied, as they are not weights."""
    mean_params, params = list(average.parameters()), list(current.parameters())
    torch._foreach_lerp_(mean_params, params, 1.0 / count)
    for mean_buffer, buffer in zip(average.buffers(), current.buffers()):
        mean_buffer.copy_(buffer)


def _max_over_observed(tokens: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Instance features for monitors: max over the observed timestamps ``[N, T, D] -> [N, D]``.

    Taken from the training pass (masked, dropout on) rather than a second forward pass; a
    series with no observed timestamp gets zeros.
    """
    observed = ~torch.isnan(x).any(dim=1)  # [N, T]
    pooled = tokens.masked_fill(~observed[:, :, None], float("-inf")).amax(dim=1)
    return torch.where(observed.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))
