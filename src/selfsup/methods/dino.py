"""DINO: self-distillation with no labels, multi-crop, centring and sharpening.

Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", arXiv 2104.14294.
A student (encoder + DINO head) sees every crop, 2 global and several small local ones; its
teacher, an EMA of the student, sees only the 2 global crops. The head ends in K prototypes; the
student's softmax at temperature ``tau_s`` learns the teacher's centred, sharpened softmax of
every other crop (eq. 3). The teacher's temperature is warmed up linearly at the start (a sharp
teacher too early makes training unstable), the prototypes layer is frozen at the start (the
paper freezes it for the first epoch; it stabilises training), and the teacher's momentum rises
from ``base_momentum`` to 1 on a cosine.

Schedules are fractions of training because a method does not know the steps per epoch: the
paper's 30-epoch temperature warm-up in a 100-epoch run is ``teacher_temperature_warmup = 0.3``
and its 1-epoch freeze ``freeze_last_layer = 0.01``.

Gradients are clipped per parameter (norm 3, as in the paper's code) in ``before_optimizer_step``.
Not reproduced (the shared trainer has one weight decay): the paper's weight decay rising from
0.04 to 0.4 on a cosine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from selfsup.config_checks import coerce_optional
from selfsup.losses.distillation import dino_loss
from selfsup.losses.distillation_state import DINOCenter
from selfsup.methods.base import register_method
from selfsup.methods.base import Encoder, Method, StepContext, StepOutput
from selfsup.core.schedules import cosine_momentum, cosine_schedule
from selfsup.core.teacher import EMATeacher
from selfsup.views import Views


@dataclass
class DINOConfig:
    num_local_crops: NonNegativeInt = 4  # small crops seen by the student only; 8 or 10 in the paper
    head_hidden_dim: PositiveInt = 512  # 2048 in the paper
    bottleneck_dim: PositiveInt = 256  # as in the paper: the head's output before the prototypes
    head_batch_norm: bool = True  # BN in the head's hidden layers (the paper's use_bn_in_head, off for ViTs)
    norm_last_layer: bool = True  # fix the prototypes' weight-norm gain to 1 (the paper: True for ViT-B)
    num_prototypes: Annotated[int, Range(ge=2)] = 1024  # K; 65536 in the paper on ImageNet, fewer for small data
    student_temperature: PositiveFloat = 0.1  # tau_s, as in the paper
    teacher_temperature: PositiveFloat = 0.07  # tau_t after warm-up (the paper warms it up from 0.04 to 0.07)
    warmup_teacher_temperature: PositiveFloat = 0.04  # tau_t at the first step (0.04 in the paper)
    teacher_temperature_warmup: Fraction = 0.3  # fraction of training for the linear warm-up (30 of 100 epochs)
    center_momentum: Fraction = 0.9  # m of the teacher's centre, as in the paper
    freeze_last_layer: Fraction = 0.01  # fraction of training with the prototypes frozen (1 of 100 epochs)
    clip_grad: NonNegativeFloat = 3.0  # each parameter's gradient norm is clipped to this (the paper's code); 0: off
    # The paper's weight-decay schedule: cosine from weight_decay_start to weight_decay_end over
    # the run (0.04 -> 0.4 in the paper), on the groups that decay. None (both): train.weight_decay throughout.
    weight_decay_start: NonNegativeFloat | None = None
    weight_decay_end: NonNegativeFloat | None = None
    base_momentum: Fraction = 0.99  # teacher EMA; 0.996 in the paper for long runs, lower for short ones
    final_momentum: Fraction = 1.0

    def __post_init__(self) -> None:
        coerce_optional(self, "weight_decay_start", "weight_decay_end")
        if (self.weight_decay_start is None) != (self.weight_decay_end is None):
            raise ValueError(
                "weight_decay_start and weight_decay_end go together (the schedule runs from one to the other); "
                f"got {self.weight_decay_start!r} and {self.weight_decay_end!r}"
            )


class DINOHead(nn.Module):
    """3-layer MLP with GELU, L2-normalised bottleneck, weight-normalised prototypes.

    ``[N, in_dim] -> [N, num_prototypes]``. The last layer is ``normalize(x) @ normalize(W)^T``:
    the weight normalisation of the paper. With ``norm_last_layer`` its gain is fixed to 1, so the
    logits are cosines in [-1, 1]; otherwise each prototype has a learnt gain (starting at 1).
    ``batch_norm`` adds BatchNorm after the hidden layers (the paper's ``use_bn_in_head``).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        bottleneck_dim: int,
        num_prototypes: int,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for dim_in, dim_out in [(in_dim, hidden_dim), (hidden_dim, hidden_dim)]:
            layers.append(nn.Linear(dim_in, dim_out))
            if batch_norm:
                layers.append(nn.BatchNorm1d(dim_out))
            layers.append(nn.GELU())
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):  # the paper's initialisation
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = nn.Linear(bottleneck_dim, num_prototypes, bias=False)
        self.last_layer_gain = None if norm_last_layer else nn.Parameter(torch.ones(num_prototypes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        logits = F.linear(x, F.normalize(self.last_layer.weight, dim=-1))
        return logits if self.last_layer_gain is None else logits * self.last_layer_gain


def teacher_temperature(step: int, total_steps: int, config: DINOConfig) -> float:
    """Linear warm-up from ``warmup_teacher_temperature`` to ``teacher_temperature``, then constant."""
    warmup_steps = config.teacher_temperature_warmup * total_steps
    if step >= warmup_steps:
        return config.teacher_temperature
    start, end = config.warmup_teacher_temperature, config.teacher_temperature
    return start + (end - start) * step / warmup_steps


@torch.no_grad()
def clip_each_gradient(parameters, max_norm: float) -> None:
    """Scale each parameter's gradient down to L2 norm ``max_norm`` if it is larger.

    Per parameter, not over the global norm, as DINO's code does; without a host sync.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    scales = [torch.clamp(max_norm / (norm + 1e-6), max=1.0) for norm in norms]
    torch._foreach_mul_(grads, scales)


@register_method("dino")
class DINO(Method):
    Config = DINOConfig
    paper = "Caron et al. 2021, arXiv 2104.14294"

    def __init__(self, encoder: Encoder, config: DINOConfig) -> None:
        super().__init__(encoder, config)
        self.head = DINOHead(
            encoder.embed_dim, config.head_hidden_dim, config.bottleneck_dim, config.num_prototypes,
            config.head_batch_norm, config.norm_last_layer,
        )
        self.teacher = EMATeacher(nn.Sequential(self.encoder, self.head))
        self.center = DINOCenter(config.num_prototypes, config.center_momentum)
        # Schedules as buffers: a resumed run continues them from the checkpoint.
        self.register_buffer("teacher_temp", torch.tensor(config.warmup_teacher_temperature))
        self.momentum = config.base_momentum

    @property
    def num_local_views(self) -> int:
        return self.config.num_local_crops

    def training_step(self, views: Views, ctx: StepContext) -> StepOutput:
        x1, x2 = views.global_views
        N = x1.shape[0]
        h = self.encoder(torch.cat([x1, x2]))  # global crops in one pass: [2N, D]
        student = list(self.head(h).chunk(2))
        if views.local_views:  # local crops share a (smaller) resolution: one more pass
            student += list(self.head(self.encoder(torch.cat(views.local_views))).chunk(len(views.local_views)))
        teacher_logits = self.teacher(torch.cat([x1, x2]))  # the teacher sees only the global crops
        teacher = list(self.center(teacher_logits, self.teacher_temp).chunk(2))
        loss = dino_loss(student, teacher, self.config.student_temperature)
        self.center.update(teacher_logits)  # after use: the centre of step t comes from steps < t
        # The paper's collapse diagnostic (fig. 7): log K when the teacher is uniform, 0 when one-hot.
        probs = torch.cat(teacher)
        teacher_entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1).mean()
        metrics = {"momentum": self.momentum, "teacher_temperature": self.teacher_temp, "teacher_entropy": teacher_entropy}
        return StepOutput(loss, metrics, h[:N].detach())

    @torch.no_grad()
    def before_optimizer_step(self, ctx: StepContext) -> None:
        if self.config.clip_grad > 0:
            clip_each_gradient(self.parameters(), self.config.clip_grad)
        if ctx.step < self.config.freeze_last_layer * ctx.total_steps:
            # No gradient at all (not a zero one): the optimiser skips it, no decay, no momentum.
            self.head.last_layer.weight.grad = None

    def optimizer_schedules(self, ctx: StepContext) -> dict[str, float]:
        start, end = self.config.weight_decay_start, self.config.weight_decay_end
        if start is None or end is None:
            return {}
        return {"weight_decay": cosine_schedule(ctx.step, ctx.total_steps, start, end)}

    @torch.no_grad()
    def on_step_end(self, ctx: StepContext) -> None:
        self.teacher_temp.fill_(teacher_temperature(ctx.step + 1, ctx.total_steps, self.config))
        self.momentum = cosine_momentum(ctx.step + 1, ctx.total_steps, self.config.base_momentum, self.config.final_momentum)
        self.teacher.update(nn.Sequential(self.encoder, self.head), self.momentum)
