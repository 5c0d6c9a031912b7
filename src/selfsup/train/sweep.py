"""Label-free model selection: run a small grid of configurations and rank them without labels.

RankMe (Garrido et al. 2023, "RankMe: Assessing the Downstream Performance of Pretrained
Self-Supervised Representations by Their Rank", arXiv 2210.02885) showed that the effective rank of
the embeddings of the pretraining data orders hyperparameters of one method almost as well as a
labeled probe does. :func:`run_sweep` makes that a workflow: every point of the grid is pretrained
in its own run directory, its embeddings of the training set scored by a label-free signal, and,
where the data has labels, probed too; the sweep then reports which run each criterion picks, the
accuracy lost by choosing without labels, and the Spearman correlation of the two rankings.

Signals (higher is better after orientation):

- ``rankme``: RankMe of the train-set embeddings (at most ``max_signal_samples`` of them, the paper
  uses 25,600).
- ``alpha_req``: α-ReQ (Agrawal et al. 2022, NeurIPS), the power-law decay exponent of the
  embedding eigenspectrum; the paper finds the best representations near α = 1, so runs are ranked
  by ``-|α - 1|``.

A sweep directory holds ``sweep.json`` (rewritten after every run), ``sweep.md``, ``sweep.png``
and one run directory per grid point under ``runs/``. Running the same sweep again skips the
finished runs and resumes an interrupted one from its checkpoint, so a crash loses at most one
epoch of one run.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from selfsup.config import RunConfig, apply_override, merge
from selfsup.core.io import write_atomic
from selfsup.errors import ConfigError, NonFiniteLossError
from selfsup.evaluate.embed import embed_source
from selfsup.evaluate.quality import alpha_req
from selfsup.evaluate.rankme import rankme
from selfsup.evaluate.results import probe_runners
from selfsup.evaluate.run import evaluate_run
from selfsup.train.runner import CHECKPOINT, pretrain, resolve_config

SIGNALS = ("rankme", "alpha_req")
SWEEP_FILE = "sweep.json"


@dataclass
class SweepRun:
    """One grid point: its overrides, where it ran, and what it scored."""

    name: str
    overrides: dict[str, Any]
    run_dir: str
    status: str = "pending"  # pending | finished | failed: <why>
    signals: dict[str, float] = field(default_factory=dict)
    accuracy: float | None = None  # the probe's test accuracy (None without labels)
    train_seconds: float | None = None


@dataclass
class SweepResult:
    """The runs of a sweep and what label-free and label-based selection chose."""

    out_dir: Path
    signal: str
    probe: str | None
    runs: list[SweepRun]

    def finished(self) -> list[SweepRun]:
        return [r for r in self.runs if r.status == "finished"]

    def score(self, run: SweepRun) -> float:
        """The label-free score of a run, oriented so that higher is better."""
        value = run.signals.get(self.signal, math.nan)
        return -abs(value - 1.0) if self.signal == "alpha_req" else value

    def chosen_without_labels(self) -> SweepRun | None:
        runs = [r for r in self.finished() if not math.isnan(self.score(r))]
        return max(runs, key=self.score) if runs else None

    def chosen_with_labels(self) -> SweepRun | None:
        runs = [r for r in self.finished() if r.accuracy is not None]
        return max(runs, key=lambda r: r.accuracy) if runs else None

    def spearman(self) -> float | None:
        """Spearman's rank correlation between the label-free score and the probe accuracy."""
        runs = [r for r in self.finished() if r.accuracy is not None and not math.isnan(self.score(r))]
        if len(runs) < 3:
            return None
        return spearman([self.score(r) for r in runs], [r.accuracy for r in runs])

    def summary(self) -> dict[str, Any]:
        label_free, labeled = self.chosen_without_labels(), self.chosen_with_labels()
        out: dict[str, Any] = {
            "signal": self.signal,
            "probe": self.probe,
            "runs": len(self.runs),
            "finished": len(self.finished()),
            "chosen_without_labels": label_free.name if label_free else None,
        }
        if labeled is not None:
            out["chosen_with_labels"] = labeled.name
            out["best_accuracy"] = labeled.accuracy
            if label_free is not None and label_free.accuracy is not None:
                out["accuracy_of_label_free_choice"] = label_free.accuracy
                out["regret"] = labeled.accuracy - label_free.accuracy
            out["spearman"] = self.spearman()
        return out


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(spearmanr(a, b).statistic)


