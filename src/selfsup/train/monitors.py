"""The collapse alarm: reads the :class:`EmbeddingMonitor`'s records and says when a run collapses.

Two failures of joint-embedding methods, told apart by two monitors:

- **complete collapse**: every input is mapped to (nearly) the same embedding, so the
  per-dimension std of the L2-normalised embeddings goes to 0 (Chen & He 2021, arXiv 2011.10566,
  sec. 4.1, fig. 2: SimSiam without its stop-gradient). Tripped when ``embedding_std * sqrt(D)``,
  which is about 1 for embeddings spread over the sphere, falls below ``std_threshold`` *and*
  ``embedding_std`` has fallen below ``INITIAL_FRACTION`` of its value as training started.
  The second condition spares encoders that start low: mean-pooled ViT tokens share a large
  common component (LayerNorm, position embeddings), so a healthy ViT sits near 5% from its
  random init on; a collapse drives the std towards 0 whatever the start.
- **dimensional collapse**: the embeddings vary, but only along a few directions (Jing, Vincent,
  LeCun & Tian 2022, "Understanding Dimensional Collapse in Contrastive Self-supervised Learning",
  arXiv 2110.09348). Tripped when RankMe (Garrido et al. 2023, arXiv 2210.02885) falls below
  ``rank_fraction * min(N, D)``.

The alarm warns once (a :class:`CollapseWarning` plus a printed explanation of what it means and
what to try), records what it saw for ``metrics.json``, and, with ``stop=True``, stops the run at
the end of that epoch; the checkpoint of that epoch is still written.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

import lightning as L

from selfsup.errors import ConfigError
from selfsup.train.callbacks import EmbeddingMonitor


class CollapseWarning(UserWarning):
    """The representation collapsed during training (see :class:`CollapseAlarm`)."""


ADVICE = """What to try:
  - a lower learning rate (--lr) or a longer warm-up (--set train.warmup_epochs=10);
  - contrastive methods (SimCLR, MoCo, ...): a larger temperature (--set method.temperature=0.2), a larger batch;
  - BYOL / SimSiam / DINO-style methods: keep the stop-gradient and the predictor (SimSiam's
    method.stop_gradient must stay true), a higher EMA momentum for the teacher;
  - VICReg / Barlow Twins: larger variance / redundancy-reduction weights;
  - stronger or more varied augmentations (views.*), so the two views of a sample differ more.
