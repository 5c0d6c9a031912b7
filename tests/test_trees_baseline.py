"""The gradient-boosted-trees baseline (evaluate/trees.py): what trees learn that a linear probe
cannot, categorical columns, missing values, the choice made on train only, and the trees row of
a run's evaluation (on for flat vectors, off for images unless asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss

from selfsup.cli import main
from selfsup.config import RunConfig, TrainConfig
from selfsup.data import load_dataset
from selfsup.data.loader import materialize
from selfsup.errors import DataError
from selfsup.evaluate import gbdt_fewshot, gbdt_probe, linear_probe
from selfsup.evaluate.common import stratified_split
from selfsup.evaluate.fewshot import fewshot_probe
from selfsup.evaluate.run import evaluate_run
from selfsup.evaluate.trees import (
    LEARNING_RATES, MAX_LEAF_NODES, MAX_TREES, TREES_COLUMN, TREES_ROW, _classifier, min_samples_leaf,
)
from selfsup.train.runner import pretrain


def _xor(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label = sign(x0) XOR sign(x1), four pure-noise columns: no linear function reads it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)


def _split(x: np.ndarray, y: np.ndarray, n_train: int) -> tuple[np.ndarray, ...]:
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# --------------------------------------------------------------------------------------------
# The probe on synthetic problems
# --------------------------------------------------------------------------------------------


def test_trees_learn_a_nonlinear_rule_far_above_the_linear_probe() -> None:
    data = _split(*_xor(600), 400)
    trees = gbdt_probe(*data)
    linear = linear_probe(*data)
    assert trees.accuracy >= 0.93 and linear.accuracy <= 0.65  # chance is 0.5
    assert trees.chosen["learning_rate"] in LEARNING_RATES and trees.chosen["max_leaf_nodes"] in MAX_LEAF_NODES
    assert 1 <= trees.chosen["max_iter"] <= MAX_TREES
    assert trees.details["n_fit"] + trees.details["n_val"] == 400 and trees.details["n_val"] == 80
    assert trees.details["min_samples_leaf"] == 20  # scikit-learn's default from 400 samples up
    assert (min_samples_leaf(100), min_samples_leaf(6), min_samples_leaf(10_000)) == (5, 1, 20)


def test_the_number_of_trees_is_early_stopped_on_validation_log_loss() -> None:
    """Reference: the chosen candidate refit on the same split, its log-loss after every stage
    computed with scikit-learn's log_loss; the kept number of trees is its argmin."""
    train_x, train_y, test_x, test_y = _split(*_xor(300, seed=1), 200)
    result = gbdt_probe(train_x, train_y, test_x, test_y, seed=3)
    fit, val = stratified_split(train_y, 0.2, 3)
    chosen = result.chosen
    model = _classifier(chosen["learning_rate"], chosen["max_leaf_nodes"], MAX_TREES, 200, None, 3)
    model.fit(train_x[fit], train_y[fit])
    losses = [log_loss(train_y[val], p, labels=model.classes_) for p in model.staged_predict_proba(train_x[val])]
    assert chosen["max_iter"] == int(np.argmin(losses)) + 1
    key = f"learning_rate={chosen['learning_rate']:g}, max_leaf_nodes={chosen['max_leaf_nodes']}"
    assert result.details["candidates"][key]["val_log_loss"] == pytest.approx(min(losses))
    # The winner has the best validation accuracy of the four candidates.
    assert result.val_accuracy == max(c["val_accuracy"] for c in result.details["candidates"].values())


def test_test_labels_never_influence_the_choice() -> None:
    train_x, train_y, test_x, test_y = _split(*_xor(200, seed=2), 140)
    base = gbdt_probe(train_x, train_y, test_x, test_y)
    shuffled = gbdt_probe(train_x, train_y, test_x, np.random.default_rng(0).permutation(test_y))
    assert shuffled.chosen == base.chosen and shuffled.details == base.details
    flipped = gbdt_probe(train_x, train_y, test_x, 1 - test_y)
    assert flipped.accuracy == pytest.approx(1 - base.accuracy)  # the test labels reach the score only