def parse_grid(assignments: list[str]) -> dict[str, list[Any]]:
    """``["train.lr=0.001,0.003", "method.temperature=[0.1, 0.2]"]`` -> ``{key: [values]}``.

    Values are separated by commas, or given as a YAML list when a value itself holds commas
    (``backbone.widths=[[16,32],[32,64]]``); each is parsed as YAML like ``--set``.
    """
    grid: dict[str, list[Any]] = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"grid entry {assignment!r} must look like key=v1,v2 (e.g. train.lr=0.001,0.003)")
        key, raw = (part.strip() for part in assignment.split("=", 1))
        if not key:
            raise ConfigError(f"grid entry {assignment!r} has an empty key")
        if key in grid:
            raise ConfigError(f"grid key {key!r} is given twice; list all its values in one entry")
        if raw.startswith("["):
            try:
                values = yaml.safe_load(raw)
            except yaml.YAMLError as error:
                raise ConfigError(f"grid entry {assignment!r} is not a valid YAML list: {error}") from None
        else:
            values = [_yaml_value(v.strip()) for v in raw.split(",") if v.strip()]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid entry {assignment!r} has no values; give at least one, e.g. {key}=0.1,0.2")
        grid[key] = values
    if not grid:
        raise ConfigError("a sweep needs at least one --grid KEY=V1,V2 entry")
    return grid


def _yaml_value(raw: str) -> Any:
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order the keys and values were given."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _run_name(index: int, overrides: dict[str, Any]) -> str:
    parts = [f"{key.split('.')[-1]}={json.dumps(value, separators=(',', ':')).strip(chr(34))}" for key, value in overrides.items()]
    safe = "".join(c if c.isalnum() or c in "=.,-_" else "_" for c in "_".join(parts))
    return f"{index:02d}-{safe}"[:120]


