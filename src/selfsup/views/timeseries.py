"""Views of time series ``[N, C, T]``, batched on the device, with per-sample random parameters.

Three generators:

- ``"timeseries"``: random augmentations for joint-embedding methods (SimCLR, BYOL, VICReg, ...):
  window crop, time warp, permutation of segments, magnitude warp, scaling, jitter, frequency
  masking and timestamp masking, each a function below with its own config and probability ``p``.
  The catalogue and the default strengths follow Um et al. 2017 ("Data Augmentation of Wearable
  Sensor Data for Parkinson's Disease Monitoring using Convolutional Neural Networks", arXiv
  1706.00527) and the survey of Iwana & Uchida 2021 ("An Empirical Survey of Data Augmentation for
  Time Series Classification with Neural Networks", arXiv 2007.15951); frequency masking follows
  the frequency-domain augmentation of Zhang et al. 2022 (TF-C, "Self-Supervised Contrastive
  Pre-Training For Time Series via Time-Frequency Consistency", arXiv 2206.08496).
- ``"ts2vec_crops"``: TS2Vec's two overlapping random crops (contextual consistency).
- ``"frame_projections"``: augmentation-free views, the series' coefficients in an orthonormal
  basis and in an overcomplete frame (Demirel & Holz 2025).

Missing values are NaN. Series of unequal length are NaN-padded at the end; the time-moving
augmentations (crop, warp, permutation) act on each series' own observed length, so the padding
stays where it was, and an interpolated value next to a missing one takes the nearest original
value (NaN if that one is missing): no view invents a value where the input was missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

import torch

from selfsup.config import Fraction, NonNegativeFloat, NonNegativeInt, OneOf, PositiveFloat, PositiveInt, Range
from selfsup.config_checks import check_not_empty, check_pairs, coerce_optional
from selfsup.errors import ConfigError
from selfsup.views.base import Views, register_views

NAN = float("nan")


# ----------------------------------------------------------------------------- configs

SeriesFraction = Annotated[float, Range(gt=0, le=1)]  # of a series' observed length: a window is not empty
MaskFraction = Annotated[float, Range(ge=0, lt=1)]  # masking every timestamp would leave nothing


@dataclass
class Jitter:
    """Additive Gaussian noise; its std, drawn in ``std`` per sample, is a fraction of each
    series-channel's own standard deviation (so the strength does not depend on the data's units)."""

    p: Fraction = 0.8
    std: tuple[NonNegativeFloat, NonNegativeFloat] = (0.0, 0.1)

    def __post_init__(self) -> None:
        check_pairs(self, "std")


@dataclass
class Scaling:
    """Multiply each sample's channels by factors drawn uniformly in ``factor`` (one per channel)."""

    p: Fraction = 0.5
    factor: tuple[NonNegativeFloat, NonNegativeFloat] = (0.75, 1.25)

    def __post_init__(self) -> None:
        check_pairs(self, "factor")


Interpolation = Annotated[str, OneOf("cubic", "linear")]


@dataclass
class MagnitudeWarp:
    """Multiply by a smooth random curve through ``knots + 2`` values ~ N(1, sigma) (Um et al. 2017).

    ``interpolation``: "cubic" (natural cubic spline, as Um et al.) or "linear".
    """

    p: Fraction = 0.3
    sigma: NonNegativeFloat = 0.2
    knots: NonNegativeInt = 4
    interpolation: Interpolation = "cubic"


@dataclass
class TimeWarp:
    """Smooth monotone time distortion: the local speed is ``exp`` of a smooth random curve through
    ``knots + 2`` values ~ N(0, sigma), integrated, and the series is resampled there."""

    p: Fraction = 0.3
    sigma: NonNegativeFloat = 0.2
    knots: NonNegativeInt = 4
    interpolation: Interpolation = "cubic"


@dataclass
class WindowCrop:
    """A random window covering a fraction in ``scale`` of each series' observed length.

    ``resize=True``: resampled back to the series' length (linear interpolation), so every view
    keeps the batch's shape. ``resize=False``: kept at its own length, one length per call
    (``round(scale * T)``, drawn once and shared by the views of the call so they stack) with a
    window start per sample; this needs ``p = 1``.
    """

    p: Fraction = 1.0
    scale: tuple[SeriesFraction, SeriesFraction] = (0.5, 1.0)
    resize: bool = True

    def __post_init__(self) -> None:
        check_pairs(self, "scale")
        if not self.resize and self.p != 1.0:
            raise ValueError("crop.resize=false crops every sample to one length, so it needs crop.p=1")


@dataclass
class Permutation:
    """Cut each series at random points into 2..``max_segments`` segments and shuffle them.

    Off by default: it destroys the global shape that most UCR classes are defined by; turn it on
    for signals whose class does not depend on the order of events (e.g. activity recognition).
    """

    p: Fraction = 0.0
    max_segments: Annotated[int, Range(ge=2)] = 5


