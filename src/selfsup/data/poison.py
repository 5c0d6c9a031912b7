"""Backdoor triggers for *simulating* data-poisoning attacks on self-supervised learning.

These functions exist to evaluate defences (``selfsup poison`` writes a poisoned copy of a
dataset; ``selfsup scan`` looks for the poisoned samples; docs/security.md). Two published
attacks, both clean-label: poisoned samples are drawn from one *target* class and keep their
label, so the trigger becomes associated with that class's features during pretraining; at test
time the trigger pasted on an image of any class pulls its embedding towards the target class.

- **CTRL** (Li et al. 2023, "An Embarrassingly Simple Backdoor Attack on Self-supervised
  Learning", ICCV, arXiv 2210.07346): a frequency-domain trigger. RGB -> YCbCr, a 2-D DCT of each
  channel over the whole image (the paper's window is the whole 32x32 CIFAR image), a fixed
  ``magnitude`` added at two high frequencies of the two chrominance channels, inverse DCT, back
  to RGB. The authors' public code uses the diagonal positions ``(15, 15)`` and ``(31, 31)`` of a
  32x32 window (the middle and the highest frequency) and a magnitude of 100 on the 0..255 scale
  in its run commands; those are the defaults here. See :func:`ctrl_positions` for other sizes
  and :func:`ctrl_perturbation` for one-channel images.
- **Patch** (Saha et al. 2022, "Backdoor Attacks on Self-Supervised Learning", CVPR, arXiv
  2105.10123): a visible square trigger pasted at a random location of each image. Their triggers
  (from Saha et al. 2020's HTBA) are a random 4x4 grid of colours resized to the patch size, and
  the patch side is 50 px on 224 px images; here the side is ``round(0.223 * min(H, W))`` pixels
  (at least 1; 6 px on 28x28 Fashion-MNIST) and a one-channel image gets a fixed random 4x4 grid
  of grey levels, resized the same way (bilinear).

Images are ``[N, C, H, W]`` uint8 (0..255) tensors; every random choice comes from a
``torch.Generator``, so a seed fixes the poisoned set, the patch pattern and its locations.
Data layer: numpy and torch only. :func:`poison_splits` and :func:`write_poisoned` make and
write a poisoned copy of a dataset (``selfsup poison``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.core.io import write_atomic
from selfsup.data.base import DatasetSplits, SampleSource
from selfsup.data.loader import materialize
from selfsup.errors import ConfigError, DataError

ATTACKS = ("ctrl", "patch")
CTRL_MAGNITUDE = 100.0  # the public code's run commands (0..255 scale)
PATCH_FRACTION = 50 / 224  # Saha et al.: a 50 px trigger on 224 px ImageNet images
PATCH_GRID = 4  # HTBA's triggers: a 4x4 grid of random colours, resized to the patch side
MIN_SIDE = 4  # smaller images have no high frequency apart from the mean


# ----------------------------------------------------------------------------------------------
# CTRL: a frequency-domain trigger
# ----------------------------------------------------------------------------------------------


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D [n, n]``: ``D[k, i] = a_k cos(pi (2i + 1) k / 2n)`` with
    ``a_0 = sqrt(1/n)``, ``a_k = sqrt(2/n)``; ``D @ x`` is the DCT of ``x``, ``D.T @ c`` its inverse."""
    i = torch.arange(n, dtype=dtype)
    k = i[:, None]
    basis = torch.cos(math.pi * (2 * i[None, :] + 1) * k / (2 * n))
    scale = torch.full((n, 1), math.sqrt(2.0 / n), dtype=dtype)
    scale[0] = math.sqrt(1.0 / n)
    return basis * scale


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions of ``x [..., H, W]``."""
    rows, cols = dct_matrix(x.shape[-2], x.dtype), dct_matrix(x.shape[-1], x.dtype)
    return rows @ x @ cols.T


def idct2(c: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct2`: ``idct2(dct2(x)) == x`` up to rounding."""
    rows, cols = dct_matrix(c.shape[-2], c.dtype), dct_matrix(c.shape[-1], c.dtype)
    return rows.T @ c @ cols


