"""The run's figure: training curve, RankMe over epochs, singular-value spectrum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from selfsup.core.io import write_atomic
from selfsup.evaluate.embed import embed_source
from selfsup.evaluate.rankme import singular_values

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the non-interactive backend is chosen)

PLOT_FILE = "training.png"


def write_training_plot(
    run_dir: str | Path,
    metrics: dict[str, Any],
    method: torch.nn.Module | None = None,
    data: Any | None = None,
    spectra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``training.png``: loss per step, RankMe per epoch, normalised singular values.

    ``spectra`` maps a label ("pretrained", "random-init") to descending singular values; when
    it is absent and ``method``/``data`` are given, the pretrained spectrum is computed here.
    """
    if spectra is None and method is not None and data is not None:
        subset = data.subset(range(min(len(data), 2048)))
        embeddings, _ = embed_source(method.encoder, subset, device=next(method.parameters()).device)
        spectra = {"pretrained": singular_values(embeddings)}
    spectra = spectra or {}

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    steps = metrics.get("history", [])
    ax = axes[0]
    if steps:
        x = np.array([s["step"] for s in steps])
        y = np.array([s["loss"] for s in steps])
        ax.plot(x, y, color="0.75", lw=0.8, label="per step")
        window = max(1, len(y) // 30)
        if window > 1:
            smooth = np.convolve(y, np.ones(window) / window, mode="valid")
            ax.plot(x[window - 1 :], smooth, color="C0", lw=1.8, label=f"mean of {window} steps")
        ax.legend(frameon=False)
    ax.set(title="Training loss", xlabel="step", ylabel="loss")

    ax = axes[1]
    epochs = metrics.get("monitors", [])
    if epochs:
        ax.plot([e["epoch"] for e in epochs], [e["rankme"] for e in epochs], "o-", color="C2")
    ax.set(title="RankMe (effective rank, higher = less collapse)", xlabel="epoch", ylabel="RankMe")

    ax = axes[2]
    for i, (label, values) in enumerate(spectra.items()):
        values = np.asarray(values, dtype=float)
        if values.size and values[0] > 0:
            ax.semilogy(np.arange(1, values.size + 1), values / values[0], color=f"C{i}", label=label)
    if spectra:
        ax.legend(frameon=False)
    ax.set(title="Embedding singular values", xlabel="index", ylabel="sigma_k / sigma_1 (log)")
    for ax in axes:
        ax.grid(alpha=0.3)
    title = f"{metrics.get('method', '')} on {metrics.get('data', '')}".strip()
    if title != "on":
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(run_dir) / PLOT_FILE
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)
    return path
