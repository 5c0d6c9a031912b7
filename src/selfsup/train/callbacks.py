"""Callbacks: atomic checkpoints, the metric history and label-free embedding monitors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

from selfsup.evaluate.rankme import rankme


class AtomicCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` every ``every_n_epochs`` epochs: temp file, then rename.

    A crash while writing leaves the previous checkpoint intact. On a non-finite loss nothing is
    written, so ``last.ckpt`` stays the last good state. As a ``Checkpoint`` subclass, Lightning
    runs it after the other callbacks, so their epoch-end state is in the file.
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_epochs = max(1, every_n_epochs)

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def save(self, trainer: L.Trainer) -> None:
        tmp = self.dirpath / "last.ckpt.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.last_path)
        trainer.strategy.barrier()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs:
            self.save(trainer)


class History(L.Callback):
    """Keeps the per-step loss for ``metrics.json`` and the plots.

    Losses are kept as detached tensors during the epoch and read once at its end (no extra
    host sync per step). The history is saved in checkpoints, so a resumed run keeps its curve.
    """

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._pending: list[tuple[int, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._pending.append((trainer.global_step, loss.detach()))

    def flush(self) -> None:
        """Move the losses kept on the device into ``steps`` (one host sync)."""
        if self._pending:
            values = torch.stack([loss for _, loss in self._pending]).float().cpu().tolist()
            self.steps += [{"step": s, "loss": v} for (s, _), v in zip(self._pending, values)]
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

    Logs RankMe (Garrido et al. 2023, arXiv 2210.02885), the effective rank of the frozen
    encoder's embeddings (a collapsed encoder scores near 1), and the mean per-dimension std of the
    L2-normalised embeddings (near 0 under complete collapse; Chen & He 2021, arXiv 2011.10566).
    """

    def __init__(self, samples: torch.Tensor, every_n_epochs: int = 5, batch_size: int = 512) -> None:
        self.samples = samples
        self.every_n_epochs = max(1, every_n_epochs)
        self.batch_size = batch_size
        self.records: list[dict[str, float]] = []  # one per monitored epoch, kept in checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs:
            return
        embeddings = embed_in_batches(pl_module.method.encoder, self.samples, self.batch_size, pl_module.device)
        normalized = torch.nn.functional.normalize(embeddings.float(), dim=1)
        record = {
            "epoch": epoch,
            "step": trainer.global_step,
            "rankme": rankme(embeddings),
            "embedding_std": float(normalized.std(dim=0).mean()),
        }
        self.records.append(record)
        pl_module.log("rankme", record["rankme"], prog_bar=True)
        pl_module.log("embedding_std", record["embedding_std"])


@torch.no_grad()
def embed_in_batches(
    encoder: torch.nn.Module, x: torch.Tensor, batch_size: int = 512, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Embeddings ``[N, D]`` (on the CPU) of ``x [N, ...]`` with the encoder in eval mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        out = [encoder(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0, getattr(encoder, "embed_dim", 0))