def _coded_categories(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Column 0: 40 category codes, 13 training samples each; the label is whether the code is in
    a random half of them, so the codes' order means nothing. Column 1: noise."""
    rng = np.random.default_rng(seed)
    member = rng.permutation(40) < 20
    codes = np.concatenate([rng.permutation(np.repeat(np.arange(40), 13)), rng.integers(0, 40, size=300)])
    x = np.stack([codes, rng.normal(size=codes.size)], axis=1).astype(np.float32)
    return _split(x, member[codes].astype(np.int64), 520)


def test_a_categorical_column_is_split_on_sets_of_codes() -> None:
    data = _coded_categories()
    categorical = gbdt_probe(*data, categorical=[True, False])
    numeric = gbdt_probe(*data)  # thresholds on the codes' arbitrary order
    assert categorical.accuracy == 1.0 and numeric.accuracy < 0.98
    assert categorical.details["categorical_columns"] == 1 and numeric.details["categorical_columns"] == 0
    assert gbdt_probe(*data, categorical=[False, False]).accuracy == numeric.accuracy  # all False: as None


def test_categorical_mistakes_raise_one_line_errors() -> None:
    train_x, train_y, test_x, test_y = _coded_categories()
    with pytest.raises(DataError, match="categorical marks 3 columns but train_x has 2"):
        gbdt_probe(train_x, train_y, test_x, test_y, categorical=[True, False, False])
    halves = train_x.copy()
    halves[0, 0] = 2.5
    with pytest.raises(DataError, match="column 0 is marked categorical but holds non-integer"):
        gbdt_probe(halves, train_y, test_x, test_y, categorical=[True, False])
    many = train_x.copy()
    many[:, 0] = np.arange(many.shape[0])
    with pytest.raises(DataError, match="520 categories.*at most 255"):
        gbdt_probe(many, train_y, test_x, test_y, categorical=[True, False])


def test_missing_values_are_routed_natively() -> None:
    """Missing not at random: a NaN in x0 means class 1, otherwise x0 > 1 does. Trees fitted with
    the NaN in place classify every test row with a missing x0 as class 1 and read x0 elsewhere."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)).astype(np.float32)
    missing = rng.random(500) < 0.3
    y = ((x[:, 0] > 1.0) | missing).astype(np.int64)
    x[missing, 0] = np.nan
    train_x, train_y, test_x, test_y = _split(x, y, 350)
    gone = np.isnan(test_x[:, 0])
    assert gbdt_probe(train_x, train_y, test_x[gone], test_y[gone]).accuracy == 1.0
    assert gbdt_probe(train_x, train_y, test_x[~gone], test_y[~gone]).accuracy >= 0.95
    infinite = train_x.copy()
    infinite[3, 1] = np.inf
    with pytest.raises(DataError, match="train_x contains infinite values in 1 of 350 rows"):
        gbdt_probe(infinite, train_y, test_x, test_y)


def test_few_label_trees_use_the_linear_probes_subsets() -> None:
    data = _split(*_xor(400, seed=4), 300)
    kwargs = {"fractions": (0.01, 0.1), "shots": (1, 5), "num_draws": 2, "seed": 5}
    trees = gbdt_fewshot(*data, **kwargs)
    linear = fewshot_probe(*data, **kwargs)
    assert list(trees.columns) == list(linear.columns) == ["1% labels", "10% labels", "1-shot", "5-shot"]
    for name in trees.columns:
        assert trees.details["settings"][name]["n_labelled"] == linear.details["settings"][name]["n_labelled"]
        accuracies = trees.details["settings"][name]["accuracies"]
        assert trees.columns[name]["mean"] == pytest.approx(np.mean(accuracies))
    assert trees.details["settings"]["1% labels"]["n_labelled"] == [4, 4]  # at least 2 per class
    assert trees.columns["10% labels"]["mean"] > 0.7  # 30 labels are enough for the XOR rule


# --------------------------------------------------------------------------------------------
# The trees row of a run's evaluation
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of SimCLR on wine (vectors, with a test split), not evaluated."""
    config = RunConfig(data="wine")
    config.train = TrainConfig(epochs=1, batch_size=32, progress_bar=False)
    run = tmp_path_factory.mktemp("trees") / "wine"
    pretrain(config, run_dir=run, evaluate=False)
    return run


def test_a_vector_run_gets_the_trees_row_by_default(wine_run: Path) -> None:
    record = evaluate_run(wine_run, probes=("knn", "linear"))
    results = record["evaluation"]["results"]
    assert list(results) == ["pretrained", "random-init", "raw input", TREES_ROW]
    assert list(results[TREES_ROW]) == [TREES_COLUMN]  # the probes' columns stay absent
    # The row is gbdt_probe on the raw samples, with the run's seed.
    data = load_dataset("wine")
    train, test = materialize(data.train), materialize(data.test)
    reference = gbdt_probe(train["x"], train["y"], test["x"], test["y"], seed=0)
    assert results[TREES_ROW][TREES_COLUMN] == reference.accuracy > 0.85
    assert record["evaluation"]["chosen"][TREES_ROW][TREES_COLUMN] == reference.chosen
    lines = record["evaluation_table"].splitlines()
    assert lines[0].split() == ["linear", "knn", "rankme", "trees"]
    assert lines[-1].split() == ["gradient-boosted", "trees", "-", "-", "-", f"{100 * reference.accuracy:.1f}%"]
    assert TREES_ROW not in evaluate_run(wine_run, probes=("knn",), trees=False)["evaluation"]["results"]


def test_the_trees_row_has_the_few_label_settings_on_the_same_draws(wine_run: Path) -> None:
    record = evaluate_run(wine_run, probes=("linear", "fewshot"))
    evaluation = record["evaluation"]
    row = evaluation["results"][TREES_ROW]
    assert list(row) == [TREES_COLUMN, "1% labels", "10% labels", "1-shot", "5-shot", "10-shot"]
    trees_settings = evaluation["details"][TREES_ROW]["fewshot"]["settings"]
    probe_settings = evaluation["details"]["pretrained"]["fewshot"]["settings"]
    for name in ("1% labels", "10% labels", "5-shot"):
        assert trees_settings[name]["n_labelled"] == probe_settings[name]["n_labelled"]
    assert trees_settings["1% labels"]["n_labelled"] == [6] * 5  # 3 classes, at least 2 labels each
    assert "few labels (linear probe, or the trees themselves in the gradient-boosted trees row" in (
        record["evaluation_table"]
    )


def test_cli_evaluate_trees_flag(wine_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(wine_run), "--probes", "knn", "--trees", "off"]) == 0
    assert TREES_ROW not in capsys.readouterr().out
    assert main(["evaluate", str(wine_run), "--probes", "knn"]) == 0
    out = capsys.readouterr().out
    assert TREES_ROW in out and "HistGradientBoosting" in out


