"""Contiguous span masking on a 1-D sequence (time series, audio frames, text tokens)."""

from __future__ import annotations

import math

import torch

from selfsup.masking._checks import check_generator, check_int, check_ratio, num_masked, output_device
from selfsup.masking.tokens import TokenMask


def span_mask(
    num_samples: int,
    length: int,
    mask_ratio: float,
    generator: torch.Generator,
    span_length: int = 10,
    *,
    device: torch.device | str | None = None,
) -> TokenMask:
    """Hide exactly ``round(mask_ratio * length)`` positions per sample, in contiguous spans.

    Span masking as in wav2vec 2.0 (Baevski et al. 2020, arXiv 2006.11477, sec. 3.1) and data2vec
    for speech (Baevski et al. 2022, arXiv 2202.03555, sec. 4), with spans of ``span_length`` = 10
    frames by default. Those samplers draw span starts independently and let spans overlap, so the
    hidden count varies per sample (p = 0.065 starts and M = 10 hide about 49%). Here the count is
    exact, so that ``keep`` is rectangular and ``mask_ratio`` is the true hidden fraction (to match
    their ~49%, pass ``mask_ratio=0.49``). The exact rule, per sample:

    1. ``M = round(mask_ratio * length)`` positions are hidden (Python's round: ties to even),
       in ``K = ceil(M / span_length)`` spans: ``K - 1`` spans of ``span_length`` and one of the
       remaining ``M - (K - 1) * span_length`` positions; which span is the short one is uniform.
    2. The spans are laid out without overlap, uniformly over all arrangements: think of the
       ``length - M`` visible positions and the ``K`` spans as ``length - M + K`` items, and choose
       which ``K`` items are spans uniformly at random ("stars and bars"). Spans next to each other
       merge into a longer run, so runs are at least one span long unless the span is the short one.
       Positions near either end are hidden less often than central ones (position 0 is hidden
       with probability ``K / (length - M + K)``), as with any span sampler that keeps spans inside
       the sequence.

    Args:
        num_samples: ``N``.
        length: ``L``, positions per sample.
        mask_ratio: fraction of positions to hide, in ``[0, 1)``; at least one must stay visible.
        generator: the only source of randomness; sampling happens on its device.
        span_length: length of a span, ``>= 1`` (``1`` gives a uniform random mask like MAE's).
        device: where the outputs go; defaults to ``generator.device``.

    Returns:
        :class:`TokenMask` with ``keep [N, L - M]``, ``masked [N, M]``, ``mask [N, L]``.
    """
    check_generator(generator)
    n = check_int("num_samples", num_samples, 1)
    length = check_int("length", length, 1)
    ratio = check_ratio("mask_ratio", mask_ratio)
    span_length = check_int("span_length", span_length, 1)
    hidden = num_masked(ratio, length)
    if hidden >= length:
        raise ValueError(
            f"mask_ratio={ratio} hides round({ratio} * {length}) = {hidden} of length={length} positions; "
            "at least one position must stay visible"
        )
    dev = generator.device
    if hidden == 0:
        return TokenMask.from_mask(torch.zeros(n, length, dtype=torch.bool, device=dev)).to(
            output_device(generator, device)
        )

    num_spans = math.ceil(hidden / span_length)
    last_span = hidden - (num_spans - 1) * span_length  # 1 .. span_length
    num_items = length - hidden + num_spans  # visible positions + spans

    # Step 2: which of the items are spans (a uniform K-subset per row, via argsort of noise).
    noise = torch.rand(n, num_items, generator=generator, device=dev)
    span_slots = torch.argsort(noise, dim=1)[:, :num_spans]
    is_span = torch.zeros(n, num_items, dtype=torch.bool, device=dev).scatter_(1, span_slots, True)

    # Step 1: which span (by order along the sequence) is the short one.
    short = torch.randint(0, num_spans, (n, 1), generator=generator, device=dev)
    span_rank = is_span.cumsum(dim=1) - 1  # rank of each span item among the spans of its row
    span_len = torch.where(span_rank == short, last_span, span_length)
    item_len = torch.where(is_span, span_len, 1)  # [N, items]; each row sums to `length`

    # Expand items back to positions: position p belongs to the first item whose end exceeds p.
    ends = item_len.cumsum(dim=1)
    positions = torch.arange(length, device=dev).expand(n, length).contiguous()
    item_of_position = torch.searchsorted(ends, positions, right=True)  # [N, L]
    mask = torch.gather(is_span, 1, item_of_position)
    return TokenMask.from_mask(mask).to(output_device(generator, device))
