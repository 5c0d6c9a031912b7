"""A run's report: one self-contained HTML page (``report.html``) and its figures as PNG files.

The page shows, for a run directory:

- the run's key settings (method, backbone, data, epochs, batch, learning rate, seed, time),
- training curves: the loss per step (raw and smoothed) and the learning rate,
- the label-free monitors over time (every numeric series in ``metrics.json``'s monitor records,
  e.g. RankMe and the embedding std) and any collapse alarm,
- the singular-value spectrum of the embeddings, pretrained beside a random-init encoder,
- a 2-D map of the embeddings (UMAP when installed, else t-SNE, else PCA), coloured by label,
- the evaluation table (pretrained, random-init, raw input; gradient-boosted trees on flat vectors)
  when the run has been evaluated,
- when ``selfsup scan`` has written ``scan.csv``: the histogram of the poisoning scores and the
  grid of the top-ranked images (``scan.png``).

Images are inlined as base64 PNG; the page loads nothing from anywhere else. The same figures are
written to ``RUN_DIR/report/*.png``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.core.io import write_atomic
from selfsup.core.schedules import warmup_cosine
from selfsup.data import load_dataset
from selfsup.data.loader import materialize
from selfsup.evaluate.embed import embed_in_batches
from selfsup.evaluate.rankme import rankme, singular_values
from selfsup.evaluate.results import _format_cell as format_cell
from selfsup.evaluate.risk import COLUMNS as RISK_COLUMNS
from selfsup.evaluate.run import evaluation_groups, random_init_method
from selfsup.evaluate.scan import GRID_SUFFIX, SCAN_FILE, read_scan
from selfsup.evaluate.trees import TREES_ROW
from selfsup.rundir import FIGURES_DIR, REPORT_FILE, check_same_shape, load_run, read_metrics

MAX_MAP_POINTS = 2000

# Monitor keys a person reads better with a name and a hint. Keys not listed here are shown with
# their own name (underscores as spaces), so new monitors appear without touching this file.
MONITOR_TITLES: dict[str, tuple[str, str]] = {
    "rankme": ("RankMe (effective rank)", "higher = more dimensions used; near 1 = collapsed"),
    "embedding_std": (
        "Embedding std (L2-normalised)", "mean over dimensions; dashed line: 1/√D, fully spread; near 0 = collapsed"
    ),
    "embedding_std_min": ("Embedding std (min over dims)", "near 0 = some dimension is constant (dead)"),
    "alpha_req": ("α-ReQ (eigenspectrum decay)", "power-law exponent of the spectrum; around 1 is typical of good features"),
    "alignment": ("Alignment", "mean distance between the two views' embeddings; lower = views agree"),
    "uniformity": ("Uniformity", "log of the mean Gaussian potential; lower = more evenly spread"),
    "knn_acc": ("Online kNN accuracy", "a kNN probe on the monitored subset (labels measure, never train)"),
    "linear_acc": ("Online linear accuracy", "a linear probe on the monitored subset (labels measure, never train)"),
}
MONITOR_TITLES["alpha"] = MONITOR_TITLES["alpha_req"]
ACCURACY_HINTS = ("acc", "knn", "linear")
SKIP_KEYS = {"epoch", "step", "time", "seconds", "embed_dim", "num_samples"}  # not signals


@dataclass
class Figure:
    """One figure of the report: its file name, title, caption (HTML) and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def write_report(run_dir: str | Path, data_spec: str | None = None, max_points: int = MAX_MAP_POINTS) -> Path:
    """Write ``RUN_DIR/report.html`` (self-contained) and ``RUN_DIR/report/*.png``.

    Args:
        run_dir: a run directory made by ``selfsup pretrain``.
        data_spec: embed this data for the spectrum and the map instead of the run's own (same
            sample shape).
        max_points: at most this many samples in the 2-D map and the spectrum (a seeded random
            subset).

    Returns:
        the path of ``report.html``.
    """
    run_dir = Path(run_dir)
    config, method, _ = load_run(run_dir)  # clear errors for a missing or incomplete run directory
    metrics = read_metrics(run_dir)
    data = load_dataset(
        data_spec or config.data.name, skip_bad_files=config.skip_bad_files, options=config.data.params,
        reference=method.encoder.data_info,
    )
    check_same_shape(method, data.train, "report")

    x, labels = sample_for_plots(data, max_points, config.train.seed)
    class_names = data.train.class_names

    encoders = {"pretrained": method.encoder, "random-init": random_init_method(config, method).encoder}
    embeddings = {name: embed_in_batches(encoder, x).numpy() for name, encoder in encoders.items()}
    spectra = {name: singular_values(torch.from_numpy(z)) for name, z in embeddings.items()}
    ranks = {name: rankme(torch.from_numpy(z)) for name, z in embeddings.items()}

    figures = [
        training_figure(metrics, config, run_dir),
        monitors_figure(metrics, method.encoder.embed_dim),
        spectrum_figure(spectra, ranks, len(x)),
        map_figure(embeddings, labels, class_names, config.train.seed),
        *scan_figures(run_dir),
    ]
    figures_dir = run_dir / FIGURES_DIR
    figures_dir.mkdir(exist_ok=True)
    for figure in figures:
        if figure.png:
            write_atomic(figures_dir / f"{figure.name}.png", figure.png)
    page = render_html(run_dir, config, metrics, figures, data.train.name, labels is not None)
    path = run_dir / REPORT_FILE
    write_atomic(path, page.encode("utf-8"))
    return path


