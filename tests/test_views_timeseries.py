"""Time-series views: shapes, determinism, per-sample randomness, NaN handling, closed forms for each
augmentation, TS2Vec's overlapping crops against an enumeration of the reference's sampling, and the
frame projections (orthonormal basis reconstruction, Parseval, frame bounds)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.fft import dct
from scipy.interpolate import CubicSpline

from selfsup.errors import ConfigError
from selfsup.views import Views, create_views, list_views
from selfsup.views.timeseries import (
    FrameProjections,
    TimeSeriesViews,
    TS2VecCrops,
    centerize,
    dct_matrix,
    fourier_coefficients,
    inverse_fourier_coefficients,
    morlet_frame_coefficients,
    observed_lengths,
    resample,
    smooth_curve,
)

AUGMENTATIONS = (
    "crop", "time_warp", "permutation", "magnitude_warp", "scaling", "jitter", "frequency_mask", "timestamp_mask"
)
OFF = {name: {"p": 0} for name in AUGMENTATIONS}
NAN = float("nan")


def _only(name: str, **params) -> dict:
    """Every augmentation off except ``name``, which gets ``p=1`` and ``params``."""
    config = {key: dict(value) for key, value in OFF.items()}
    config[name] = {"p": 1, **params}
    return config


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _series(n: int = 4, c: int = 2, t: int = 40, seed: int = 0) -> torch.Tensor:
    """Smooth random series (a few sinusoids) plus noise, ``[n, c, t]``."""
    g = _gen(seed + 100)
    time = torch.linspace(0, 1, t)
    freq = 1 + 4 * torch.rand(n, c, 1, generator=g)
    phase = 6 * torch.rand(n, c, 1, generator=g)
    return torch.sin(2 * math.pi * freq * time + phase) + 0.1 * torch.randn(n, c, t, generator=g)


def _with_missing(x: torch.Tensor) -> torch.Tensor:
    """Row 0: NaN padding at the end (a shorter series); row 1: an interior missing value in channel 0."""
    x = x.clone()
    x[0, :, -(x.shape[-1] // 4) :] = NAN
    x[1, 0, x.shape[-1] // 2] = NAN
    return x


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(torch.isnan(a), torch.isnan(b))) and bool(
        torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    )


def _ramp(n: int, t: int, c: int = 1) -> torch.Tensor:
    """Row i, channel j: ``1000 i + 100 j + arange(t)``: every value says where it came from."""
    return (1000.0 * torch.arange(n).view(n, 1, 1) + 100.0 * torch.arange(c).view(1, c, 1) + torch.arange(t)).float()


def test_registered_and_default_for_the_modality() -> None:
    assert {"timeseries", "ts2vec_crops", "frame_projections"} <= set(list_views())
    assert isinstance(create_views("auto", "timeseries"), TimeSeriesViews)
    assert isinstance(create_views("ts2vec_crops", "timeseries"), TS2VecCrops)
    assert isinstance(create_views("frame_projections", "timeseries"), FrameProjections)


# --------------------------------------------------------------------------- the "timeseries" generator


@pytest.mark.parametrize("shape", [(4, 1, 32), (3, 3, 17), (2, 2, 5), (3, 1, 2)])
@pytest.mark.parametrize("num_views,num_local", [(1, 0), (2, 0), (2, 3)])
def test_shapes_and_counts(shape: tuple[int, int, int], num_views: int, num_local: int) -> None:
    x = _series(*shape)
    out = create_views("timeseries", "timeseries")(x, _gen(), num_views, num_local)
    assert isinstance(out, Views)
    assert len(out.global_views) == num_views and len(out.local_views) == num_local
    for v in out.global_views:
        assert v.shape == x.shape and v.dtype == x.dtype and torch.isfinite(v).all()
    for v in out.local_views:
        assert v.shape == (shape[0], shape[1], max(8, round(0.5 * shape[2]))) and torch.isfinite(v).all()


def test_reproducible_under_a_seeded_generator_and_seed_dependent() -> None:
    views = create_views("timeseries", "timeseries", {"permutation": {"p": 0.5}})
    x = _with_missing(_series())
    a, b, c = views(x, _gen(3), 2, 1), views(x, _gen(3), 2, 1), views(x, _gen(4), 2, 1)
    assert all(_same(u, v) for u, v in zip(a.all_views, b.all_views))
    assert not _same(a.global_views[0], c.global_views[0])
    assert not _same(a.global_views[0], a.global_views[1])  # two views of one call differ


def test_every_probability_zero_is_the_identity() -> None:
    x = _with_missing(_series())
    out = create_views("timeseries", "timeseries", OFF)(x, _gen(), 3)
    assert all(_same(v, x) for v in out.global_views)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_each_augmentation_alone_is_per_sample_and_keeps_missing_values_missing(name: str) -> None:
    views = create_views("timeseries", "timeseries", _only(name))
    # Identical rows: per-sample parameters must make the rows of a view differ.
    x = _series(1, 2, 48).expand(6, -1, -1).contiguous()
    v = views(x, _gen(1), 1).global_views[0]
    assert v.shape == x.shape and torch.isfinite(v).all()
    assert not _same(v, x), f"{name} with p=1 changed nothing"
    assert len({tuple(row.flatten().tolist()) for row in v}) == 6, f"{name}: rows share their parameters"
    # Padding stays where it was; value-wise augmentations keep every NaN exactly in place.
    xm = _with_missing(_series(4, 2, 48))
    vm = views(xm, _gen(2), 1).global_views[0]
    assert torch.isnan(vm[0, :, -12:]).all() and not torch.isnan(vm[0, :, :-12]).any()
    assert not torch.isnan(vm[2:]).any()
    if name not in ("crop", "time_warp", "permutation"):
        assert torch.equal(torch.isnan(vm), torch.isnan(xm))
    else:  # resampled: no value outside the observed range of the series, nothing invented
        row = xm[1][~torch.isnan(xm[1])]
        got = vm[1][~torch.isnan(vm[1])]
        assert got.min() >= row.min() - 1e-6 and got.max() <= row.max() + 1e-6
        assert torch.isnan(vm[1]).sum() <= 2


def test_scaling_is_one_factor_per_sample_and_channel() -> None:
    x = _series(5, 3, 30).abs() + 0.5
    v = create_views("timeseries", "timeseries", _only("scaling", factor=[0.5, 2.0]))(x, _gen(), 1).global_views[0]
    ratio = v / x  # [N, C, T]: constant over time
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), atol=1e-5)
    assert (ratio >= 0.5 - 1e-6).all() and (ratio <= 2.0 + 1e-6).all()
    assert ratio[..., 0].unique().numel() == 15


def test_jitter_std_is_relative_to_the_series_std() -> None:
    g = _gen(7)
    scale = torch.tensor([1.0, 10.0, 0.01]).view(3, 1, 1)
    x = scale * torch.randn(3, 1, 20000, generator=g)
    v = create_views("timeseries", "timeseries", _only("jitter", std=[0.2, 0.2]))(x, _gen(), 1).global_views[0]
    noise_std = (v - x).std(dim=-1).flatten()
    expected = 0.2 * x.std(dim=-1).flatten()
    assert torch.allclose(noise_std, expected, rtol=0.03)


def test_magnitude_warp_linear_curve_is_linear_and_sigma_zero_is_identity() -> None:
    x = _series(4, 2, 40).abs() + 1.0
    linear = {"sigma": 0.3, "knots": 0, "interpolation": "linear"}
    v = create_views("timeseries", "timeseries", _only("magnitude_warp", **linear))(x, _gen(), 1).global_views[0]
    curve = v / x  # a straight line per sample and channel
    assert torch.allclose(curve.diff(n=2, dim=-1), torch.zeros(1), atol=1e-4)
    assert not torch.allclose(curve, torch.ones(1))
    flat = create_views("timeseries", "timeseries", _only("magnitude_warp", sigma=0.0))(x, _gen(), 1).global_views[0]
    assert torch.allclose(flat, x)


def test_smooth_curve_matches_scipy_natural_cubic_spline() -> None:
    g = _gen(5)
    knots = torch.randn(3, 6, generator=g, dtype=torch.float64)
    u = torch.rand(3, 50, generator=g, dtype=torch.float64)
    got = smooth_curve(knots, u, "cubic")
    grid = np.linspace(0, 1, 6)
    for i in range(3):
        want = CubicSpline(grid, knots[i].numpy(), bc_type="natural")(u[i].numpy())
        np.testing.assert_allclose(got[i].numpy(), want, atol=1e-10)
    linear = smooth_curve(knots, u, "linear")
    for i in range(3):
        np.testing.assert_allclose(linear[i].numpy(), np.interp(u[i].numpy(), grid, knots[i].numpy()), atol=1e-12)


def test_time_warp_is_a_monotone_map_of_the_observed_span() -> None:
    T = 60
    x = _ramp(5, T)  # the value is the source position (+ 1000 * row)
    x[4, :, 45:] = NAN  # a shorter series: warped within its own 45 steps
    views = create_views("timeseries", "timeseries", _only("time_warp", sigma=0.5))
    v = views(x, _gen(), 1).global_views[0]
    source = v - 1000 * torch.arange(5).view(5, 1, 1)
    assert (source[:4].diff(dim=-1) > 0).all()  # strictly increasing: a monotone distortion
    assert torch.allclose(source[:4, :, 0], torch.zeros(1), atol=1e-4)
    assert torch.allclose(source[:4, :, -1], torch.full((1,), T - 1.0), atol=1e-3)
    assert not torch.allclose(source[:4], x[:4])
    assert torch.isnan(v[4, :, 45:]).all() and abs(source[4, 0, 44].item() - 44) < 1e-3
    zero = create_views("timeseries", "timeseries", _only("time_warp", sigma=0.0))(x, _gen(), 1).global_views[0]
    assert torch.allclose(zero.nan_to_num(-1.0), x.nan_to_num(-1.0), atol=1e-3)


def test_crop_resized_back_is_a_linear_window_within_the_scale_range() -> None:
    T = 50
    x = _ramp(8, T)
    views = create_views("timeseries", "timeseries", _only("crop", scale=[0.3, 0.6]))
    v = views(x, _gen(), 1).global_views[0] - 1000 * torch.arange(8).view(8, 1, 1)
    assert torch.allclose(v.diff(n=2, dim=-1), torch.zeros(1), atol=1e-3)  # a resampled straight window
    covered = (v[..., -1] - v[..., 0]) / (T - 1)
    assert (covered >= 0.3 - 1e-4).all() and (covered <= 0.6 + 1e-4).all()
    assert (v >= -1e-4).all() and (v <= T - 1 + 1e-4).all()


def test_crop_kept_at_its_length_is_one_length_per_call_and_contiguous() -> None:
    x = _ramp(6, 40)
    views = create_views("timeseries", "timeseries", {**OFF, "crop": {"p": 1, "scale": [0.3, 0.8], "resize": False}})
    out = views(x, _gen(), 3)
    lengths = {v.shape[-1] for v in out.global_views}
    assert len(lengths) == 1 and 12 <= lengths.pop() <= 32
    for v in out.global_views:
        assert (v.diff(dim=-1) == 1).all()  # consecutive raw timestamps
    with pytest.raises(ConfigError, match="crop.p=1"):
        create_views("timeseries", "timeseries", {"crop": {"p": 0.5, "resize": False}})


def test_local_views_are_short_windows() -> None:
    x = _ramp(4, 64)
    config = {**OFF, "local": {"scale": [0.2, 0.2], "length_ratio": 0.25, "min_length": 4}}
    out = create_views("timeseries", "timeseries", config)(x, _gen(), 2, 2)
    for v in out.local_views:
        assert v.shape == (4, 1, 16)
        rel = v - 1000 * torch.arange(4).view(4, 1, 1)
        assert torch.allclose((rel[..., -1] - rel[..., 0]) / 63, torch.full((1,), 0.2), atol=1e-4)


def test_permutation_reorders_whole_segments() -> None:
    x = _ramp(8, 30)
    x[7, :, 24:] = NAN
    views = create_views("timeseries", "timeseries", _only("permutation", max_segments=4))
    v = views(x, _gen(), 1).global_views[0]
    for i in range(8):
        row, got = x[i, 0], v[i, 0]
        observed = ~torch.isnan(row)
        assert torch.equal(torch.isnan(got), ~observed)  # the padding stays at the end
        assert torch.equal(got[observed].sort().values, row[observed])  # a permutation of the values
        jumps = (got[observed].diff() != 1).sum().item()
        assert 1 <= jumps <= 3 or torch.equal(got, row)  # at most 4 runs of consecutive timestamps


def test_timestamp_mask_zeroes_whole_timestamps_in_the_ratio() -> None:
    x = _series(6, 3, 400).abs() + 1.0  # no zeros of its own
    views = create_views("timeseries", "timeseries", _only("timestamp_mask", ratio=[0.25, 0.25]))
    v = views(x, _gen(), 1).global_views[0]
    zero = v == 0
    assert torch.equal(zero.all(dim=1), zero.any(dim=1))  # all channels of a timestamp at once
    assert torch.equal(v[~zero], x[~zero])
    assert ((zero[:, 0].float().mean(dim=1) - 0.25).abs() < 0.08).all()
    spans = create_views("timeseries", "timeseries", _only("timestamp_mask", ratio=[0.2, 0.2], span_length=5))
    s = spans(x, _gen(), 1).global_views[0][:, 0] == 0
    for row in s:
        runs = [len(list(group)) for key, group in itertools.groupby(row.tolist()) if key]
        assert runs and min(runs) >= 5


def test_frequency_mask_keeps_the_mean_and_all_bins_masked_gives_it() -> None:
    x = _series(4, 2, 33)
    views = create_views("timeseries", "timeseries", _only("frequency_mask", ratio=[1.0, 1.0]))
    v = views(x, _gen(), 1).global_views[0]
    assert torch.allclose(v, x.mean(dim=-1, keepdim=True).expand_as(x), atol=1e-5)
    some = create_views("timeseries", "timeseries", _only("frequency_mask", ratio=[0.3, 0.5]))(x, _gen(), 1)
    w = some.global_views[0]
    assert torch.allclose(w.mean(dim=-1), x.mean(dim=-1), atol=1e-5) and not torch.allclose(w, x)


def test_resample_interpolates_and_falls_back_to_the_nearest_value_next_to_missing_ones() -> None:
    x = torch.tensor([[[0.0, 10.0, NAN, 30.0, 40.0]]])
    got = resample(x, torch.tensor([[0.0, 0.5, 1.25, 1.75, 3.5, 4.0]]), torch.tensor([[True] * 5 + [False]]))
    want = torch.tensor([[[0.0, 5.0, 10.0, NAN, 35.0, NAN]]])
    assert _same(got, want)
    assert torch.equal(observed_lengths(torch.tensor([[[1.0, NAN, 2.0, NAN, NAN]]])), torch.tensor([3]))


def test_views_run_on_the_batch_device() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = _with_missing(_series()).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    for name in ("timeseries", "ts2vec_crops", "frame_projections"):
        out = create_views(name, "timeseries")(x, g, 2)
        assert all(v.device == x.device for v in out.all_views)


def test_bad_batches_and_configs_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"\[N, C, T\]"):
        create_views("timeseries", "timeseries")(torch.rand(2, 3, 8, 8), _gen())
    with pytest.raises(ConfigError, match="jiter"):
        create_views("timeseries", "timeseries", {"jiter": {"p": 1}})
    with pytest.raises(ConfigError, match="max_segments"):
        create_views("timeseries", "timeseries", {"permutation": {"max_segments": 1}})


# --------------------------------------------------------------------------- TS2Vec crops


def _reference_outcomes(T: int, temporal_unit: int = 0) -> set[tuple[int, int, int]]:
    """Every (overlap, len1, len2) the reference code's sampling can produce, by enumeration."""
    outcomes = set()
    for crop_l in range(2 ** (temporal_unit + 1), T + 1):
        for crop_left in range(T - crop_l + 1):
            crop_right = crop_left + crop_l
            for crop_eleft in range(crop_left + 1):
                for crop_eright in range(crop_right, T + 1):
                    outcomes.add((crop_l, crop_right - crop_eleft, crop_eright - crop_left))
    return outcomes


