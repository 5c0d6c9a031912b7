"""Image augmentations, batched on the device, with per-sample random parameters.

The pipeline follows SimCLR's (Chen et al. 2020, arXiv 2002.05709, appendix A): random resized
crop with horizontal flip, colour jitter, random grayscale, Gaussian blur; plus optional Gaussian
noise for tiny images. Everything runs as a few batched kernels on ``[N, C, H, W]`` float images
in ``[0, 1]``: the crop and flip are one ``affine_grid`` + ``grid_sample``, the blur one grouped
convolution with a kernel per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

import torch
import torch.nn.functional as F

from selfsup.config import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Range
from selfsup.config_checks import check_pairs
from selfsup.views.base import Views, register_views

AreaFraction = Annotated[float, Range(gt=0, le=1)]  # a crop's share of the image's area: not empty, at most all


@dataclass
class RandomResizedCrop:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio``, resize back."""

    p: Fraction = 1.0
    scale: tuple[AreaFraction, AreaFraction] = (0.2, 1.0)
    ratio: tuple[PositiveFloat, PositiveFloat] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        check_pairs(self, "scale", "ratio")


@dataclass
class HorizontalFlip:
    p: Fraction = 0.5


@dataclass
class ColorJitter:
    """Brightness, contrast, saturation and hue factors; saturation and hue need 3 channels."""

    p: Fraction = 0.8
    # Factors drawn in [max(0, 1 - s), 1 + s]; 0: off.
    brightness: NonNegativeFloat = 0.4
    contrast: NonNegativeFloat = 0.4
    saturation: NonNegativeFloat = 0.2
    hue: Annotated[float, Range(ge=0, le=0.5)] = 0.1  # a rotation in [-hue, hue] turns; 0.5 already reaches every hue


@dataclass
class RandomGrayscale:
    p: Fraction = 0.2


@dataclass
class GaussianBlur:
    """Blur with sigma drawn in ``sigma`` pixels and a kernel about 10% of the image side.

    SimCLR's ImageNet setting (sigma in [0.1, 2.0] px, kernel 10% of the side); on tiny images
    the kernel is at least 3 pixels wide.
    """

    p: Fraction = 0.5
    sigma: tuple[NonNegativeFloat, NonNegativeFloat] = (0.1, 2.0)

    def __post_init__(self) -> None:
        check_pairs(self, "sigma")


@dataclass
class GaussianNoise:
    """Additive noise with standard deviation drawn in ``std``."""

    p: Fraction = 0.0
    std: tuple[NonNegativeFloat, NonNegativeFloat] = (0.0, 0.1)

    def __post_init__(self) -> None:
        check_pairs(self, "std")


@dataclass
class LocalCrops:
    """Multi-crop's small views (Caron et al. 2020, SwAV, arXiv 2006.09882, sec. 3.2).

    Each local view crops a smaller area fraction in ``scale`` and is resized to ``size_ratio``
    times the input side (SwAV: 96 px local crops of 224 px images, scale (0.05, 0.14); DINO
    uses (0.05, 0.4)). The other augmentations are the same as for the global views.
    """

    scale: tuple[AreaFraction, AreaFraction] = (0.05, 0.4)
    size_ratio: Annotated[float, Range(gt=0, le=1)] = 0.5  # of the global views' side: local crops are not larger
    min_size: PositiveInt = 4

    def __post_init__(self) -> None:
        check_pairs(self, "scale")


@dataclass
class ImageViewsConfig:
    crop: RandomResizedCrop = field(default_factory=RandomResizedCrop)
    flip: HorizontalFlip = field(default_factory=HorizontalFlip)
    jitter: ColorJitter = field(default_factory=ColorJitter)
    grayscale: RandomGrayscale = field(default_factory=RandomGrayscale)
    blur: GaussianBlur = field(default_factory=GaussianBlur)
    noise: GaussianNoise = field(default_factory=GaussianNoise)
    local: LocalCrops = field(default_factory=LocalCrops)


