"""View generators: shapes, determinism, per-sample randomness and each augmentation in isolation."""

from __future__ import annotations

import pytest
import torch

from selfsup.errors import ConfigError
from selfsup.views import Views, create_views, list_views

AUGMENTATIONS = ("crop", "flip", "jitter", "grayscale", "blur", "noise")
OFF = {key: {"p": 0} for key in AUGMENTATIONS}  # every augmentation's probability 0


def _only(name: str, **params) -> dict:
    """Every augmentation off except ``name``, which gets ``p=1`` and ``params``."""
    config = {key: dict(value) for key, value in OFF.items()}
    config[name] = {"p": 1, **params}
    return config


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 4, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=_gen(seed + 1000))


def _smooth_images(n: int = 4, c: int = 3, h: int = 16, w: int = 16) -> torch.Tensor:
    """Images in [0, 1] with structure (gradients + blobs) so every augmentation changes them."""
    ys = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xs = torch.linspace(0, 1, w).view(1, 1, 1, w)
    phase = torch.arange(n * c, dtype=torch.float32).view(n, c, 1, 1)
    img = 0.5 + 0.25 * torch.sin(6 * xs + phase) * torch.cos(4 * ys - phase) + 0.2 * (xs - ys)
    return img.clamp(0, 1)


IMAGE_SHAPES = [(4, 3, 16, 16), (3, 1, 16, 16), (2, 3, 12, 20), (2, 1, 20, 12), (5, 3, 8, 8)]


def test_registered() -> None:
    assert {"image", "vector"} <= set(list_views())


# --------------------------------------------------------------------------- shapes and counts


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize("num_views", [1, 2, 3])
def test_image_views_shapes_and_count(shape: tuple[int, ...], num_views: int) -> None:
    views = create_views("image", "image")
    x = _images(*shape)
    out = views(x, _gen(), num_views)
    assert isinstance(out, Views)
    assert len(out.global_views) == num_views
    assert out.local_views == []
    for v in out.global_views:
        assert v.shape == x.shape and v.dtype == x.dtype
        assert torch.isfinite(v).all()


@pytest.mark.parametrize("shape", [(8, 5), (1, 3), (32, 13)])
@pytest.mark.parametrize("num_views", [1, 2, 4])
def test_vector_views_shapes_and_count(shape: tuple[int, int], num_views: int) -> None:
    views = create_views("vector", "vector")
    x = torch.randn(*shape, generator=_gen(1))
    out = views(x, _gen(), num_views)
    assert len(out.global_views) == num_views
    for v in out.global_views:
        assert v.shape == x.shape and v.dtype == x.dtype


def test_auto_picks_the_modality_default() -> None:
    x = _images()
    a = create_views("auto", "image")(x, _gen(3), 2)
    b = create_views("image", "image")(x, _gen(3), 2)
    for va, vb in zip(a.global_views, b.global_views):
        assert torch.equal(va, vb)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("modality", ["image", "vector"])
def test_same_seed_same_views_different_seed_different(modality: str) -> None:
    views = create_views(modality, modality)
    x = _images() if modality == "image" else torch.randn(16, 10, generator=_gen(1))
    a = views(x, _gen(7), 2).global_views
    b = views(x, _gen(7), 2).global_views
    c = views(x, _gen(8), 2).global_views
    for va, vb in zip(a, b):
        assert torch.equal(va, vb)
    assert any(not torch.equal(va, vc) for va, vc in zip(a, c))
    # The views of one call differ from each other (the generator advances between views).
    assert not torch.equal(a[0], a[1])


def test_generator_state_advances_between_calls() -> None:
    views = create_views("image", "image")
    x = _images()
    g = _gen(11)
    first = views(x, g, 1).global_views[0]
    second = views(x, g, 1).global_views[0]
    assert not torch.equal(first, second)


