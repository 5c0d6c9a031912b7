"""``selfsup scan``: score every training sample of a run for signs of data poisoning.

The run's encoder embeds its training data (the run's own data spec, or ``--data``); a detector
(:mod:`selfsup.evaluate.detect`) scores every sample; the scan writes

- ``RUN_DIR/scan.csv`` (or ``-o OUT``): one row per training sample, ``id`` (the source's sample
  id: its index, or its file path for image folders), ``score`` (higher = more suspicious),
  ``rank`` (1 = most suspicious), ``flagged`` (1 for the top ``flag_rate`` of the ranking) and
  ``cluster`` (the k-means cluster, -1 for the density and outlier detectors). ``selfsup pretrain --exclude
  scan.csv`` trains without the flagged rows.
- ``RUN_DIR/scan.png`` (beside the CSV): the top-scored images in a grid, PatchSearch's candidate
  trigger window outlined.

``selfsup report`` shows the grid and the histogram of the scores when ``scan.csv`` exists.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from selfsup.core.io import write_atomic
from selfsup.data import load_dataset
from selfsup.data.base import SampleSource
from selfsup.data.loader import materialize
from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.detect import (
    PatchSearchOptions, check_detector, default_num_clusters, density_scores, detection_metrics, flag_top,
    kmeans_clusters, outlier_scores, patchsearch_scores, rank_scores, spectral_scores,
)
from selfsup.evaluate.embed import embed_source
from selfsup.rundir import GRID_SUFFIX, SCAN_FILE, check_same_shape, load_run

GRID_IMAGES = 64
FLAG_RATE = 0.05
COLUMNS = ("id", "score", "rank", "flagged", "cluster")


@dataclass
class ScanResult:
    """What a scan found: per-sample ``ids``, ``scores``, ``ranks``, ``flagged``, ``clusters``
    (all in the order of the training split's readable samples), the files written and details."""

    ids: list[str]
    scores: torch.Tensor
    ranks: torch.Tensor
    flagged: torch.Tensor
    clusters: torch.Tensor
    detector: str
    csv_path: Path | None = None
    grid_path: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)
    source: SampleSource | None = None  # the samples scored (the training split's readable ones)