def sample_for_plots(data: Any, max_points: int, seed: int) -> tuple[torch.Tensor, np.ndarray | None]:
    """A seeded random subset of train + test, at most ``max_points``: ``(x [M, ...], labels [M] or None)``."""
    parts = [data.train] + ([data.test] if data.test is not None else [])
    sizes = [len(part) for part in parts]
    pick = torch.randperm(sum(sizes), generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
    xs, ys, start = [], [], 0
    for part, size in zip(parts, sizes):
        local = pick[(pick >= start) & (pick < start + size)] - start
        if len(local):  # read only the picked samples, in batches
            xs.append(materialize(part.subset(local))["x"])
            ys.append(None if part.labels is None else part.labels[local])
        start += size
    labels = None if any(y is None for y in ys) else torch.cat(ys).numpy()
    return torch.cat(xs), labels


# ---------------------------------------------------------------------------------------------
# Reading metrics.json


def monitor_series(records: list[dict[str, Any]]) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The numeric series in the monitor records: ``(x label, {key: (x, values)})``.

    ``x`` is the epoch where the records have one (else the step). Nested dicts are flattened
    (``{"online": {"knn": 0.9}}`` -> ``"online.knn"``); booleans and strings are not series.
    """
    axis = "epoch" if any("epoch" in r for r in records) else "step"
    points: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        where = record.get(axis)
        if not _is_number(where):
            continue
        for key, value in _flatten(record).items():
            if key in SKIP_KEYS or not _is_number(value):
                continue
            points.setdefault(key, []).append((float(where), float(value)))
    series = {k: (np.array([p[0] for p in v]), np.array([p[1] for p in v])) for k, v in points.items()}
    return axis, {k: v for k, v in series.items() if np.isfinite(v[1]).any()}


def collapse_alarms(metrics: dict[str, Any]) -> list[tuple[list[float], str]]:
    """Every collapse alarm recorded in ``metrics``: ``[(epochs, message)]``, one per distinct message.

    Looks for keys naming a collapse or an alarm at the top level and in the monitor records;
    false, empty or ``None`` values are no alarm; numeric values are series, not alarms. A flag
    repeated over several monitored epochs is one alarm with all its epochs.
    """
    alarms: dict[str, list[float]] = {}

    def add(value: Any, key: str, epoch: Any = None) -> None:
        if value is None or value is False or _is_number(value) or (isinstance(value, (list, dict, str)) and not value):
            return
        if isinstance(value, list):
            for item in value:
                add(item, key, epoch)
            return
        if isinstance(value, dict):
            flags = [value.get(flag) for flag in ("detected", "alarm", "collapsed", "triggered", "active")]
            if False in flags:
                return
            if True not in flags and not any(k in value for k in ("message", "reason", "kind", "epoch")):
                return  # settings or counters, not an alarm
            epoch = value.get("epoch", epoch)
            message = value.get("message") or value.get("reason") or ", ".join(
                f"{k.replace('_', ' ')}: {_short(v)}" for k, v in value.items() if k != "epoch"
            )
        else:
            message = f"collapse flagged ({key})" if value is True else str(value)
        epochs = alarms.setdefault(str(message), [])
        if _is_number(epoch):
            epochs.append(float(epoch))

    for key, value in metrics.items():
        if _names_alarm(key):
            add(value, key)
    for record in metrics.get("monitors", []) or []:
        for key, value in record.items():
            if _names_alarm(key):
                add(value, key, record.get("epoch"))
    return [(sorted(set(epochs)), message) for message, epochs in alarms.items()]


def _alarm_text(epochs: list[float], message: str) -> str:
    if not epochs:
        return message
    if len(epochs) == 1:
        return f"epoch {_short(epochs[0])}: {message}"
    return f"epochs {_short(epochs[0])}–{_short(epochs[-1])} ({len(epochs)} monitored epochs): {message}"


def learning_rate(metrics: dict[str, Any], config: Any, run_dir: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """``(steps, lr, where from)``: the logged learning rate, else the schedule in config.yaml."""
    history = metrics.get("history") or []
    logged = [(h["step"], h["lr"]) for h in history if _is_number(h.get("lr"))]
    if logged:
        return np.array([s for s, _ in logged]), np.array([v for _, v in logged]), "logged"
    log = run_dir / "logs" / "metrics.csv"
    if log.is_file():
        with log.open(newline="") as f:
            rows = list(csv.DictReader(f))
        column = next((c for c in (rows[0] if rows else {}) if c == "lr" or c.startswith("lr-")), None)
        if column is not None:
            pairs = [(float(r["step"]), float(r[column])) for r in rows if r.get(column) and r.get("step")]
            if pairs:
                return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), "logged"
    # Not logged: the schedule the trainer follows (linear warm-up, then cosine), from the config.
    steps, epochs = metrics.get("steps"), metrics.get("epochs_done")
    if not (_is_number(steps) and _is_number(epochs)) or not steps or not epochs:
        return None
    train = config.train
    per_epoch = max(1, round(steps / epochs))
    total = per_epoch * train.epochs
    warmup = min(train.warmup_epochs * per_epoch, total // 2)
    x = np.arange(int(steps))
    lr = np.array([train.lr * warmup_cosine(int(s), warmup, total, train.min_lr_ratio) for s in x])
    return x + 1, lr, "schedule"


# ---------------------------------------------------------------------------------------------
# Figures


def training_figure(metrics: dict[str, Any], config: Any, run_dir: Path) -> Figure:
    """Loss per step (raw and smoothed) and the learning rate."""
    plt = _pyplot()
    history = [h for h in metrics.get("history") or [] if _is_number(h.get("loss"))]
    lr = learning_rate(metrics, config, run_dir)
    if not history:
        return Figure("training_curves", "Training curves", _NO_HISTORY, b"")
    steps = np.array([h["step"] for h in history], dtype=float)
    loss = np.array([h["loss"] for h in history], dtype=float)
    with _style():
        fig, axes = plt.subplots(
            1, 2 if lr else 1, figsize=(11, 3.6), width_ratios=[2, 1] if lr else None, squeeze=False
        )
        ax = axes[0, 0]
        ax.plot(steps, loss, color="0.72", lw=0.9, label="per step")
        window = max(1, len(loss) // 25)
        if window > 1:
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, color="C0", lw=2, label=f"mean of {window} steps")
        ax.set(xlabel="optimizer step", ylabel="loss")
        ax.legend(loc="upper right")
        # The top axis counts epochs; the title goes above its labels.
        has_epochs = _epoch_axis(ax, metrics)
        ax.set_title(f"Training loss ({metrics.get('method', config.method.name)})", pad=20 if has_epochs else 6)
        if lr:
            ax = axes[0, 1]
            # Scaled by a power of ten named in the label (an offset text would collide with the top axis).
            peak = float(np.nanmax(lr[1])) if np.isfinite(lr[1]).any() else 0.0
            exponent = math.floor(math.log10(peak)) if peak > 0 else 0
            exponent = exponent if exponent <= -2 or exponent >= 3 else 0
            ax.plot(lr[0], lr[1] / 10.0**exponent, color="C1", lw=2)
            source = "logged" if lr[2] == "logged" else "as scheduled"
            unit = rf" ($\times 10^{{{exponent}}}$)" if exponent else ""
            ax.set(xlabel="optimizer step", ylabel=f"learning rate{unit}")
            _epoch_axis(ax, metrics)
            ax.set_title(f"Learning rate ({source})", pad=20 if has_epochs else 6)
            ax.set_ylim(bottom=0)
        fig.tight_layout()
        png = _png(fig)
    caption = (
        "Left: the self-supervised loss at every optimizer step (grey) and its moving average (blue); "
        "the top axis counts epochs. It should fall quickly, then flatten. A loss that drops to a "
        "constant early can mean collapse; check the monitors below. Its value is not comparable "
        "across methods. Right: the learning rate (linear warm-up, then cosine decay)"
        + ("." if lr is None or lr[2] == "logged" else ", computed from the schedule in config.yaml (it is not logged).")
    )
    if not lr:
        caption = caption.split(" Right:", 1)[0]
    return Figure("training_curves", "Training curves", caption, png)


def monitors_figure(metrics: dict[str, Any], embed_dim: int) -> Figure:
    """One small panel per numeric monitor series, collapse alarms marked in red."""
    plt = _pyplot()
    axis, series = monitor_series(metrics.get("monitors") or [])
    alarms = collapse_alarms(metrics)
    alarm_epochs = [e for epochs, _ in alarms for e in epochs]
    first_alarm = min(alarm_epochs) if alarm_epochs and axis == "epoch" else None
    if not series:
        return Figure("monitors", "Monitors over training", "No monitor records in metrics.json.", b"")
    titles = {key: monitor_title(key)[0] for key in series}
    shared = [t for t in titles.values() if list(titles.values()).count(t) > 1]
    titles = {k: f"{t} ({k})" if t in shared else t for k, t in titles.items()}  # two keys, one title: name them
    columns = min(3, len(series))
    rows = math.ceil(len(series) / columns)
    with _style():
        fig, axes = plt.subplots(rows, columns, figsize=(11, (3.0 if columns == 3 else 3.4) * rows), squeeze=False)
        for ax, (key, (x, y)) in zip(axes.flat, series.items()):
            title = titles[key]
            percent = _is_accuracy(key, y)
            ax.plot(x, 100 * y if percent else y, "o-", ms=3.5, lw=1.6, color="C2")
            ax.set(title=title, xlabel=axis, ylabel="accuracy (%)" if percent else title.split(" (")[0])
            if key in ("embedding_std", "embedding_std_min") and embed_dim:
                spread = 1 / math.sqrt(embed_dim)
                ax.axhline(spread, color="0.4", ls="--", lw=1)
                ax.annotate("1/√D", (0.01, spread), xycoords=("axes fraction", "data"), xytext=(0, 3),
                            textcoords="offset points", color="0.35", fontsize=9)
                ax.set_ylim(bottom=0, top=max(float(np.nanmax(y)), spread) * 1.15)
            elif key == "rankme" or percent:
                ax.set_ylim(bottom=0, top=float(np.nanmax(100 * y if percent else y)) * 1.1 or None)
            if first_alarm is not None:
                ax.axvspan(first_alarm, max(float(x.max()), first_alarm), color="#c62828", alpha=0.08, lw=0)
                ax.axvline(first_alarm, color="#c62828", lw=1.5, ls=":")
        for ax in list(axes.flat)[len(series) :]:
            ax.set_visible(False)
        fig.tight_layout()
        png = _png(fig)
    hints = "".join(f"<li><b>{html.escape(titles[k])}</b>: {html.escape(monitor_title(k)[1])}</li>" for k in series)
    alarm_text = (
        "The red band starts at the first collapse alarm (see the top of the page)."
        if first_alarm is not None
        else "A collapse alarm was recorded (see the top of the page)."
        if alarms
        else "No collapse alarm was recorded."
    )
    caption = (
        f"Signals measured during training on a fixed subset of the training data, per monitored {axis}. "
        f"{alarm_text}<ul>{hints}</ul>"
    )
    return Figure("monitors", "Monitors over training", caption, png)


def scan_figures(run_dir: Path) -> list[Figure]:
    """The scan's figures when ``RUN_DIR/scan.csv`` exists: the histogram of the scores (flagged
    samples in red) and the grid of the top-ranked images from ``scan.png``; none otherwise."""
    path = run_dir / SCAN_FILE
    if not path.is_file():
        return []
    scan = read_scan(path)
    scores, flagged = scan["score"], scan["flagged"]
    plt = _pyplot()
    with _style():
        fig, ax = plt.subplots(figsize=(8, 3.4))
        bins = np.histogram_bin_edges(scores, bins=min(60, max(10, len(scores) // 20)))
        ax.hist(scores[~flagged], bins=bins, color="C0", alpha=0.8, label="not flagged")
        if flagged.any():
            ax.hist(scores[flagged], bins=bins, color="#c62828", alpha=0.85, label="flagged")
        ax.set(xlabel="score (higher = more suspicious)", ylabel="training samples", yscale="log",
               title=f"{len(scores)} samples, {int(flagged.sum())} flagged")
        ax.legend()
        fig.tight_layout()
        histogram = _png(fig)
    figures = [Figure(
        "scan_scores", "Poisoning scan: scores",
        f"Every training sample's score from <code>selfsup scan</code> ({html.escape(str(path))}); the flagged ones "
        "(the top of the ranking) in red. A separate group at the high end is what a planted trigger looks like; a "
        "smooth tail is not. Train without the flagged samples with <code>selfsup pretrain --exclude "
        f"{html.escape(str(path))}</code> (docs/security.md).",
        histogram,
    )]
    grid = path.with_suffix(GRID_SUFFIX)
    if grid.is_file():
        figures.append(Figure(
            "scan_top", "Poisoning scan: top-ranked images",
            "The highest-scored training images, rank, sample id and score above each (⚑ flagged); for PatchSearch "
            "the red square is the candidate trigger window. Look for the same small pattern repeated.",
            grid.read_bytes(),
        ))
    return figures


def spectrum_figure(spectra: dict[str, np.ndarray], ranks: dict[str, float], num_samples: int) -> Figure:
    """Normalised singular values of the embeddings, log scale, pretrained vs random-init."""
    plt = _pyplot()
    colours = {"pretrained": "C0", "random-init": "0.55"}
    with _style():
        fig, ax = plt.subplots(figsize=(7.5, 4))
        for name, values in spectra.items():
            values = np.asarray(values, dtype=float)
            if values.size and values[0] > 0:
                k = np.arange(1, values.size + 1)
                label = f"{name} (RankMe {ranks[name]:.1f})"
                ax.semilogy(k, values / values[0], color=colours.get(name), lw=2, label=label)
        ax.set(
            title=f"Singular values of the embeddings ({num_samples} samples)",
            xlabel="index k (largest first)",
            ylabel=r"$\sigma_k\,/\,\sigma_1$ (log scale)",
        )
        ax.legend()
        fig.tight_layout()
        png = _png(fig)
    caption = (
        "The singular values of the centred embedding matrix, each divided by the largest. A flat, slowly "
        "falling curve means the encoder uses many dimensions; a curve that drops by orders of magnitude "
        "after a few indices means the embeddings live in a few directions (dimensional collapse). "
        "The random-init encoder of the same architecture is the baseline. (RankMe here is computed on "
        "these samples, so it can differ a little from the evaluation table's, on the train split.)"
    )
    return Figure("spectrum", "Singular-value spectrum", caption, png)


def project_2d(z: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """``z [N, D]`` -> ``([N, 2], name)``: UMAP if installed, else t-SNE, else PCA.

    The embeddings are L2-normalised first (the probes and most losses compare them by cosine).
    """
    z = np.asarray(z, dtype=np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    n = len(z)
    try:
        import umap  # optional

        if n > 15:
            return umap.UMAP(n_components=2, random_state=seed).fit_transform(z), "UMAP"
    except ImportError:
        pass
    from sklearn.decomposition import PCA

    if n > 10 and z.shape[1] > 2:
        from sklearn.manifold import TSNE

        reduced = PCA(n_components=min(50, z.shape[1], n), random_state=seed).fit_transform(z)
        perplexity = float(min(30, (n - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        return tsne.fit_transform(reduced), "t-SNE"
    if z.shape[1] < 2:
        return np.concatenate([z, np.zeros_like(z)], axis=1)[:, :2], "PCA"
    return PCA(n_components=2).fit_transform(z), "PCA"


def map_figure(
    embeddings: dict[str, np.ndarray], labels: np.ndarray | None, class_names: list[str] | None, seed: int
) -> Figure:
    """2-D maps of the pretrained and random-init embeddings side by side, coloured by label."""
    plt = _pyplot()
    maps = {name: project_2d(z, seed) for name, z in embeddings.items()}
    projection = next(iter(maps.values()))[1]
    n = len(next(iter(embeddings.values())))
    with _style():
        fig, axes = plt.subplots(1, len(maps), figsize=(11, 5.2), squeeze=False)
        handles = []
        for ax, (name, (xy, _)) in zip(axes.flat, maps.items()):
            if labels is None:
                ax.scatter(xy[:, 0], xy[:, 1], s=9, color="C0", alpha=0.6, linewidths=0)
            else:
                classes = np.unique(labels)
                cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
                for i, c in enumerate(classes):
                    pick = labels == c
                    colour = cmap(i % cmap.N)
                    points = ax.scatter(xy[pick, 0], xy[pick, 1], s=9, color=colour, alpha=0.75, linewidths=0)
                    if ax is axes.flat[0] and len(classes) <= 20:
                        handles.append((points, _class_name(c, class_names)))
            ax.set(title=f"{name} encoder", xlabel=f"{projection} 1", ylabel=f"{projection} 2", xticks=[], yticks=[])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set(visible=True, color="0.85")
        if handles:
            fig.legend(
                [h for h, _ in handles], [t for _, t in handles], title="class", loc="center right",
                markerscale=2.5, frameon=False,
            )
            fig.tight_layout(rect=(0, 0, 0.9, 1))
        else:
            fig.tight_layout()
        png = _png(fig)
    colour = (
        "Colours are the true labels, which training never saw: "
        "well-separated clusters mean a linear or kNN probe will do well."
        if labels is not None
        else "The data has no labels, so the points are not coloured; look for structure (clusters, "
        "a single blob, a line) rather than class separation."
    )
    caption = (
        f"A {projection} map of {n} samples' embeddings (L2-normalised), for the pretrained encoder and a "
        f"random-init encoder of the same architecture. {colour} Distances between far-apart clusters "
        f"in a {projection} map are not meaningful; the neighbourhoods are."
    )
    return Figure("embedding_map", f"Embedding map ({projection})", caption, png)


# ---------------------------------------------------------------------------------------------
# The page


def render_html(
    run_dir: Path, config: Any, metrics: dict[str, Any], figures: list[Figure], data_name: str, labeled: bool
) -> str:
    """The whole page as one string: CSS inline, images as data URIs, no script, no link."""
    title = f"{config.method.name} on {data_name}"
    alarms = collapse_alarms(metrics)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>selfsup report: {html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<header><p class='kicker'>selfsup run report</p><h1>{html.escape(title)}</h1>",
        f"<p class='path'>{html.escape(str(run_dir))} · generated {time.strftime('%Y-%m-%d %H:%M')}</p>",
        _settings_html(config, metrics),
        "</header>",
    ]
    if alarms:
        items = "".join(
            f"<li>{html.escape(_alarm_text(epochs, message))}</li>" for epochs, message in alarms
        )
        parts.append(
            "<section class='alarm'><h2>⚠ Collapse alarm</h2><p>The monitors flagged a possible "
            f"representation collapse during training:</p><ul>{items}</ul></section>"
        )
    status = str(metrics.get("status", ""))
    if status and status != "finished":
        parts.append(f"<section class='alarm'><h2>Run status</h2><p>{html.escape(status)}</p></section>")
    parts.append(_evaluation_html(metrics, labeled))
    for figure in figures:
        parts.append(f"<section id='{figure.name}'><h2>{html.escape(figure.title)}</h2>")
        if figure.png:
            encoded = base64.b64encode(figure.png).decode("ascii")
            parts.append(
                f"<figure><img src='data:image/png;base64,{encoded}' alt='{html.escape(figure.title)}'>"
                f"<figcaption>{figure.caption}</figcaption></figure>"
            )
        else:
            parts.append(f"<p class='note'>{figure.caption}</p>")
        parts.append("</section>")
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    parts.append(
        "<section id='config'><h2>Configuration</h2><details><summary>config.yaml (every default written out)"
        f"</summary><pre>{html.escape(config_text)}</pre></details></section>"
    )
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _settings_html(config: Any, metrics: dict[str, Any]) -> str:
    train = config.train
    epochs_done = metrics.get("epochs_done")
    epochs = str(train.epochs)
    if _is_number(epochs_done) and epochs_done != train.epochs:
        epochs = f"{epochs_done} of {train.epochs}"
    seconds = metrics.get("train_seconds_this_session")
    settings = [
        ("method", config.method.name),
        ("backbone", config.backbone.name),
        ("data", metrics.get("data", config.data.name)),
        ("views", config.views.name),
        ("epochs", epochs),
        ("steps", metrics.get("steps", "-")),
        ("batch size", train.batch_size),
        ("optimizer", train.optimizer),
        ("learning rate", f"{train.lr:g}"),
        ("weight decay", f"{train.weight_decay:g}"),
        ("seed", train.seed),
        ("training time", _duration(seconds) if _is_number(seconds) else "-"),
    ]
    cells = "".join(f"<div><dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd></div>" for k, v in settings)
    return f"<dl class='settings'>{cells}</dl>"


def _evaluation_html(metrics: dict[str, Any], labeled: bool) -> str:
    evaluation = metrics.get("evaluation")
    head = "<section id='evaluation'><h2>Evaluation</h2>"
    if not evaluation or not evaluation.get("results"):
        return (
            f"{head}<p class='note'>Not evaluated yet: run <code>selfsup evaluate RUN_DIR</code> "
            "(then <code>selfsup report RUN_DIR</code> again) to add the probe table.</p></section>"
        )
    results: dict[str, dict[str, Any]] = evaluation["results"]
    columns = list(dict.fromkeys(c for row in results.values() for c in row))
    tables = "".join(_results_table(results, title, group) for title, group in evaluation_groups(results))
    note = html.escape(str(evaluation.get("note", "")))
    probes = [c for c in columns if not c.startswith("rankme")]
    if not probes:
        note += (
            ". No probe table: probes need labels."
            if not labeled
            else ". Run <code>selfsup evaluate RUN_DIR</code> for probes."
        )
    explain = (
        "Test accuracy of each probe on the frozen encoder's features (best in bold); "
        "<i>random-init</i> is the same architecture with random weights and <i>raw input</i> the same "
        "probe on the input itself, so the gap to them is what pretraining added. "
        "RankMe is the effective rank of the train embeddings. Few-label cells are mean ± std over random "
        "draws of the labelled subset; the risk decomposition's terms are errors (lowest in bold) that add up "
        "to the linear probe's test error."
    )
    if TREES_ROW in results:
        explain += (
            f" <i>{TREES_ROW}</i>: scikit-learn's HistGradientBoosting on the raw input (no representation "
            "learning), tuned on a split of train; the baseline a tabular model has to beat."
        )
    chosen = evaluation.get("chosen") or {}
    chosen_html = ""
    if any(chosen.values()):
        rows = "".join(
            f"<li><b>{html.escape(name)}</b>: "
            + "; ".join(f"{html.escape(p)} {html.escape(_short(v))}" for p, v in probes_chosen.items())
            + "</li>"
            for name, probes_chosen in chosen.items()
        )
        summary = "probe hyperparameters chosen on the train split"
        chosen_html = f"<details><summary>{summary}</summary><ul>{rows}</ul></details>"
    return (
        f"{head}<p>On <b>{html.escape(str(evaluation.get('data', '')))}</b>: {note}.</p>"
        f"{_headline_html(evaluation)}{tables}<p class='small'>{explain}</p>{chosen_html}</section>"
    )


def _headline_html(evaluation: dict[str, Any]) -> str:
    """The method's headline protocol (its column comes first in the table) and its values."""
    headline = evaluation.get("headline") or {}
    protocol, values = headline.get("protocol"), headline.get("results") or {}
    if not protocol or not values:
        return ""
    cells = ", ".join(f"{html.escape(str(name))} <b>{html.escape(format_cell(protocol, v))}</b>" for name, v in values.items())
    return f"<p>Headline ({html.escape(_column_title(protocol))}): {cells}.</p>"