def test_views_do_not_touch_the_global_rng_or_the_input() -> None:
    views = create_views("image", "image", {"noise": {"p": 1}})
    x = _images()
    x_before = x.clone()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    views(x, _gen(0), 2)
    assert torch.equal(torch.rand(3), expected_next), "views consumed the global RNG instead of the generator"
    assert torch.equal(x, x_before), "views modified their input in place"


# --------------------------------------------------------------------------- per-sample randomness


@pytest.mark.parametrize("config", [None, _only("crop"), _only("jitter"), _only("blur"), _only("flip", p=0.5)])
def test_image_random_parameters_are_drawn_per_sample(config: dict | None) -> None:
    n = 16
    one = _smooth_images(1, 3, 16, 16)
    x = one.expand(n, -1, -1, -1).contiguous()
    v = create_views("image", "image", config)(x, _gen(5), 1).global_views[0]
    distinct = {tuple(row.flatten().tolist()) for row in v}
    if config is not None and config["flip"]["p"] == 0.5:
        assert len(distinct) == 2  # flipped or not, both must occur among 16 samples
    else:
        assert len(distinct) == n, f"only {len(distinct)} distinct views of {n} identical images"


def test_crop_differs_per_sample() -> None:
    n = 12
    x = _smooth_images(1, 1, 16, 16).expand(n, -1, -1, -1).contiguous()
    v = create_views("image", "image", _only("crop"))(x, _gen(6), 1).global_views[0]
    for i in range(n):
        for j in range(i + 1, n):
            assert not torch.allclose(v[i], v[j], atol=1e-4), (i, j)


def test_vector_corruption_is_per_sample() -> None:
    n, d = 32, 20
    row = torch.randn(1, d, generator=_gen(2))
    x = torch.cat([row, torch.randn(n - 1, d, generator=_gen(3))])  # donors differ from row 0
    x[1:8] = row  # several copies of the same sample
    v = create_views("vector", "vector")(x, _gen(4), 1).global_views[0]
    masks = {tuple((v[i] != x[i]).tolist()) for i in range(8)}
    assert len(masks) > 1


# --------------------------------------------------------------------------- value ranges


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_image_views_stay_in_unit_range_without_noise(shape: tuple[int, ...], seed: int) -> None:
    # Strong settings on every augmentation to push values toward the edges.
    params = {
        "crop": {"p": 1},
        "flip": {"p": 0.5},
        "jitter": {"p": 1, "brightness": 0.9, "contrast": 0.9, "saturation": 0.9, "hue": 0.5},
        "grayscale": {"p": 0.5},
        "blur": {"p": 1},
    }
    x = _images(*shape, seed=seed)
    x[:, :, 0, :] = 1.0  # saturated rows and columns
    x[:, :, :, 0] = 0.0
    for v in create_views("image", "image", params)(x, _gen(seed), 3).global_views:
        # The blur runs after the jitter's clamp; its normalised kernel may overshoot by a few ulp.
        assert v.min() >= -1e-6 and v.max() <= 1.0 + 1e-6


def test_noise_can_leave_the_unit_range() -> None:
    x = torch.full((4, 3, 8, 8), 0.5)
    v = create_views("image", "image", _only("noise", std=[0.5, 0.5]))(x, _gen(), 1).global_views[0]
    assert (v - x).abs().max() > 0.5  # noise is added and not clamped
    torch.testing.assert_close((v - x).std(), torch.tensor(0.5), atol=0.05, rtol=0)


# --------------------------------------------------------------------------- each augmentation alone


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_all_probabilities_zero_is_identity(shape: tuple[int, ...]) -> None:
    views = create_views("image", "image", OFF)
    x = _images(*shape)
    for v in views(x, _gen(9), 2).global_views:
        torch.testing.assert_close(v, x, atol=1e-5, rtol=0)


