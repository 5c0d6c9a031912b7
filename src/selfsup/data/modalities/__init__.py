"""Modalities, one auto-registered file each: what the rest of selfsup knows about a kind of data.

A modality owns everything that depends on what a sample *is*: how samples are collated into a
:class:`~selfsup.data.base.Batch`, how raw samples become floats on the device, the input
statistics and the standardisation the encoder applies, the raw-input baseline's features
``[N, F]`` (and the gradient-boosted-trees baseline's), and the default views and backbone.
Nothing outside these files branches on tensor rank. A new modality is one new file here (or a
class registered with ``@register_modality`` from anywhere, e.g. a test module) and touches
nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar, Iterable

import torch

from selfsup.data.base import Batch, BadSample, collate_samples
from selfsup.registry import Registry


def unit_if_constant(scale: torch.Tensor) -> torch.Tensor:
    """A per-feature scale with 1 where the feature was constant in the samples read (scale below
    ``1e-6``), as scikit-learn's scalers do: such a feature standardises to 0 all the same, and a
    sample outside the samples read that differs is shifted, not multiplied by a million."""
    return torch.where(scale < 1e-6, torch.ones_like(scale), scale)


class Modality:
    """Base of every modality; the defaults suit samples that are one float tensor ``"x"``.

    Class attributes:
        default_views / default_backbone: what a run uses when it says ``auto``
            (:meth:`token_backbone` for methods that need tokens).
        stat_dims: the dimensions of a batch ``x [N, ...]`` the input statistics are taken over
            (images: ``(0, 2, 3)``, one mean per channel); the others are kept, so mean and std
            broadcast over one sample.
        unbiased_std: divide by ``n - 1`` (``False``: by ``n``, as TS2Vec's protocol for series).
        tree_baseline: samples are flat feature vectors, so ``eval.trees: auto`` puts the
            gradient-boosted-trees baseline (:meth:`tree_features`) beside the probes; False
            where trees on the raw values say little (pixels, time steps).
        traceable: an encoder of these samples traces to ONNX / TorchScript (one tensor in).
    """

    default_views: ClassVar[str] = "vector"
    default_backbone: ClassVar[str] = "mlp"

    def __init__(self, info: dict[str, Any] | None = None) -> None:
        # What a source knows about its data beyond shapes (a table's schema: column types and
        # vocabularies), stored with the run; None for modalities that need nothing more.
        self.info = info

    def backbone_inputs(self) -> dict[str, Any]:
        """Backbone params this data decides (a table's categorical columns' sizes,
        ``cardinalities``): a backbone whose config has a field of that name, left unset by the
        user, gets the value when the run is resolved. The default: none."""
        return {}

    def token_backbone(self, sample_shape: tuple[int, ...] | None) -> tuple[str, dict[str, Any]] | None:
        """The backbone (name, params) an ``auto`` run of a method that needs tokens gets, sized
        for ``sample_shape`` when known; None: this modality has no token backbone yet."""
        return None
    stat_dims: ClassVar[tuple[int, ...]] = (0,)
    unbiased_std: ClassVar[bool] = True
    tree_baseline: ClassVar[bool] = False
    # A batch of samples is one tensor, so an encoder traces to ONNX and TorchScript (False for
    # graphs: a GraphBatch is several tensors; their encoders export as safetensors).
    traceable: ClassVar[bool] = True

    @property
    def name(self) -> str:
        """The registered name (sources name the modality of their samples)."""
        return getattr(self, "registered_name", "generic")

    def collate(self, samples: list[dict[str, Any] | BadSample] | Batch) -> Batch:
        """Samples (or a batch a source made whole) -> one :class:`Batch`."""
        return collate_samples(samples)

    def sample_shape_of(self, x: torch.Tensor) -> tuple[int, ...]:
        """The shape of one sample of the batch ``x`` (what a source's ``sample_shape`` says)."""
        return tuple(int(s) for s in x.shape[1:])

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """Raw samples as the source gives them -> float values (on whatever device ``x`` is)."""
        return x.float()

    def view_input(self, batch: Batch) -> torch.Tensor:
        """What the view generators take: the batch's samples as floats."""
        return self.to_float(batch["x"])

    def statistics(self, batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std over ``stat_dims`` of raw batches, in one streaming pass (float64 sums).

        NaN values (a series' missing timestamps) are ignored. Returns float32 tensors shaped to
        broadcast over one sample. A feature constant in the samples read (std below ``1e-6``)
        gets std 1, as scikit-learn's scalers do: it standardises to 0 all the same, and a sample
        outside the (at most 10,000) samples read that differs is shifted, not multiplied by a
        million.
        """
        total = total_sq = count = None
        for x in batches:
            x = self.to_float(x).double()
            present = ~torch.isnan(x)
            x = torch.where(present, x, torch.zeros_like(x))
            s, sq, n = (t.sum(dim=self.stat_dims) for t in (x, x * x, present.double()))
            total, total_sq, count = (s, sq, n) if total is None else (total + s, total_sq + sq, count + n)
        if total is None:
            raise ValueError("no samples to compute input statistics from")
        mean = total / count.clamp(min=1)
        var = (total_sq / count.clamp(min=1) - mean * mean).clamp(min=0)
        if self.unbiased_std:
            var = var * count / (count - 1).clamp(min=1)
        return self._shape(mean).float(), self._shape(unit_if_constant(var.sqrt().float()))

    def _shape(self, stat: torch.Tensor) -> torch.Tensor:
        """Statistics over ``stat_dims`` reshaped to broadcast over one sample ``[*sample_shape]``."""
        kept = [d for d in range(1, stat.ndim + len(self.stat_dims)) if d not in self.stat_dims]
        shape = [1] * (stat.ndim + len(self.stat_dims) - 1)
        for size, dim in zip(stat.shape, kept):
            shape[dim - 1] = size
        return stat.reshape(shape)

    def standardize(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Float samples -> what the backbone takes (here ``(x - mean) / std``)."""
        return (x - mean) / std

    def raw_features(self, x: torch.Tensor, standardized: torch.Tensor) -> torch.Tensor:
        """The raw-input baseline's features ``[N, F]`` from float samples (and their standardised form)."""
        return x.flatten(1)

    def tree_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[bool] | None]:
        """The gradient-boosted-trees baseline's features ``[N, F]`` from float samples (``to_float``
        output, NaN for a missing value) and which of the ``F`` columns are categorical (None:
        none). Here the flattened samples, NaN kept: the trees route missing values themselves."""
        return x.flatten(1), None


MODALITIES: Registry[type[Modality]] = Registry("modality")


register_modality = MODALITIES.register  # @register_modality("name") on a Modality subclass


def get_modality(name: str | None, info: dict[str, Any] | None = None) -> Modality:
    """An instance of the modality ``name`` (``None``: the generic base, one float tensor per
    sample) for data described by ``info`` (a source's ``data_info``; see :class:`Modality`)."""
    return Modality(info) if name is None else MODALITIES.get(name)(info)


def list_modalities() -> list[str]:
    return MODALITIES.names()


# Every module of this package registers its modality on import: a new modality is one new file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Modality", "MODALITIES", "register_modality", "get_modality", "list_modalities"]
