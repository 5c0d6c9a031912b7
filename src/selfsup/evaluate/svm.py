"""The SVM evaluation protocol of TS2Vec for frozen instance representations.

Yue, Wang, Duan, Yang, Huang, Tong, Xu 2022, "TS2Vec: Towards Universal Representation of Time
Series", AAAI 2022, arXiv 2106.10466, sec. 4.1: "an SVM classifier with RBF kernel is trained on
top of the instance-level representations"; the details follow the paper's reference code: a
scikit-learn ``SVC(kernel="rbf", gamma="scale")`` whose C is chosen by 5-fold cross-validation
over ``{1e-4, 1e-3, ..., 1e4, inf}`` on the train split, refit on the whole train split, and
scored once on test. With too little data to cross-validate (fewer than 50 training samples, or
fewer than 5 per class on average) there is no search: ``SVC(C=inf)``, a hard-margin SVM.
Also the protocol of T-Loss (Franceschi et al. 2019, arXiv 1901.10738), which TS2Vec follows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.common import ArrayLike, ProbeResult, check_probe_inputs, features_numpy, labels_numpy

SVM_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, math.inf)
# The reference code caps libsvm's iterations in the grid search (no cap in the plain fit).
_MAX_ITER = 10_000_000


def _svc(C: float, max_iter: int = -1):
    from sklearn.svm import SVC

    # gamma="scale": 1 / (n_features * X.var()) of the data each fit sees.
    return SVC(C=C, kernel="rbf", gamma="scale", max_iter=max_iter)


def _too_small_to_search(y: np.ndarray, cv_folds: int) -> bool:
    """The reference code's rule: fewer than 50 samples, or fewer than 5 per class on average."""
    n_classes = np.unique(y).size
    return y.size < 50 or y.size // n_classes < cv_folds


def _cv_accuracy(x: np.ndarray, y: np.ndarray, C: float, cv_folds: int) -> float:
    """Mean accuracy over unshuffled stratified folds (what ``GridSearchCV(cv=5)`` does)."""
    from sklearn.model_selection import StratifiedKFold

    scores = []
    for fit_idx, val_idx in StratifiedKFold(n_splits=cv_folds).split(x, y):
        model = _svc(C, _MAX_ITER).fit(x[fit_idx], y[fit_idx])
        scores.append(float(np.mean(model.predict(x[val_idx]) == y[val_idx])))
    return float(np.mean(scores))


def svm_protocol(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    seed: int = 0,
    cs: Sequence[float] = SVM_CS,
    cv_folds: int = 5,
    max_samples: int = 10_000,
) -> ProbeResult:
    """Test accuracy of an RBF SVM on frozen features, C chosen by cross-validation on train only.

    TS2Vec's protocol (Yue et al. 2022, arXiv 2106.10466): for every C in ``cs``, the mean
    accuracy of ``SVC(C, kernel="rbf", gamma="scale")`` over ``cv_folds`` stratified folds of
    the TRAIN split (unshuffled, as ``GridSearchCV(cv=5)``); the best C (on ties the first in
    ``cs``, as ``GridSearchCV``) is refit on the whole train split and scored once on test. Without enough training data to
    cross-validate (fewer than 50 samples, or ``N // n_classes < cv_folds``, the reference
    code's rule) no C is searched: ``SVC(C=inf)`` is fit on train. The test split never
    influences a choice. Features are used as given (TS2Vec does not rescale them).

    Args:
        train_x: ``[N_train, D]`` float features (numpy or torch).
        train_y: ``[N_train]`` integer labels, at least two classes.
        test_x: ``[N_test, D]`` float features.
        test_y: ``[N_test]`` integer labels; used only for the final accuracy.
        seed: seed of the stratified subsample used for the search when train has more than
            ``max_samples`` samples (the final fit uses all of train).
        cs: candidate C values (``math.inf``: hard margin).
        cv_folds: folds of the cross-validation (5 in TS2Vec).
        max_samples: at most this many training samples in the search (10,000 in TS2Vec).

    Returns:
        :class:`ProbeResult` named ``"svm"`` with ``chosen={"C": C, "kernel": "rbf", "gamma":
        "scale"}``; ``val_accuracy`` is the chosen C's cross-validated accuracy (NaN without a
        search); ``details`` holds every C's cross-validated accuracy, whether the search ran,
        and the sizes.

    Raises:
        DataError: for mismatched lengths or widths, NaN/inf features, non-integer labels, or a
            single class in ``train_y``.
        ConfigError: for an empty ``cs``, a C that is not positive, fewer than 2 folds, or a
            non-positive ``max_samples``.
    """
    tx, ty = features_numpy(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_numpy(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    cs = list(dict.fromkeys(float(c) for c in cs))
    if not cs:
        raise ConfigError("cs is empty; give at least one SVM regularisation constant C")
    if any(not c > 0 for c in cs):
        raise ConfigError(f"every C must be positive (math.inf for a hard margin), got {cs}")
    if int(cv_folds) < 2:
        raise ConfigError(f"cv_folds must be at least 2, got {cv_folds}")
    if int(max_samples) < 1:
        raise ConfigError(f"max_samples must be a positive integer, got {max_samples}")
    classes = np.unique(ty)
    if classes.size < 2:
        raise DataError(f"train_y has a single class ({int(ty[0])}); an SVM needs at least two classes")

    searched = not _too_small_to_search(ty, int(cv_folds))
    cv_acc: dict[float, float] = {}
    n_search = int(ty.size)
    if searched:
        search_x, search_y = tx, ty
        if ty.size > max_samples:  # as the reference code: a stratified subsample for the search
            from sklearn.model_selection import train_test_split

            search_x, _, search_y, _ = train_test_split(
                tx, ty, train_size=int(max_samples), random_state=seed, stratify=ty
            )
            n_search = int(search_y.size)
        with warnings.catch_warnings():
            # A class with fewer members than folds is allowed (the reference code's rule counts
            # samples per class on average); sklearn's warning about it adds nothing here.
            warnings.filterwarnings("ignore", message=".*least populated class.*")
            for c in cs:
                cv_acc[c] = _cv_accuracy(search_x, search_y, c, int(cv_folds))
        best_c = max(cs, key=lambda c: (cv_acc[c], -cs.index(c)))  # ties: the first in cs
        model = _svc(best_c, _MAX_ITER).fit(tx, ty)
    else:
        best_c = math.inf
        model = _svc(best_c).fit(tx, ty)

    accuracy = float(np.mean(model.predict(vx) == vy))
    return ProbeResult(
        accuracy=accuracy,
        chosen={"C": best_c, "kernel": "rbf", "gamma": "scale"},
        val_accuracy=cv_acc.get(best_c, math.nan),
        name="svm",
        details={
            "cv_accuracies": {repr(c): a for c, a in cv_acc.items()},
            "searched": searched,
            "cv_folds": int(cv_folds),
            "n_search": n_search if searched else 0,
            "n_train": int(ty.size),
            "n_test": int(vy.size),
        },
    )
