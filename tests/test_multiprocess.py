"""Multi-process training through the command line (issue 11): `--devices 2` (Lightning launches
the second process) and `torchrun --nproc_per_node 2` each make one run, one evaluation, with the
global batch split over the processes and the schedules of one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from selfsup.core.schedules import warmup_cosine

STEPS = 1347 // 128  # steps per epoch: digits' train split, global batch 128
COMMON = ["pretrain", "--epochs", "2", "--batch-size", "128", "--no-progress", "--set", "train.monitor_samples=64",
          "--set", "eval.probes=[knn]"]
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def check_one_run(result: subprocess.CompletedProcess, run: Path) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("evaluation on digits") == 1 and result.stdout.count("run directory:") == 1
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]  # one run directory
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["steps"] == 2 * STEPS  # global batches, not per process
    # The learning rate at every step is the 1-process schedule's (warm-up capped at half the run).
    total, warmup = 2 * STEPS, STEPS
    expected = [2e-3 * warmup_cosine(s, warmup, total, 0.01) for s in range(total)]
    assert [h["lr"] for h in metrics["history"]] == pytest.approx(expected, rel=1e-6)
    steps = [int(line.split(",")[1]) for line in (run / "logs" / "metrics.csv").read_text().splitlines()[1:]]
    assert sorted(set(steps)) == list(range(total))  # one writer


def test_devices_2_trains_one_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "out" / "run"
    check_one_run(run([sys.executable, "-m", "selfsup.cli", *COMMON, "--accelerator", "cpu", "--devices", "2",
                       "-o", str(run_dir)]), run_dir)


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_trains_one_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "out" / "run"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    check_one_run(run([torchrun, "--nproc_per_node", "2", "-m", "selfsup.cli", *COMMON, "-o", str(run_dir)]), run_dir)


def test_a_global_batch_the_processes_do_not_divide_is_one_line(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "selfsup.cli", "pretrain", "--batch-size", "127", "--accelerator", "cpu",
                  "--devices", "2", "-o", str(tmp_path / "run")])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "--batch-size 126" in result.stderr
    assert not (tmp_path / "run").exists()


def test_sigterm_stops_both_processes_at_the_same_step_with_one_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "selfsup.cli", *COMMON, "--epochs", "500", "--accelerator", "cpu", "--devices", "2",
         "--no-eval", "-o", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)  # to rank 0 only: it tells rank 1 at the next step
    _, stderr = child.communicate(timeout=300)
    assert child.returncode == 143, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "SIGTERM" in lines[0], stderr  # said once, by rank 0
    status = json.loads((run_dir / "metrics.json").read_text())["status"]
    step = int(status.split()[3])
    assert torch.load(last, weights_only=True)["global_step"] == step
