"""Frozen-encoder features, always in batches: from a tensor, or streamed from a sample source."""

from __future__ import annotations

import torch

from selfsup.data.base import SampleSource
from selfsup.data.loader import iterate


@torch.no_grad()
def embed_in_batches(
    encoder: torch.nn.Module, x: torch.Tensor, batch_size: int = 512, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Embeddings ``[N, D]`` (on the CPU) of raw samples ``x [N, ...]`` with the encoder in eval mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        out = [encoder(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0, getattr(encoder, "embed_dim", 0))


@torch.no_grad()
def embed_source(
    encoder: torch.nn.Module,
    source: SampleSource,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    num_workers: int = -1,
    progress: bool = False,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``[N, D]`` (CPU, float32) of every readable sample of ``source``, read in batches
    (workers decode files), and the indices ``[N]`` of the samples they belong to (unreadable
    samples are skipped with a warning, so labels are ``source.labels[index]``).

    ``out``: a ``[len(source), D]`` float32 tensor to fill (e.g. over a memory-mapped ``.npy``,
    so the embeddings of a large folder are never all in memory); the first ones returned are
    views of it."""
    was_training = encoder.training
    encoder.eval()
    # One preallocated [N, D] result (the caller's ``out``, or made at the first batch), filled batch
    # by batch: the embeddings are held once (a list of batches and its concatenation would hold
    # them twice at the peak).
    indices = torch.empty(len(source), dtype=torch.int64)
    filled = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(source), desc="embed", unit="sample", leave=False)
    try:
        for batch in iterate(source, batch_size, num_workers=num_workers):
            z = encoder(batch["x"].to(device, non_blocking=True)).float().cpu()
            if out is None:
                out = torch.empty(len(source), z.shape[1])
            elif filled == 0 and tuple(out.shape) != (len(source), z.shape[1]):
                raise ValueError(f"out has shape {tuple(out.shape)}; expected {(len(source), z.shape[1])}")
            out[filled : filled + len(z)] = z
            indices[filled : filled + len(z)] = batch["index"]
            filled += len(z)
            if bar is not None:
                bar.update(len(batch))
    finally:
        encoder.train(was_training)
        if bar is not None:
            bar.close()
    if out is None:
        return torch.empty(0, getattr(encoder, "embed_dim", 0)), torch.empty(0, dtype=torch.int64)
    return out[:filled], indices[:filled]  # fewer than N when unreadable samples were skipped
