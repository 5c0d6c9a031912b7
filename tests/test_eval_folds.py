"""Evaluation protocols: k-fold cross-validation for data without a test split (``eval.folds``,
``selfsup evaluate --folds``, with ``--protocol svm``), and the Planetoid protocol on a node-level
graph with a public split (probes on the train nodes, scored on the test nodes, pretraining on
every node)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.config import ComponentConfig, RunConfig
from selfsup.errors import ConfigError, DataError
from selfsup.evaluate import run as run_module
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.run import evaluate_run, stratified_folds
from selfsup.train.runner import pretrain
from toys import blobs


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 1-epoch SimCLR run on 120 labelled vectors without a test split."""
    root = tmp_path_factory.mktemp("folds")
    x, y = blobs(40, 3, 6, sep=3.0, seed=0)
    np.savez(root / "blobs.npz", x=x, y=y)
    config = RunConfig(
        data=ComponentConfig(f"arrays:{root / 'blobs.npz'}"), method="simclr",
        backbone=ComponentConfig("mlp", {"hidden_dims": [16, 8]}),
    )
    config.train.epochs, config.train.batch_size, config.train.progress_bar = 1, 40, False
    config.eval.after_training = False
    pretrain(config, root / "run")
    return root / "run", root / "blobs.npz"


def test_stratified_folds_partition_the_samples_per_class():
    y = np.repeat([0, 1, 2], [30, 20, 11])
    folds = stratified_folds(y, 5, seed=0)
    held = np.concatenate([test for _, test in folds])
    assert sorted(held.tolist()) == list(range(y.size))  # each sample tested exactly once
    for fit, test in folds:
        assert not set(fit) & set(test) and len(fit) + len(test) == y.size
        counts = np.bincount(y[test], minlength=3)
        assert counts.tolist() in ([6, 4, 2], [6, 4, 3])  # every class split evenly
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, stratified_folds(y, 5, seed=0)))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, stratified_folds(y, 5, seed=1)))
    with pytest.raises(DataError, match="at least 10 labelled samples"):
        stratified_folds(np.array([0, 1, 0, 1]), 10)


def test_every_row_is_the_mean_over_folds(vector_run, monkeypatch):
    run, _ = vector_run
    record = evaluate_run(run, probes=("linear", "knn"), folds=4, trees=False)
    ev = record["evaluation"]
    assert "4-fold stratified cross-validation" in ev["note"]
    for row in ("pretrained", "random-init", "raw input"):
        folds = ev["details"][row]["folds"]
        for column in ("linear", "knn"):
            values = folds[column]["values"]
            assert len(values) == 4
            assert ev["results"][row][column] == pytest.approx(np.mean(values))
            assert folds[column]["std"] == pytest.approx(np.std(values, ddof=1))
    assert "rankme" in ev["results"]["pretrained"] and "rankme" not in ev["results"]["raw input"]
    # the raw-input row's folds are the linear probe on the same stratified folds of the raw vectors
    x, y = np.load(vector_run[1])["x"], np.load(vector_run[1])["y"]
    raw = (x - x.mean(0)) / x.std(0)  # the vector modality standardises with the training statistics
    expected = [
        linear_probe(raw[fit], y[fit], raw[held], y[held], seed=0).accuracy for fit, held in stratified_folds(y, 4, seed=0)
    ]
    assert ev["details"]["raw input"]["folds"]["linear"]["values"] == pytest.approx(expected)


def test_folds_need_data_without_a_test_split_and_a_valid_count(vector_run, tmp_path):
    run, _ = vector_run
    x, y = blobs(10, 3, 6, sep=3.0, seed=1)
    np.savez(tmp_path / "split.npz", x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    with pytest.raises(ConfigError, match=r"eval.folds=5 cross-validates data without a test split.*20 train / 10 test"):
        evaluate_run(run, data_spec=f"arrays:{tmp_path / 'split.npz'}", folds=5, trees=False)
    with pytest.raises(ConfigError, match=r"config.eval.folds must be null .* >= 2"):
        RunConfig.from_dict({"eval": {"folds": 1}})


def test_cli_folds_with_the_svm_protocol(vector_run, capsys):
    run, _ = vector_run
    assert main(["evaluate", str(run), "--protocol", "svm", "--folds", "3", "--trees", "off"]) == 0
    out = capsys.readouterr().out
    assert "3-fold stratified cross-validation" in out and "C by 5-fold CV inside each fold" in out
    metrics = json.loads((run / "metrics.json").read_text())["evaluation"]
    assert list(metrics["results"]["pretrained"]) == ["svm", "rankme"]
    assert len(metrics["details"]["pretrained"]["folds"]["svm"]["values"]) == 3
    assert len(metrics["chosen"]["pretrained"]["folds"]) == 3 and "C" in metrics["chosen"]["pretrained"]["folds"][0]["svm"]
    assert main(["evaluate", str(run), "--folds", "1"]) == 2
    assert "folds" in capsys.readouterr().err


def test_planetoid_protocol_probes_train_nodes_scores_test_nodes_pretrains_on_all(tmp_path, monkeypatch):
    pytest.importorskip("torch_geometric")
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(30)
    same = y[:, None] == y[None, :]
    adj = torch.triu(torch.rand(90, 90, generator=g) < torch.where(same, 0.2, 0.01), diagonal=1)
    x = torch.randn(90, 8, generator=g) + torch.nn.functional.one_hot(y, 8)
    train = torch.zeros(90, dtype=torch.bool)
    test = torch.zeros(90, dtype=torch.bool)
    for c in range(3):
        train[c * 30: c * 30 + 5] = True
        test[c * 30 + 10: (c + 1) * 30] = True
    np.savez(tmp_path / "g.npz", x=x.numpy(), edge_index=adj.nonzero().T.numpy(), y=y.numpy(),
             train_mask=train.numpy(), test_mask=test.numpy())
    config = RunConfig(
        data=ComponentConfig(f"graph:{tmp_path / 'g.npz'}"), method="simclr",
        backbone=ComponentConfig("gcn", {"hidden_dim": 8}),
    )
    config.train.epochs, config.train.batch_size, config.train.progress_bar = 2, 15, False
    config.eval.after_training = False
    result = pretrain(config, tmp_path / "run")
    assert result.metrics["steps"] == 2 * 90 // 15  # every node pretrained on, not the 15 train nodes
    seen = []
    real = run_module.evaluate_features

    def spy(train_x, train_y, test_x, test_y, **kwargs):
        seen.append((torch.as_tensor(train_y).tolist(), torch.as_tensor(test_y).tolist()))
        return real(train_x, train_y, test_x, test_y, **kwargs)

    monkeypatch.setattr(run_module, "evaluate_features", spy)
    record = evaluate_run(tmp_path / "run", probes=("linear",), trees=False)
    assert len(seen) == 3  # pretrained, random-init, raw input
    for train_y, test_y in seen:
        assert train_y == y[train].tolist() and test_y == y[test].tolist()
    assert "test used once" in record["evaluation"]["note"]
    with pytest.raises(ConfigError, match="has one \\(15 train / 60 test samples\\)"):
        evaluate_run(tmp_path / "run", folds=5, trees=False)
