"""End to end: pretraining learns, checkpoints survive crashes, resume continues, NaN stops cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from selfsup.config import RunConfig, TrainConfig
from selfsup.errors import ConfigError, NonFiniteLossError
from selfsup.train.runner import CHECKPOINT, load_run, pretrain


def _config(epochs: int, batch_size: int = 128, method: str = "simclr", **train) -> RunConfig:
    config = RunConfig()
    config.method.name = method
    config.train = TrainConfig(epochs=epochs, batch_size=batch_size, progress_bar=False, **train)
    return config


class CrashAtStep(L.Callback):
    """Simulates a crash (an exception out of the training loop) after ``step`` optimiser steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


class RecordStart(L.Callback):
    def __init__(self) -> None:
        self.start_step: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = trainer.global_step


class PoisonWeightsAtStep(L.Callback):
    """Sets the encoder's weights to NaN after ``step`` steps: the next loss is not finite."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.method.encoder.backbone.parameters():
                    p.fill_(float("nan"))


@pytest.mark.slow
def test_pretraining_on_digits_beats_random_init_and_does_not_collapse(tmp_path: Path) -> None:
    result = pretrain(_config(epochs=40, batch_size=256), run_dir=tmp_path / "run")
    results = result.metrics["evaluation"]["results"]
    pretrained, random_init = results["pretrained"], results["random-init"]
    assert pretrained["linear"] > random_init["linear"] + 0.015, results
    assert pretrained["knn"] > random_init["knn"] + 0.015, results
    assert pretrained["linear"] > 0.95
    # 128-dimensional embeddings: a collapsed encoder has RankMe near 1.
    assert pretrained["rankme"] > 20, results
    run = result.run_dir
    for name in ("config.yaml", CHECKPOINT, "metrics.json", "training.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == metrics["steps"] == 40 * (1347 // 256)
    monitored = [r["epoch"] for r in metrics["monitors"]]
    assert monitored == [5, 10, 15, 20, 25, 30, 35, 40]  # every 5 epochs, no stale repeats
    assert all(r["rankme"] > 1 and r["embedding_std"] > 0 for r in metrics["monitors"])
    # The run can be reloaded and gives the same embeddings as the in-memory encoder.
    _, method, meta = load_run(run)
    x = result.data.test.x[:16]
    torch.testing.assert_close(method.embed(x), result.method.eval().embed(x))
    assert meta["input_shape"] == [1, 8, 8]


def test_crash_then_resume_continues_from_the_saved_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    steps_per_epoch = 1347 // 128  # 10
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(_config(epochs=3), run_dir=run, callbacks=[CrashAtStep(steps_per_epoch + 4)], evaluate=False)
    saved = torch.load(run / CHECKPOINT, weights_only=False)
    assert saved["global_step"] == steps_per_epoch  # the epoch-1 checkpoint survived the crash

    record = RecordStart()
    result = pretrain(run_dir=run, resume=True, callbacks=[record], evaluate=False)
    assert record.start_step == steps_per_epoch
    assert result.metrics["steps"] == 3 * steps_per_epoch
    steps = [s["step"] for s in result.metrics["history"]]
    assert steps == list(range(1, 3 * steps_per_epoch + 1))  # no gap, no duplicate


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    steps_per_epoch = 1347 // 128
    with pytest.raises(NonFiniteLossError, match=rf"step {steps_per_epoch + 3}\b.*last good checkpoint"):
        pretrain(_config(epochs=3), run_dir=run, callbacks=[PoisonWeightsAtStep(steps_per_epoch + 2)], evaluate=False)
    saved = torch.load(run / CHECKPOINT, weights_only=False)
    assert saved["global_step"] == steps_per_epoch
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    assert "failed" in json.loads((run / "metrics.json").read_text())["status"]


def test_existing_run_directory_is_never_overwritten(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    keep = run / "notes.txt"
    keep.write_text("precious")
    with pytest.raises(ConfigError, match="not a selfsup run"):
        pretrain(_config(epochs=1), run_dir=run)
    assert keep.read_text() == "precious" and sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_batch_larger_than_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"1347 samples.*--batch-size 1024"):
        pretrain(_config(epochs=1, batch_size=5000), run_dir=tmp_path / "run")


def test_history_keeps_the_learning_rate_each_step_used(tmp_path: Path) -> None:
    from selfsup.core.schedules import warmup_cosine

    config = RunConfig.from_dict({
        "data": "wine", "backbone": {"name": "mlp"},
        "train": {"epochs": 4, "batch_size": 32, "lr": 0.01, "warmup_epochs": 1, "min_lr_ratio": 0.1,
                  "progress_bar": False},
    })
    history = pretrain(config, run_dir=tmp_path / "run", evaluate=False).metrics["history"]
    per_epoch = len(history) // 4
    total, warmup = 4 * per_epoch, per_epoch
    for record in history:  # "step" counts steps done, so this step used schedule step - 1
        assert record["lr"] == pytest.approx(0.01 * warmup_cosine(record["step"] - 1, warmup, total, 0.1))
    assert history[0]["lr"] < history[per_epoch - 1]["lr"] and history[-1]["lr"] < history[per_epoch]["lr"]