def _uniform(low: float, high: float, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def _bernoulli(p: float, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Per-sample coin flips ``[n]`` (bool)."""
    return torch.rand(n, generator=g, device=device) < p


def random_resized_crop_and_flip(
    x: torch.Tensor,
    crop: RandomResizedCrop,
    flip: HorizontalFlip,
    g: torch.Generator,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """One random crop (and flip) per image, resized to ``out_size`` (default: the input size).

    ``x: [N, C, H, W] -> [N, C, *out_size]``.
    """
    N, _, H, W = x.shape
    if out_size is not None:
        H, W = out_size
    dev = x.device
    area = _uniform(crop.scale[0], crop.scale[1], N, g, dev)
    log_ratio = _uniform(math.log(crop.ratio[0]), math.log(crop.ratio[1]), N, g, dev)
    ratio = torch.exp(log_ratio)
    # Width and height as fractions of the image side (affine_grid's [-1, 1] box has side 2).
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    apply = _bernoulli(crop.p, N, g, dev)
    width = torch.where(apply, width, torch.ones_like(width))
    height = torch.where(apply, height, torch.ones_like(height))
    # Centre anywhere the crop stays inside the image.
    cx = (1 - width) * (2 * torch.rand(N, generator=g, device=dev) - 1)
    cy = (1 - height) * (2 * torch.rand(N, generator=g, device=dev) - 1)
    sign = torch.where(_bernoulli(flip.p, N, g, dev), -1.0, 1.0)
    theta = torch.zeros(N, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = width * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = height
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [N, x.shape[1], H, W], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


_LUMA = (0.299, 0.587, 0.114)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``[N, 1, H, W]`` of RGB images (or the image itself when it has one channel)."""
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    weights = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def color_jitter(x: torch.Tensor, jitter: ColorJitter, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, then (RGB only) saturation and hue, with per-sample factors."""
    N, C = x.shape[:2]
    dev = x.device
    apply = _bernoulli(jitter.p, N, g, dev).to(x.dtype).view(N, 1, 1, 1)

    def factor(strength: float) -> torch.Tensor:
        # 1 where the jitter is not applied, else uniform in [1 - s, 1 + s].
        f = _uniform(max(0.0, 1 - strength), 1 + strength, N, g, dev).view(N, 1, 1, 1)
        return 1 + apply * (f - 1)

    x = x * factor(jitter.brightness)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor(jitter.contrast) + mean
    if C == 3:
        gray = _gray(x)
        x = (x - gray) * factor(jitter.saturation) + gray
        if jitter.hue > 0:
            # Rotate chroma in YIQ space by an angle in [-hue, hue] turns.
            angle = _uniform(-jitter.hue, jitter.hue, N, g, dev) * 2 * math.pi * apply.view(N)
            x = _rotate_hue(x, angle)
    return x.clamp(0.0, 1.0)


# RGB -> YIQ and back, inverted once here (not per batch: on a GPU, torch.linalg.inv checks its
# result on the host, a synchronisation per step).
_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_TO_RGB = torch.linalg.inv(_TO_YIQ)
_YIQ_ON: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the I/Q chroma plane of RGB images ``[N, 3, H, W]`` by ``angle [N]`` radians."""
    key = (x.device, x.dtype)
    if key not in _YIQ_ON:  # copied to each device once
        _YIQ_ON[key] = (_TO_YIQ.to(x.device, x.dtype), _TO_RGB.to(x.device, x.dtype))
    to_yiq, to_rgb = _YIQ_ON[key]
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    transform = to_rgb @ rotation @ to_yiq  # [N, 3, 3]
    return torch.einsum("nij,njhw->nihw", transform, x)


def random_grayscale(x: torch.Tensor, grayscale: RandomGrayscale, g: torch.Generator) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    apply = _bernoulli(grayscale.p, x.shape[0], g, x.device).view(-1, 1, 1, 1)
    return torch.where(apply, _gray(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, blur: GaussianBlur, g: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (grouped convolution)."""
    N, C, H, W = x.shape
    dev = x.device
    side = min(H, W)
    if side < 3:
        return x
    sigma = _uniform(blur.sigma[0], blur.sigma[1], N, g, dev)  # in pixels
    apply = _bernoulli(blur.p, N, g, dev)
    radius = max(1, int(0.1 * side) // 2)  # kernel of 2 * radius + 1, about 10% of the side
    offsets = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.clamp(min=1e-3).view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [N, K]
    identity = (offsets == 0).to(x.dtype).expand(N, -1)
    kernel = torch.where(apply.view(-1, 1), kernel, identity)
    kernel = kernel.repeat_interleave(C, dim=0)  # one kernel per (image, channel) group
    flat = x.reshape(1, N * C, H, W)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(N * C, 1, 1, -1), groups=N * C)  # along width
    flat = F.conv2d(flat, kernel.view(N * C, 1, -1, 1), groups=N * C)  # along height
    return flat.view(N, C, H, W)


def gaussian_noise(x: torch.Tensor, noise: GaussianNoise, g: torch.Generator) -> torch.Tensor:
    if noise.p <= 0:
        return x
    N = x.shape[0]
    std = _uniform(noise.std[0], noise.std[1], N, g, x.device)
    std = std * _bernoulli(noise.p, N, g, x.device)
    return x + std.view(N, 1, 1, 1) * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


@register_views("image")
class ImageViews:
    """SimCLR-style image views. ``batch: [N, C, H, W]`` in ``[0, 1]`` -> views of the same shape."""

    Config = ImageViewsConfig

    def __init__(self, config: ImageViewsConfig) -> None:
        self.config = config

    def view(self, x: torch.Tensor, g: torch.Generator, local: bool = False) -> torch.Tensor:
        """One augmented view of every image in ``x`` (a small multi-crop view when ``local``)."""
        c = self.config
        if local:
            H, W = x.shape[-2:]
            size = (max(c.local.min_size, round(H * c.local.size_ratio)), max(c.local.min_size, round(W * c.local.size_ratio)))
            crop = RandomResizedCrop(p=1.0, scale=c.local.scale, ratio=c.crop.ratio)
            x = random_resized_crop_and_flip(x, crop, c.flip, g, out_size=size)
        else:
            x = random_resized_crop_and_flip(x, c.crop, c.flip, g)
        x = color_jitter(x, c.jitter, g)
        x = random_grayscale(x, c.grayscale, g)
        x = gaussian_blur(x, c.blur, g).clamp(0.0, 1.0)  # rounding in the blur can overshoot 1
        return gaussian_noise(x, c.noise, g)

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        """``num_views`` global views at the input size and ``num_local_views`` small crops."""
        if batch.ndim != 4 or batch.shape[0] == 0:
            raise ValueError(f"image views take non-empty [N, C, H, W] batches; got shape {tuple(batch.shape)}")
        return Views(
            [self.view(batch, generator) for _ in range(num_views)],
            [self.view(batch, generator, local=True) for _ in range(num_local_views)],
        )
