"""Gradient-boosted decision trees on the raw input: the number a tabular practitioner checks first.

scikit-learn's ``HistGradientBoostingClassifier``: gradient boosting over features binned into at
most 255 histogram bins, the algorithm of LightGBM (Ke, Meng, Finley, Wang, Chen, Ma, Ye & Liu
2017, "LightGBM: A Highly Efficient Gradient Boosting Decision Tree", NeurIPS 2017), with missing
values (NaN) routed to whichever side of a split fits better and categorical columns split on sets
of categories. On medium-sized tabular data, tree ensembles on the raw columns still beat deep
models (Grinsztajn, Oyallon & Varoquaux 2022, "Why do tree-based models still outperform deep
learning on tabular data?", arXiv 2207.08815), so a representation of such data shows its
worth against this row, not only against a linear probe on the raw input.

Like the probes, a function of ``(train_x, train_y, test_x, test_y)``: hyperparameters are chosen
on a stratified held-out part of TRAIN only, the choice is refit on all of train and scored once
on test. :func:`gbdt_fewshot` scores the trees on the few-label probe's labelled subsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from selfsup.errors import DataError
from selfsup.evaluate.common import (
    ArrayLike,
    ProbeResult,
    check_probe_inputs,
    features_numpy,
    labels_numpy,
    pick_best,
    stratified_split,
)
from selfsup.evaluate.fewshot import MIN_PER_CLASS, labelled_subsets, setting_name, summarize_draws

TREES_ROW = "gradient-boosted trees"  # the row of an evaluation table
TREES_COLUMN = "trees"  # its column: the test accuracy
# The grid searched on the held-out part of train (first on ties): learning rate x leaves per tree.
LEARNING_RATES: tuple[float, ...] = (0.1, 0.05)
MAX_LEAF_NODES: tuple[int, ...] = (15, 31)
MAX_TREES = 200  # boosting iterations fitted per candidate; the number kept is early-stopped on validation
# The few-label subsets are too small to split: one fixed setting (scikit-learn's learning rate).
FEWSHOT_SETTING: dict[str, Any] = {"learning_rate": 0.1, "max_leaf_nodes": 15, "max_iter": 100}
MAX_CATEGORIES = 255  # HistGradientBoosting's limit (max_bins) on a categorical column's categories


def min_samples_leaf(n: int) -> int:
    """Samples a leaf needs: scikit-learn's 20 from 400 samples up, a twentieth of ``n`` below (at
    least 1), so trees on a small set can split at all."""
    return int(np.clip(n // 20, 1, 20))


def _check_tree_inputs(
    train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike, categorical: Sequence[bool] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The inputs as numpy (NaN kept as missing) and the categorical mask ``[D]`` (None: none), checked."""
    tx, ty = features_numpy(train_x, "train_x", allow_nan=True), labels_numpy(train_y, "train_y")
    vx, vy = features_numpy(test_x, "test_x", allow_nan=True), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    if np.unique(ty).size < 2:
        raise DataError(f"train_y has a single class ({int(ty[0])}); gradient-boosted trees need at least two classes")
    mask = None
    if categorical is not None:
        mask = np.asarray(list(categorical), dtype=bool)
        if mask.shape != (tx.shape[1],):
            raise DataError(
                f"categorical marks {mask.size} columns but train_x has {tx.shape[1]}; give one True/False per column"
            )
        for j in np.flatnonzero(mask):
            column = tx[:, j][~np.isnan(tx[:, j])]
            if np.any(column != np.round(column)):
                raise DataError(
                    f"train_x column {j} is marked categorical but holds non-integer values; give category "
                    "codes 0, 1, 2, ... (NaN or a negative code for missing), or mark it numeric"
                )
            count = np.unique(column[column >= 0]).size
            if count > MAX_CATEGORIES:
                raise DataError(
                    f"train_x column {j} is marked categorical with {count} categories; gradient-boosted trees take "
                    f"at most {MAX_CATEGORIES}: merge rare categories or mark it numeric"
                )
        mask = mask if mask.any() else None
    return tx, ty, vx, vy, mask