def test_ts2vec_crops_sample_exactly_the_reference_outcomes() -> None:
    T = 6
    views = create_views("ts2vec_crops", "timeseries")
    g = _gen()
    seen = set()
    for _ in range(600):
        out = views(_ramp(3, T), g)
        seen.add((out.extras["overlap"], out.global_views[0].shape[-1], out.global_views[1].shape[-1]))
    assert seen == _reference_outcomes(T)


def test_ts2vec_crops_overlap_holds_the_same_raw_timestamps() -> None:
    N, T = 16, 40
    x = _ramp(N, T, c=2)
    views = create_views("ts2vec_crops", "timeseries")
    g = _gen(1)
    starts = set()
    for _ in range(20):
        out = views(x, g)
        v1, v2 = out.global_views
        overlap = out.extras["overlap"]
        assert isinstance(overlap, int) and 2 <= overlap <= min(v1.shape[-1], v2.shape[-1])
        assert torch.equal(v1[..., -overlap:], v2[..., :overlap])
        for v in (v1, v2):  # contiguous windows of the series, inside it (no padding needed)
            assert not torch.isnan(v).any() and (v.diff(dim=-1) == 1).all()
            assert torch.equal(v[:, 1] - v[:, 0], torch.full_like(v[:, 0], 100.0))  # channels aligned
        starts.add(tuple((v1[:, 0, 0] - 1000 * torch.arange(N)).tolist()))
        # The offsets are per sample: the rows of one call start at different timestamps.
    assert any(len(set(s)) > 1 for s in starts)


