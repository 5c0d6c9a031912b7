"""Few-label evaluation: the linear probe trained on a small labelled part of the train set.

Semi-supervised evaluation as in SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive
Learning of Visual Representations", arXiv 2002.05709, sec. 6: 1% and 10% of the ImageNet labels,
class-balanced) and k-shot linear evaluation as in Dubois, Hashimoto & Liang 2023 (arXiv
2302.03068) and CLIP (Radford et al. 2021, arXiv 2103.00020: 1, 2, 4, 8, 16 shots per class). The
probe is :mod:`selfsup.evaluate.linear`'s logistic regression on frozen features; each setting is
repeated on several seeded, stratified draws of the labelled subset, and the test accuracy is
reported as mean ± std over draws, because with so few labels one draw says little.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.linear import _fit_predict, linear_probe
from selfsup.evaluate.common import ArrayLike, ProbeResult, check_probe_inputs, features_numpy, labels_numpy

# The labelled subset is split to choose C only when each of its classes has this many samples
# (then a 20% validation part holds at least one sample per class); below it C is fixed.
MIN_PER_CLASS_TO_SEARCH = 5
FIXED_C = 1.0  # scikit-learn's default; the features are standardised, so a moderate penalty


def setting_name(fraction: float | None = None, shots: int | None = None) -> str:
    """The table column of a setting: ``"1% labels"``, ``"10% labels"``, ``"5-shot"``."""
    return f"{100 * fraction:g}% labels" if fraction is not None else f"{shots}-shot"


def draw_labelled_subset(
    y: np.ndarray, seed: int, fraction: float | None = None, shots: int | None = None
) -> np.ndarray:
    """Sorted indices of a stratified labelled subset of the TRAIN labels ``y`` (``[N]``).

    With ``fraction``, each class with ``n_c`` samples contributes ``max(1, round(fraction *
    n_c))`` of them (so every class is labelled at least once); with ``shots``, exactly ``shots``
    per class. Drawn without replacement from ``np.random.default_rng(seed)``: the same seed gives
    the same subset.

    Raises:
        ConfigError: if ``fraction`` is not in (0, 1], ``shots`` is not a positive integer, or
            ``shots`` is larger than the smallest class (the message names that class).
    """
    if (fraction is None) == (shots is None):
        raise ConfigError("give exactly one of fraction or shots for a labelled subset")
    classes, counts = np.unique(y, return_counts=True)
    if fraction is not None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(
                f"label fraction {fraction} is outside (0, 1]; give the share of train labels to keep, e.g. 0.01 for 1%"
            )
        per_class = np.maximum(1, np.round(float(fraction) * counts)).astype(int)
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
) -> ProbeResult:
    """Linear-probe test accuracy with few labels: mean ± std over seeded, stratified draws.

    For each setting (each fraction of the train labels, then each number of shots per class)
    and each draw ``d < num_draws``, a stratified labelled subset of the TRAIN set is drawn with
    :func:`draw_labelled_subset` (seeded by ``seed``, the setting and ``d``: reproducible, and
    different across draws). The probe's C is chosen inside that subset only: if every class of
    the subset has at least :data:`MIN_PER_CLASS_TO_SEARCH` samples, by
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
            ``num_draws < 1``, no setting at all, or a bad C.
    """
    tx, ty = features_numpy(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_numpy(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    if np.unique(ty).size < 2:
        raise DataError(f"train_y has a single class ({int(ty[0])}); a few-label probe needs at least two classes")
    if int(num_draws) != num_draws or num_draws < 1:
        raise ConfigError(f"num_draws must be a positive integer, got {num_draws}")
    cs = [float(c) for c in cs]
    if not cs or any(not c > 0 for c in cs):
        raise ConfigError(f"cs must hold at least one positive regularisation strength C, got {cs}")
    for f in fractions:  # check everything before the first fit
        if not 0.0 < float(f) <= 1.0:
            raise ConfigError(
                f"label fraction {f} is outside (0, 1]; give the share of train labels to keep, e.g. 0.01 for 1%"
            )
    smallest = int(np.unique(ty, return_counts=True)[1].min())
    skipped = [int(k) for k in shots if skip_infeasible_shots and int(k) > smallest]
    settings: list[tuple[str, dict]] = [(setting_name(fraction=float(f)), {"fraction": float(f)}) for f in fractions]
    settings += [(setting_name(shots=int(k)), {"shots": int(k)}) for k in shots if int(k) not in skipped]
    if not settings:
        raise ConfigError(
            "no few-label setting to run: give at least one label fraction or number of shots "
            f"(the smallest train class has {smallest} samples)"
        )

    columns: dict[str, dict[str, float]] = {}
    chosen: dict[str, list[float]] = {}
    details: dict[str, dict] = {}
    for setting_index, (name, spec) in enumerate(settings):
        accuracies, cs_chosen, sizes, searched = [], [], [], []
        for draw in range(int(num_draws)):
            draw_seed = int(np.random.SeedSequence([seed, setting_index, draw]).generate_state(1)[0])
            idx = draw_labelled_subset(ty, draw_seed, **spec)
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
        acc = np.asarray(accuracies)
        columns[name] = {
            "mean": float(acc.mean()),
            "std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
            "draws": int(acc.size),
        }
        chosen[name] = cs_chosen
        details[name] = {
            **spec,
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
            "n_train": int(ty.size),
            "n_test": int(vy.size),
        },
        columns=columns,
    )
