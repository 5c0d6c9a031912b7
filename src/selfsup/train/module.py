"""The generic Lightning module: views -> method -> loss, with no method-specific branch."""

from __future__ import annotations

import math
import time

import lightning as L
import torch

from selfsup.config import TrainConfig
from selfsup.errors import NonFiniteLossError
from selfsup.methods.base import Method
from selfsup.train.optim import build_optimizer
from selfsup.views import ViewGenerator


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up from 0 to 1, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class PretrainModule(L.LightningModule):
    """Trains any registered :class:`Method` on views made on the device.

    Args:
        method: the method (encoder, heads, teacher).
        views: the view generator for the data's modality.
        train: optimisation settings.
        steps_per_epoch: optimiser steps in one epoch (for the schedules).
    """

    def __init__(self, method: Method, views: ViewGenerator, train: TrainConfig, steps_per_epoch: int) -> None:
        super().__init__()
        self.method = method
        self.views = views
        self.train_config = train
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * train.epochs
        self._generator: torch.Generator | None = None
        self._generator_state: torch.Tensor | None = None
        self._last_batch_time: float | None = None

    def view_generator(self, device: torch.device) -> torch.Generator:
        """The seeded generator for the views, created on the batch's device (one per rank)."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.train_config.seed * 1000 + self.global_rank)
            if self._generator_state is not None:
                self._generator.set_state(self._generator_state)
        return self._generator

    def training_step(self, batch: torch.Tensor | list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        with torch.no_grad():
            views = self.views(
                x, self.view_generator(x.device), self.method.num_global_views, self.method.num_local_views
            )
        if self.method.requires_labels:
            views.labels = batch[1]
        out = self.method.training_step(views)
        # One host sync per step: needed to stop at the first bad step with the last good
        # checkpoint intact (the progress bar reads the loss every step anyway).
        if not bool(torch.isfinite(out.loss)):
            raise NonFiniteLossError(
                f"the loss became {out.loss.item()} at step {self.global_step + 1} (epoch {self.current_epoch + 1})"
            )
        self.log("loss", out.loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        for name, value in out.metrics.items():
            self.log(name, value, on_step=True, on_epoch=False)
        now = time.perf_counter()
        if self._last_batch_time is not None:
            self.log("samples_per_s", x.shape[0] * self.trainer.world_size / (now - self._last_batch_time), prog_bar=True)
        self._last_batch_time = now
        return out.loss

    def on_train_epoch_start(self) -> None:
        self._last_batch_time = None  # do not count the time between epochs

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.method.on_step_end(self.global_step, self.total_steps)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.method.before_optimizer_step(self.global_step, self.total_steps)

    def configure_optimizers(self):
        cfg = self.train_config
        groups = self.method.param_groups(cfg.weight_decay)
        optimizer = build_optimizer(groups, cfg.optimizer, cfg.lr, cfg.momentum, cfg.lars_eta)
        warmup = min(cfg.warmup_epochs * self.steps_per_epoch, self.total_steps // 2)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, self.total_steps, cfg.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # What load_run needs to rebuild the method without the data: sample shape, modality.
        checkpoint["selfsup"] = getattr(self, "run_meta", {})
        if self._generator is not None:
            checkpoint["view_generator_state"] = self._generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._generator_state = checkpoint.get("view_generator_state")
        self._generator = None