def test_the_report_explains_the_trees_row() -> None:
    from selfsup.evaluate.report import _evaluation_html

    results = {"pretrained": {"linear": 0.9}, "raw input": {"linear": 0.8}, TREES_ROW: {TREES_COLUMN: 0.95}}
    page = _evaluation_html({"evaluation": {"data": "toy", "note": "n", "results": results}}, labeled=True)
    assert f"<th scope='row'>{TREES_ROW}</th><td>–</td><td><b>95.0%</b></td>" in page
    assert "HistGradientBoosting on the raw input" in page


def test_an_image_run_has_no_trees_row_unless_asked(tmp_path: Path) -> None:
    """Digits (8x8 images), three classes, a small run: trees on pixels only when forced."""
    digits = load_digits(n_class=3)
    x = (digits.images[:, None] * 16).clip(0, 255).astype(np.uint8)
    y = digits.target.astype(np.int64)
    np.savez(tmp_path / "digits3.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:360], y_test=y[240:360])
    config = RunConfig(data=str(tmp_path / "digits3.npz"))
    config.train = TrainConfig(epochs=1, batch_size=64, progress_bar=False)
    pretrain(config, run_dir=tmp_path / "run", evaluate=False)
    auto = evaluate_run(tmp_path / "run", probes=("knn",))["evaluation"]["results"]
    assert list(auto) == ["pretrained", "random-init", "raw input"]
    forced = evaluate_run(tmp_path / "run", probes=("knn",), trees=True)["evaluation"]["results"]
    assert forced[TREES_ROW][TREES_COLUMN] > 0.85  # three digits from 64 pixels: easy for the trees