def _classifier(
    learning_rate: float, max_leaf_nodes: int, max_iter: int, n: int, categorical: np.ndarray | None, seed: int
) -> Any:
    """An unfitted ``HistGradientBoostingClassifier``; early stopping off (the caller chooses the
    number of trees), leaves of at least :func:`min_samples_leaf` ``(n)`` samples."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        learning_rate=learning_rate,
        max_leaf_nodes=max_leaf_nodes,
        max_iter=max_iter,
        min_samples_leaf=min_samples_leaf(n),
        categorical_features=categorical,
        early_stopping=False,
        random_state=seed,
    )


def _best_stage(model: Any, val_x: np.ndarray, val_y: np.ndarray) -> tuple[int, float, float]:
    """``(trees, validation accuracy, validation log-loss)`` at the number of boosting iterations
    with the lowest validation log-loss (the first on ties): early stopping read off one fit."""
    target = np.searchsorted(model.classes_, val_y)  # every validation class is a fitted class
    best = (0, 0.0, np.inf)
    for stage, proba in enumerate(model.staged_predict_proba(val_x), start=1):
        loss = float(-np.mean(np.log(np.clip(proba[np.arange(val_y.size), target], 1e-15, None))))
        if loss < best[2]:
            best = (stage, float(np.mean(proba.argmax(axis=1) == target)), loss)
    return best


def gbdt_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    categorical: Sequence[bool] | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> ProbeResult:
    """Test accuracy of gradient-boosted trees on the raw features, tuned on a split of train.

    A stratified ``val_fraction`` of the TRAIN set is held out (seeded by ``seed``). For each
    learning rate in :data:`LEARNING_RATES` and number of leaves per tree in
    :data:`MAX_LEAF_NODES`, :data:`MAX_TREES` boosting iterations are fitted on the rest; the
    number of trees kept is the one with the lowest validation log-loss (early stopping, read off
    the staged predictions of that one fit), and the candidate with the best validation accuracy
    at its number of trees wins (the first on ties). It is refit on the whole train set with that
    many trees, no early stopping, and scored once on test. Leaves hold at least
    :func:`min_samples_leaf` samples (scikit-learn's 20 from 400 training samples up).
    (Ke et al. 2017, LightGBM's histogram algorithm; Grinsztajn et al. 2022, arXiv 2207.08815.)

    Args:
        train_x: ``[N_train, D]`` raw features (numpy or torch); NaN is a missing value.
        train_y: ``[N_train]`` integer labels, at least two classes.
        test_x: ``[N_test, D]`` raw features.
        test_y: ``[N_test]`` integer labels; used only for the final accuracy.
        categorical: ``[D]`` True where a column holds category codes (integers; NaN or a negative
            code is missing), split natively on sets of categories; None: every column numeric.
        seed: seed of the held-out split (and of the trees' own randomness).
        val_fraction: fraction of each train class held out for the choice.

    Returns:
        :class:`ProbeResult` named ``"trees"`` with ``chosen={"learning_rate", "max_leaf_nodes",
        "max_iter"}`` (``max_iter``: the trees kept); ``details`` holds every candidate's
        validation accuracy, trees and log-loss, the split sizes, ``min_samples_leaf`` and the
        number of categorical columns.

    Raises:
        DataError: for mismatched lengths or widths, infinite values, non-integer labels, a single
            class, a categorical mask of the wrong length, or a categorical column with
            non-integer codes or more than :data:`MAX_CATEGORIES` categories.
        ConfigError: for ``val_fraction`` outside (0, 1).
    """
    tx, ty, vx, vy, mask = _check_tree_inputs(train_x, train_y, test_x, test_y, categorical)
    fit_idx, val_idx = stratified_split(ty, val_fraction, seed)
    leaf = ty.size  # one leaf size for the choice and the refit: that of the whole train set
    candidates: dict[str, dict[str, Any]] = {}
    for learning_rate in LEARNING_RATES:
        for leaves in MAX_LEAF_NODES:
            model = _classifier(learning_rate, leaves, MAX_TREES, leaf, mask, seed).fit(tx[fit_idx], ty[fit_idx])
            trees, accuracy, loss = _best_stage(model, tx[val_idx], ty[val_idx])
            candidates[f"learning_rate={learning_rate:g}, max_leaf_nodes={leaves}"] = {
                "learning_rate": learning_rate, "max_leaf_nodes": leaves, "max_iter": trees,
                "val_accuracy": accuracy, "val_log_loss": loss,
            }
    best = pick_best({key: c["val_accuracy"] for key, c in candidates.items()})
    chosen = {k: candidates[best][k] for k in ("learning_rate", "max_leaf_nodes", "max_iter")}
    model = _classifier(**chosen, n=leaf, categorical=mask, seed=seed).fit(tx, ty)
    return ProbeResult(
        accuracy=float(np.mean(model.predict(vx) == vy)),
        chosen=chosen,
        val_accuracy=float(candidates[best]["val_accuracy"]),
        name=TREES_COLUMN,
        details={
            "candidates": candidates,
            "n_fit": int(fit_idx.size),
            "n_val": int(val_idx.size),
            "min_samples_leaf": min_samples_leaf(leaf),
            "categorical_columns": int(mask.sum()) if mask is not None else 0,
        },
    )


def gbdt_fewshot(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    categorical: Sequence[bool] | None = None,
    fractions: Sequence[float] = (0.01, 0.1),
    shots: Sequence[int] = (1, 5, 10),
    num_draws: int = 5,
    seed: int = 0,
    min_per_class: int = MIN_PER_CLASS,
    skip_infeasible_shots: bool = False,
) -> ProbeResult:
    """Gradient-boosted trees with few labels: the test accuracy, mean ± std over the labelled
    subsets that :func:`selfsup.evaluate.fewshot.fewshot_probe` draws with the same arguments
    (:func:`selfsup.evaluate.fewshot.labelled_subsets`), so the trees row and the probes' rows of a
    few-label table see the same labels.

    Each subset is too small to hold a validation part for most settings, so nothing is chosen:
    :data:`FEWSHOT_SETTING` (learning rate 0.1, 15 leaves, 100 trees), leaves of at least
    :func:`min_samples_leaf` of the subset's size. Arguments as :func:`gbdt_probe` and
    :func:`selfsup.evaluate.fewshot.fewshot_probe`.

    Returns:
        :class:`ProbeResult` named ``"trees_fewshot"``: ``columns`` maps each setting (``"1%
        labels"``, ``"5-shot"``, ...) to ``{"mean", "std", "draws"}``; ``accuracy`` is the first
        setting's mean; ``val_accuracy`` is NaN; ``details`` holds per-draw accuracies and subset
        sizes.

    Raises:
        DataError, ConfigError: as :func:`gbdt_probe` and :func:`selfsup.evaluate.fewshot.labelled_subsets`.
    """
    tx, ty, vx, vy, mask = _check_tree_inputs(train_x, train_y, test_x, test_y, categorical)
    settings, skipped = labelled_subsets(ty, fractions, shots, num_draws, seed, min_per_class, skip_infeasible_shots)
    columns: dict[str, dict[str, float]] = {}
    details: dict[str, dict[str, Any]] = {}
    for setting in settings:
        accuracies = []
        for draw_seed, idx in setting.draws:
            model = _classifier(**FEWSHOT_SETTING, n=idx.size, categorical=mask, seed=draw_seed).fit(tx[idx], ty[idx])
            accuracies.append(float(np.mean(model.predict(vx) == vy)))
        columns[setting.name] = summarize_draws(accuracies)
        sizes = [int(idx.size) for _, idx in setting.draws]
        details[setting.name] = {**setting.spec, "accuracies": accuracies, "n_labelled": sizes}
    return ProbeResult(
        accuracy=next(iter(columns.values()))["mean"],
        chosen={"fixed": dict(FEWSHOT_SETTING)},
        val_accuracy=float("nan"),
        name="trees_fewshot",
        details={
            "settings": details,
            "skipped": [setting_name(shots=k) for k in skipped],
            "num_draws": int(num_draws),
            "min_per_class": int(min_per_class),
        },
        columns=columns,
    )
