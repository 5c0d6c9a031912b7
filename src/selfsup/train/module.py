"""The generic Lightning module: batch -> views -> method -> loss, with no method-specific branch."""

from __future__ import annotations

import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from selfsup.config import TrainConfig
from selfsup.core.schedules import warmup_cosine
from selfsup.data.base import Batch
from selfsup.data.loader import check_batch
from selfsup.data.sampler import EpochBatchSampler
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
        sampler: the training loader's batch sampler: told this process's rank (each process
            takes its share of every global batch) and, on a resume, where in the epoch to start.

    Checkpoints hold, besides the weights and optimiser: the view generator's state, the place
    in the data order (epoch, batches done) and the global random states (torch, CUDA, NumPy,
    Python), so a run resumed from any checkpoint continues exactly as it would have.
    """

    def __init__(
        self, method: Method, views: ViewGenerator, train: TrainConfig, steps_per_epoch: int = 1,
        modality: str | Modality | None = None, skip_bad_files: bool = False,
        sampler: EpochBatchSampler | None = None,
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
        self._shared: torch.Generator | None = None
        self._shared_state: torch.Tensor | None = None
        self._last_batch_time: float | None = None
        self.run_meta: dict[str, Any] = {}
        self._warned: set[str] = set()  # unreadable files already warned about
        self.sampler = sampler
        self._batches_in_epoch = 0  # batches started in the current epoch (the resume point)
        self._resume_epoch: int | None = None  # the epoch a resume starts in the middle of

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
            self._generator = _generator_on(device, self.train_config.seed * 1000 + self.global_rank, self._generator_state)
        return self._generator

    def shared_generator(self, device: torch.device) -> torch.Generator:
        """A generator in the same state on every process, for draws that must agree across the
        global batch (TS2Vec's crop lengths); saved in checkpoints like the per-process one."""
        if self._shared is None or self._shared.device != device:
            self._shared = _generator_on(device, self.train_config.seed * 1000 + 997, self._shared_state)
        return self._shared

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
        # Views in float32 whatever the run's precision: under bf16 autocast the blur, the hue
        # rotation and the crops' sampling grid would run in bf16 (less exact, and slow on CPUs).
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            shared = {"shared_generator": self.shared_generator(x.device)} if getattr(self.views, "shared_randomness", False) else {}
            views = self.views(x, ctx.generator, self.method.num_global_views, self.method.num_local_views, **shared)
        if self.method.requires_labels:
            views.labels = batch["y"]
        out = self.method.training_step(views, ctx)
        # One host sync per step: needed to stop at the first bad step with the last good
        # checkpoint intact (the progress bar reads the loss every step anyway).
        finite = torch.isfinite(out.loss.detach()).float()
        if self._trainer is not None and self.trainer.world_size > 1:  # every process stops at the same step
            finite = self.trainer.strategy.reduce(finite, reduce_op="min")
        if not bool(finite):
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

    def setup(self, stage: str) -> None:
        if self.sampler is not None and self._trainer is not None:
            self.sampler.set_process(self.global_rank, self.trainer.world_size)
            self.sampler.epoch_source = lambda: self.trainer.current_epoch

    def on_train_epoch_start(self) -> None:
        self._last_batch_time = None  # do not count the time between epochs
        if self._resume_epoch != self.current_epoch:  # a resume keeps the batches its epoch had done
            self._batches_in_epoch = 0
        self._resume_epoch = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batches_in_epoch += 1

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
        if self._shared is not None:
            checkpoint["shared_generator_state"] = self._shared.get_state()
        checkpoint["data_order"] = {"epoch": self.current_epoch, "batches_done": self._batches_in_epoch}
        checkpoint["random_states"] = random_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._generator_state = checkpoint.get("view_generator_state")
        self._generator = None
        self._shared_state = checkpoint.get("shared_generator_state")
        self._shared = None
        order = checkpoint.get("data_order")
        if order is not None:
            self._resume_epoch, self._batches_in_epoch = order["epoch"], order["batches_done"]
            if self.sampler is not None:
                self.sampler.resume_at(order["epoch"], order["batches_done"])
        if "random_states" in checkpoint:
            set_random_states(checkpoint["random_states"])


def _generator_on(device: torch.device, seed: int, state: torch.Tensor | None) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``, or in ``state`` (a checkpoint's) when given."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    if state is not None:
        generator.set_state(state)
    return generator


def random_states() -> dict[str, Any]:
    """The global random states a step may draw from (dropout, a method's own draws)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # Plain tensors and numbers only: a checkpoint loads with torch.load(weights_only=True).
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _total_steps(steps_per_epoch: int, train: TrainConfig) -> int:
    total = steps_per_epoch * train.epochs
    return max(1, min(total, train.max_steps) if train.max_steps > 0 else total)
