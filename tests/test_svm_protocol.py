"""TS2Vec's SVM evaluation protocol: C chosen by 5-fold CV on train only, the small-data rule,
and agreement with scikit-learn's GridSearchCV (what the TS2Vec reference code calls)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.svm import SVM_CS, svm_protocol


def _blobs(n_per_class: int, n_classes: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3.0
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + spread * rng.normal(size=(y.size, dim))
    order = rng.permutation(y.size)
    return x[order], y[order]


def _noisy_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping classes, so the choice of C matters."""
    x, y = _blobs(60, 3, 5, spread=2.5, seed=seed)
    return x[:120], y[:120], x[120:], y[120:]


def test_separable_data_is_classified_perfectly() -> None:
    x, y = _blobs(40, 2, 4, spread=0.1, seed=0)
    result = svm_protocol(x[:60], y[:60], x[60:], y[60:])
    assert result.accuracy == 1.0
    assert result.name == "svm" and result.details["searched"]
    assert result.chosen["kernel"] == "rbf" and result.chosen["gamma"] == "scale"
    assert result.chosen["C"] in SVM_CS
    assert set(result.details["cv_accuracies"]) == {repr(float(c)) for c in SVM_CS}


def test_grid_search_agrees_with_sklearn_gridsearchcv() -> None:
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    tx, ty, vx, vy = _noisy_problem()
    result = svm_protocol(tx, ty, vx, vy)
    grid = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": list(SVM_CS)}, cv=5).fit(tx, ty)
    assert result.chosen["C"] == grid.best_params_["C"]
    ours = [result.details["cv_accuracies"][repr(float(c))] for c in SVM_CS]
    np.testing.assert_allclose(ours, grid.cv_results_["mean_test_score"])
    assert result.val_accuracy == pytest.approx(grid.best_score_)
    assert result.accuracy == pytest.approx(grid.best_estimator_.score(vx, vy))
    # The grid actually matters on this problem: not every C scores the same.
    assert len(set(ours)) > 1


def test_test_split_never_influences_the_choice() -> None:
    tx, ty, vx, vy = _noisy_problem(seed=1)
    reference = svm_protocol(tx, ty, vx, vy)
    rng = np.random.default_rng(0)
    permuted = svm_protocol(tx, ty, vx, rng.permutation(vy))
    garbage = svm_protocol(tx, ty, rng.normal(size=vx.shape) * 100, vy)
    for other in (permuted, garbage):
        assert other.chosen == reference.chosen
        assert other.details["cv_accuracies"] == reference.details["cv_accuracies"]


def test_small_training_sets_use_a_hard_margin_svm_without_search() -> None:
    # Fewer than 50 training samples.
    x, y = _blobs(30, 2, 3, spread=0.3, seed=2)
    result = svm_protocol(x[:49], y[:49], x[49:], y[49:])
    assert not result.details["searched"]
    assert result.chosen["C"] == math.inf and math.isnan(result.val_accuracy)
    assert result.details["cv_accuracies"] == {}
    # 60 samples but fewer than 5 per class on average (15 classes of 4).
    x, y = _blobs(5, 15, 6, spread=0.1, seed=3)
    fit = np.concatenate([np.flatnonzero(y == c)[:4] for c in range(15)])
    test = np.setdiff1d(np.arange(y.size), fit)
    result = svm_protocol(x[fit], y[fit], x[test], y[test])
    assert not result.details["searched"] and result.chosen["C"] == math.inf
    assert result.accuracy == 1.0
    # Exactly 50 samples and 5 per class on average: searched (the reference code's rule).
    x, y = _blobs(25, 2, 3, spread=0.3, seed=4)
    assert svm_protocol(x, y, x, y).details["searched"]


def test_large_training_sets_search_on_a_seeded_stratified_subsample() -> None:
    tx, ty, vx, vy = _noisy_problem(seed=5)
    a = svm_protocol(tx, ty, vx, vy, max_samples=60, seed=0)
    b = svm_protocol(tx, ty, vx, vy, max_samples=60, seed=0)
    assert a.details["n_search"] == 60 and a.details["n_train"] == 120
    assert a.details["cv_accuracies"] == b.details["cv_accuracies"] and a.accuracy == b.accuracy


def test_torch_inputs_and_arbitrary_label_values() -> None:
    x, y = _blobs(30, 2, 4, spread=0.2, seed=6)
    labels = np.where(y == 0, -3, 7)
    result = svm_protocol(torch.from_numpy(x[:40]).float(), torch.from_numpy(labels[:40]), x[40:], labels[40:])
    assert result.accuracy == 1.0


def test_bad_inputs_are_clear_errors() -> None:
    x, y = _blobs(30, 2, 4, spread=0.2, seed=7)
    with pytest.raises(DataError, match="single class"):
        svm_protocol(x, np.zeros(60, dtype=int), x, y)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="train_x"):
        svm_protocol(bad, y, x, y)
    with pytest.raises(DataError, match="test_x"):
        svm_protocol(x, y, x[:, :3], y)
    with pytest.raises(ConfigError, match="positive"):
        svm_protocol(x, y, x, y, cs=[1.0, 0.0])
    with pytest.raises(ConfigError, match="cv_folds"):
        svm_protocol(x, y, x, y, cv_folds=1)
