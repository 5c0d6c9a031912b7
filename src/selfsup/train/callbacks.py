"""Callbacks: atomic checkpoints, the metric history and label-free embedding monitors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

from selfsup.data.base import Batch
from selfsup.data.modalities import get_modality
from selfsup.core.io import FULL_DISK
from selfsup.errors import ConfigError, StorageError
from selfsup.evaluate.embed import embed_in_batches
from selfsup.evaluate.quality import alignment, alpha_req, normalized_std, online_probes, uniformity
from selfsup.evaluate.rankme import rankme

LAST, PREVIOUS = "last.ckpt", "previous.ckpt"  # the two checkpoints a run keeps


class AtomicCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` every ``every_n_epochs`` epochs, every ``every_n_steps`` steps (0: never
    mid-epoch) and when a signal stops the run:
    temp file, then rename; the checkpoint it replaces is kept as ``previous.ckpt``.

    A crash while writing leaves the previous checkpoints intact; so does a full disk, which
    ends the run with a :class:`~selfsup.errors.StorageError` saying which checkpoint is kept.
    On a non-finite loss nothing is written, so ``last.ckpt`` stays the last good state. As a
    ``Checkpoint`` subclass, Lightning runs it after the other callbacks, so their epoch-end
    state is in the file. The loggers are flushed first, so the log is never behind it.
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1, every_n_steps: int = 0) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_epochs = max(1, every_n_epochs)
        self.every_n_steps = every_n_steps

    @property
    def last_path(self) -> Path:
        return self.dirpath / LAST

    def save(self, trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / f"{LAST}.tmp"
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # rank 0 writes
        except OSError as error:
            tmp.unlink(missing_ok=True)
            if error.errno not in FULL_DISK:
                raise
            kept = f"{self.last_path} is kept" if self.last_path.exists() else "no earlier checkpoint exists"
            raise StorageError(
                f"could not write the checkpoint of step {trainer.global_step}: {error.strerror} (the disk is full); "
                f"{kept}. Free some space and continue with selfsup pretrain --resume {self.dirpath.parent}"
            ) from None
        if trainer.is_global_zero:
            if self.last_path.exists():
                os.replace(self.last_path, self.dirpath / PREVIOUS)
            os.replace(tmp, self.last_path)
        trainer.strategy.barrier()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        # global_step already counts this step. Mid-epoch: Lightning restores from this point exactly.
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        # A callback that stops the run (e.g. the collapse alarm) gets its checkpoint too.
        if epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs or trainer.should_stop:
            self.save(trainer)


class History(L.Callback):
    """Keeps the per-step loss and learning rate for ``metrics.json`` and the plots.

    Losses are kept as detached tensors during the epoch and read once at its end (no extra
    host sync per step); the learning rate (of the optimiser's first parameter group, the one the
    step used) is a Python float already. The history is saved in checkpoints, so a resumed run
    keeps its curve.
    """

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._pending: list[tuple[int, torch.Tensor, float | None]] = []
        self._lr: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        optimizers = trainer.optimizers
        self._lr = float(optimizers[0].param_groups[0]["lr"]) if optimizers and optimizers[0].param_groups else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._pending.append((trainer.global_step, loss.detach(), self._lr))

    def flush(self) -> None:
        """Move the losses kept on the device into ``steps`` (one host sync)."""
        if self._pending:
            values = torch.stack([loss for _, loss, _ in self._pending]).float().cpu().tolist()
            for (step, _, lr), value in zip(self._pending, values):
                self.steps.append({"step": step, "loss": value} if lr is None else {"step": step, "loss": value, "lr": lr})
            self._pending = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush()

    def state_dict(self) -> dict[str, Any]:
        self.flush()
        return {"steps": self.steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = list(state_dict.get("steps", []))


class EmbeddingMonitor(L.Callback):
    """Label-free signals on a fixed subset of the training data, every few epochs.

    At each monitored epoch (every ``every_n_epochs`` and the last), the frozen encoder (eval mode,
    no gradients) embeds ``samples`` and two views of them, and a record goes to ``records``
    (then to ``metrics.json``), to the Lightning loggers and, for RankMe and the online kNN
    accuracy, to the progress bar:

    - ``rankme``: the effective rank (Garrido et al. 2023, arXiv 2210.02885); near 1 when collapsed.
    - ``alpha_req``: the covariance eigenspectrum's power-law decay (Agrawal et al. 2022,
      NeurIPS 2022); ``nan`` when the spectrum is degenerate.
    - ``alignment`` of two views and ``uniformity`` of the embeddings (Wang & Isola 2020, arXiv
      2005.10242), on L2-normalised embeddings.
    - ``embedding_std`` / ``embedding_std_min``: mean and min per-dimension std of the
      L2-normalised embeddings (0 under complete collapse; Chen & He 2021, arXiv 2011.10566).
    - with ``labels``: ``knn_acc`` and ``linear_acc`` of :func:`~selfsup.evaluate.quality.online_probes`
      on the detached embeddings (fit on half the subset, scored on the other half).

    The views are made by the module's own view generator (``pl_module.views``) with a generator
    of the monitor's own, re-seeded with ``seed`` at every monitored epoch: the same views each
    time, and the training's random stream is not touched. Nothing here runs inside the training
    step, so the step has no extra host sync, and nothing here trains: the encoder's parameters
    and gradients are left as they were.
    """

    def __init__(
        self,
        samples: torch.Tensor,
        every_n_epochs: int = 5,
        batch_size: int = 512,
        labels: torch.Tensor | None = None,
        seed: int = 0,
        modality: str | None = None,
    ) -> None:
        if len(samples) < 2:
            raise ConfigError(
                f"the embedding monitor needs at least 2 samples (it measures spread), got {len(samples)}; "
                "raise train.monitor_samples"
            )
        self.samples = samples  # raw samples [N, ...] as the source gives them (uint8 images stay uint8)
        self.modality = get_modality(modality)
        self.every_n_epochs = max(1, every_n_epochs)
        self.batch_size = batch_size
        self.seed = seed
        self.labels = labels if labels is not None and _probe_ready(labels) else None
        self.records: list[dict[str, float]] = []  # one per monitored epoch, kept in checkpoints
        # embedding_std of the encoder as training starts (the collapse alarm's reference), kept
        # in checkpoints so a resumed run compares with the same start.
        self.initial_std: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records, "initial_std": self.initial_std}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))
        self.initial_std = state_dict.get("initial_std")

    @torch.no_grad()
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.initial_std is None and not self.records:
            self.initial_std = float(normalized_std(self._embeddings(pl_module)).mean)

    def is_monitored(self, trainer: L.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        return epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.is_monitored(trainer):
            return
        record = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step, **self.measure(pl_module)}
        self.records.append(record)
        for name, value in record.items():
            if name not in ("epoch", "step", "embed_dim", "num_samples"):
                pl_module.log(name, value, prog_bar=name in ("rankme", "knn_acc"))

    @torch.no_grad()
    def measure(self, pl_module: L.LightningModule) -> dict[str, float]:
        """Every signal of one monitored epoch, from the module's encoder and view generator."""
        embeddings = self._embeddings(pl_module)
        view1, view2 = self._view_embeddings(pl_module)
        std = normalized_std(embeddings)
        out = {
            "rankme": rankme(embeddings),
            "alpha_req": alpha_req(embeddings),
            "alignment": alignment(view1, view2),
            "uniformity": uniformity(embeddings),
            "embedding_std": std.mean,
            "embedding_std_min": std.min,
            "embed_dim": embeddings.shape[1],
            "num_samples": embeddings.shape[0],
        }
        if self.labels is not None:
            out.update(online_probes(embeddings, self.labels, seed=self.seed))
        return out

    def _embeddings(self, pl_module: L.LightningModule) -> torch.Tensor:
        """Embeddings ``[N, D]`` of the monitored samples by the module's encoder (in eval mode)."""
        return embed_in_batches(pl_module.method.encoder, self.samples, self.batch_size, pl_module.device)

    def _view_embeddings(self, pl_module: L.LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``[N, D]`` of two views of every monitored sample, from a fixed seed."""
        encoder, device = pl_module.method.encoder, pl_module.device
        generator = torch.Generator(device=device).manual_seed(self.seed)
        firsts, seconds = [], []
        for i in range(0, len(self.samples), self.batch_size):
            x = self.modality.view_input(Batch({"x": self.samples[i : i + self.batch_size].to(device)}))
            views = pl_module.views(x, generator, 2, 0)
            first, second = views.global_views[:2]
            firsts.append(embed_in_batches(encoder, first, self.batch_size, device))
            seconds.append(embed_in_batches(encoder, second, self.batch_size, device))
        return torch.cat(firsts), torch.cat(seconds)


def _probe_ready(labels: torch.Tensor) -> bool:
    """Whether the online probes can split ``labels``: two classes or more, one with two samples."""
    _, counts = torch.unique(labels, return_counts=True)
    return counts.numel() >= 2 and int(counts.max()) >= 2