def _config_for(base: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    values = json.loads(json.dumps(base))  # a deep copy of plain data
    for key, value in overrides.items():
        apply_override(values, f"{key}={json.dumps(value)}")
    return RunConfig.from_dict(values)


def _signals(embeddings: Any) -> dict[str, float]:
    return {"rankme": rankme(embeddings), "alpha_req": float(alpha_req(embeddings))}


def run_sweep(
    base: RunConfig | dict[str, Any],
    grid: dict[str, list[Any]],
    out_dir: str | Path,
    signal: str = "rankme",
    probe: str | None = "linear",
    max_signal_samples: int = 25_600,
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Pretrain every grid point, score it without labels (and with, where labels exist), rank.

    Args:
        base: the configuration every run starts from (a :class:`RunConfig` or its dict).
        grid: ``{config key: [values]}``, e.g. ``{"train.lr": [1e-3, 3e-3]}`` (see :func:`parse_grid`).
        out_dir: the sweep directory; rerunning the same sweep there resumes it.
        signal: the label-free criterion, ``"rankme"`` or ``"alpha_req"``.
        probe: the labeled probe to compare against (``"linear"``, ``"knn"``, ``"svm"``) or ``None``.
        max_signal_samples: at most this many train samples enter the label-free signal.
        log: where progress lines go.

    Returns:
        the :class:`SweepResult` (also written to ``out_dir/sweep.json``, ``sweep.md``, ``sweep.png``).

    Raises:
        ConfigError: for an unknown signal or probe, a grid key the config does not have, or an
            ``out_dir`` that holds a different sweep. Every configuration is validated before
            anything is trained.
    """

    if signal not in SIGNALS:
        raise ConfigError(f"unknown signal {signal!r}; choose from {', '.join(SIGNALS)}")
    if probe is not None and probe not in probe_runners():
        raise ConfigError(f"unknown probe {probe!r}; choose from {', '.join(probe_runners())} or none")
    base_values = base.to_dict() if isinstance(base, RunConfig) else merge(RunConfig().to_dict(), base)
    points = grid_points(grid)
    configs = []
    for overrides in points:  # fail on a bad key or value before training anything
        try:
            configs.append(resolve_config(_config_for(base_values, overrides)))
        except ConfigError as error:
            raise ConfigError(f"grid point {overrides}: {error}") from None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    identity = {"base": base_values, "grid": grid, "signal": signal, "probe": probe}
    state_path = out_dir / SWEEP_FILE
    previous: dict[str, Any] = {}
    if state_path.exists():
        stored = json.loads(state_path.read_text())
        if stored.get("identity") != json.loads(json.dumps(identity)):
            raise ConfigError(
                f"{out_dir} holds a different sweep (other base config, grid, signal or probe); "
                "choose another output directory, or delete it to start over"
            )
        previous = {r["name"]: r for r in stored.get("runs", [])}

    runs = []
    for index, overrides in enumerate(points):
        name = _run_name(index, overrides)
        old = previous.get(name)
        run = SweepRun(**old) if old else SweepRun(name, overrides, str(out_dir / "runs" / name))
        runs.append(run)
    result = SweepResult(out_dir, signal, probe, runs)

    for index, (run, config) in enumerate(zip(runs, configs)):
        if run.status == "finished":
            log(f"[{index + 1}/{len(runs)}] {run.name}: finished earlier, kept")
            continue
        log(f"[{index + 1}/{len(runs)}] {run.name}: training ({', '.join(f'{k}={v}' for k, v in run.overrides.items())})")
        _train_one(run, config, probe, max_signal_samples)
        _write_state(result, identity)
        log(f"[{index + 1}/{len(runs)}] {run.name}: {run.status}; " + _describe(run, signal))
    _write_state(result, identity)
    return result


def _train_one(run: SweepRun, config: RunConfig, probe: str | None, max_signal_samples: int) -> None:
    run_dir = Path(run.run_dir)
    resume = (run_dir / CHECKPOINT).is_file()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # started but no checkpoint yet: nothing to keep
    try:
        result = pretrain(None if resume else config, run_dir=run_dir, resume=resume, evaluate=False)
    except NonFiniteLossError as error:
        run.status = f"failed: {error}"
        return
    run.train_seconds = float(result.metrics.get("train_seconds_this_session", math.nan))
    train = result.data.train
    device = next(result.method.parameters()).device
    embeddings, _ = embed_source(result.method.encoder, train.subset(range(min(len(train), max_signal_samples))), device=device)
    run.signals = _signals(embeddings)
    if probe is not None and train.labels is not None:
        record = evaluate_run(run_dir, probes=(probe,), method=result.method, config=config, data=result.data)
        run.accuracy = float(record["evaluation"]["results"]["pretrained"][probe])
    run.status = "finished"


def _describe(run: SweepRun, signal: str) -> str:
    parts = [f"{signal} {run.signals[signal]:.3g}"] if signal in run.signals else []
    if run.accuracy is not None:
        parts.append(f"accuracy {100 * run.accuracy:.1f}%")
    return ", ".join(parts)


def _write_state(result: SweepResult, identity: dict[str, Any]) -> None:
    state = {"identity": identity, "summary": result.summary(), "runs": [asdict(r) for r in result.runs]}
    write_atomic(result.out_dir / SWEEP_FILE, json.dumps(state, indent=2, default=_json_default))
    write_atomic(result.out_dir / "sweep.md", sweep_table(result))
    if result.finished():
        write_sweep_plot(result)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def sweep_table(result: SweepResult) -> str:
    """The runs as a Markdown table, best label-free score first, then the selection summary."""
    keys = list(dict.fromkeys(k for r in result.runs for k in r.overrides))
    has_acc = any(r.accuracy is not None for r in result.runs)
    label_free, labeled = result.chosen_without_labels(), result.chosen_with_labels()
    order = sorted(result.runs, key=lambda r: (r.status != "finished", -_nan_low(result.score(r))))
    header = ["run", *keys, "RankMe", "α-ReQ", *([f"{result.probe} %"] if has_acc else []), "chosen by", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in order:
        chosen = [n for n, c in (("label-free", label_free), ("labels", labeled)) if c is r]
        cells = [
            r.name,
            *(json.dumps(r.overrides.get(k)) for k in keys),
            _num(r.signals.get("rankme"), "{:.1f}"),
            _num(r.signals.get("alpha_req"), "{:.2f}"),
            *([_num(None if r.accuracy is None else 100 * r.accuracy, "{:.1f}")] if has_acc else []),
            " + ".join(chosen) or "",
            r.status if len(r.status) < 60 else r.status[:57] + "...",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    summary = result.summary()
    text = [f"# Sweep: label-free selection by {result.signal}", "", *lines, ""]
    if label_free is not None:
        text.append(f"- Chosen without labels ({result.signal}): **{label_free.name}**")
    if labeled is not None:
        text.append(f"- Chosen with labels ({result.probe} probe, test accuracy): **{labeled.name}** ({100 * labeled.accuracy:.1f}%)")
        if "regret" in summary:
            text.append(
                f"- Accuracy of the label-free choice: {100 * summary['accuracy_of_label_free_choice']:.1f}% "
                f"(regret {100 * summary['regret']:.1f} points)"
            )
        rho = summary.get("spearman")
        text.append(
            "- Spearman correlation of the two rankings: "
            + ("n/a (fewer than 3 finished runs, or a constant column)" if rho is None or math.isnan(rho) else f"{rho:.2f}")
        )
        text.append(
            "- The label-based column uses the test split, so it is an oracle for comparison: "
            "choose with the label-free signal, report with the probe."
        )
    return "\n".join(text) + "\n"


def _nan_low(value: float) -> float:
    return -math.inf if value is None or math.isnan(value) else value


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def write_sweep_plot(result: SweepResult) -> Path:
    """``sweep.png``: label-free score against probe accuracy per run (or the scores alone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result.finished() if result.signal in r.signals]
    path = result.out_dir / "sweep.png"
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    label = {"rankme": "RankMe (train embeddings)", "alpha_req": "α-ReQ exponent"}[result.signal]
    if any(r.accuracy is not None for r in runs):
        xs = [r.signals[result.signal] for r in runs if r.accuracy is not None]
        ys = [100 * r.accuracy for r in runs if r.accuracy is not None]
        ax.scatter(xs, ys, s=36, color="#1f77b4")
        for r, x, y in zip([r for r in runs if r.accuracy is not None], xs, ys):
            ax.annotate(r.name.split("-", 1)[0], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
        chosen = result.chosen_without_labels()
        if chosen is not None and chosen.accuracy is not None:
            ax.scatter([chosen.signals[result.signal]], [100 * chosen.accuracy], s=140, facecolors="none",
                       edgecolors="#d62728", linewidths=2, label=f"chosen by {result.signal}")
            ax.legend(loc="lower right", fontsize=8)
        rho = result.spearman()
        ax.set_ylabel(f"{result.probe} probe test accuracy (%)")
        ax.set_title(f"Label-free selection: {result.signal} vs accuracy"
                     + ("" if rho is None or math.isnan(rho) else f" (Spearman {rho:.2f})"), fontsize=10)
        ax.set_xlabel(label)
    else:
        names = [r.name.split("-", 1)[0] for r in runs]
        ax.bar(names, [r.signals[result.signal] for r in runs], color="#1f77b4")
        ax.set_xlabel("run")
        ax.set_ylabel(label)
        ax.set_title(f"Label-free score per run ({result.signal})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp))
    finally:
        plt.close(fig)
    return path
