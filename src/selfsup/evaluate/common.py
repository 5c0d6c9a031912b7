"""The probes' building blocks: results, shared input checks and the train-only validation split.

Every probe takes ``(train_x, train_y, test_x, test_y)``: features are float ``[N, D]`` numpy arrays
or torch tensors, labels are integer ``[N]``. Hyperparameters are chosen on a stratified held-out
part of the TRAIN set only; the probe is then refit on the whole train set and scored once on test,
so the test set never influences a choice. Problems the caller can fix raise
:class:`selfsup.errors.DataError` (bad data) or :class:`selfsup.errors.ConfigError` (bad
hyperparameter or probe name), naming the offending argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from selfsup.config import to_plain
from selfsup.errors import ConfigError, DataError

ArrayLike = Any  # a numpy array, a torch tensor, or anything ``np.asarray`` accepts

PROBES: tuple[str, ...] = ("knn", "linear")


@dataclass
class ProbeResult:
    """The outcome of one probe on frozen features.

    Attributes:
        accuracy: top-1 accuracy on the test set, in ``[0, 1]``, of the probe refit on all of train.
        chosen: the hyperparameters picked on the held-out part of train, e.g. ``{"k": 20}`` or ``{"C": 0.1}``.
        val_accuracy: accuracy of the chosen hyperparameters on the held-out part of train.
        name: the probe, e.g. ``"knn"``, ``"linear"``, ``"fewshot"``, ``"retrieval"``.
        details: extra diagnostics (validation accuracy of every candidate, split sizes, and for the
            linear probe whether the solver converged).
        columns: the summary-table cells of a probe that reports several numbers, or a number that
            is not an accuracy: ``{column: value}`` where a value is a float in ``[0, 1]`` or
            ``{"mean": m, "std": s, ...}`` over random draws (few-label settings, shown ``m±s``).
            Empty: one column named after the probe holding ``accuracy``.
    """

    accuracy: float
    chosen: dict[str, Any]
    val_accuracy: float
    name: str
    details: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (numpy scalars become Python numbers)."""
        return to_plain(self)

    def table_cells(self) -> dict[str, Any]:
        """``{column: value}`` for :func:`format_table` and ``metrics.json``."""
        return dict(self.columns) if self.columns else {self.name: self.accuracy}


# ----------------------------------------------------------------------------------------------
# Input checks shared by the probes
# ----------------------------------------------------------------------------------------------


def features_tensor(x: ArrayLike, name: str, allow_nan: bool = False) -> torch.Tensor:
    """``x`` as a float32 torch tensor ``[N, D]``, kept on its device; checked 2-D, non-empty and
    finite (``allow_nan``: NaN passes as a missing value, for models that handle it; inf never does).

    Raises:
        DataError: naming ``name``, if ``x`` is not a numeric 2-D array or holds NaN/inf.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise DataError(f"{name} could not be read as an array: {exc}") from exc
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise DataError(f"{name} must be a numeric array of shape [N, D], got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise DataError(f"{name} must be real-valued, got dtype {t.dtype}")
    if t.ndim != 2:
        raise DataError(
            f"{name} must be a 2-D array of shape [N, D] (one row of features per sample), got shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {tuple(t.shape)}); it needs at least one sample and one feature")
    t = t.float()
    valid = torch.isfinite(t)
    if allow_nan:
        valid |= torch.isnan(t)
    finite = valid.all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        what = "infinite" if allow_nan else "NaN or infinite"
        raise DataError(
            f"{name} contains {what} values in {bad.numel()} of {t.shape[0]} rows "
            f"(first bad row: {int(bad[0])}); remove or fix those samples before evaluating"
        )
    return t


def features_numpy(x: ArrayLike, name: str, dtype: type = np.float64, allow_nan: bool = False) -> np.ndarray:
    """``x`` as a CPU numpy array ``[N, D]`` of ``dtype``, checked like :func:`features_tensor`."""
    return features_tensor(x, name, allow_nan).cpu().numpy().astype(dtype, copy=False)


def labels_numpy(y: ArrayLike, name: str) -> np.ndarray:
    """``y`` as an int64 numpy array ``[N]``; float labels pass only if every value is a whole number.

    Raises:
        DataError: naming ``name``, if ``y`` is not 1-D, is empty, or is not integer-valued.
    """
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of integer class labels [N], got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{name} is empty; it needs one label per sample")
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{name} contains NaN or infinite labels; labels must be integer class ids")
        if not np.array_equal(arr, np.round(arr)):
            raise DataError(f"{name} must hold integer class labels, got non-integer values")
        return arr.astype(np.int64)
    raise DataError(f"{name} must hold integer class labels, got dtype {arr.dtype}")


def check_probe_inputs(
    train_x: torch.Tensor | np.ndarray,
    train_y: np.ndarray,
    test_x: torch.Tensor | np.ndarray,
    test_y: np.ndarray,
) -> None:
    """Raise :class:`DataError` unless x/y lengths agree and train/test have the same feature width ``D``."""
    for x, y, xn, yn in ((train_x, train_y, "train_x", "train_y"), (test_x, test_y, "test_x", "test_y")):
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{xn} has {x.shape[0]} samples but {yn} has {y.shape[0]} labels; they must match")
    if train_x.shape[1] != test_x.shape[1]:
        raise DataError(
            f"test_x has {test_x.shape[1]} features per sample but train_x has {train_x.shape[1]}; "
            "both must come from the same encoder"
        )


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the indices of ``y`` (``[N]``, TRAIN labels only) into sorted ``(fit_idx, val_idx)``, stratified.

    Each class with ``n_c >= 2`` samples puts ``round(n_c * val_fraction)`` of them (at least 1,
    at most ``n_c - 1``) into the validation part, so every class stays in the fitting part; a
    class with one sample stays entirely in the fitting part. Deterministic given ``seed``.

    Raises:
        ConfigError: if ``val_fraction`` is not strictly between 0 and 1.
        DataError: if no class has two samples, so nothing can be held out.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    fit_parts, val_parts = [], []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(idx.size)]
        n_val = 0 if idx.size < 2 else int(min(max(round(idx.size * val_fraction), 1), idx.size - 1))
        val_parts.append(idx[:n_val])
        fit_parts.append(idx[n_val:])
    fit_idx, val_idx = np.sort(np.concatenate(fit_parts)), np.sort(np.concatenate(val_parts))
    if val_idx.size == 0:
        raise DataError(
            f"train_y has {y.size} samples and no class with two or more of them, so no validation split can be "
            "held out to choose hyperparameters; provide more labeled training samples"
        )
    return fit_idx, val_idx


def pick_best(val_accuracies: dict[Any, float]) -> Any:
    """The candidate with the highest validation accuracy; ties go to the earliest candidate."""
    best_key, best_acc = None, -math.inf
    for key, acc in val_accuracies.items():
        if acc > best_acc:
            best_key, best_acc = key, acc
    return best_key
