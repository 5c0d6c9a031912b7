"""Speed options of a run: train.compile, train.strategy (FSDP), train.log_every_n_steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from selfsup.config import RunConfig, TrainConfig
from selfsup.errors import ConfigError
from selfsup.train import runner
from selfsup.train.runner import pretrain


def _config(**train) -> RunConfig:
    config = RunConfig()
    config.backbone = "mlp"
    config.backbone.params = {"hidden_dims": [32, 32]}
    config.train = TrainConfig(
        epochs=1, batch_size=128, progress_bar=False, monitor_samples=64, accelerator="cpu", **train
    )
    return config


@pytest.mark.skipif(runner._cpp_compiler() is None, reason="no C++ compiler for torch.compile on CPU")
def test_compiled_backbone_trains_like_the_eager_one(tmp_path: Path) -> None:
    eager = pretrain(_config(max_steps=3), run_dir=tmp_path / "eager", evaluate=False)
    compiled = pretrain(_config(max_steps=3, compile=True), run_dir=tmp_path / "compiled", evaluate=False)
    backbone = compiled.method.encoder.backbone
    assert backbone._compiled_call_impl is not None  # nn.Module.compile, in place
    assert compiled.method.state_dict().keys() == eager.method.state_dict().keys()  # checkpoints unchanged
    losses = [[s["loss"] for s in r.metrics["history"]] for r in (eager, compiled)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)  # fused kernels round differently


def test_compile_without_a_cpp_compiler_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"C\+\+ compiler.*apt-get install g\+\+") as error:
        pretrain(_config(compile=True), run_dir=tmp_path / "run")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_fsdp_without_gpus_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.strategy=fsdp.*GPUs.*train.strategy=auto"):
        pretrain(_config(strategy="fsdp"), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="strategy.*fsdp"):
        RunConfig.from_dict({"train": {"strategy": "deepspeed"}})


def test_logging_every_n_steps_thins_the_csv_not_the_history(tmp_path: Path) -> None:
    result = pretrain(_config(max_steps=6, log_every_n_steps=3), run_dir=tmp_path / "run", evaluate=False)
    rows = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    logged = sorted({int(r.split(",")[header.index("step")]) for r in rows[1:]})
    assert logged == [2, 5]  # Lightning logs at steps (index) 2 and 5 of 0..5
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]) == 6
    assert result.metrics["steps"] == 6


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP is exercised on 2 GPUs")
def test_fsdp_on_two_gpus_trains_a_vit_and_evaluates(tmp_path: Path) -> None:  # pragma: no cover - GPU machines
    config = _config(max_steps=4, strategy="fsdp", devices=2)
    config.train.accelerator = "gpu"
    config.backbone = "vit_tiny"
    config.backbone.params = {"patch_size": 2}
    result = pretrain(config, run_dir=tmp_path / "run")
    assert result.metrics["steps"] == 4 and "evaluation" in result.metrics