def _results_table(results: dict[str, dict[str, Any]], title: str, columns: list[str]) -> str:
    """One HTML table of ``results`` restricted to ``columns``: accuracies with the best in bold,
    few-label cells as mean±std, risk terms (errors, lower is better) with the lowest in bold."""
    def number(value: Any) -> float | None:
        if isinstance(value, dict) and _is_number(value.get("mean")):
            return float(value["mean"])
        return float(value) if _is_number(value) else None

    best: dict[str, float | None] = {}
    for c in columns:
        values = [v for v in (number(row.get(c)) for row in results.values()) if v is not None]
        if not values or c.startswith("rankme"):
            best[c] = None
        else:
            best[c] = min(values) if c in RISK_COLUMNS.values() else max(values)
    header = "".join(f"<th>{html.escape(_column_title(c))}</th>" for c in columns)
    body = []
    for name, row in results.items():
        cells = []
        for c in columns:
            value = row.get(c)
            text = "–" if number(value) is None else format_cell(c, value)
            strong = number(value) is not None and best[c] is not None and number(value) == best[c]
            cells.append(f"<td>{'<b>' + html.escape(text) + '</b>' if strong else html.escape(text)}</td>")
        body.append(f"<tr><th scope='row'>{html.escape(name)}</th>{''.join(cells)}</tr>")
    caption = f"<h3>{html.escape(title[0].upper() + title[1:])}</h3>" if title else ""
    return f"{caption}<table><thead><tr><th></th>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_NO_HISTORY = (
    "No loss history in metrics.json: the run has not finished a session yet "
    "(metrics.json is written when training ends); resume or finish it, then report again."
)