# JPEG's YCbCr (ITU-R BT.601, full range) on the 0..255 scale: Y = luminance, Cb/Cr = chrominance.
_RGB_TO_YCBCR = torch.tensor([
    [0.299, 0.587, 0.114],
    [-0.168736, -0.331264, 0.5],
    [0.5, -0.418688, -0.081312],
], dtype=torch.float64)
_CHROMA_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` RGB on 0..255 -> YCbCr (Cb and Cr centred on 128)."""
    matrix = _RGB_TO_YCBCR.to(x.dtype)
    return torch.einsum("oc,nchw->nohw", matrix, x) + _CHROMA_OFFSET.to(x.dtype)[None, :, None, None]


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (the exact matrix inverse, so a round trip is lossless)."""
    matrix = torch.linalg.inv(_RGB_TO_YCBCR).to(x.dtype)
    centred = x - _CHROMA_OFFSET.to(x.dtype)[None, :, None, None]
    return torch.einsum("oc,nchw->nohw", matrix, centred)


def ctrl_positions(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two DCT coefficients CTRL perturbs, for an ``height x width`` window.

    The public code's 32x32 positions ``(15, 15)`` and ``(31, 31)`` are the middle and the last
    frequency on the diagonal; the rule keeps that: ``(H // 2 - 1, W // 2 - 1)`` and
    ``(H - 1, W - 1)`` (``(13, 13)`` and ``(27, 27)`` on 28x28, ``(3, 3)`` and ``(7, 7)`` on 8x8).
    """
    if min(height, width) < MIN_SIDE:
        raise DataError(f"images of {height}x{width} pixels are too small for the CTRL trigger (at least {MIN_SIDE}x{MIN_SIDE})")
    return (height // 2 - 1, width // 2 - 1), (height - 1, width - 1)


def ctrl_perturbation(x: torch.Tensor, magnitude: float = CTRL_MAGNITUDE) -> torch.Tensor:
    """CTRL's trigger added to float images ``x [N, C, H, W]`` on the 0..255 scale, not clipped.

    Three or more channels (RGB, RGBA): channels 0..2 go to YCbCr, ``magnitude`` is added to the
    DCT coefficients at :func:`ctrl_positions` of Cb and Cr, and the image goes back to RGB
    (other channels untouched). One or two channels (grey, grey + alpha): there is no
    chrominance, so the trigger is added to the DCT of the luminance itself, channel 0 (the
    change is then in the visible channel, and smaller magnitudes are less visible).
    Returns float64 images of ``x``'s shape.
    """
    N, C, H, W = x.shape
    positions = ctrl_positions(H, W)
    out = x.to(torch.float64).clone()
    bump = torch.zeros(H, W, dtype=torch.float64)
    for r, c in positions:
        bump[r, c] = magnitude
    delta = idct2(bump)  # the DCT is linear: adding in frequency = adding this pattern in pixels
    if C >= 3:
        ycbcr = rgb_to_ycbcr(out[:, :3])
        ycbcr[:, 1:3] += delta
        out[:, :3] = ycbcr_to_rgb(ycbcr)
    else:
        out[:, 0] += delta
    return out


def add_ctrl_trigger(images: torch.Tensor, magnitude: float = CTRL_MAGNITUDE) -> torch.Tensor:
    """CTRL-triggered copies of uint8 ``images [N, C, H, W]``: :func:`ctrl_perturbation`, then
    rounded and clipped to 0..255 (as the attack's images are stored), uint8."""
    return ctrl_perturbation(images.to(torch.float64), magnitude).round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# Patch: a visible trigger at a random location
# ----------------------------------------------------------------------------------------------


def patch_side(height: int, width: int, fraction: float = PATCH_FRACTION) -> int:
    """The trigger's side in pixels: ``round(fraction * min(H, W))``, at least 1."""
    return max(1, min(height, width, round(fraction * min(height, width))))


def make_patch(channels: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """A trigger ``[C, side, side]`` uint8: a random ``4 x 4`` grid of colours (grey levels for one
    channel) resized to ``side`` with bilinear interpolation, as HTBA's triggers are made."""
    grid = torch.randint(0, 256, (1, channels, PATCH_GRID, PATCH_GRID), generator=generator).float()
    patch = F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    return patch[0].round().clamp(0, 255).to(torch.uint8)


def random_locations(n: int, height: int, width: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """Top-left corners ``[n, 2]`` (row, column), uniform over the places a ``side`` patch fits."""
    rows = torch.randint(0, height - side + 1, (n,), generator=generator)
    cols = torch.randint(0, width - side + 1, (n,), generator=generator)
    return torch.stack([rows, cols], dim=1)


def paste_patch(images: torch.Tensor, patch: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """Copies of ``images [N, C, H, W]`` with ``patch [C, s, s]`` pasted with its top-left corner at
    ``locations [N, 2]`` (row, column); the patch is cast to the images' dtype."""
    out = images.clone()
    side = patch.shape[-1]
    for i, (r, c) in enumerate(locations.tolist()):
        out[i, :, r : r + side, c : c + side] = patch.to(out.dtype)
    return out


# ----------------------------------------------------------------------------------------------
# The attack as a whole: which samples, which trigger
# ----------------------------------------------------------------------------------------------


@dataclass
class Attack:
    """A simulated attack, JSON-able (written beside the poisoned data), enough to rebuild its
    trigger for the attack-success-rate protocol (:mod:`selfsup.evaluate.attack`).

    Attributes:
        attack: ``"ctrl"`` or ``"patch"``.
        target_class: the label index (into the data's classes) the poisons are drawn from.
        rate: poisoned samples as a fraction of the whole training set.
        seed: seeds the choice of samples, the patch pattern and its locations.
        magnitude: CTRL's coefficient change (0..255 scale).
        patch_fraction: the patch side as a fraction of the image's shorter side.
        patch: the patch trigger ``[C][s][s]`` (uint8 values), for ``"patch"``.
        positions: CTRL's two DCT positions, for ``"ctrl"``.
        class_names: the data's class names (``target_class`` indexes them).
        data, train_subset: the spec of the clean data it was made from, and its
            ``data.train_subset`` (None: all of it).
        num_poisoned: how many training samples carry the trigger.
    """

    attack: str
    target_class: int
    rate: float
    seed: int = 0
    magnitude: float = CTRL_MAGNITUDE
    patch_fraction: float = PATCH_FRACTION
    patch: list[Any] | None = None
    positions: list[list[int]] | None = None
    class_names: list[str] | None = None
    data: str | None = None
    train_subset: int | None = None
    num_poisoned: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Attack":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def apply(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The trigger on uint8 ``images [N, C, H, W]`` (a patch at a random location per image,
        drawn from ``generator``; default: one seeded from ``seed + 1``, apart from the poisoning's)."""
        if self.attack == "ctrl":
            return add_ctrl_trigger(images, self.magnitude)
        if self.patch is None:
            raise ConfigError("this patch attack has no trigger pattern; make it with poison_images")
        patch = torch.tensor(self.patch, dtype=torch.uint8)
        generator = generator or torch.Generator().manual_seed(self.seed + 1)
        H, W = images.shape[-2:]
        return paste_patch(images, patch, random_locations(len(images), H, W, patch.shape[-1], generator))


def check_attack(attack: str, rate: float) -> None:
    """One line for an unknown attack or a rate outside (0, 1)."""
    if attack not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    if not (isinstance(rate, (int, float)) and 0 < rate < 1):
        raise ConfigError(f"--rate must be a fraction of the training set in (0, 1), e.g. 0.01; got {rate}")


def choose_poisoned(labels: torch.Tensor, target_class: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Indices ``[round(rate * N)]`` (sorted) of the samples to poison, drawn at random from the
    samples of ``target_class`` (``labels [N]``)."""
    pool = torch.nonzero(labels == target_class).flatten()
    count = round(rate * len(labels))
    if count < 1:
        raise DataError(
            f"--rate {rate} of {len(labels)} training samples poisons none; raise --rate to at least {1 / len(labels):.2g}"
        )
    if count > len(pool):
        raise DataError(
            f"--rate {rate} asks for {count} poisoned samples, but the target class {target_class} has only "
            f"{len(pool)}; lower --rate to at most {len(pool) / len(labels):.3g}"
        )
    return pool[torch.randperm(len(pool), generator=generator)[:count]].sort().values


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images as uint8 0..255: uint8 kept, floats in [0, 1] scaled and rounded."""
    if x.dtype == torch.uint8:
        return x
    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8)


def poison_images(
    images: torch.Tensor, labels: torch.Tensor, attack: str, target_class: int, rate: float, seed: int = 0,
    magnitude: float = CTRL_MAGNITUDE, patch_fraction: float = PATCH_FRACTION,
) -> tuple[torch.Tensor, torch.Tensor, Attack]:
    """Poison a training set: the trigger on ``round(rate * N)`` images of ``target_class``.

    Args:
        images: ``[N, C, H, W]`` uint8.
        labels: ``[N]`` label indices; they are not changed (clean-label attacks).
        attack: ``"ctrl"`` or ``"patch"``.

    Returns:
        the poisoned images ``[N, C, H, W]`` uint8 (a copy), the poisoned indices ``[P]`` (sorted)
        and the :class:`Attack` that made them.
    """
    check_attack(attack, rate)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DataError(f"poisoning takes uint8 images [N, C, H, W]; got {images.dtype} {tuple(images.shape)}")
    N, C, H, W = images.shape
    if min(H, W) < MIN_SIDE:
        raise DataError(f"images of {H}x{W} pixels are too small to poison (at least {MIN_SIDE}x{MIN_SIDE})")
    generator = torch.Generator().manual_seed(seed)
    chosen = choose_poisoned(labels, target_class, rate, generator)
    spec = Attack(attack=attack, target_class=int(target_class), rate=float(rate), seed=seed, magnitude=float(magnitude),
                  patch_fraction=float(patch_fraction), num_poisoned=len(chosen))
    if attack == "ctrl":
        spec.positions = [list(p) for p in ctrl_positions(H, W)]
    else:
        patch = make_patch(C, patch_side(H, W, patch_fraction), generator)
        spec.patch = patch.tolist()
    out = images.clone()
    out[chosen] = spec.apply(images[chosen], generator)
    return out, chosen, spec


# ----------------------------------------------------------------------------------------------
# A poisoned copy of a dataset (selfsup poison)
# ----------------------------------------------------------------------------------------------


def resolve_target_class(text: str | int, class_names: list[str] | None, labels: torch.Tensor, data_name: str) -> int:
    """The label index ``--target-class`` names: a class name first (for arrays, the original
    label values), else an index ``0..K-1`` of a class that has training samples."""
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    names = list(class_names or [])
    value = str(text).strip()
    if value in names:
        return names.index(value)
    if value.isdigit() and int(value) < num_classes and bool((labels == int(value)).any()):
        return int(value)
    shown = ", ".join(f"{i}: {n}" for i, n in enumerate(names[:12])) if names else f"0..{num_classes - 1}"
    raise DataError(
        f"target class {value!r} is not a class of {data_name}'s training split (classes {shown}); "
        "pass --target-class as one of these indices or names"
    )


def poisoned_paths(output: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """The three files of a poisoned dataset: ``X.npz``, ``X.manifest.csv``, ``X.attack.json``."""
    out = Path(output)
    stem = out.with_suffix("")
    return out, stem.with_name(stem.name + ".manifest.csv"), stem.with_name(stem.name + ".attack.json")


def poison_splits(
    splits: DatasetSplits, attack: str, target: str | int, rate: float, seed: int = 0, magnitude: float = CTRL_MAGNITUDE,
    patch_fraction: float = PATCH_FRACTION, data_name: str | None = None,
) -> tuple[dict[str, np.ndarray], torch.Tensor, Attack]:
    """A poisoned copy of ``splits``' images: ``{"x_train", "y_train", "x_test", "y_test"}`` as uint8
    images ``[N, C, H, W]`` and int64 label indices (test split clean, when there is one), the
    poisoned training indices and the :class:`Attack`."""
    check_attack(attack, rate)
    train = splits.train
    name = data_name or train.name
    if train.modality != "image":
        raise DataError(f"{name} is {train.modality} data; selfsup poison simulates attacks on images only")
    if train.labels is None:
        raise DataError(
            f"{name} has no labels; the simulated attacks draw their poisons from a target class, so the data needs labels"
        )
    target_class = resolve_target_class(target, train.class_names, train.labels, name)
    batch = materialize(train, skip_bad_files=False)
    images, labels = to_uint8(batch["x"]), _labels_of(train, batch["index"])
    poisoned, chosen, spec = poison_images(images, labels, attack, target_class, rate, seed, magnitude, patch_fraction)
    spec.class_names = list(train.class_names) if train.class_names else None
    arrays = {"x_train": poisoned.numpy(), "y_train": labels.numpy()}
    if splits.test is not None and splits.test.labels is not None:
        test = materialize(splits.test, skip_bad_files=False)
        arrays["x_test"] = to_uint8(test["x"]).numpy()
        arrays["y_test"] = _labels_of(splits.test, test["index"]).numpy()
    return arrays, chosen, spec


def _labels_of(source: SampleSource, index: torch.Tensor) -> torch.Tensor:
    root = source
    while hasattr(root, "parent"):
        root = root.parent
    assert root.labels is not None
    return root.labels[index]


def write_poisoned(output: str | os.PathLike[str], arrays: dict[str, np.ndarray], chosen: torch.Tensor, spec: Attack) -> tuple[Path, Path, Path]:
    """Write ``X.npz`` (the arrays), ``X.manifest.csv`` (``id,poisoned`` per training sample: ids
    are the indices in ``x_train``, as ``arrays:X.npz`` names its samples) and ``X.attack.json``
    (the :class:`Attack`), each atomically; returns their paths."""
    npz, manifest, description = poisoned_paths(output)
    write_atomic(npz, lambda tmp: np.savez(tmp, **arrays))
    flags = np.zeros(len(arrays["x_train"]), dtype=np.int64)
    flags[chosen.numpy()] = 1
    rows = "".join(f"{i},{f}\n" for i, f in enumerate(flags.tolist()))
    write_atomic(manifest, "id,poisoned\n" + rows)
    write_atomic(description, json.dumps(spec.to_dict(), indent=1))
    return npz, manifest, description