@dataclass
class TimestampMask:
    """Set a fraction in ``ratio`` of each series' timestamps to 0 (all channels; NaN stays NaN).

    ``span_length=1`` masks timestamps independently; a larger value masks spans of that many steps.
    """

    p: Fraction = 0.3
    ratio: tuple[MaskFraction, MaskFraction] = (0.0, 0.2)
    span_length: PositiveInt = 1

    def __post_init__(self) -> None:
        check_pairs(self, "ratio")


@dataclass
class FrequencyMask:
    """Zero a random fraction in ``ratio`` of the rfft bins of each series (the same bins for all of
    its channels), then transform back; ``keep_dc`` spares the mean."""

    p: Fraction = 0.2
    ratio: tuple[Fraction, Fraction] = (0.0, 0.2)  # 1: every bin but the mean (keep_dc)
    keep_dc: bool = True

    def __post_init__(self) -> None:
        check_pairs(self, "ratio")
        if self.ratio[1] == 1 and not self.keep_dc:
            raise ValueError(
                f"ratio {list(self.ratio)!r} with keep_dc=false can mask every bin, which leaves nothing of the series; "
                "keep ratio below 1 or set keep_dc=true"
            )


@dataclass
class LocalCrops:
    """Multi-crop's small views (SwAV, Caron et al. 2020, arXiv 2006.09882): windows covering a
    fraction in ``scale`` of the observed series, resampled to ``length_ratio * T`` steps (at least
    ``min_length``); the other augmentations are those of the global views."""

    scale: tuple[SeriesFraction, SeriesFraction] = (0.1, 0.4)
    length_ratio: Annotated[float, Range(gt=0, le=1)] = 0.5  # of the global views' length: local views are not longer
    min_length: Annotated[int, Range(ge=2)] = 8

    def __post_init__(self) -> None:
        check_pairs(self, "scale")


@dataclass
class TimeSeriesViewsConfig:
    """Each augmentation's probability and ranges. Applied in this order to every view."""

    crop: WindowCrop = field(default_factory=WindowCrop)
    time_warp: TimeWarp = field(default_factory=TimeWarp)
    permutation: Permutation = field(default_factory=Permutation)
    magnitude_warp: MagnitudeWarp = field(default_factory=MagnitudeWarp)
    scaling: Scaling = field(default_factory=Scaling)
    jitter: Jitter = field(default_factory=Jitter)
    frequency_mask: FrequencyMask = field(default_factory=FrequencyMask)
    timestamp_mask: TimestampMask = field(default_factory=TimestampMask)
    local: LocalCrops = field(default_factory=LocalCrops)


# ----------------------------------------------------------------------------- helpers


def _uniform(low: float, high: float, shape: tuple[int, ...], g: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g, device=device)