See docs/monitoring.md for how to read the monitors."""


# Complete collapse also needs the std to have fallen below this fraction of its starting value.
INITIAL_FRACTION = 0.25


def detect_collapse(
    record: dict[str, Any], rank_fraction: float, std_threshold: float, initial_std: float | None = None,
) -> str | None:
    """``"complete"``, ``"dimensional"`` or ``None`` for one :class:`EmbeddingMonitor` record.

    Args:
        record: needs ``rankme``, ``embedding_std``, ``embed_dim`` (D) and ``num_samples`` (N).
        rank_fraction: dimensional collapse when ``rankme < rank_fraction * min(N, D)`` (0: off).
        std_threshold: complete collapse when ``embedding_std * sqrt(D) < std_threshold`` (0: off)
            and, when ``initial_std`` (the encoder's ``embedding_std`` as training started) is
            known, ``embedding_std < INITIAL_FRACTION * initial_std``.

    Complete collapse is reported first: it also drives RankMe to about 1.
    """
    check_thresholds(rank_fraction, std_threshold)
    dim, count = int(record["embed_dim"]), int(record["num_samples"])
    fell = initial_std is None or record["embedding_std"] < INITIAL_FRACTION * initial_std
    if record["embedding_std"] * math.sqrt(dim) < std_threshold and fell:
        return "complete"
    if record["rankme"] < rank_fraction * min(dim, count):
        return "dimensional"
    return None


def check_thresholds(rank_fraction: float, std_threshold: float) -> None:
    """Raise :class:`ConfigError` unless both thresholds are in ``[0, 1]``."""
    if not 0.0 <= rank_fraction <= 1.0:
        raise ConfigError(
            f"train.collapse_rank_fraction must be in [0, 1] (a fraction of the embedding size; 0 turns the "
            f"dimensional-collapse check off), got {rank_fraction}"
        )
    if not 0.0 <= std_threshold <= 1.0:
        raise ConfigError(
            f"train.collapse_std_threshold must be in [0, 1] (a fraction of the std of embeddings spread over "
            f"the sphere, 1/sqrt(D); 0 turns the complete-collapse check off), got {std_threshold}"
        )


def describe(kind: str, record: dict[str, Any], rank_fraction: float, std_threshold: float) -> str:
    """What was seen, in words, for the alarm's message."""
    dim, count = int(record["embed_dim"]), int(record["num_samples"])
    if kind == "complete":
        relative = record["embedding_std"] * math.sqrt(dim)
        return (
            f"complete collapse: the per-dimension std of the L2-normalised embeddings is "
            f"{record['embedding_std']:.3g}, {relative:.1%} of the 1/sqrt(D) = {1 / math.sqrt(dim):.3g} of embeddings "
            f"spread over the sphere (alarm below {std_threshold:.0%}). The encoder maps every input to nearly "
            f"the same point, so its embeddings say almost nothing about the input."
        )
    return (
        f"dimensional collapse: RankMe is {record['rankme']:.2f}, below {rank_fraction:.1%} of min(N, D) = "
        f"{min(dim, count)} (= {rank_fraction * min(dim, count):.2f}). The embeddings vary along only a few of "
        f"their {dim} dimensions, so most of the representation is wasted."
    )


class CollapseAlarm(L.Callback):
    """Warns once when ``monitor``'s latest record shows a collapse; optionally stops the run.

    Place it after ``monitor`` in the callback list (it reads the record ``monitor`` has just
    written at the same epoch end).

    Args:
        monitor: the run's :class:`EmbeddingMonitor`.
        rank_fraction: dimensional-collapse threshold, a fraction of ``min(N, D)`` (0: off).
        std_threshold: complete-collapse threshold on ``embedding_std * sqrt(D)`` (0: off).
        stop: end the run at the end of the epoch the collapse is seen.
    """

    def __init__(
        self, monitor: EmbeddingMonitor, rank_fraction: float = 0.01, std_threshold: float = 0.05, stop: bool = False
    ) -> None:
        check_thresholds(rank_fraction, std_threshold)
        self.monitor = monitor
        self.rank_fraction = rank_fraction
        self.std_threshold = std_threshold
        self.stop = stop
        self.detection: dict[str, Any] | None = None  # kept in checkpoints: a resumed run warns no more
        self.stopped_run = False  # whether this alarm stopped the run in this session

    def report(self) -> dict[str, Any]:
        """The alarm's entry of ``metrics.json``: whether, when and how the run collapsed."""
        settings = {
            "rank_fraction": self.rank_fraction,
            "std_threshold": self.std_threshold,
            "initial_embedding_std": self.monitor.initial_std,
            "stop_on_collapse": self.stop,
        }
        if self.detection is None:
            return {"detected": False, **settings}
        return {"detected": True, **self.detection, **settings}

    def state_dict(self) -> dict[str, Any]:
        return {"detection": self.detection}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.detection = state_dict.get("detection")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        records = self.monitor.records
        if self.detection is not None or not records or records[-1]["epoch"] != epoch:
            return
        record = records[-1]
        kind = detect_collapse(record, self.rank_fraction, self.std_threshold, self.monitor.initial_std)
        # Every rank computes the same record; agree anyway, so all ranks stop together.
        collapsed = trainer.strategy.reduce_boolean_decision(kind is not None, all=False)
        if not collapsed:
            return
        kind = kind or "dimensional"
        stopping = self.stop
        what = describe(kind, record, self.rank_fraction, self.std_threshold)
        self.detection = {
            "kind": kind,
            "epoch": epoch,
            "step": int(record["step"]),
            "rankme": record["rankme"],
            "embedding_std": record["embedding_std"],
            "stopped": stopping,
            "message": what,
        }
        if stopping:
            trainer.should_stop = True
            self.stopped_run = True
        if trainer.is_global_zero:
            then = (
                "Stopping the run (train.stop_on_collapse); this epoch's checkpoint is kept."
                if stopping
                else "Training goes on; pass --stop-on-collapse (train.stop_on_collapse) to stop at a collapse."
            )
            header = f"Representation collapse at epoch {epoch} (step {record['step']})"
            print(f"\n{header}: {what}\n{then}\n{ADVICE}\n", file=sys.stderr)
            warnings.warn(
                f"representation collapse ({kind}) detected at epoch {epoch}; see metrics.json 'collapse' "
                "and docs/monitoring.md",
                CollapseWarning,
                stacklevel=1,
            )
