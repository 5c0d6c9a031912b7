"""Linear probe: L2-regularised multinomial logistic regression on frozen, standardised features.

The probe follows the linear-evaluation protocol of CLIP (Radford et al. 2021, "Learning
Transferable Visual Models From Natural Language Supervision", arXiv 2103.00020): scikit-learn's
L-BFGS logistic regression, with the inverse regularisation strength C swept on a validation split
held out from the training data. Features are standardised with statistics of the fitting data only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.common import (
    ArrayLike,
    ProbeResult,
    check_probe_inputs,
    features_numpy,
    labels_numpy,
    pick_best,
    stratified_split,
)


def _standardize(fit_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standardise with the mean and std of ``fit_x`` (``[N, D]``); constant features get std 1."""
    mean = fit_x.mean(axis=0)
    std = fit_x.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return [(a - mean) / std for a in (fit_x, *others)]


def _fit_predict(
    fit_x: np.ndarray, fit_y: np.ndarray, query_x: np.ndarray, C: float, max_iter: int
) -> tuple[np.ndarray, bool]:
    """Fit logistic regression on standardised ``fit_x``; return predictions on ``query_x`` and convergence."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    fit_s, query_s = _standardize(fit_x, query_x)
    # lbfgs minimises the multinomial (softmax) cross-entropy whenever there are more than two classes.
    model = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(fit_s, fit_y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    converged = converged and bool(np.all(np.asarray(model.n_iter_) < max_iter))
    for w in caught:  # re-emit anything that is not convergence noise
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model.predict(query_s), converged


def linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1, 10, 100),
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
) -> ProbeResult:
    """Linear-probe accuracy of frozen features, with C chosen on a held-out part of train.

    A stratified ``val_fraction`` of the TRAIN set is held out (seeded by ``seed``). For each C in
    ``cs`` a logistic regression (scikit-learn, L-BFGS, multinomial for more than two classes,
    L2 penalty with inverse strength C) is fit on the rest, after standardising features with the
    fitting part's mean and std, and scored on the held-out part. The best C (the first in ``cs``
    on ties) is refit on the whole train set (standardised with the whole train set's statistics)
    and scored once on test. Protocol as in CLIP (Radford et al. 2021, arXiv 2103.00020).

    Args:
        train_x: ``[N_train, D]`` float features (numpy or torch).
        train_y: ``[N_train]`` integer labels, at least two classes.
        test_x: ``[N_test, D]`` float features.
        test_y: ``[N_test]`` integer labels; used only for the final accuracy.
        cs: candidate inverse regularisation strengths.
        val_fraction: fraction of each train class held out to choose C.
        seed: seed of the held-out split.
        max_iter: L-BFGS iteration cap per fit.

    Returns:
        :class:`ProbeResult` named ``"linear"`` with ``chosen={"C": C}``. ``details["converged"]``
        says whether the final fit converged within ``max_iter``; ``details["not_converged_cs"]``
        lists candidate Cs whose validation fit did not. ConvergenceWarnings are not emitted.

    Raises:
        DataError: for mismatched lengths or widths, NaN/inf features, non-integer labels, or a
            single class in ``train_y``.
        ConfigError: for a non-positive C or ``max_iter``, or ``val_fraction`` outside (0, 1).
    """
    tx, ty = features_numpy(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_numpy(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    cs = list(dict.fromkeys(float(c) for c in cs))
    if not cs:
        raise ConfigError("cs is empty; give at least one regularisation strength C")
    if any(not c > 0 for c in cs):
        raise ConfigError(f"every C must be positive, got {cs}")
    if int(max_iter) < 1:
        raise ConfigError(f"max_iter must be a positive integer, got {max_iter}")
    if np.unique(ty).size < 2:
        raise DataError(f"train_y has a single class ({int(ty[0])}); a linear probe needs at least two classes")

    fit_idx, val_idx = stratified_split(ty, val_fraction, seed)
    val_acc: dict[float, float] = {}
    not_converged: list[float] = []
    for c in cs:
        pred, ok = _fit_predict(tx[fit_idx], ty[fit_idx], tx[val_idx], c, int(max_iter))
        val_acc[c] = float(np.mean(pred == ty[val_idx]))
        if not ok:
            not_converged.append(c)
    best_c = pick_best(val_acc)

    test_pred, converged = _fit_predict(tx, ty, vx, best_c, int(max_iter))
    return ProbeResult(
        accuracy=float(np.mean(test_pred == vy)),
        chosen={"C": best_c},
        val_accuracy=val_acc[best_c],
        name="linear",
        details={
            "val_accuracies": {repr(c): a for c, a in val_acc.items()},
            "converged": converged,
            "not_converged_cs": not_converged,
            "max_iter": int(max_iter),
            "n_fit": int(fit_idx.size),
            "n_val": int(val_idx.size),
            "n_train": int(ty.size),
            "n_test": int(vy.size),
        },
    )