def test_all_probabilities_zero_is_identity_float64() -> None:
    x = _images().double()
    v = create_views("image", "image", OFF)(x, _gen(), 1).global_views[0]
    assert v.dtype == torch.float64
    torch.testing.assert_close(v, x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_flip_only_is_a_horizontal_flip(shape: tuple[int, ...]) -> None:
    x = _images(*shape)
    v = create_views("image", "image", _only("flip"))(x, _gen(), 1).global_views[0]
    torch.testing.assert_close(v, torch.flip(x, dims=[3]), atol=1e-5, rtol=0)


def test_full_crop_scale_without_aspect_change_is_identity() -> None:
    # scale (1, 1) and ratio (1, 1): the crop box is the whole image.
    x = _images(3, 3, 12, 20)
    params = _only("crop", scale=[1.0, 1.0], ratio=[1.0, 1.0])
    v = create_views("image", "image", params)(x, _gen(), 1).global_views[0]
    torch.testing.assert_close(v, x, atol=1e-5, rtol=0)


def _ramps(n: int, h: int, w: int) -> torch.Tensor:
    """Channel 0 a horizontal ramp 0 -> 1 over the pixel centres, channel 1 a vertical one."""
    rx = torch.linspace(0, 1, w).view(1, w).expand(h, w)
    ry = torch.linspace(0, 1, h).view(h, 1).expand(h, w)
    return torch.stack([rx, ry]).unsqueeze(0).expand(n, -1, -1, -1).contiguous()


@pytest.mark.parametrize("h,w", [(16, 16), (12, 20)])
def test_crop_box_has_the_drawn_area_and_aspect_ratio(h: int, w: int) -> None:
    """Area in ``scale`` and aspect ratio (box width / box height, as fractions of the sides) in ``ratio``."""
    # A bilinear resample of a linear ramp is exact, so a view's slopes give the crop box: one output
    # pixel steps (box width fraction) input pixels, i.e. width / (W - 1) of the ramp. The median
    # slope ignores the outermost output pixels, which may fall between the last input pixel
    # centre and the image edge (clamped there).
    n = 64
    scale, ratio = (0.1, 0.5), (0.5, 2.0)  # small enough that the box is never clamped to the image
    params = _only("crop", scale=list(scale), ratio=list(ratio))
    v = create_views("image", "image", params)(_ramps(n, h, w), _gen(4), 1).global_views[0]
    width = v[:, 0].diff(dim=2).flatten(1).median(dim=1).values * (w - 1)
    height = v[:, 1].diff(dim=1).flatten(1).median(dim=1).values * (h - 1)
    area, aspect = width * height, width / height
    assert (area >= scale[0] - 1e-4).all() and (area <= scale[1] + 1e-4).all()
    assert (aspect >= ratio[0] - 1e-3).all() and (aspect <= ratio[1] + 1e-3).all()
    # Drawn per sample: areas and aspect ratios all differ, and spread over their ranges.
    assert len(set(area.round(decimals=6).tolist())) == n
    assert len(set(aspect.round(decimals=6).tolist())) == n
    assert area.min() < 0.2 and area.max() > 0.4
    assert aspect.log().min() < -0.4 and aspect.log().max() > 0.4
    # Rows of the horizontal ramp stay ramps: no rotation or shear.
    torch.testing.assert_close(v[:, 0], v[:, 0, :1, :].expand_as(v[:, 0]), atol=1e-5, rtol=0)
    # Values come from inside the image: each view's ramp is a sub-range of [0, 1] of that width.
    span = v[:, 0].amax(dim=(1, 2)) - v[:, 0].amin(dim=(1, 2))
    assert (span <= width + 1e-5).all() and (span >= width - 1.0 / (w - 1)).all()
    torch.testing.assert_close(v[:, 1], v[:, 1, :, :1].expand_as(v[:, 1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(6, 3, 32, 32), (6, 1, 32, 32), (4, 3, 24, 40)])
def test_blur_only_preserves_mean_and_reduces_variance(shape: tuple[int, ...]) -> None:
    x = _images(*shape, seed=3)  # i.i.d. uniform noise
    v = create_views("image", "image", _only("blur", sigma=[1.0, 2.0]))(x, _gen(2), 1).global_views[0]
    torch.testing.assert_close(v.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02, rtol=0)
    assert (v.var(dim=(2, 3)) < 0.5 * x.var(dim=(2, 3))).all()
    assert v.min() >= -1e-6 and v.max() <= 1 + 1e-6


def test_blur_only_default_sigma_range_still_reduces_variance() -> None:
    x = _images(8, 3, 32, 32, seed=4)
    v = create_views("image", "image", _only("blur"))(x, _gen(3), 1).global_views[0]
    assert (v.var(dim=(2, 3)) < x.var(dim=(2, 3))).all()
    torch.testing.assert_close(v.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02, rtol=0)


def test_blur_keeps_constant_images_constant() -> None:
    x = torch.full((3, 3, 16, 16), 0.3)
    v = create_views("image", "image", _only("blur"))(x, _gen(), 1).global_views[0]
    torch.testing.assert_close(v, x, atol=1e-6, rtol=0)


def test_grayscale_on_rgb_gives_equal_channels_with_luma() -> None:
    x = _images(4, 3, 12, 20)
    v = create_views("image", "image", _only("grayscale"))(x, _gen(), 1).global_views[0]
    torch.testing.assert_close(v[:, 0], v[:, 1], atol=0, rtol=0)
    torch.testing.assert_close(v[:, 1], v[:, 2], atol=0, rtol=0)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # ITU-R BT.601
    torch.testing.assert_close(v[:, 0], luma, atol=1e-5, rtol=0)


def test_grayscale_on_one_channel_is_identity() -> None:
    x = _images(4, 1, 12, 20)
    v = create_views("image", "image", _only("grayscale"))(x, _gen(), 1).global_views[0]
    torch.testing.assert_close(v, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_only_changes_values_but_not_geometry(channels: int) -> None:
    x = _smooth_images(6, channels, 12, 20)
    v = create_views("image", "image", _only("jitter"))(x, _gen(1), 1).global_views[0]
    assert not torch.allclose(v, x, atol=1e-3)
    assert v.min() >= 0 and v.max() <= 1
    # A pure brightness change scales every pixel by one factor per image (before clipping).
    vb = create_views("image", "image", _only("jitter", contrast=0.0, saturation=0.0, hue=0.0))(
        x, _gen(1), 1
    ).global_views[0]
    ratio = vb / x
    unclipped = vb < 1.0
    for i in range(x.shape[0]):
        r = ratio[i][unclipped[i]]
        assert r.numel() > 0
        torch.testing.assert_close(r, torch.full_like(r, r[0].item()), atol=1e-4, rtol=0)
        assert 0.6 - 1e-4 <= r[0].item() <= 1.4 + 1e-4


def test_grayscale_then_jitter_saturation_has_no_effect_on_gray_images() -> None:
    # Hue and saturation act on chroma only: a gray RGB image stays gray.
    gray = _smooth_images(4, 1, 16, 16).expand(-1, 3, -1, -1).contiguous()
    views = create_views("image", "image", _only("jitter", brightness=0.0, contrast=0.0))
    v = views(gray, _gen(2), 1).global_views[0]
    torch.testing.assert_close(v, gray, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- vector views


def test_vector_zero_corruption_returns_the_input() -> None:
    x = torch.randn(16, 9, generator=_gen(1))
    for v in create_views("vector", "vector", {"corruption_rate": 0.0})(x, _gen(2), 3).global_views:
        assert torch.equal(v, x)


def test_vector_heavy_corruption_draws_from_the_same_column() -> None:
    n, d = 24, 11
    x = torch.randn(n, d, generator=_gen(1))  # distinct values everywhere
    # 0.99: a rate of 1 is refused (a view would keep nothing of its sample).
    v = create_views("vector", "vector", {"corruption_rate": 0.99})(x, _gen(2), 1).global_views[0]
    for i in range(n):
        for j in range(d):
            assert (x[:, j] == v[i, j]).any(), f"view[{i}, {j}] is not a value of column {j}"
    # With (almost) every entry resampled independently, the view is not the input.
    assert not torch.equal(v, x)
    # Donors are independent per entry: rows of the view mix several donor samples.
    donors = torch.stack([(x[:, j] == v[:, j : j + 1]).float().argmax(dim=1) for j in range(d)], dim=1)
    assert all(len(set(donors[i].tolist())) > 1 for i in range(n))


def test_vector_partial_corruption_rate_is_respected() -> None:
    n, d, rate = 200, 50, 0.3
    x = torch.randn(n, d, generator=_gen(1))
    v = create_views("vector", "vector", {"corruption_rate": rate})(x, _gen(2), 1).global_views[0]
    changed = (v != x).float().mean().item()
    # Entries are replaced with probability `rate`, except when the donor is the sample itself (1/n).
    assert changed == pytest.approx(rate * (1 - 1 / n), abs=0.02)
    for j in range(d):
        assert torch.isin(v[:, j], x[:, j]).all()


def test_vector_noise() -> None:
    x = torch.zeros(500, 20)
    v = create_views("vector", "vector", {"corruption_rate": 0.0, "noise_std": 0.3})(x, _gen(), 1).global_views[0]
    torch.testing.assert_close(v.std(), torch.tensor(0.3), atol=0.01, rtol=0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 1, 3, 16, 16), (16,)])
def test_image_views_reject_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        create_views("image", "image")(torch.rand(*shape), _gen(), 2)


@pytest.mark.parametrize("shape", [(16,), (4, 3, 5), (2, 1, 8, 8)])
def test_vector_views_reject_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        create_views("vector", "vector")(torch.rand(*shape), _gen(), 2)


def test_unknown_image_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        create_views("image", "image", {"crops": {"p": 0}})
    message = str(info.value)
    assert "crops" in message
    for key in AUGMENTATIONS:
        assert key in message


def test_unknown_nested_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        create_views("image", "image", {"blur": {"sigmas": [0.1, 0.2]}})
    message = str(info.value)
    assert "sigmas" in message and "sigma" in message.replace("sigmas", "") and "p" in message


def test_unknown_vector_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        create_views("vector", "vector", {"corruption": 0.5})
    message = str(info.value)
    assert "corruption_rate" in message and "noise_std" in message


def test_unknown_views_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        create_views("imgae", "image")


def test_multicrop_local_views_are_smaller_and_reproducible() -> None:
    from selfsup.views import create_views

    views = create_views("image", "image")
    x = torch.rand(6, 3, 16, 16)
    a = views(x, torch.Generator().manual_seed(3), 2, 4)
    b = views(x, torch.Generator().manual_seed(3), 2, 4)
    assert len(a.global_views) == 2 and len(a.local_views) == 4
    assert all(v.shape == (6, 3, 16, 16) for v in a.global_views)
    assert all(v.shape == (6, 3, 8, 8) for v in a.local_views)
    for u, v in zip(a.all_views, b.all_views):
        torch.testing.assert_close(u, v)
    # per-sample crops: the local views of two identical images differ
    same = torch.rand(1, 3, 16, 16).expand(6, -1, -1, -1).contiguous()
    local = views(same, torch.Generator().manual_seed(0), 2, 1).local_views[0]
    assert not torch.allclose(local[0], local[1])


def test_vector_views_give_extra_views_for_multicrop() -> None:
    from selfsup.views import create_views

    out = create_views("vector", "vector")(torch.randn(8, 5), torch.Generator().manual_seed(0), 2, 3)
    assert len(out.local_views) == 3 and all(v.shape == (8, 5) for v in out.local_views)