_CSS = """
:root { --ink: #1f2933; --muted: #5f6b7a; --line: #e3e7ec; --bg: #f6f8fa; --accent: #1f6feb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header, section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 24px; margin-bottom: 18px; }
.kicker { margin: 0; color: var(--accent); font-size: 12px; font-weight: 600;
  letter-spacing: .08em; text-transform: uppercase; }
h1 { margin: 2px 0 2px; font-size: 26px; }
h2 { margin: 0 0 10px; font-size: 19px; }
.path { margin: 0 0 14px; color: var(--muted); font-size: 13px; word-break: break-all; }
.settings { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px 18px; margin: 0; }
.settings div { border-left: 3px solid var(--line); padding-left: 10px; }
.settings dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.settings dd { margin: 0; font-weight: 600; }
figure { margin: 0; }
img { display: block; max-width: 100%; height: auto; margin: 4px auto 10px; }
figcaption, .small { color: var(--muted); font-size: 14px; }
figcaption ul { margin: 6px 0 0; padding-left: 20px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 10px 14px; margin: 0; }
.alarm { background: #fdecea; border: 2px solid #c62828; }
.alarm h2 { color: #c62828; }
table { border-collapse: collapse; margin: 8px 0 10px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 16px; border-bottom: 1px solid var(--line); text-align: right; }
thead th { border-bottom: 2px solid var(--ink); }
tbody th { text-align: left; font-weight: 600; }
code, pre { font-family: SFMono-Regular, Consolas, "Liberation Mono", monospace; font-size: 13px; }
code { background: var(--bg); padding: 1px 5px; border-radius: 4px; }
pre { background: var(--bg); padding: 12px; border-radius: 6px; overflow-x: auto; }
summary { cursor: pointer; color: var(--accent); }
"""


