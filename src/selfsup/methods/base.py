"""The method contract: what every self-supervised method provides to the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from selfsup.views import Views


@dataclass
class StepOutput:
    """What one training step returns.

    Attributes:
        loss: the scalar to minimise.
        metrics: detached scalars to log (loss terms, schedules), keyed by name.
        embeddings: detached backbone features of the first view ``[N, D]``, for monitors.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)
    embeddings: torch.Tensor | None = None


class Encoder(nn.Module):
    """What a run exports: input standardisation followed by the backbone.

    ``x: raw samples [N, *sample_shape] -> [N, embed_dim]``. The per-channel (images) or
    per-feature (vectors) mean and std are measured on the training data and stored as buffers,
    so the encoder takes data exactly as the loaders give it.
    """

    def __init__(
        self, backbone: nn.Module, mean: torch.Tensor, std: torch.Tensor, input_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed_dim: int = backbone.embed_dim
        self.input_shape = tuple(input_shape)
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.standardize(x))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token-level features ``[N, L, D]`` of backbones that have them (series: one per timestamp)."""
        if not hasattr(self.backbone, "forward_tokens"):
            raise TypeError(f"backbone {type(self.backbone).__name__} has no token-level output (forward_tokens)")
        return self.backbone.forward_tokens(self.standardize(x), mask=mask)


class Method(nn.Module):
    """Base of every method: holds the encoder; subclasses add heads, loss and teacher.

    Subclasses set ``Config`` (a dataclass of hyperparameters) and implement
    :meth:`training_step`. Everything the trainer needs goes through this interface, so the
    trainer has no method-specific branch:

    - ``num_global_views`` / ``num_local_views``: the views the method asks for (multi-crop
      methods override ``num_local_views``, usually from their config);
    - ``requires_labels``: the method is supervised by design (SupCon) and gets ``views.labels``;
    - ``default_views``: views the method needs (TS2Vec's overlapping crops), used when the run's
      views are ``auto``;
    - ``on_step_end``: after each optimiser step (EMA teachers, schedules, queues);
    - ``before_optimizer_step``: gradients are ready, the step has not happened (DINO freezes its
      last layer, SwAV its prototypes, early in training);
    - ``param_groups``: optimiser groups; a group may set its own ``lr_scale``, ``weight_decay``
      or ``lars_exclude`` (biases and norms are kept out of LARS adaptation and weight decay).
    """

    Config: ClassVar[type]
    num_global_views: ClassVar[int] = 2
    requires_labels: ClassVar[bool] = False
    default_views: ClassVar[str | None] = None  # views a method needs when the run says "auto"
    # Settings the command line uses for this method unless the user gives others, e.g. the
    # published protocol's batch size: a partial RunConfig dict ({"train": {"batch_size": 8}}).
    run_defaults: ClassVar[dict[str, Any]] = {}
    paper: ClassVar[str] = ""

    @property
    def num_local_views(self) -> int:
        return 0

    def __init__(self, encoder: Encoder, config: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config

    def training_step(self, views: Views) -> StepOutput:
        raise NotImplementedError

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (EMA updates, schedules). ``step`` counts from 1."""

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called with the gradients computed, before the optimiser uses them. ``step`` from 0."""

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: weights decay, biases and norm parameters (1-d) do not.

        Methods override this to give a head its own learning rate (``lr_scale``) or to keep
        parameters that are set without gradients out of the optimiser.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return split_decay(params, weight_decay)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen-encoder features ``[N, D]`` of raw samples ``x``."""
        return self.encoder(x)


def split_decay(params: list[nn.Parameter], weight_decay: float, **extra: Any) -> list[dict[str, Any]]:
    """Two groups: matrices and kernels with ``weight_decay``; biases and norms (1-d) without,
    and excluded from LARS adaptation (as in BYOL and Barlow Twins)."""
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, **extra})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, **extra})
    return groups
