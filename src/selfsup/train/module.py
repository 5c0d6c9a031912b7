"""The generic Lightning module: batch -> views -> method -> loss, with no method-specific branch."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from selfsup.config import TrainConfig
from selfsup.core.schedules import warmup_cosine
from selfsup.data.base import Batch
from selfsup.data.loader import check_batch
from selfsup.data.modalities import Modality, get_modality
from selfsup.errors import NonFiniteLossError
from selfsup.methods.base import Method, StepContext
from selfsup.train.optim import build_optimizer
from selfsup.views import ViewGenerator


class PretrainModule(L.LightningModule):
    """Trains any registered :class:`Method` on views made on the device.

    Args:
        method: the method (encoder, heads, teacher).
        views: the view generator for the data's modality.
        train: optimisation settings.
        steps_per_epoch: optimiser steps in one epoch, used for the schedules only when the
            module runs without a trainer that knows (the trainer's own count wins: it accounts
            for ``max_steps`` and for the distributed sampler).
        modality: the data's modality (turns raw batches into the views' input).
        skip_bad_files: warn about (instead of stopping at) samples that could not be read.
    """

    def __init__(
        self, method: Method, views: ViewGenerator, train: TrainConfig, steps_per_epoch: int = 1,
        modality: str | Modality | None = None, skip_bad_files: bool = False,
    ) -> None:
        super().__init__()
        self.method = method
        self.views = views
        self.train_config = train
        self.modality = modality if isinstance(modality, Modality) else get_modality(modality or method.encoder.modality_name)
        self.skip_bad_files = skip_bad_files
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = _total_steps(steps_per_epoch, train)
        self._generator: torch.Generator | None = None
        self._generator_state: torch.Tensor | None = None
        self._last_batch_time: float | None = None
        self.run_meta: dict[str, Any] = {}
        self._warned: set[str] = set()  # unreadable files already warned about

    def _count_steps(self) -> None:
        """Steps per epoch and in the whole run, as the trainer will run them."""
        trainer = self._trainer
        if trainer is None:
            return
        total = int(trainer.estimated_stepping_batches)  # min(max_steps, epochs x batches per epoch)
        batches = trainer.num_training_batches
        if batches not in (None, float("inf")) and batches > 0:
            self.steps_per_epoch = int(batches)
        self.total_steps = max(1, total)

    def view_generator(self, device: torch.device) -> torch.Generator:
        """The seeded generator for the views and masks, created on the batch's device (one per rank)."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.train_config.seed * 1000 + self.global_rank)
            if self._generator_state is not None:
                self._generator.set_state(self._generator_state)
        return self._generator

    def context(self, step: int, batch: Batch | None = None, device: torch.device | None = None) -> StepContext:
        generator = self.view_generator(device) if device is not None else self._generator
        return StepContext(step=step, total_steps=self.total_steps, generator=generator, batch=batch)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, Batch):
            return batch.to(device, non_blocking=True)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def training_step(self, batch: Batch | torch.Tensor | list[torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if not isinstance(batch, Batch):  # a plain tensor (or TensorDataset tuple): samples, then labels
            parts = list(batch) if isinstance(batch, (list, tuple)) else [batch]
            batch = Batch({"x": parts[0], **({"y": parts[1]} if len(parts) > 1 else {})})
        check_batch(batch, self.skip_bad_files, self._warned)
        if len(batch) < 2:
            return None  # every sample of this batch was unreadable (and skipped)
        x = self.modality.view_input(batch)
        ctx = self.context(self.global_step, batch, x.device)
        with torch.no_grad():
            views = self.views(x, ctx.generator, self.method.num_global_views, self.method.num_local_views)
        if self.method.requires_labels:
            views.labels = batch["y"]
        out = self.method.training_step(views, ctx)
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
            self.log("samples_per_s", len(batch) * self.trainer.world_size / (now - self._last_batch_time), prog_bar=True)
        self._last_batch_time = now
        return out.loss

    def on_train_epoch_start(self) -> None:
        self._last_batch_time = None  # do not count the time between epochs

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # global_step already counts the step just taken: its index is global_step - 1.
        self.method.on_step_end(self.context(self.global_step - 1))

    def on_before_optimizer_step(self, optimizer) -> None:
        ctx = self.context(self.global_step)
        self.method.before_optimizer_step(ctx)
        for name, value in self.method.optimizer_schedules(ctx).items():
            for group in optimizer.param_groups:
                # Only groups that decay get a weight-decay schedule (biases and norms stay at 0).
                if name != "weight_decay" or group.get("weight_decay", 0.0) > 0:
                    group[name] = value
            self.log(f"optimizer_{name}", float(value), on_step=True, on_epoch=False)

    def configure_optimizers(self):
        cfg = self.train_config
        self._count_steps()
        groups = self.method.param_groups(cfg.weight_decay)
        optimizer = build_optimizer(groups, cfg.optimizer, cfg.lr, cfg.momentum, cfg.lars_eta)
        warmup = min(cfg.warmup_epochs * self.steps_per_epoch, self.total_steps // 2)
        total = self.total_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total, cfg.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # What load_run needs to rebuild the method without the data: sample shape, modality.
        checkpoint["selfsup"] = self.run_meta
        if self._generator is not None:
            checkpoint["view_generator_state"] = self._generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._generator_state = checkpoint.get("view_generator_state")
        self._generator = None


def _total_steps(steps_per_epoch: int, train: TrainConfig) -> int:
    total = steps_per_epoch * train.epochs
    return max(1, min(total, train.max_steps) if train.max_steps > 0 else total)