# ---------------------------------------------------------------------------------------------
# Small helpers


def monitor_title(key: str) -> tuple[str, str]:
    """A readable ``(title, hint)`` for a monitor key."""
    short = key.rsplit(".", 1)[-1].lower()
    if short in MONITOR_TITLES:
        return MONITOR_TITLES[short]
    words = key.replace(".", " ").replace("_", " ").strip()
    if "knn" in short:
        return MONITOR_TITLES["knn_acc"]
    if "linear" in short:
        return MONITOR_TITLES["linear_acc"]
    return words[:1].upper() + words[1:], "as recorded in metrics.json"


def _column_title(column: str) -> str:
    return {"knn": "kNN", "linear": "linear probe", "svm": "SVM", "rankme": "RankMe"}.get(column, column)


def _class_name(label: Any, class_names: list[str] | None) -> str:
    index = int(label)
    return str(class_names[index]) if class_names is not None and 0 <= index < len(class_names) else str(index)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_accuracy(key: str, values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return any(h in key.lower() for h in ACCURACY_HINTS) and finite.size > 0 and finite.min() >= 0 and finite.max() <= 1


def _names_alarm(key: str) -> bool:
    key = key.lower()
    return "collapse" in key or "alarm" in key


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if _names_alarm(key):
            continue
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    return str(value)


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _epoch_axis(ax: Any, metrics: dict[str, Any]) -> bool:
    """A secondary x-axis on top counting epochs, when steps per epoch are known."""
    steps, epochs = metrics.get("steps"), metrics.get("epochs_done")
    if not (_is_number(steps) and _is_number(epochs) and steps and epochs):
        return False
    per_epoch = steps / epochs
    top = ax.secondary_xaxis("top", functions=(lambda s: s / per_epoch, lambda e: e * per_epoch))
    top.set_xlabel("epoch", labelpad=2)
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style() -> Any:
    plt = _pyplot()
    return plt.rc_context(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
            "figure.dpi": 100,
        }
    )


def _png(fig: Any, dpi: int = 100) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
