"""Stopping a run on a signal without losing work.

SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop) ask the run to stop at the next step boundary:
every process finishes the step it is in, rank 0 writes a checkpoint of that step, and the run
ends with the status ``interrupted at step S`` in ``metrics.json`` and exit code 128 + the
signal's number (130, 143). A second SIGINT or SIGTERM stops at once (the last checkpoint kept).
Before training has started (data loading, statistics), a signal stops at once.

Under SLURM, SIGUSR1 (sent before the time limit with ``#SBATCH --signal=USR1@90``) does the
same, then requeues the job with ``scontrol requeue``; the requeued job, running the same
command, continues the run from that checkpoint. Lightning's own SLURM requeue (which saves an
``hpc_ckpt`` at an arbitrary point of the step) is switched off in favour of this.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Iterator

import lightning as L
import torch

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
if hasattr(signal, "SIGUSR1"):
    SIGNAL_NAMES[signal.SIGUSR1] = "SIGUSR1"


def under_slurm() -> bool:
    """Whether this process runs as a SLURM batch job (requeue on SIGUSR1 makes sense)."""
    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


class Stop(BaseException):
    """Raised out of a run by a stopping signal (a BaseException: no ``except Exception`` eats it).

    ``step`` is the step whose checkpoint was written at the boundary (``None``: stopped at once,
    before training started or on a second signal).
    """

    def __init__(self, signum: int, step: int | None = None) -> None:
        super().__init__(signum, step)
        self.signum = signum
        self.step = step

    @property
    def name(self) -> str:
        return SIGNAL_NAMES.get(self.signum, f"signal {self.signum}")


class StopRequests:
    """The run's signal handlers; ``signum`` is the signal that asked for a stop (or ``None``).

    While ``deferred`` (during training steps), the first signal is only recorded: the
    :class:`StopAtStepBoundary` callback acts on it. Otherwise, and on a second signal, the
    handler raises :class:`Stop` at once.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False
        self.signals = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR1] if under_slurm() else [])

    def handle(self, signum: int, frame: Any) -> None:
        if self.deferred and self.signum is None:
            self.signum = signum
            print(
                f"\nreceived {SIGNAL_NAMES.get(signum, signum)}: stopping after this step with a checkpoint "
                "(send it again to stop at once)", file=sys.stderr, flush=True,
            )
            return
        raise Stop(signum)

    def install(self) -> dict[int, Any]:
        """Set the handlers (main thread only: elsewhere Python cannot); returns the previous ones."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in self.signals:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self.handle)
        return previous

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequests"]:
        previous = self.install()
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


class StopAtStepBoundary(L.Callback):
    """Acts on a recorded stop request at the end of a training step: all ranks agree, rank 0
    writes the checkpoint of that step (``save(trainer)``), and :class:`Stop` ends the fit as
    soon as Lightning has logged the step (at the next batch's start or the epoch's end).

    The checkpoint is written in ``on_train_batch_end``, the one place mid-epoch where Lightning's
    loops restore exactly (a resume starts with the next batch). A request during the last step
    of training is acted on by the runner once the fit has ended. Lightning registers its own
    SIGTERM handler when training starts (it would end the run with exit code 0 and no
    checkpoint); this callback puts the run's handlers back at that moment. Place it first among
    the callbacks, so a stop at an epoch's end comes before the epoch-end monitors.
    """

    def __init__(self, requests: StopRequests, save: Any) -> None:
        self.requests = requests
        self.save = save
        self._stop: Stop | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.requests.install()
        self.requests.deferred = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        asked = self.requests.signum
        if trainer.world_size > 1:  # every process stops at the same step (rank 0's signal counts for all)
            flag = torch.tensor([asked or 0], device=pl_module.device)
            asked = int(trainer.strategy.reduce(flag, reduce_op="max").item()) or None
        if asked is None:
            return
        self.requests.deferred = False
        self.save(trainer)
        self._stop = Stop(asked, step=trainer.global_step)

    def _raise(self) -> None:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            raise stop

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._raise()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.requests.deferred = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.requests.deferred = False


def requeue_slurm_job() -> str:
    """``scontrol requeue`` this SLURM job; returns a one-line account of what happened."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not requeue SLURM job {job} ({error}); requeue it yourself or resume with --resume"
    if result.returncode != 0:
        return f"scontrol requeue {job} failed ({result.stderr.strip() or result.returncode}); resume with --resume"
    return f"requeued SLURM job {job}: it continues from this checkpoint when it starts again"
