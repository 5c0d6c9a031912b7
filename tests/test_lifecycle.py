"""A run's life through the `selfsup` command, as a subprocess: signals, locks, logs, damaged run
directories, output paths, config values and resume options (issue 16). Each class of problem
has its case here; the signal tests send real signals to a child process."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from selfsup import RunConfig, pretrain
from selfsup.cli import main

FAST = ["--batch-size", "128", "--no-progress", "--set", "train.monitor_samples=64"]
STEPS = 1347 // 128  # steps per epoch: digits' train split at batch 128


def selfsup(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfsup.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "selfsup.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess | tuple[int, str], code: int, *fragments: str) -> str:
    returncode, stderr = (result.returncode, result.stderr) if hasattr(result, "returncode") else result
    assert returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr
    return lines[0]


def in_process(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def log_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "logs" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def status(run: Path) -> str:
    return json.loads((run / "metrics.json").read_text())["status"]


def ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def wait_for(condition, timeout: float = 120, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the child ended early: {process.communicate()[1]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch SimCLR run on digits (no evaluation): copied by the tests that damage it."""
    run = tmp_path_factory.mktemp("life") / "run"
    config = RunConfig.from_dict({
        "train": {"epochs": 2, "batch_size": 128, "progress_bar": False, "monitor_samples": 64},
        "eval": {"after_training": False},
    })
    pretrain(config, run_dir=run)
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


# 2, 7: signals stop at a step boundary with a checkpoint; the lock keeps a second process out


def test_sigterm_then_sigint_stop_at_a_step_with_a_checkpoint_and_the_lock_keeps_others_out(tmp_path: Path) -> None:
    run = tmp_path / "run"
    child = start("pretrain", "--epochs", "500", "-o", str(run), "--no-eval", *FAST)
    last = run / "checkpoints" / "last.ckpt"
    wait_for(last.exists, process=child)
    # 7: a second process is refused while the first trains, naming it; nothing of the run changes
    busy = selfsup("pretrain", "--resume", str(run), "--no-progress")
    one_line_error(busy, 6, f"process {child.pid}", "in use")
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    one_line_error((child.returncode, stderr), 143, "SIGTERM", f"selfsup pretrain --resume {run}")
    stopped = status(run)
    assert stopped.startswith("interrupted at step"), stopped
    step = int(stopped.split()[3])
    assert ckpt_step(last) == step  # the checkpoint is of the step it stopped at, mid-epoch
    assert (run / "checkpoints" / "previous.ckpt").exists()
    rows = log_rows(run)
    assert max(int(r["step"]) for r in rows) == step - 1 and {r["session"] for r in rows} == {"1"}

    # The resume continues from that step; Ctrl-C (SIGINT) stops it the same way, exit 130.
    child = start("pretrain", "--resume", str(run), "--no-eval", "--no-progress")
    wait_for(lambda: ckpt_step(last) > step, process=child)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    one_line_error((child.returncode, stderr), 130, "SIGINT")
    second = int(status(run).split()[3])
    assert second > step and ckpt_step(last) == second
    rows = log_rows(run)  # 1: append-only: session 1's rows are all still there
    assert sorted({int(r["step"]) for r in rows if r["session"] == "1"}) == list(range(step))
    assert sorted({int(r["step"]) for r in rows if r["session"] == "2"}) == list(range(step, second))
    assert not (run / ".lock").read_text()  # released


def test_sigusr1_under_slurm_checkpoints_requeues_and_the_same_command_continues(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "pretrain"}
    run = tmp_path / "run"
    command = ["pretrain", "--epochs", "3", "-o", str(run), "--no-eval", *FAST]
    child = start(*command, env=env)
    wait_for((run / "checkpoints" / "last.ckpt").exists, process=child)
    child.send_signal(signal.SIGUSR1)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGUSR1, stderr
    assert calls.read_text().split() == ["requeue", "4242"]
    assert "requeued SLURM job 4242" in status(run)
    # The requeued job runs the same command: it continues the run to its end.
    again = selfsup(*command, env={**env, "SLURM_RESTART_COUNT": "1"})
    assert again.returncode == 0, again.stderr
    assert status(run) == "finished"
    assert {r["session"] for r in log_rows(run)} == {"1", "2"}


