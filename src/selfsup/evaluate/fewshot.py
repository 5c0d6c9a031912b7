"""Few-label evaluation: the linear probe trained on a small labelled part of the train set.

Semi-supervised evaluation as in SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive
Learning of Visual Representations", arXiv 2002.05709, sec. 6: 1% and 10% of the ImageNet labels,
class-balanced) and k-shot linear evaluation as in Dubois, Hashimoto & Liang 2023 (arXiv
2302.03068) and CLIP (Radford et al. 2021, arXiv 2103.00020: 1, 2, 4, 8, 16 shots per class). The
probe is :mod:`selfsup.evaluate.linear`'s logistic regression on frozen features; each setting is
repeated on several seeded, stratified draws of the labelled subset, and the test accuracy is
reported as mean ± std over draws, because with so few labels one draw says little. A fraction
setting keeps at least :data:`MIN_PER_CLASS` labels of each class (1% of a small class rounds to
zero or one sample, and a class seen once is a class whose spread the probe cannot see).
:func:`labelled_subsets` gives every draw, so another model (the gradient-boosted trees of
:mod:`selfsup.evaluate.trees`) is scored on exactly the same labelled subsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.linear import _fit_predict, linear_probe
from selfsup.evaluate.common import ArrayLike, ProbeResult, check_probe_inputs, features_numpy, labels_numpy

# The labelled subset is split to choose C only when each of its classes has this many samples
# (then a 20% validation part holds at least one sample per class); below it C is fixed.
MIN_PER_CLASS_TO_SEARCH = 5
FIXED_C = 1.0  # scikit-learn's default; the features are standardised, so a moderate penalty
# Labels per class a fraction setting keeps at least (fewer where the class has fewer samples).
MIN_PER_CLASS = 2


def setting_name(fraction: float | None = None, shots: int | None = None) -> str:
    """The table column of a setting: ``"1% labels"``, ``"10% labels"``, ``"5-shot"``."""
    return f"{100 * fraction:g}% labels" if fraction is not None else f"{shots}-shot"


def _check_min_per_class(min_per_class: int) -> None:
    if int(min_per_class) != min_per_class or min_per_class < 1:
        raise ConfigError(f"min_per_class must be a positive integer (labels per class), got {min_per_class}")


def draw_labelled_subset(
    y: np.ndarray,
    seed: int,
    fraction: float | None = None,
    shots: int | None = None,
    min_per_class: int = MIN_PER_CLASS,
) -> np.ndarray:
    """Sorted indices of a stratified labelled subset of the TRAIN labels ``y`` (``[N]``).

    With ``fraction``, each class with ``n_c`` samples contributes ``min(n_c, max(min_per_class,
    round(fraction * n_c)))`` of them (every class labelled at least ``min_per_class`` times, or
    entirely when it is smaller); with ``shots``, exactly ``shots`` per class (``min_per_class``
    does not apply). Drawn without replacement from ``np.random.default_rng(seed)``: the same seed
    gives the same subset.

    Raises:
        ConfigError: if ``fraction`` is not in (0, 1], ``shots`` or ``min_per_class`` is not a
            positive integer, or ``shots`` is larger than the smallest class (the message names
            that class).
    """
    if (fraction is None) == (shots is None):
        raise ConfigError("give exactly one of fraction or shots for a labelled subset")
    classes, counts = np.unique(y, return_counts=True)
    if fraction is not None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(
                f"label fraction {fraction} is outside (0, 1]; give the share of train labels to keep, e.g. 0.01 for 1%"
            )
        _check_min_per_class(min_per_class)
        wanted = np.maximum(int(min_per_class), np.round(float(fraction) * counts))
        per_class = np.minimum(counts, wanted).astype(int)
    else:
        if int(shots) != shots or shots < 1:
            raise ConfigError(f"shots must be a positive integer (labelled samples per class), got {shots}")
        smallest = int(np.argmin(counts))
        if shots > counts[smallest]:
            raise ConfigError(
                f"{shots}-shot needs {shots} labelled samples per class, but train class {int(classes[smallest])} "
                f"has only {int(counts[smallest])}; use shots of at most {int(counts[smallest])}"
            )
        per_class = np.full(classes.size, int(shots))
    rng = np.random.default_rng(seed)
    parts = [rng.choice(np.flatnonzero(y == c), size=m, replace=False) for c, m in zip(classes, per_class)]
    return np.sort(np.concatenate(parts))


@dataclass
class FewLabelSetting:
    """One few-label setting and its draws.

    Attributes:
        name: the table column, ``"1% labels"`` or ``"5-shot"``.
        spec: ``{"fraction": f}`` or ``{"shots": k}``.
        draws: ``(seed of the draw, sorted TRAIN indices of its labelled subset)`` per draw.
    """

    name: str
    spec: dict[str, Any]
    draws: list[tuple[int, np.ndarray]]


def labelled_subsets(
    y: np.ndarray,
    fractions: Sequence[float] = (0.01, 0.1),
    shots: Sequence[int] = (1, 5, 10),
    num_draws: int = 5,
    seed: int = 0,
    min_per_class: int = MIN_PER_CLASS,
    skip_infeasible_shots: bool = False,
) -> tuple[list[FewLabelSetting], list[int]]:
    """Every draw of every few-label setting of the TRAIN labels ``y`` (``[N]``), and the shot
    counts left out.

    The settings are each fraction, then each number of shots; draw ``d`` of setting ``s`` is
    :func:`draw_labelled_subset` seeded by ``SeedSequence([seed, s, d])``: reproducible, different
    across draws, and the same subsets for every model scored on them.

    Raises:
        ConfigError: for a fraction outside (0, 1], a non-positive number of shots or
            ``min_per_class``, ``num_draws < 1``, a shot count larger than the smallest class
            (unless ``skip_infeasible_shots``: then it is left out and returned), or no setting.
    """
    if int(num_draws) != num_draws or num_draws < 1:
        raise ConfigError(f"num_draws must be a positive integer, got {num_draws}")
    for f in fractions:  # check everything before the first draw
        if not 0.0 < float(f) <= 1.0:
            raise ConfigError(
                f"label fraction {f} is outside (0, 1]; give the share of train labels to keep, e.g. 0.01 for 1%"
            )
    if fractions:
        _check_min_per_class(min_per_class)
    smallest = int(np.unique(y, return_counts=True)[1].min())
    skipped = [int(k) for k in shots if skip_infeasible_shots and int(k) > smallest]
    specs: list[dict[str, Any]] = [{"fraction": float(f)} for f in fractions]
    specs += [{"shots": int(k)} for k in shots if int(k) not in skipped]
    if not specs:
        raise ConfigError(
            "no few-label setting to run: give at least one label fraction or number of shots "
            f"(the smallest train class has {smallest} samples)"
        )
    settings = []
    for setting_index, spec in enumerate(specs):
        draws = []
        for draw in range(int(num_draws)):
            draw_seed = int(np.random.SeedSequence([seed, setting_index, draw]).generate_state(1)[0])
            extra = {"min_per_class": min_per_class} if "fraction" in spec else {}
            draws.append((draw_seed, draw_labelled_subset(y, draw_seed, **spec, **extra)))
        settings.append(FewLabelSetting(setting_name(**spec), spec, draws))
    return settings, skipped


def summarize_draws(accuracies: Sequence[float]) -> dict[str, float]:
    """A few-label table cell: ``{"mean", "std", "draws"}`` of per-draw accuracies (``std`` with
    ``ddof=1``; 0 for a single draw)."""
    acc = np.asarray(accuracies, dtype=np.float64)
    return {"mean": float(acc.mean()), "std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0, "draws": int(acc.size)}


def fewshot_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    fractions: Sequence[float] = (0.01, 0.1),
    shots: Sequence[int] = (1, 5, 10),
    num_draws: int = 5,
    seed: int = 0,
    cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1, 10, 100),
    max_iter: int = 1000,
    skip_infeasible_shots: bool = False,
    min_per_class: int = MIN_PER_CLASS,
) -> ProbeResult:
    """Linear-probe test accuracy with few labels: mean ± std over seeded, stratified draws.

    For each setting (each fraction of the train labels, then each number of shots per class)
    and each draw ``d < num_draws``, a stratified labelled subset of the TRAIN set is drawn with
    :func:`draw_labelled_subset` (by :func:`labelled_subsets`: seeded by ``seed``, the setting and
    ``d``; reproducible, and different across draws). The probe's C is chosen inside that subset
    only: if every class of the subset has at least :data:`MIN_PER_CLASS_TO_SEARCH` samples, by
    :func:`selfsup.evaluate.linear.linear_probe` (a stratified 20% of the subset held out, the
    best C in ``cs`` refit on the whole subset); otherwise the subset is too small to split and C
    is fixed at :data:`FIXED_C` (``details`` says which). The unlabelled rest of train is not
    used. Each fit is scored once on test; the test set never influences a choice.

    Args:
        train_x: ``[N_train, D]`` float features (numpy or torch).
        train_y: ``[N_train]`` integer labels, at least two classes.
        test_x: ``[N_test, D]`` float features.
        test_y: ``[N_test]`` integer labels; used only for the accuracies.
        fractions: shares of the train labels, each in (0, 1] (SimCLR's 1% and 10%).
        shots: labelled samples per class.
        num_draws: random draws per setting (at least 1).
        seed: base seed of the draws and of the probe's validation splits.
        cs: candidate inverse regularisation strengths when C is searched.
        max_iter: L-BFGS iteration cap per fit.
        skip_infeasible_shots: leave out (and list in ``details["skipped"]``) shot counts larger
            than the smallest class instead of raising; what the run evaluation uses, so a small
            class does not stop the other protocols.
        min_per_class: labels per class a fraction setting keeps at least (all of a smaller
            class); the k-shot settings keep exactly k.

    Returns:
        :class:`ProbeResult` named ``"fewshot"``: ``columns`` maps each setting (``"1% labels"``,
        ``"5-shot"``, ...) to ``{"mean", "std", "draws"}`` of the test accuracy (``std`` with
        ``ddof=1``; 0 for a single draw); ``accuracy`` is the first setting's mean;
        ``val_accuracy`` is NaN (each draw has its own); ``chosen`` maps each setting to the C of
        every draw; ``details`` holds per-draw accuracies, subset sizes and whether C was searched.

    Raises:
        DataError: for mismatched lengths or widths, NaN/inf features, non-integer labels, or a
            single class in ``train_y``.
        ConfigError: for a fraction outside (0, 1], a non-positive or too large number of shots,
            a non-positive ``min_per_class``, ``num_draws < 1``, no setting at all, or a bad C.
    """
    tx, ty = features_numpy(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_numpy(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    if np.unique(ty).size < 2:
        raise DataError(f"train_y has a single class ({int(ty[0])}); a few-label probe needs at least two classes")
    cs = [float(c) for c in cs]
    if not cs or any(not c > 0 for c in cs):
        raise ConfigError(f"cs must hold at least one positive regularisation strength C, got {cs}")
    settings, skipped = labelled_subsets(ty, fractions, shots, num_draws, seed, min_per_class, skip_infeasible_shots)

    columns: dict[str, dict[str, float]] = {}
    chosen: dict[str, list[float]] = {}
    details: dict[str, dict] = {}
    for setting in settings:
        accuracies, cs_chosen, sizes, searched = [], [], [], []
        for draw_seed, idx in setting.draws:
            sub_x, sub_y = tx[idx], ty[idx]
            can_search = np.unique(sub_y, return_counts=True)[1].min() >= MIN_PER_CLASS_TO_SEARCH
            if can_search:
                result = linear_probe(sub_x, sub_y, vx, vy, cs=cs, seed=draw_seed, max_iter=max_iter)
                accuracy, c = result.accuracy, result.chosen["C"]
            else:
                pred, _ = _fit_predict(sub_x, sub_y, vx, FIXED_C, int(max_iter))
                accuracy, c = float(np.mean(pred == vy)), FIXED_C
            accuracies.append(float(accuracy))
            cs_chosen.append(float(c))
            sizes.append(int(idx.size))
            searched.append(bool(can_search))
        columns[setting.name] = summarize_draws(accuracies)
        chosen[setting.name] = cs_chosen
        details[setting.name] = {
            **setting.spec,
            "accuracies": accuracies,
            "n_labelled": sizes,
            "C_searched": searched,
            "C_note": (
                "C chosen on a stratified 20% of the labelled subset"
                if all(searched)
                else f"C fixed at {FIXED_C:g} where the subset has fewer than {MIN_PER_CLASS_TO_SEARCH} "
                "samples in some class (too small to split)"
            ),
        }
    first = next(iter(columns.values()))
    return ProbeResult(
        accuracy=first["mean"],
        chosen=chosen,
        val_accuracy=float("nan"),
        name="fewshot",
        details={
            "settings": details,
            "skipped": [setting_name(shots=k) for k in skipped],
            "num_draws": int(num_draws),
            "min_per_class": int(min_per_class),
            "n_train": int(ty.size),
            "n_test": int(vy.size),
        },
        columns=columns,
    )