def test_ts2vec_crops_keep_missing_values_and_are_reproducible() -> None:
    x = _ramp(4, 30)
    x[:, :, 11] = NAN
    views = create_views("ts2vec_crops", "timeseries", {"centerize": False})
    a, b = views(x, _gen(9)), views(x, _gen(9))
    assert all(_same(u, v) for u, v in zip(a.global_views, b.global_views)) and a.extras == b.extras
    for _ in range(30):
        for v in views(x, _gen(_)).global_views:
            rel = v - 1000 * torch.arange(4).view(4, 1, 1)
            start = rel[:, 0, 0].nan_to_num(11.0)  # a window may start at the missing step
            index = start.view(4, 1) + torch.arange(v.shape[-1])
            assert torch.equal(torch.isnan(v[:, 0]), index == 11)


def test_centerize_moves_the_padding_to_both_ends() -> None:
    x = _ramp(2, 10)
    x[0, :, 6:] = NAN  # 4 trailing missing steps -> 2 before, 2 after
    got = centerize(x)
    assert torch.isnan(got[0, 0, :2]).all() and torch.isnan(got[0, 0, -2:]).all()
    assert torch.equal(got[0, 0, 2:8], x[0, 0, :6]) and torch.equal(got[1], x[1])


def test_ts2vec_crops_errors_and_long_series() -> None:
    views = create_views("ts2vec_crops", "timeseries", {"temporal_unit": 2, "max_length": 16})
    with pytest.raises(ConfigError, match="exactly two"):
        views(_ramp(2, 20), _gen(), 3)
    with pytest.raises(ConfigError, match="at least 8 steps"):
        views(_ramp(2, 7), _gen())
    for seed in range(10):
        out = views(_ramp(2, 100), _gen(seed))
        assert max(v.shape[-1] for v in out.global_views) <= 16 and out.extras["overlap"] >= 8