def score_samples(
    encoder: torch.nn.Module,
    source: SampleSource,
    detector: str = "patchsearch",
    flag_rate: float = FLAG_RATE,
    num_clusters: int | None = None,
    flip_set_size: int = 1000,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> ScanResult:
    """Score every readable sample of ``source`` with ``detector`` (see :mod:`selfsup.evaluate.detect`)
    and flag the top ``flag_rate`` of the ranking (PatchSearch: only positive poison scores)."""
    check_detector(detector)
    if not 0 < flag_rate < 1:
        raise ConfigError(f"--flag-rate must be a fraction in (0, 1), e.g. 0.05; got {flag_rate}")
    if detector == "patchsearch" and source.modality != "image":
        raise DataError(
            f"the patchsearch detector looks for trigger patches in images, and {source.name} is {source.modality} data; "
            "use --detector spectral, density or outlier"
        )
    if num_clusters is not None and num_clusters < 2:
        raise ConfigError(f"--clusters must be at least 2; got {num_clusters}")
    if flip_set_size < 1:
        raise ConfigError(f"--flip-set must be at least 1; got {flip_set_size}")
    embeddings, index = embed_source(encoder, source, device=device)
    source = _readable(source, index)
    if len(source) < 4:
        raise DataError(f"{source.name} has {len(source)} readable training samples; a scan needs at least 4")
    clusters_k = num_clusters or default_num_clusters(len(source))
    if clusters_k > len(source):
        raise ConfigError(f"--clusters {clusters_k} is more than the {len(source)} training samples; pass fewer")
    details: dict[str, Any] = {"num_samples": len(source)}
    minimum = None
    if detector == "patchsearch":
        modality = getattr(encoder, "modality", None)

        def read_images(positions: torch.Tensor) -> torch.Tensor:
            x = materialize(source.subset(positions))["x"]
            return modality.to_float(x) if modality is not None else x.float()

        options = PatchSearchOptions(num_clusters=clusters_k, flip_set_size=flip_set_size, seed=seed)
        found = patchsearch_scores(encoder, read_images, embeddings, options, device=device, progress=progress)
        scores, clusters = found.scores, found.clusters
        details.update(
            num_clusters=clusters_k, scored=int(found.scored.sum()), rounds=found.iterations,
            flip_set_size=found.flip_set_size, window_side=found.window_side,
            windows=found.windows,
        )
        minimum = 0.0  # an image whose patch pulls no flip image into its cluster is never flagged
    elif detector == "spectral":
        clusters, _ = kmeans_clusters(embeddings, clusters_k, seed)
        scores = spectral_scores(embeddings, clusters)
        details["num_clusters"] = clusters_k
    else:
        scores = density_scores(embeddings) if detector == "density" else outlier_scores(embeddings)
        clusters = torch.full((len(source),), -1, dtype=torch.int64)
    flagged = flag_top(scores, flag_rate, minimum)
    ids = [source.sample_id(i) for i in range(len(source))]
    details["flag_rate"] = flag_rate
    return ScanResult(ids, scores, rank_scores(scores), flagged, clusters, detector, details=details, source=source)


def _readable(source: SampleSource, index: torch.Tensor) -> SampleSource:
    """``source`` restricted to the samples an embedding pass read (batch indices are the root's)."""
    roots = _root_positions(source)
    if len(index) == len(source) and torch.equal(index, roots):
        return source
    position = {int(r): i for i, r in enumerate(roots.tolist())}
    return source.subset(torch.tensor([position[int(i)] for i in index], dtype=torch.int64))


def _root_positions(source: SampleSource) -> torch.Tensor:
    """The root source's index of each of ``source``'s samples ``[len(source)]``."""
    if hasattr(source, "parent") and hasattr(source, "indices"):
        return _root_positions(source.parent)[source.indices]
    return torch.arange(len(source))


def write_scan_csv(path: Path, result: ScanResult) -> Path:
    """``scan.csv``: id, score, rank, flagged, cluster; rows in the data's order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, sample_id in enumerate(result.ids):
        writer.writerow([sample_id, f"{float(result.scores[i]):.6g}", int(result.ranks[i]), int(result.flagged[i]),
                         int(result.clusters[i])])
    return write_atomic(path, buffer.getvalue())


def read_scan(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a ``scan.csv`` (``id`` as strings, the rest as numbers)."""
    path = Path(path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(c not in rows[0] for c in COLUMNS[:4]):
        raise DataError(f"{path} is not a scan (expected the columns {', '.join(COLUMNS)}); run selfsup scan again")
    return {
        "id": np.array([r["id"] for r in rows]),
        "score": np.array([float(r["score"]) for r in rows]),
        "rank": np.array([int(r["rank"]) for r in rows]),
        "flagged": np.array([int(r["flagged"]) for r in rows], dtype=bool),
    }


def grid_png(images: torch.Tensor, titles: list[str], boxes: list[tuple[int, int, int] | None] | None = None,
             columns: int = 8) -> bytes:
    """A grid of images ``[N, C, H, W]`` (uint8 or float in [0, 1]) with a title each and,
    optionally, a square ``(row, column, side)`` outlined on each, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.7 * rows), squeeze=False)
    pixels = images.float() / 255.0 if images.dtype == torch.uint8 else images.float().clamp(0, 1)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        image = pixels[k]
        if image.shape[0] >= 3:
            ax.imshow(image[:3].permute(1, 2, 0).numpy(), interpolation="nearest")
        else:
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        box = boxes[k] if boxes else None
        if box is not None:
            r, c, side = box
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), side, side, fill=False, edgecolor="red", linewidth=1.2))
        ax.set_title(titles[k], fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_scan_grid(path: Path, source: SampleSource, result: ScanResult, count: int = GRID_IMAGES) -> Path | None:
    """The ``count`` top-ranked images of ``source`` in a grid (PNG); None for data that is not images."""
    if source.modality != "image":
        return None
    top = torch.argsort(result.ranks)[:count]
    images = materialize(source.subset(top))["x"]
    windows = result.details.get("windows")
    side = result.details.get("window_side")
    boxes = None
    if windows is not None and side:
        boxes = [(int(windows[i][0]), int(windows[i][1]), int(side)) if int(windows[i][0]) >= 0 else None for i in top.tolist()]
    titles = [
        f"#{int(result.ranks[i])} {_short_id(result.ids[i])}\n{float(result.scores[i]):.3g}" + (" ⚑" if result.flagged[i] else "")
        for i in top.tolist()
    ]
    return write_atomic(path, grid_png(images, titles, boxes))


def _short_id(sample_id: str) -> str:
    return sample_id if len(sample_id) <= 14 else "…" + Path(sample_id).name[-13:]


def scan_run(
    run_dir: str | Path,
    data_spec: str | None = None,
    detector: str = "patchsearch",
    flag_rate: float = FLAG_RATE,
    output: str | Path | None = None,
    num_clusters: int | None = None,
    flip_set_size: int = 1000,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScanResult:
    """Scan a run's training data (default: the run's own data spec and options) and write
    ``scan.csv`` and ``scan.png`` (``output``: the CSV's path, default ``RUN_DIR/scan.csv``)."""
    run_dir = Path(run_dir)
    check_detector(detector)
    config, method, _ = load_run(run_dir)
    data = load_dataset(
        data_spec or config.data.name, skip_bad_files=config.skip_bad_files, options=config.data.params,
        reference=method.encoder.data_info,
    )
    check_same_shape(method, data.train, "scan")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    method.to(device)
    result = score_samples(
        method.encoder, data.train, detector, flag_rate, num_clusters, flip_set_size,
        seed=config.train.seed if seed is None else seed, device=device, progress=progress,
    )
    csv_path = Path(output) if output is not None else run_dir / SCAN_FILE
    result.csv_path = write_scan_csv(csv_path, result)
    result.grid_path = write_scan_grid(csv_path.with_suffix(GRID_SUFFIX), result.source, result)
    result.details.pop("windows", None)
    return result


def compare_with_manifest(result: ScanResult, manifest: str | Path) -> dict[str, float]:
    """Detection metrics of a scan against the manifest ``selfsup poison`` wrote (``id,poisoned``)."""
    path = Path(manifest)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; pass the .manifest.csv that selfsup poison wrote")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "id" not in rows[0] or "poisoned" not in rows[0]:
        raise DataError(f"manifest {path} needs the columns id and poisoned (selfsup poison writes them)")
    poisoned_ids = {r["id"] for r in rows if r["poisoned"].strip() == "1"}
    truth = torch.tensor([i in poisoned_ids for i in result.ids])
    return detection_metrics(result.scores, result.flagged, truth)
