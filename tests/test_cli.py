"""The `selfsup` command through a subprocess (the main paths) and its ``main`` in process (bad
input that stops before training): every kind of bad input."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from selfsup.cli import main
from selfsup.data import load_dataset
from selfsup.rundir import load_run


def selfsup(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfsup.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def selfsup_in_process(*args: str) -> subprocess.CompletedProcess:
    """The CLI's ``main`` in this process, for commands that stop with a user error before any
    training: no interpreter and torch import per call (5-8 s each). An exception that is not a
    user error escapes here as the traceback the command line would print; the subprocess tests
    above and below keep the real entry point covered."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short BYOL run from a YAML config with a --set override."""
    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "recipe.yaml"
    config.write_text(yaml.safe_dump({"method": "byol", "train": {"epochs": 2, "batch_size": 128}}))
    run = tmp / "run"
    result = selfsup("pretrain", "-c", str(config), "--set", "method.base_momentum=0.9", "-o", str(run), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "linear" in result.stdout and "random-init" in result.stdout and "raw input" in result.stdout
    return run


def test_pretrain_writes_a_complete_run_directory(run_dir: Path) -> None:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["method"]["name"] == "byol"
    assert config["method"]["params"]["base_momentum"] == 0.9  # the override
    assert config["method"]["params"]["proj_dim"] == 128  # defaults resolved
    assert config["train"]["epochs"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert set(metrics["evaluation"]["results"]) == {"pretrained", "random-init", "raw input"}
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "training.png").stat().st_size > 10_000


def test_evaluate_and_embed(run_dir: Path, tmp_path: Path) -> None:
    result = selfsup("evaluate", str(run_dir), "--probes", "knn")
    assert result.returncode == 0, result.stderr
    assert "knn" in result.stdout
    out = tmp_path / "emb.npy"
    result = selfsup("embed", str(run_dir), "digits", "-o", str(out))
    assert result.returncode == 0, result.stderr
    embeddings = np.load(out)
    assert embeddings.shape == (1797, 128) and np.isfinite(embeddings).all()
    # The rows are the run's encoder on the samples, train split first (a memory-mapped output
    # once came back all zeros, which is finite).
    _, method, _ = load_run(run_dir)
    with torch.no_grad():
        expected = method.encoder(load_dataset("digits").train.x[:8]).numpy()
    np.testing.assert_allclose(embeddings[:8], expected, rtol=1e-4, atol=1e-5)


def test_resume_a_finished_run_with_nothing_left_to_do(run_dir: Path) -> None:
    before = json.loads((run_dir / "metrics.json").read_text())["steps"]
    result = selfsup("pretrain", "--resume", str(run_dir), "--no-eval")
    assert result.returncode == 0, result.stderr
    assert "nothing to resume" in result.stderr and "--epochs" in result.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == before


def test_list() -> None:
    result = selfsup_in_process("list")
    assert result.returncode == 0
    for name in ("simclr", "byol", "barlow_twins", "vicreg", "resnet_tiny", "mlp", "digits"):
        assert name in result.stdout


def test_unknown_names(tmp_path: Path) -> None:
    assert_user_error(selfsup_in_process("pretrain", "--method", "simclrr", "-o", str(tmp_path / "a")), "Did you mean 'simclr'", "byol")
    assert_user_error(selfsup_in_process("pretrain", "--backbone", "resnet", "-o", str(tmp_path / "b")), "resnet_tiny")
    assert_user_error(selfsup_in_process("pretrain", "--data", "digts", "-o", str(tmp_path / "c")), "Did you mean 'digits'")
    assert_user_error(selfsup_in_process("pretrain", "--set", "method.temprature=0.1", "-o", str(tmp_path / "d")), "temperature")
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_bad_paths_and_files(tmp_path: Path) -> None:
    assert_user_error(selfsup_in_process("pretrain", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "r1")), "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(selfsup_in_process("pretrain", "--data", str(empty), "-o", str(tmp_path / "r2")), str(empty))
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(b"not a png at all")
    assert_user_error(selfsup_in_process("pretrain", "--data", str(images), "-o", str(tmp_path / "r3")), "broken.png", "skip")
    assert_user_error(selfsup_in_process("pretrain", "-c", str(tmp_path / "nope.yaml")), "nope.yaml")
    assert_user_error(selfsup_in_process("evaluate", str(tmp_path)), "not a selfsup run directory")
    assert_user_error(selfsup_in_process("pretrain", "--resume", str(tmp_path / "never")), "does not exist")


def test_batch_size_larger_than_data(tmp_path: Path) -> None:
    assert_user_error(selfsup_in_process("pretrain", "--batch-size", "4096", "-o", str(tmp_path / "r")), "larger than", "--batch-size")


def test_nan_in_user_arrays(tmp_path: Path) -> None:
    x = np.random.rand(64, 10).astype(np.float32)
    x[7, 3] = np.nan
    np.save(tmp_path / "x.npy", x)
    assert_user_error(selfsup_in_process("pretrain", "--data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "r")), "x.npy", "7")


def test_existing_output_is_kept(run_dir: Path) -> None:
    before = (run_dir / "metrics.json").read_text()
    assert_user_error(selfsup_in_process("pretrain", "-o", str(run_dir)), "already holds a run", "--resume")
    assert (run_dir / "metrics.json").read_text() == before


def test_a_run_with_later_outputs_is_still_a_run(run_dir: Path) -> None:
    """What scan, export and report write into a run leaves it a run: pretrain into it says to resume,
    not that the folder is foreign; a refused call leaves the folder unlocked."""
    added = [run_dir / "scan.csv", run_dir / "scan.png", run_dir / "export"]
    try:
        added[0].write_text("id,score,rank,flagged,cluster\n")
        added[1].write_bytes(b"")
        added[2].mkdir()
        for _ in range(2):  # and the refusal leaves no lock behind for the next call in the same process
            assert_user_error(selfsup_in_process("pretrain", "-o", str(run_dir)), "already holds a run", "--resume")
    finally:
        added[0].unlink(missing_ok=True)
        added[1].unlink(missing_ok=True)
        if added[2].is_dir():
            added[2].rmdir()