# --------------------------------------------------------------------------- frame projections


@pytest.mark.parametrize("T", [1, 2, 7, 16, 33])
def test_fourier_basis_is_orthonormal_and_reconstruction_is_exact(T: int) -> None:
    x = torch.randn(5, 2, T, generator=_gen(T), dtype=torch.float64)
    c = fourier_coefficients(x)
    assert c.shape == x.shape
    torch.testing.assert_close(inverse_fourier_coefficients(c).double(), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(c.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-6)  # Parseval
    basis = fourier_coefficients(torch.eye(T, dtype=torch.float64))  # column k: coordinates of e_k
    torch.testing.assert_close(basis @ basis.T, torch.eye(T, dtype=torch.float64), rtol=0, atol=1e-5)


def test_dct_basis_is_orthonormal_and_matches_scipy() -> None:
    D = dct_matrix(12, dtype=torch.float64)
    torch.testing.assert_close(D @ D.T, torch.eye(12, dtype=torch.float64))
    x = np.random.default_rng(0).normal(size=(3, 12))
    np.testing.assert_allclose((torch.from_numpy(x) @ D.T).numpy(), dct(x, type=2, norm="ortho", axis=-1), atol=1e-12)


def test_morlet_frame_is_overcomplete_and_a_frame() -> None:
    T, S = 32, 12
    scales = torch.logspace(math.log10(2), math.log10(64), S)
    analysis = morlet_frame_coefficients(torch.eye(T), scales)  # [T, S, T]: coefficients of each e_t
    operator = analysis.permute(1, 2, 0).reshape(S * T, T).to(torch.complex128)  # rows: the S * T atoms
    assert operator.shape[0] == S * T > T  # overcomplete
    # On real series the coefficients' real and imaginary parts form a real operator R^T -> R^(2ST);
    # its singular values bound sum |<x, atom>|^2 / ||x||^2: a frame has a lower bound > 0.
    singular = torch.linalg.svdvals(torch.cat([operator.real, operator.imag]))
    assert singular.min() ** 2 > 1.0 and singular.max() ** 2 < 40.0
    # Atoms are unit-norm: a short atom's coefficients against a centred spike have unit energy.
    spike = torch.zeros(1, 64)
    spike[0, 32] = 1.0
    small = morlet_frame_coefficients(spike, torch.tensor([3.0, 4.0, 8.0]))
    torch.testing.assert_close(small.abs().pow(2).sum(dim=-1), torch.ones(1, 3), atol=1e-3, rtol=0)


def test_morlet_frame_responds_most_at_the_matching_scale() -> None:
    T = 256
    scales = torch.logspace(math.log10(2), math.log10(128), 48)
    for period in (4.0, 16.0, 50.0):
        x = torch.cos(2 * math.pi * torch.arange(T) / period).view(1, T)
        energy = morlet_frame_coefficients(x, scales).abs()[0, :, 64:-64].mean(dim=-1)
        best = scales[energy.argmax()].item()  # centre frequency 1 / scale cycles per step
        assert abs(math.log(best / period)) < math.log(1.2), (period, best)


def test_frame_projection_views_domains_shapes_and_missing_values() -> None:
    x = _with_missing(_series(3, 2, 20))
    config = {"num_scales": 4, "scales": [2.0, 16.0]}
    out = create_views("frame_projections", "timeseries", config)(x, _gen(), 3, 1)
    assert out.extras["domains"] == ["time", "basis", "frame", "time"]
    time_view, basis, frame = out.global_views
    assert all(v.shape == (3, 2, 80) for v in out.all_views)  # padded to the frame's 4 * 20 steps
    assert _same(time_view[..., :20], x) and torch.isnan(time_view[..., 20:]).all()
    assert not torch.isnan(basis[..., :20]).any()
    torch.testing.assert_close(inverse_fourier_coefficients(basis[..., :20]), x.nan_to_num(0.0), atol=1e-5, rtol=0)
    scale_rows = frame.view(3, 2, 4, 20)
    assert torch.equal(torch.isnan(scale_rows), torch.isnan(x).unsqueeze(2).expand_as(scale_rows))
    stacked_config = {**config, "frame_layout": "stacked", "domains": ["frame"]}
    stacked = create_views("frame_projections", "timeseries", stacked_config)
    assert stacked(x, _gen(), 1).global_views[0].shape == (3, 2, 4, 20)
    again = create_views("frame_projections", "timeseries", config)(x, _gen(5), 3, 1)
    assert all(_same(u, v) for u, v in zip(out.all_views, again.all_views))  # no randomness
    dct_views = create_views("frame_projections", "timeseries", {"basis": "dct", "domains": ["time", "basis"]})
    two = dct_views(x, _gen(), 2).global_views
    assert two[1].shape == x.shape
    torch.testing.assert_close(two[1] @ dct_matrix(20), x.nan_to_num(0.0), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="domains"):
        create_views("frame_projections", "timeseries", {"domains": ["time", "wavelet"]})
