"""Evaluation on frozen embeddings: RankMe, weighted kNN, linear probe, leakage, input checks."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from toys import blobs
import torch

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate import (
    ProbeResult,
    evaluate_features,
    format_table,
    knn_evaluate,
    knn_predict,
    linear_probe,
    rankme,
    singular_values,
    stratified_split,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _orthonormal(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, m)))
    return q  # [n, m] with orthonormal columns


def _matrix_with_singular_values(s: np.ndarray, n: int, d: int, seed: int = 0) -> np.ndarray:
    """``U diag(s) V^T`` with random orthonormal U [n, r], V [d, r]."""
    rng = np.random.default_rng(seed)
    r = len(s)
    return _orthonormal(rng, n, r) @ np.diag(s) @ _orthonormal(rng, d, r).T


def _rankme_reference(sigma: np.ndarray, eps: float = 1e-7) -> float:
    p = [float(x) / float(sum(sigma)) + eps for x in sigma]
    return math.exp(-sum(pk * math.log(pk) for pk in p))


_blobs = blobs


def _split(x: np.ndarray, y: np.ndarray, n_train: int):
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _knn_brute_force(train_x, train_y, query_x, k, temperature, num_classes) -> np.ndarray:
    """Slow float64 reference: loop over queries, sort all similarities, sum exp(sim/T) per class."""
    tn = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    out = []
    for q in query_x:
        q = q / np.linalg.norm(q)
        sims = np.array([float(np.dot(q, t)) for t in tn])
        order = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for i in order:
            votes[train_y[i]] += math.exp(sims[i] / temperature)
        out.append(int(np.argmax(votes)))
    return np.array(out)


# --------------------------------------------------------------------------------------------
# RankMe
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [1, 3, 7, 16])
def test_rankme_equal_singular_values_gives_rank(r: int) -> None:
    x = _matrix_with_singular_values(np.full(r, 2.5), n=40, d=24, seed=r)
    assert rankme(x) == pytest.approx(r, rel=1e-4)


def test_rankme_rank_one_is_one() -> None:
    rng = np.random.default_rng(1)
    x = np.outer(rng.normal(size=50), rng.normal(size=12))
    assert rankme(x) == pytest.approx(1.0, abs=1e-4)
    assert rankme(np.zeros((10, 4))) == pytest.approx(1.0, abs=1e-4)


def test_rankme_matches_formula_on_known_spectrum() -> None:
    sigma = np.array([10.0, 5.0, 2.0, 1.0, 0.5, 0.1])
    x = _matrix_with_singular_values(sigma, n=30, d=20, seed=3)
    np.testing.assert_allclose(singular_values(x)[:6], sigma, rtol=1e-10)
    np.testing.assert_allclose(singular_values(x)[6:], 0.0, atol=1e-10)
    assert rankme(x) == pytest.approx(_rankme_reference(np.r_[sigma, np.zeros(14)]), rel=1e-9)
    # Strictly between 1 and the number of non-zero singular values, for an unequal spectrum.
    assert 1.0 < rankme(x) < 6.0


def test_rankme_is_not_centred_and_accepts_torch() -> None:
    # A constant (rank-1) matrix: centring would make it zero; the paper's uncentred RankMe is 1.
    x = np.ones((20, 5)) * 3.0
    assert rankme(x) == pytest.approx(1.0, abs=1e-4)
    rng = np.random.default_rng(4)
    z = rng.normal(size=(64, 16))
    t = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    assert rankme(t) == pytest.approx(rankme(z.astype(np.float32)), rel=1e-6)
    sv = singular_values(t)
    assert sv.dtype == np.float64 and sv.shape == (16,)
    assert np.all(np.diff(sv) <= 0)


def test_rankme_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="embeddings"):
        rankme(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(DataError, match="embeddings"):
        singular_values(np.ones(5))


# --------------------------------------------------------------------------------------------
# kNN
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 9])
def test_knn_predict_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    train_x, query_x = rng.normal(size=(40, 6)), rng.normal(size=(25, 6))
    train_y = rng.integers(0, 4, size=40)
    expected = _knn_brute_force(train_x, train_y, query_x, k, 0.5, 4)
    got = knn_predict(train_x, train_y, query_x, k=k, temperature=0.5, num_classes=4)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), expected)
    # Chunked (3 queries per block) gives the same answer.
    chunked = knn_predict(torch.tensor(train_x), torch.tensor(train_y), query_x, k, 0.5, 4, chunk_size=3)
    np.testing.assert_array_equal(chunked.numpy(), expected)


def test_knn_weighting_differs_from_majority_vote() -> None:
    # Two far neighbours of class 0 against one very close neighbour of class 1: with a small
    # temperature the close one wins; with a huge temperature (nearly uniform weights) majority wins.
    train_x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.05]])
    train_y = np.array([1, 0, 0])
    query = np.array([[1.0, 0.9]])  # cos to [1,0] = 0.74; to [0,1] = 0.67
    assert int(knn_predict(train_x, train_y, query, k=3, temperature=0.01, num_classes=2)[0]) == 1
    assert int(knn_predict(train_x, train_y, query, k=3, temperature=100.0, num_classes=2)[0]) == 0
    # Small temperatures do not overflow.
    assert int(knn_predict(train_x, train_y, query, k=3, temperature=1e-4, num_classes=2)[0]) == 1


def test_knn_separable_blobs_near_perfect() -> None:
    x, y = _blobs(60, 4, 16, sep=12.0, seed=0)
    res = knn_evaluate(*_split(x, y, 160))
    assert isinstance(res, ProbeResult) and res.name == "knn"
    assert res.accuracy >= 0.99
    assert res.val_accuracy >= 0.99
    assert res.chosen["k"] in (1, 5, 10, 20, 50, 100)
    # With 40 training samples (32 fitting), ks above the fitting set size are dropped:
    small = knn_evaluate(*_split(x, y, 40))
    # (keys "k=5,T=0.07": every pair of k and temperature tried)
    assert max(int(key.split(",")[0][2:]) for key in small.details["val_accuracies"]) <= small.details["n_fit"]


def test_knn_random_labels_near_chance() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 16)).astype(np.float32)
    y = rng.integers(0, 4, size=900)
    res = knn_evaluate(*_split(x, y, 500))
    assert abs(res.accuracy - 0.25) < 0.1


def test_knn_arbitrary_label_values() -> None:
    x, y = _blobs(40, 3, 8, sep=12.0, seed=1)
    labels = np.array([-7, 3, 100])[y]
    res = knn_evaluate(*_split(x, labels, 90))
    assert res.accuracy >= 0.99


# --------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------


def test_linear_separable_blobs_near_perfect() -> None:
    x, y = _blobs(60, 4, 16, sep=12.0, seed=2)
    res = linear_probe(*_split(x, y, 160))
    assert res.name == "linear"
    assert res.accuracy >= 0.99 and res.val_accuracy >= 0.99
    assert res.chosen["C"] in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    assert res.details["converged"] is True


def test_linear_random_labels_near_chance() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(700, 16))
    y = rng.integers(0, 4, size=700)
    res = linear_probe(*_split(x, y, 400), cs=(1e-2, 1.0))
    assert abs(res.accuracy - 0.25) < 0.1


def test_linear_records_non_convergence_without_warning() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 30)) * np.logspace(-3, 3, 30)
    y = rng.integers(0, 3, size=120)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any ConvergenceWarning leaking out fails the test
        res = linear_probe(*_split(x, y, 80), cs=(100.0,), max_iter=2)
    assert res.details["converged"] is False
    assert res.details["not_converged_cs"] == [100.0]


def test_linear_standardises_with_fit_statistics_only() -> None:
    # A huge offset/scale in test features alone must not break the probe through its statistics:
    # shifting test features changes predictions, but shifting train AND test by the same affine map
    # (per feature) leaves the standardised problem, hence the result, unchanged.
    x, y = _blobs(30, 3, 5, sep=6.0, seed=5)
    a, b = np.array([1e3, 1.0, 1e-2, 5.0, 2.0]), np.array([1e4, -3.0, 0.0, 1.0, 7.0])
    base = linear_probe(*_split(x, y, 60), cs=(0.1, 1.0))
    moved = linear_probe(*_split(x * a + b, y, 60), cs=(0.1, 1.0))
    assert moved.chosen == base.chosen
    assert moved.accuracy == pytest.approx(base.accuracy)


# --------------------------------------------------------------------------------------------
# Leakage: the test set never influences the chosen hyperparameter
# --------------------------------------------------------------------------------------------


def _leaky_setup(seed: int = 0):
    """Overlapping blobs where the validation accuracy really depends on k and C."""
    x, y = _blobs(70, 3, 4, sep=2.0, seed=seed)
    return _split(x, y, 150)


@pytest.mark.parametrize(
    "probe, kwargs",
    [(knn_evaluate, {}), (linear_probe, {"cs": (1e-3, 1e-2, 1e-1, 1.0)})],
    ids=["knn", "linear"],
)
def test_test_labels_do_not_influence_choice(probe, kwargs) -> None:
    train_x, train_y, test_x, test_y = _leaky_setup()
    base = probe(train_x, train_y, test_x, test_y, **kwargs)
    # The setup must make the choice non-trivial, or this test could not catch leakage.
    assert len(set(base.details["val_accuracies"].values())) > 1
    rng = np.random.default_rng(123)
    for trial in range(3):
        shuffled = rng.permutation(test_y)
        other = probe(train_x, train_y, test_x, shuffled, **kwargs)
        assert other.chosen == base.chosen
        assert other.val_accuracy == base.val_accuracy
        assert other.details["val_accuracies"] == base.details["val_accuracies"]
        # Entirely different test features and labels: still the same choice.
        junk_x = rng.normal(size=(17, train_x.shape[1])).astype(np.float32)
        junk_y = rng.integers(0, 3, size=17)
        assert probe(train_x, train_y, junk_x, junk_y, **kwargs).chosen == base.chosen
    # And the test labels do reach the final score (the probe is not ignoring them).
    flipped = probe(train_x, train_y, test_x, (test_y + 1) % 3, **kwargs)
    assert flipped.accuracy != base.accuracy


def test_stratified_split_is_train_only_and_stratified() -> None:
    y = np.repeat([0, 1, 2], [50, 30, 1])
    fit, val = stratified_split(y, 0.2, seed=0)
    assert np.intersect1d(fit, val).size == 0 and fit.size + val.size == y.size
    assert np.bincount(y[val], minlength=3).tolist() == [10, 6, 0]
    assert set(y[fit]) == {0, 1, 2}
    again, _ = stratified_split(y, 0.2, seed=0)
    np.testing.assert_array_equal(fit, again)
    other, _ = stratified_split(y, 0.2, seed=1)
    assert not np.array_equal(fit, other)


# --------------------------------------------------------------------------------------------
# Input types and errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("probe", [knn_evaluate, linear_probe], ids=["knn", "linear"])
def test_numpy_and_torch_inputs_agree(probe) -> None:
    train_x, train_y, test_x, test_y = _leaky_setup(seed=3)
    kwargs = {"cs": (0.01, 1.0)} if probe is linear_probe else {}
    a = probe(train_x, train_y, test_x, test_y, **kwargs)
    tensors = [torch.from_numpy(a) for a in (train_x, train_y, test_x, test_y)]
    b = probe(*tensors, **kwargs)
    c = probe(train_x.astype(np.float64), train_y.tolist(), torch.from_numpy(test_x).double(), test_y, **kwargs)
    assert a.chosen == b.chosen == c.chosen
    assert a.accuracy == pytest.approx(b.accuracy) and a.accuracy == pytest.approx(c.accuracy)


@pytest.mark.parametrize("probe", [knn_evaluate, linear_probe], ids=["knn", "linear"])
def test_bad_inputs_raise_data_error_naming_argument(probe) -> None:
    train_x, train_y, test_x, test_y = _leaky_setup()
    with pytest.raises(DataError, match="train_y"):
        probe(train_x, train_y[:-1], test_x, test_y)
    with pytest.raises(DataError, match="test_y"):
        probe(train_x, train_y, test_x, test_y[:-3])
    bad = train_x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(DataError, match="train_x"):
        probe(bad, train_y, test_x, test_y)
    bad_t = torch.from_numpy(test_x.copy())
    bad_t[0, 0] = float("inf")
    with pytest.raises(DataError, match="test_x"):
        probe(train_x, train_y, bad_t, test_y)
    with pytest.raises(DataError, match="test_x"):
        probe(train_x, train_y, test_x[:, :-1], test_y)
    with pytest.raises(DataError, match="train_x"):
        probe(train_x[:, 0], train_y, test_x, test_y)
    with pytest.raises(DataError, match="train_y"):
        probe(train_x, train_y + 0.5, test_x, test_y)


def test_bad_hyperparameters_raise_config_error() -> None:
    train_x, train_y, test_x, test_y = _leaky_setup()
    with pytest.raises(ConfigError, match="val_fraction"):
        knn_evaluate(train_x, train_y, test_x, test_y, val_fraction=1.0)
    with pytest.raises(ConfigError, match="temperature"):
        knn_evaluate(train_x, train_y, test_x, test_y, temperature=0.0)
    with pytest.raises(ConfigError, match="C"):
        linear_probe(train_x, train_y, test_x, test_y, cs=(0.0,))
    with pytest.raises(ConfigError, match="unknown probe.*svm"):
        evaluate_features(train_x, train_y, test_x, test_y, probes=("knn", "svn"))
    with pytest.raises(DataError, match="single class"):
        linear_probe(train_x, np.zeros_like(train_y), test_x, test_y)


# --------------------------------------------------------------------------------------------
# evaluate_features, ProbeResult, format_table
# --------------------------------------------------------------------------------------------


def test_evaluate_features_runs_both_probes_and_serialises() -> None:
    x, y = _blobs(40, 3, 8, sep=12.0, seed=7)
    results = evaluate_features(*_split(torch.from_numpy(x), torch.from_numpy(y), 90), probes=("knn", "linear"))
    assert list(results) == ["knn", "linear"]
    assert all(r.accuracy >= 0.99 for r in results.values())
    assert set(results["knn"].chosen) == {"k", "temperature"} and set(results["linear"].chosen) == {"C"}
    as_json = json.loads(json.dumps({k: r.to_dict() for k, r in results.items()}))
    assert as_json["linear"]["name"] == "linear"
    assert as_json["knn"]["accuracy"] == pytest.approx(results["knn"].accuracy)
    only = evaluate_features(*_split(x, y, 90), probes=("linear",))
    assert list(only) == ["linear"]


def test_format_table() -> None:
    table = format_table(
        {
            "pretrained": {"knn": 0.95, "linear": 0.9612, "rankme": 40.14},
            "random-init": {"knn": 0.5, "linear": 0.61, "rankme": 3.0},
            "raw input": {"knn": 0.9, "linear": 0.925},
        }
    )
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["knn", "linear", "rankme"]
    assert lines[1].split() == ["pretrained", "95.0%", "96.1%", "40.1"]
    assert lines[2].split() == ["random-init", "50.0%", "61.0%", "3.0"]
    assert lines[3].split()[-1] == "-" and "raw input" in lines[3]
    # Right-aligned columns: every value line ends at the same column as the header.
    assert len({len(line) for line in lines}) == 1