# 1, 6: resume options are honoured or refused; nothing a user had is lost


def test_resume_refuses_what_it_cannot_honour_and_extends_with_more_epochs(finished: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(finished, tmp_path)
    before = (run / "logs" / "metrics.csv").read_bytes()
    one_line_error(selfsup("pretrain", "--resume", str(run), "--epochs", "3", "--lr", "0.5"), 2, "--lr", "new run")
    assert "nothing to resume" in in_process(capsys, "pretrain", "--resume", str(run))[1]
    one_line_error(selfsup("pretrain", "--resume", str(run), "--epochs", "1"), 2, "only extend")
    assert (run / "logs" / "metrics.csv").read_bytes() == before  # a refused resume changes nothing
    result = selfsup("pretrain", "--resume", str(run), "--epochs", "3", "--no-eval", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "extending" in result.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3
    assert status(run) == "finished"
    rows = log_rows(run)
    assert sorted({int(r["step"]) for r in rows if r["session"] == "1"}) == list(range(2 * STEPS))  # kept, all
    assert sorted({int(r["step"]) for r in rows if r["session"] == "2"}) == list(range(2 * STEPS, 3 * STEPS))


# 3: a failed start leaves nothing, or a state the same command accepts


def test_a_failed_start_leaves_nothing_and_a_start_without_checkpoint_can_be_started_again(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "out"
    one_line_error(selfsup("pretrain", "--set", "method.temperature=0", "-o", str(run)), 2, "temperature", "> 0")
    assert not run.exists()
    one_line_error(in_process(capsys, "pretrain", "--data", str(tmp_path / "missing.npz"), "-o", str(run)), 2, "missing.npz")
    assert not run.exists()
    # A start killed before its first checkpoint: config.yaml (and a log) but no checkpoint.
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(RunConfig().to_dict()))
    (run / "logs").mkdir()
    code, err = in_process(capsys, "pretrain", "--epochs", "1", "-o", str(run), "--no-eval", *FAST)
    assert code == 0, err
    assert "starting it again" in err and status(run) == "finished"
    # --resume of such a directory trains it from the beginning with its config.yaml
    other = tmp_path / "other"
    other.mkdir()
    config = RunConfig.from_dict({"train": {"epochs": 1, "batch_size": 128, "progress_bar": False, "monitor_samples": 64}})
    (other / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    code, err = in_process(capsys, "pretrain", "--resume", str(other), "--no-eval")
    assert code == 0, err
    assert "from the beginning" in err and status(other) == "finished"
    # a folder that is not a run is never written into
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    one_line_error(in_process(capsys, "pretrain", "-o", str(foreign)), 2, "not a selfsup run")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


# 4: damaged run directories


def test_a_damaged_last_checkpoint_says_how_to_continue_from_the_previous_one(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path)
    last, previous = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "previous.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated
    line = one_line_error(selfsup("pretrain", "--resume", str(run), "--epochs", "3", "--no-eval"), 2, str(last), "damaged")
    assert f"mv {last} {last}.damaged" in line and str(previous) in line
    one_line_error(selfsup("embed", str(run), "digits", "-o", str(tmp_path / "z.npy")), 2, str(last), "damaged")
    last.rename(last.with_name("last.ckpt.damaged"))  # as the message says: the run goes on from previous.ckpt
    result = selfsup("pretrain", "--resume", str(run), "--epochs", "3", "--no-eval", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert ckpt_step(last) == 3 * STEPS
    previous.unlink()
    last.write_bytes(b"")  # zero bytes, nothing before it
    line = one_line_error(selfsup("report", str(run)), 2, str(last), "damaged")
    assert "start the run again" in line


def test_a_damaged_or_changed_config_is_one_line_naming_it(finished: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(finished, tmp_path)
    config = run / "config.yaml"
    good = config.read_text()
    config.write_bytes(b"\x00\xff\xfe binary \x00")
    for command in (["evaluate", str(run)], ["embed", str(run), "digits", "-o", str(tmp_path / "z.npy")], ["report", str(run)]):
        one_line_error(in_process(capsys, *command), 2, str(config), "damaged")
    one_line_error(selfsup("pretrain", "--resume", str(run), "--epochs", "3"), 2, str(config), "damaged")
    changed = yaml.safe_load(good)
    changed["method"]["params"]["proj_dim"] = 32  # the model no longer matches the checkpoint's weights
    config.write_text(yaml.safe_dump(changed))
    one_line_error(in_process(capsys, "embed", str(run), "digits", "-o", str(tmp_path / "z.npy")), 2, "proj_dim", "no longer matches")
    one_line_error(in_process(capsys, "pretrain", "--resume", str(run), "--epochs", "3"), 2, "proj_dim: 128 -> 32")
    for text in ("train: 5\n", "\x00\x01binary"):
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(text)
        one_line_error(in_process(capsys, "pretrain", "-c", str(recipe), "-o", str(tmp_path / "new")), 2, str(recipe))
    assert not (tmp_path / "new").exists()


def test_checkpoints_of_the_old_format_load_or_say_what_to_do(finished: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(finished, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["selfsup"]["format_version"] == 2 and checkpoint["selfsup"]["config"]["method"]["name"] == "simclr"
    del checkpoint["selfsup"]["format_version"], checkpoint["selfsup"]["config"]  # as format 1 wrote it
    torch.save(checkpoint, last)
    code, err = in_process(capsys, "embed", str(run), "digits", "-o", str(tmp_path / "z.npy"))
    assert code == 0, err  # its weights still fit: it loads
    checkpoint["state_dict"] = {k.replace("backbone.", "trunk."): v for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, last)
    one_line_error(in_process(capsys, "embed", str(run), "digits", "-o", str(tmp_path / "y.npy")), 2, "format 1", "older selfsup")


# 5: output paths; full disk


def test_output_paths_that_cannot_be_written(finished: Path, tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    one_line_error(selfsup("pretrain", "-o", str(a_file)), 2, str(a_file), "is a file")
    one_line_error(in_process(capsys, "pretrain", "-o", str(a_file / "run")), 2, "is a file")
    assert a_file.read_text() == "keep me"
    folder = tmp_path / "x.npy"
    folder.mkdir()
    one_line_error(in_process(capsys, "embed", str(finished), "digits", "-o", str(folder)), 2, "is a folder")
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "x.npy"]
    out = tmp_path / "z.npy"
    assert in_process(capsys, "embed", str(finished), "digits", "-o", str(out))[0] == 0
    np.save(out, np.zeros(3))
    one_line_error(in_process(capsys, "embed", str(finished), "digits", "-o", str(out)), 2, "already exists", "--force")
    assert np.load(out).shape == (3,)  # not overwritten
    assert in_process(capsys, "embed", str(finished), "digits", "-o", str(out), "--force")[0] == 0
    assert np.load(out).shape[0] == 1797
    one_line_error(in_process(capsys, "evaluate", str(a_file)), 2, "is a file")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        one_line_error(in_process(capsys, "pretrain", "-o", str(locked / "run")), 5, "no write permission")


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path: Path, capsys, monkeypatch) -> None:
    saves = []
    original = L.Trainer.save_checkpoint

    def save(self, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "save_checkpoint", save)
    run = tmp_path / "run"
    line = one_line_error(in_process(capsys, "pretrain", "--epochs", "3", "-o", str(run), "--no-eval", *FAST), 5, "disk is full")
    assert f"{run}/checkpoints/last.ckpt is kept" in line and "--resume" in line
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == STEPS  # epoch 1's, intact
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]  # no partial file left
    assert status(run).startswith("failed: could not write the checkpoint")


# 6: values torch would reject, or that make no sense


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--lr", "-0.1"], "lr must be > 0"),
        (["--set", "train.lr=nan"], "got nan"),
        (["--precision", "64-wrong"], "precision must be one of"),
        (["--seed", "-5"], "seed must be in [0,"),
        (["--set", "train.epochs=true"], "epochs must be a whole number"),
        (["--set", "train.weight_decay=-1"], "weight_decay must be >= 0"),
        (["--set", "train.warmup_epochs=-2"], "warmup_epochs must be >= 0"),
        (["--devices", "two"], "devices must be"),
    ],
)
def test_config_values_out_of_range(args: list[str], fragment: str, tmp_path: Path, capsys) -> None:
    one_line_error(in_process(capsys, "pretrain", *args, "-o", str(tmp_path / "run")), 2, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_the_machine_does_not_have(tmp_path: Path) -> None:
    one_line_error(selfsup("pretrain", "--accelerator", "gpu", "-o", str(tmp_path / "run")), 2, "no CUDA GPU")
    assert not (tmp_path / "run").exists()


# 8: a probe that fails after training is a warning


def test_a_probe_that_cannot_run_after_training_is_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "one_class.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.normal(size=(256, 12)).astype(np.float32), y=np.zeros(256, dtype=np.int64))
    run = tmp_path / "run"
    result = selfsup("pretrain", "--data", str(data), "--epochs", "1", "-o", str(run), *FAST)
    assert result.returncode == 0, result.stderr
    assert "warning: training finished, but the evaluation was skipped" in result.stderr
    assert status(run).startswith("finished; evaluation skipped:") and "class" in status(run)
    assert (run / "checkpoints" / "last.ckpt").exists()


def test_symlinks_that_would_read_the_data_twice_or_loop(tmp_path: Path, capsys) -> None:
    root = tmp_path / "images"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "all").symlink_to(root, target_is_directory=True)  # a class folder linking to the root
    one_line_error(in_process(capsys, "pretrain", "--data", str(root), "-o", str(tmp_path / "run")), 2, "all", "symlink")
    (root / "all").unlink()
    (root / "kitten").symlink_to(root / "cat", target_is_directory=True)  # the same images under two labels
    one_line_error(in_process(capsys, "pretrain", "--data", str(root), "-o", str(tmp_path / "run")), 2, "twice")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    one_line_error(in_process(capsys, "pretrain", "--data", str(loop), "-o", str(tmp_path / "run")), 2, "symlink loop")
    assert not (tmp_path / "run").exists()


# Exact resume: SIGKILL mid-epoch, resume, the same weights bit for bit


def test_a_run_killed_mid_epoch_and_resumed_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path: Path) -> None:
    common = ["--epochs", "3", "--no-eval", *FAST, "--set", "train.checkpoint_every_n_steps=3",
              "--set", "train.monitor_every_n_epochs=2"]
    whole = selfsup("pretrain", "-o", str(tmp_path / "whole"), *common)
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    child = start("pretrain", "-o", str(run), *common)
    last = run / "checkpoints" / "last.ckpt"

    def mid_epoch_checkpoint() -> bool:
        try:
            step = ckpt_step(last)
        except Exception:  # not there yet, or being replaced
            return False
        return step > STEPS and step % STEPS != 0

    wait_for(mid_epoch_checkpoint, process=child)
    child.kill()  # SIGKILL: nothing of the run's own shutdown runs
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    killed_at = ckpt_step(last)
    resumed = selfsup("pretrain", "--resume", str(run), "--no-eval", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == 3 * STEPS and killed_at < 3 * STEPS
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for key, value in a["optimizer_states"][0]["state"].items():
        assert all(torch.equal(v, b["optimizer_states"][0]["state"][key][n]) for n, v in value.items() if torch.is_tensor(v))
