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
        return self.backbone((x - self.mean) / self.std)


class Method(nn.Module):
    """Base of every method: holds the encoder; subclasses add heads, loss and teacher.

    Subclasses set ``Config`` (a dataclass of hyperparameters) and implement
    :meth:`training_step`. Everything the trainer needs goes through this interface, so the
    trainer has no method-specific branch.
    """

    Config: ClassVar[type]
    num_global_views: ClassVar[int] = 2
    paper: ClassVar[str] = ""

    def __init__(self, encoder: Encoder, config: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = config

    def training_step(self, views: Views) -> StepOutput:
        raise NotImplementedError

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (EMA updates, schedules). ``step`` counts from 1."""

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen-encoder features ``[N, D]`` of raw samples ``x``."""
        return self.encoder(x)