def _bernoulli(p: float, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Per-sample coin flips ``[n]`` (bool)."""
    return torch.rand(n, generator=g, device=device) < p


def observed_lengths(x: torch.Tensor) -> torch.Tensor:
    """Per series, 1 + the last timestamp where any channel is observed (at least 1). ``[N, C, T] -> [N]``.

    Series padded at the end with NaN have their unpadded length; complete series have ``T``.
    """
    T = x.shape[-1]
    present = ~torch.isnan(x).all(dim=1)  # [N, T]
    steps = torch.arange(1, T + 1, device=x.device)
    return (present * steps).amax(dim=1).clamp(min=1)


def _nan_std(x: torch.Tensor) -> torch.Tensor:
    """Standard deviation over time of the observed values ``[N, C, T] -> [N, C]`` (0 if none)."""
    mean = torch.nanmean(x, dim=-1, keepdim=True)
    return torch.nanmean((x - mean) ** 2, dim=-1).sqrt().nan_to_num(0.0)


def resample(x: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Read every series at fractional time ``positions`` by linear interpolation.

    Where one of the two neighbours is missing (NaN), the nearest neighbour is taken instead, so
    missing values are neither invented nor spread. Integer positions give the values exactly.

    Args:
        x: ``[N, C, T]`` series.
        positions: ``[N, L]`` source positions (clamped to ``[0, T - 1]``), the same for all channels.
        keep: ``[N, L]`` bool; False outputs NaN (padding). Default: all kept.

    Returns:
        ``[N, C, L]``.
    """
    N, C, T = x.shape
    pos = positions.clamp(0, T - 1)
    left = pos.floor().long().clamp(max=T - 1)
    right = (left + 1).clamp(max=T - 1)
    nearest = pos.round().long()
    frac = (pos - left).to(x.dtype).unsqueeze(1)  # [N, 1, L]

    def take(index: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, 2, index.unsqueeze(1).expand(N, C, index.shape[1]))

    x0, x1 = take(left), take(right)
    out = torch.where(torch.isnan(x0) | torch.isnan(x1), take(nearest), x0 + frac * (x1 - x0))
    if keep is not None:
        out = out.masked_fill(~keep.unsqueeze(1), NAN)
    return out


def take_windows(x: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Windows ``x[i, :, starts[i] : starts[i] + length]``, NaN where a window leaves the series.

    ``x: [N, C, T]``, ``starts: [N]`` (int, may be negative) -> ``[N, C, length]``.
    """
    N, C, T = x.shape
    index = starts.view(N, 1) + torch.arange(length, device=x.device)  # [N, length]
    inside = (index >= 0) & (index < T)
    window = torch.gather(x, 2, index.clamp(0, T - 1).unsqueeze(1).expand(N, C, length))
    return window.masked_fill(~inside.unsqueeze(1), NAN)


def _spline_second_derivatives(knots: torch.Tensor) -> torch.Tensor:
    """Second derivatives ``[B, K]`` of the natural cubic spline through ``knots [B, K]`` at unit spacing.

    Interior values solve ``M[i-1] + 4 M[i] + M[i+1] = 6 (y[i-1] - 2 y[i] + y[i+1])``; the natural
    ends have ``M = 0``. The tridiagonal matrix is the same for every row, so one solve does all.
    """
    B, K = knots.shape
    M = torch.zeros_like(knots)
    if K <= 2:
        return M
    n = K - 2
    A = 4 * torch.eye(n, device=knots.device, dtype=knots.dtype)
    if n > 1:
        off = torch.ones(n - 1, device=knots.device, dtype=knots.dtype)
        A = A + torch.diag(off, 1) + torch.diag(off, -1)
    rhs = 6 * (knots[:, :-2] - 2 * knots[:, 1:-1] + knots[:, 2:])  # [B, n]
    M[:, 1:-1] = torch.linalg.solve(A, rhs.T).T
    return M


def smooth_curve(knots: torch.Tensor, u: torch.Tensor, interpolation: str = "cubic") -> torch.Tensor:
    """Evaluate the curve through ``knots [B, K]`` (at ``0, 1/(K-1), ..., 1``) at ``u [B, L]`` in [0, 1].

    ``interpolation``: "cubic" (natural cubic spline) or "linear". Returns ``[B, L]``.
    """
    B, K = knots.shape
    if K == 1:
        return knots.expand(B, u.shape[1]).clone()
    x = u.clamp(0, 1) * (K - 1)
    seg = x.floor().long().clamp(0, K - 2)
    t = x - seg
    y0, y1 = knots.gather(1, seg), knots.gather(1, seg + 1)
    out = (1 - t) * y0 + t * y1
    if interpolation == "cubic" and K > 2:
        M = _spline_second_derivatives(knots)
        m0, m1 = M.gather(1, seg), M.gather(1, seg + 1)
        out = out + (((1 - t) ** 3 - (1 - t)) * m0 + (t**3 - t) * m1) / 6
    return out


def _unit_time(lengths: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised time ``u = t / (L - 1)`` clamped to [0, 1] and the mask ``t < L``, both ``[N, T]``."""
    t = torch.arange(T, device=lengths.device)
    u = (t / (lengths - 1).clamp(min=1).unsqueeze(1)).clamp(max=1.0)
    return u, t < lengths.unsqueeze(1)


# ----------------------------------------------------------------------------- augmentations


def jitter(x: torch.Tensor, config: Jitter, g: torch.Generator) -> torch.Tensor:
    """``x + noise``, noise std = (a per-sample fraction in ``config.std``) x (the series-channel's std).

    ``[N, C, T] -> [N, C, T]``; NaN stays NaN.
    """
    N = x.shape[0]
    fraction = _uniform(*config.std, (N,), g, x.device) * _bernoulli(config.p, N, g, x.device)
    std = fraction.view(N, 1) * _nan_std(x)  # [N, C]
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    return x + std.unsqueeze(-1).to(x.dtype) * noise


def scaling(x: torch.Tensor, config: Scaling, g: torch.Generator) -> torch.Tensor:
    """Multiply each channel of each sample by a factor in ``config.factor``. ``[N, C, T]``."""
    N, C, _ = x.shape
    factor = _uniform(*config.factor, (N, C), g, x.device)
    apply = _bernoulli(config.p, N, g, x.device).view(N, 1)
    factor = torch.where(apply, factor, torch.ones_like(factor))
    return x * factor.unsqueeze(-1).to(x.dtype)


def magnitude_warp(x: torch.Tensor, config: MagnitudeWarp, g: torch.Generator) -> torch.Tensor:
    """Multiply by a smooth random curve per sample and channel, spanning each series' observed length."""
    N, C, T = x.shape
    K = config.knots + 2
    knots = 1 + config.sigma * torch.randn(N * C, K, generator=g, device=x.device)
    apply = _bernoulli(config.p, N, g, x.device).view(N, 1, 1)
    u, _ = _unit_time(observed_lengths(x), T)
    curve = smooth_curve(knots, u.repeat_interleave(C, dim=0), config.interpolation).view(N, C, T)
    return torch.where(apply, x * curve.to(x.dtype), x)


def time_warp(x: torch.Tensor, config: TimeWarp, g: torch.Generator) -> torch.Tensor:
    """Resample each series along a smooth, strictly increasing time map of its observed span.

    The local speed ``exp(s(u))`` (``s`` a smooth random curve) is integrated and rescaled so the map
    takes ``[0, L - 1]`` onto itself; the padding after ``L`` stays NaN. ``[N, C, T]``.
    """
    N, _, T = x.shape
    K = config.knots + 2
    log_speed = config.sigma * torch.randn(N, K, generator=g, device=x.device)
    apply = _bernoulli(config.p, N, g, x.device).view(N, 1, 1)
    lengths = observed_lengths(x)
    u, inside = _unit_time(lengths, T)
    speed = torch.exp(smooth_curve(log_speed, u, config.interpolation)) * inside  # [N, T], > 0 inside
    travelled = torch.cumsum(speed, dim=1) - speed[:, :1]  # 0 at t = 0, strictly increasing inside
    total = travelled.gather(1, (lengths - 1).view(N, 1)).clamp(min=1e-12)
    positions = travelled / total * (lengths - 1).view(N, 1)
    return torch.where(apply, resample(x, positions, inside), x)


def window_crop(
    x: torch.Tensor, config: WindowCrop, g: torch.Generator, out_length: int | None = None
) -> torch.Tensor:
    """A random window of each series' observed span, resampled.

    ``out_length=None``: each series is resampled to its own observed length (padding kept), so
    ``[N, C, T] -> [N, C, T]``. Otherwise every window is resampled to ``out_length`` steps
    (multi-crop local views) -> ``[N, C, out_length]``.
    """
    N, _, T = x.shape
    lengths = observed_lengths(x)
    span_max = (lengths - 1).to(torch.float32)  # [N]
    scale = _uniform(*config.scale, (N,), g, x.device)
    apply = _bernoulli(config.p, N, g, x.device)
    scale = torch.where(apply, scale, torch.ones_like(scale))
    span = scale * span_max
    start = torch.rand(N, generator=g, device=x.device) * (span_max - span)
    if out_length is None:
        u, inside = _unit_time(lengths, T)
        positions = start.view(N, 1) + span.view(N, 1) * u
        return torch.where(apply.view(N, 1, 1), resample(x, positions, inside), x)
    u = torch.linspace(0, 1, out_length, device=x.device).view(1, out_length)
    return resample(x, start.view(N, 1) + span.view(N, 1) * u)


def fixed_length_crop(x: torch.Tensor, length: int, g: torch.Generator) -> torch.Tensor:
    """A window of ``length`` steps per series, starting uniformly within its observed span
    (NaN past the end of the batch). ``[N, C, T] -> [N, C, length]``."""
    N = x.shape[0]
    room = (observed_lengths(x) - length).clamp(min=0) + 1  # number of possible starts
    starts = (torch.rand(N, generator=g, device=x.device) * room).long().clamp(max=room - 1)
    return take_windows(x, starts, length)


def permute_segments(x: torch.Tensor, config: Permutation, g: torch.Generator) -> torch.Tensor:
    """Cut each series' observed span at ``m - 1`` random points (``m`` uniform in 2..max_segments)
    and put the segments in a random order; the padding stays at the end. ``[N, C, T]``."""
    N, C, T = x.shape
    M = config.max_segments
    dev = x.device
    apply = _bernoulli(config.p, N, g, dev)
    lengths = observed_lengths(x)
    num_segments = 2 + (torch.rand(N, generator=g, device=dev) * (M - 1)).long().clamp(max=M - 2)
    cuts = 1 + (torch.rand(N, M - 1, generator=g, device=dev) * (lengths - 1).view(N, 1)).long()
    active = torch.arange(M - 1, device=dev).view(1, -1) < (num_segments - 1).view(N, 1)
    cuts = torch.where(active, cuts, torch.full_like(cuts, T))  # inactive cuts fall outside the series
    t = torch.arange(T, device=dev)
    segment = (t.view(1, 1, T) >= cuts.unsqueeze(-1)).sum(dim=1)  # [N, T] segment id, 0..M-1
    rank = torch.rand(N, M, generator=g, device=dev).argsort(dim=1).argsort(dim=1)  # random order of ids
    new_rank = rank.gather(1, segment)
    new_rank = torch.where(t.view(1, T) < lengths.view(N, 1), new_rank, torch.full_like(new_rank, M))
    order = (new_rank * T + t.view(1, T)).argsort(dim=1)  # segments in their new order, time order within
    out = torch.gather(x, 2, order.unsqueeze(1).expand(N, C, T))
    return torch.where(apply.view(N, 1, 1), out, x)


def timestamp_mask(x: torch.Tensor, config: TimestampMask, g: torch.Generator) -> torch.Tensor:
    """Zero a random fraction of each series' timestamps (or spans of them), all channels at once.

    ``[N, C, T]``; NaN stays NaN (a missing value is not turned into an observed 0).
    """
    N, C, T = x.shape
    dev = x.device
    ratio = _uniform(*config.ratio, (N,), g, dev) * _bernoulli(config.p, N, g, dev)
    if config.span_length == 1:
        masked = torch.rand(N, T, generator=g, device=dev) < ratio.view(N, 1)
    else:
        span = min(config.span_length, T)
        lengths = observed_lengths(x)
        max_spans = max(1, math.ceil(config.ratio[1] * T / span))
        num_spans = torch.round(ratio * lengths / span).long()  # [N]
        room = (lengths - span).clamp(min=0) + 1
        starts = (torch.rand(N, max_spans, generator=g, device=dev) * room.view(N, 1)).long()
        active = torch.arange(max_spans, device=dev).view(1, -1) < num_spans.view(N, 1)
        t = torch.arange(T, device=dev).view(1, 1, T)
        in_span = (t >= starts.unsqueeze(-1)) & (t < starts.unsqueeze(-1) + span) & active.unsqueeze(-1)
        masked = in_span.any(dim=1)
    masked = masked.view(N, 1, T) & ~torch.isnan(x)
    return x.masked_fill(masked, 0.0)


def frequency_mask(x: torch.Tensor, config: FrequencyMask, g: torch.Generator) -> torch.Tensor:
    """Zero random rfft bins of each series (missing values read as 0) and transform back.

    ``[N, C, T]``; NaN positions are restored afterwards.
    """
    N, C, T = x.shape
    dev = x.device
    missing = torch.isnan(x)
    spectrum = torch.fft.rfft(x.masked_fill(missing, 0.0).float(), dim=-1)  # [N, C, F]
    F = spectrum.shape[-1]
    apply = _bernoulli(config.p, N, g, dev)
    ratio = _uniform(*config.ratio, (N,), g, dev) * apply
    drop = torch.rand(N, F, generator=g, device=dev) < ratio.view(N, 1)
    if config.keep_dc:
        drop[:, 0] = False
    out = torch.fft.irfft(spectrum.masked_fill(drop.unsqueeze(1), 0), n=T, dim=-1).to(x.dtype)
    out = out.masked_fill(missing, NAN)
    return torch.where(apply.view(N, 1, 1), out, x)


# ----------------------------------------------------------------------------- generators


def _check_series_batch(batch: torch.Tensor, name: str) -> None:
    if batch.ndim != 3 or batch.shape[0] == 0 or batch.shape[-1] == 0:
        raise ConfigError(
            f"{name} views take non-empty series batches [N, C, T]; got shape {tuple(batch.shape)}. "
            "Use views 'image' for images and 'vector' for feature vectors."
        )


@register_views("timeseries")
class TimeSeriesViews:
    """Random augmentations of series ``[N, C, T]``; global views keep the batch's shape.

    Global views: crop (resized back, or kept at one length per call), time warp, permutation,
    magnitude warp, scaling, jitter, frequency mask, timestamp mask, each applied with its own
    probability and per-sample parameters. Local views (multi-crop) are short windows resampled to
    ``local.length_ratio * T`` steps, then the same augmentations.
    """

    Config = TimeSeriesViewsConfig

    def __init__(self, config: TimeSeriesViewsConfig) -> None:
        self.config = config

    def view(
        self, x: torch.Tensor, g: torch.Generator, crop_length: int | None = None, local: bool = False
    ) -> torch.Tensor:
        """One augmented view of every series in ``x``; a short multi-crop view when ``local``."""
        c = self.config
        T = x.shape[-1]
        if local:
            length = max(c.local.min_length, round(c.local.length_ratio * T))
            x = window_crop(x, WindowCrop(p=1.0, scale=c.local.scale), g, out_length=length)
        elif crop_length is not None:
            x = fixed_length_crop(x, crop_length, g)
        elif c.crop.p > 0:
            x = window_crop(x, c.crop, g)
        if c.time_warp.p > 0:
            x = time_warp(x, c.time_warp, g)
        if c.permutation.p > 0:
            x = permute_segments(x, c.permutation, g)
        if c.magnitude_warp.p > 0:
            x = magnitude_warp(x, c.magnitude_warp, g)
        if c.scaling.p > 0:
            x = scaling(x, c.scaling, g)
        if c.jitter.p > 0:
            x = jitter(x, c.jitter, g)
        if c.frequency_mask.p > 0:
            x = frequency_mask(x, c.frequency_mask, g)
        if c.timestamp_mask.p > 0:
            x = timestamp_mask(x, c.timestamp_mask, g)
        return x

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        """``num_views`` global views and ``num_local_views`` short multi-crop views, each ``[N, C, *]``."""
        _check_series_batch(batch, "timeseries")
        crop_length = None
        if not self.config.crop.resize:
            low, high = self.config.crop.scale
            scale = low + (high - low) * torch.rand(1, generator=generator, device=batch.device).item()
            crop_length = max(2, round(scale * batch.shape[-1]))
        return Views(
            [self.view(batch, generator, crop_length) for _ in range(num_views)],
            [self.view(batch, generator, local=True) for _ in range(num_local_views)],
        )


# ----------------------------------------------------------------------------- TS2Vec crops


@dataclass
class TS2VecCropsConfig:
    """TS2Vec's random cropping (Yue et al. 2022, sec. 3.2 and the reference code's ``fit``).

    Attributes:
        temporal_unit: the shortest overlap is ``2 ** (temporal_unit + 1)`` steps.
        max_length: a batch longer than this is first cut to one random window of this length
            (the reference's ``max_train_length``, 3000 in its scripts); None: never.
        centerize: shift each series whose observed part does not fill the batch (NaN padding at
            the start or end) so that part is centred, as the reference does with variable-length
            data before training.
    """

    temporal_unit: NonNegativeInt = 0
    max_length: Annotated[int, Range(ge=2)] | None = 3000
    centerize: bool = True

    def __post_init__(self) -> None:
        coerce_optional(self, "max_length")
        if self.max_length is not None and self.max_length < 2 ** (self.temporal_unit + 1):
            raise ValueError(
                f"max_length must be at least 2 ** (temporal_unit + 1) = {2 ** (self.temporal_unit + 1)} (the shortest "
                f"overlap) or null; got {self.max_length}"
            )


def centerize(x: torch.Tensor) -> torch.Tensor:
    """Shift each series so its observed timestamps sit in the middle (rolling the NaN padding).

    ``[N, C, T] -> [N, C, T]``; a series without leading or trailing missing timestamps is unchanged.
    """
    N, C, T = x.shape
    present = ~torch.isnan(x).all(dim=1)  # [N, T]
    any_present = present.any(dim=1)
    leading = present.float().argmax(dim=1)  # first observed step
    trailing = present.flip(1).float().argmax(dim=1)  # missing steps after the last observed one
    shift = torch.where(any_present, (leading + trailing) // 2 - leading, torch.zeros_like(leading))
    index = (torch.arange(T, device=x.device).view(1, T) - shift.view(N, 1)) % T
    return torch.gather(x, 2, index.unsqueeze(1).expand(N, C, T))


@register_views("ts2vec_crops")
class TS2VecCrops:
    """TS2Vec's two overlapping random crops (contextual consistency).

    Yue, Wang, Duan, Yang, Huang, Tong, Xu 2022, "TS2Vec: Towards Universal Representation of Time
    Series", arXiv 2106.10466, sec. 3.2, with the reference code's sampling: per batch, an overlap
    length ``l ~ U{2^(unit+1), ..., T}``, ``crop_left ~ U{0, ..., T - l}``, ``crop_right = crop_left
    + l``, ``crop_eleft ~ U{0, ..., crop_left}``, ``crop_eright ~ U{crop_right, ..., T}``; per sample
    an offset ``o ~ U{-crop_eleft, ..., T - crop_eright}``. View 1 is ``x[o + crop_eleft : o +
    crop_right]``, view 2 ``x[o + crop_left : o + crop_eright]``: the last ``l`` steps of view 1 and
    the first ``l`` of view 2 are the same raw timestamps, seen in different contexts.
    ``views.extras["overlap"] = l``. With these ranges the windows always lie inside the series;
    if one did not, it would be padded with NaN (missing).

    ``batch: [N, C, T]`` -> two views ``[N, C, crop_right - crop_eleft]`` and ``[N, C, crop_eright -
    crop_left]``.
    """

    Config = TS2VecCropsConfig

    def __init__(self, config: TS2VecCropsConfig) -> None:
        self.config = config

    # The per-batch draws (crop lengths, the long-series window) come from a generator shared by
    # all processes of a multi-process run, so every process crops the same lengths and TS2Vec can
    # compare timestamps across the global batch; the per-sample offsets stay per process.
    shared_randomness = True

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0,
        shared_generator: torch.Generator | None = None,
    ) -> Views:
        _check_series_batch(batch, "ts2vec_crops")
        if num_views != 2 or num_local_views != 0:
            raise ConfigError(
                f"views 'ts2vec_crops' make exactly two overlapping crops, but the method asked for "
                f"{num_views} global and {num_local_views} local views; use views 'timeseries' with this method"
            )
        c = self.config
        x = centerize(batch) if c.centerize else batch
        N, _, T = x.shape
        shortest = 2 ** (c.temporal_unit + 1)
        # All per-batch integers from one draw (one host sync for the crop lengths the shapes need).
        shared = shared_generator if shared_generator is not None else generator
        u = torch.rand(5, generator=shared, device=x.device).tolist()
        if c.max_length is not None and T > c.max_length:
            window = int(u[4] * (T - c.max_length + 1))
            x = x[:, :, window : window + c.max_length]
            T = c.max_length
        if T < shortest:
            raise ConfigError(
                f"views 'ts2vec_crops' need series of at least {shortest} steps (2 ** (temporal_unit + 1)), "
                f"got {T}; lower views.temporal_unit or use longer series"
            )
        overlap = shortest + int(u[0] * (T - shortest + 1))
        crop_left = int(u[1] * (T - overlap + 1))
        crop_right = crop_left + overlap
        crop_eleft = int(u[2] * (crop_left + 1))
        crop_eright = crop_right + int(u[3] * (T - crop_right + 1))
        choices = T - crop_eright + crop_eleft + 1  # offsets in [-crop_eleft, T - crop_eright]
        offset = (torch.rand(N, generator=generator, device=x.device) * choices).long().clamp(max=choices - 1)
        offset = offset - crop_eleft
        view1 = take_windows(x, offset + crop_eleft, crop_right - crop_eleft)
        view2 = take_windows(x, offset + crop_left, crop_eright - crop_left)
        return Views([view1, view2], extras={"overlap": overlap})


# ----------------------------------------------------------------------------- frame projections


@dataclass
class FrameProjectionsConfig:
    """Augmentation-free views: the series in an orthonormal basis and in an overcomplete frame.

    Attributes:
        domains: the domain of view ``i`` is ``domains[i % len(domains)]``: "time" (the series
            itself: its coefficients in the canonical basis), "basis" (orthonormal basis
            coefficients), "frame" (overcomplete frame coefficient magnitudes). Keep "time" among
            the views: the exported encoder is applied to raw series.
        basis: "fourier" (the real orthonormal DFT basis; the reference code's ``rfft(norm='ortho')``)
            or "dct" (orthonormal DCT-II).
        num_scales, scales: the frame's complex Morlet (Gabor) wavelets, ``num_scales`` scales spaced
            geometrically in ``scales`` (in steps; centre frequency ``center_frequency / scale``
            cycles per step). The reference code uses 48 scales in [1, 128]; scales below 2 put
            the centre frequency above Nyquist, so the default starts at 2.
        bandwidth, center_frequency: the Morlet wavelet ``cmor{bandwidth}-{center_frequency}``.
        frame_layout: "flat": each channel's ``[num_scales, T]`` coefficients, scale after scale,
            as one sequence ``[N, C, num_scales * T]`` that a 1-D backbone can read; "stacked":
            ``[N, C, num_scales, T]`` for a 2-D encoder of its own, as in the paper.
        pad_to_common_length: pad every view at the end with NaN (missing) to the longest one, so
            methods that encode the views in one batch (SimCLR, ...) can concatenate them.
    """

    domains: tuple[Annotated[str, OneOf("time", "basis", "frame")], ...] = ("time", "basis", "frame")
    basis: Annotated[str, OneOf("fourier", "dct")] = "fourier"
    num_scales: PositiveInt = 48
    scales: tuple[PositiveFloat, PositiveFloat] = (2.0, 128.0)
    bandwidth: PositiveFloat = 1.0
    center_frequency: PositiveFloat = 1.0
    frame_layout: Annotated[str, OneOf("flat", "stacked")] = "flat"
    pad_to_common_length: bool = True

    def __post_init__(self) -> None:
        check_not_empty(self, "domains")
        check_pairs(self, "scales")


def fourier_coefficients(x: torch.Tensor) -> torch.Tensor:
    """Coordinates of real series in the real orthonormal Fourier basis, ordered by frequency.

    With ``X = rfft(x, norm="ortho")``: ``[Re X0, √2 Re X1, √2 Im X1, √2 Re X2, √2 Im X2, ...]``,
    ending with ``Re X_{T/2}`` (unscaled) when T is even. The map is orthogonal (Parseval:
    ``||c|| = ||x||``) and inverted exactly by :func:`inverse_fourier_coefficients`.
    ``[..., T] -> [..., T]``.
    """
    T = x.shape[-1]
    X = torch.fft.rfft(x.float(), dim=-1, norm="ortho")
    num_pairs = (T - 1) // 2  # bins with both a cosine and a sine
    pairs = math.sqrt(2) * torch.stack([X[..., 1 : num_pairs + 1].real, X[..., 1 : num_pairs + 1].imag], dim=-1)
    parts = [X[..., :1].real, pairs.flatten(-2)]
    if T % 2 == 0:
        parts.append(X[..., -1:].real)  # Nyquist bin
    return torch.cat(parts, dim=-1).to(x.dtype)


def inverse_fourier_coefficients(c: torch.Tensor) -> torch.Tensor:
    """The series with orthonormal Fourier coordinates ``c`` (inverse of :func:`fourier_coefficients`)."""
    T = c.shape[-1]
    num_pairs = (T - 1) // 2
    c = c.float()
    pairs = c[..., 1 : 1 + 2 * num_pairs].unflatten(-1, (num_pairs, 2)) / math.sqrt(2)
    bins = [torch.complex(c[..., :1], torch.zeros_like(c[..., :1])), torch.complex(pairs[..., 0], pairs[..., 1])]
    if T % 2 == 0:
        bins.append(torch.complex(c[..., -1:], torch.zeros_like(c[..., -1:])))
    return torch.fft.irfft(torch.cat(bins, dim=-1), n=T, dim=-1, norm="ortho")


def dct_matrix(T: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II basis ``[T, T]`` (row k: frequency k); ``coefficients = x @ D.T``."""
    n = torch.arange(T, device=device, dtype=torch.float64)
    k = n.view(-1, 1)
    D = math.sqrt(2 / T) * torch.cos(math.pi * (n + 0.5) * k / T)
    D[0] /= math.sqrt(2)
    return D.to(dtype)


def morlet_frame_coefficients(
    x: torch.Tensor, scales: torch.Tensor, bandwidth: float = 1.0, center_frequency: float = 1.0
) -> torch.Tensor:
    """Analysis coefficients of ``x`` in the frame of shifted, scaled complex Morlet wavelets.

    The wavelet ``cmorB-C``, ``psi(t) = (pi B)^(-1/2) exp(-t^2 / B) exp(2 pi i C t)``, has the Fourier
    transform ``exp(-pi^2 B (f - C)^2)``; at scale ``a`` it is centred on ``C / a`` cycles per step.
    Each atom (one per scale and shift) is normalised to unit norm, and the correlations are taken
    through the FFT on the series zero-padded to twice its length (no wrap-around from one end to
    the other for atoms shorter than the series). ``S * T`` atoms for ``T`` dimensions: the frame
    is ``S``-times redundant.

    Args:
        x: ``[..., T]`` real series without NaN.
        scales: ``[S]`` positive scales in steps.

    Returns:
        complex ``[..., S, T]``.
    """
    T = x.shape[-1]
    n = 2 * T
    freqs = torch.fft.fftfreq(n, device=x.device, dtype=torch.float64)  # cycles per step
    a = scales.to(device=x.device, dtype=torch.float64).view(-1, 1)
    response = torch.exp(-(math.pi**2) * bandwidth * (a * freqs - center_frequency) ** 2)  # [S, n]
    # Unit-norm atoms: ||h||^2 = mean(|H|^2) for the DFT of length n (Parseval).
    response = response / response.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-30)
    spectrum = torch.fft.fft(x.to(torch.float64), n=n, dim=-1)  # [..., n]
    # <x, psi_(a, b)> = sum_t x[t] conj(psi_a[t - b]) = ifft(X * conj(Psi_a))[b]; Psi_a is real here.
    coefficients = torch.fft.ifft(spectrum.unsqueeze(-2) * response, dim=-1)[..., :T]
    return coefficients.to(torch.complex64)


@register_views("frame_projections")
class FrameProjections:
    """Augmentation-free views from an orthonormal basis and an overcomplete frame.

    Demirel & Holz 2025, "Learning Without Augmenting: Unsupervised Time Series Representation
    Learning via Frame Projections", NeurIPS 2025, arXiv 2510.22655. Instead of augmenting, each
    series is represented in spaces with different geometry: an orthonormal basis (Fourier; the
    reference code takes ``rfft(norm='ortho')``) and an overcomplete frame (complex Morlet/Gabor
    wavelets; the reference code takes the magnitude of a 48-scale ``cmor1-1`` continuous wavelet
    transform), next to the series itself. The views are deterministic: the generator is unused.

    Views (``batch: [N, C, T]``): "time" ``[N, C, T]`` (the batch); "basis" ``[N, C, T]`` (orthonormal
    coefficients of the series with missing values read as 0; they are global, so no NaN);
    "frame" ``[N, C, S * T]`` (flat) or ``[N, C, S, T]`` (stacked) coefficient magnitudes, NaN at
    the missing timestamps of every scale. ``extras["domains"]`` names the domain of each view.

    The paper encodes each domain with an encoder of its own and trains small mappers between
    their latent spaces; with one shared backbone (any method of the registry) the views are fed to
    the same encoder, which is this generator's reading of the method, not the paper's exact setup.
    """

    Config = FrameProjectionsConfig

    def __init__(self, config: FrameProjectionsConfig) -> None:
        self.config = config

    def project(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """The view of ``x [N, C, T]`` in ``domain`` ("time", "basis" or "frame")."""
        c = self.config
        if domain == "time":
            return x
        missing = torch.isnan(x)
        filled = x.masked_fill(missing, 0.0)
        if domain == "basis":
            if c.basis == "fourier":
                return fourier_coefficients(filled)
            return filled @ dct_matrix(x.shape[-1], x.device, x.dtype).T
        scales = torch.logspace(math.log10(c.scales[0]), math.log10(c.scales[1]), c.num_scales)
        magnitude = morlet_frame_coefficients(filled, scales, c.bandwidth, c.center_frequency).abs().to(x.dtype)
        magnitude = magnitude.masked_fill(missing.unsqueeze(2), NAN)  # [N, C, S, T]
        return magnitude.flatten(2) if c.frame_layout == "flat" else magnitude

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        """``num_views + num_local_views`` views cycling through ``domains`` (local views continue the cycle)."""
        _check_series_batch(batch, "frame_projections")
        c = self.config
        count = num_views + num_local_views
        domains = [c.domains[i % len(c.domains)] for i in range(count)]
        cache: dict[str, torch.Tensor] = {}
        views = []
        for domain in domains:
            if domain not in cache:
                cache[domain] = self.project(batch, domain)
            views.append(cache[domain])
        if c.pad_to_common_length and all(v.ndim == 3 for v in views) and views:
            longest = max(v.shape[-1] for v in views)
            views = [torch.nn.functional.pad(v, (0, longest - v.shape[-1]), value=NAN) for v in views]
        return Views(views[:num_views], views[num_views:], extras={"domains": domains})


__all__ = [
    "TimeSeriesViewsConfig",
    "TimeSeriesViews",
    "TS2VecCrops",
    "TS2VecCropsConfig",
    "FrameProjections",
    "FrameProjectionsConfig",
    "jitter",
    "scaling",
    "magnitude_warp",
    "time_warp",
    "window_crop",
    "fixed_length_crop",
    "permute_segments",
    "timestamp_mask",
    "frequency_mask",
    "resample",
    "take_windows",
    "smooth_curve",
    "observed_lengths",
    "centerize",
    "fourier_coefficients",
    "inverse_fourier_coefficients",
    "dct_matrix",
    "morlet_frame_coefficients",
]
