"""The remaining offline protocols: kNN temperature, few-label probes, retrieval (mAP@R),
fine-tuning, the risk decomposition; leakage, input errors, and the evaluate command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from toys import blobs
import torch
import torch.nn as nn

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate import (
    average_precision_at_r,
    draw_labelled_subset,
    evaluate_features,
    fewshot_probe,
    finetune_evaluate,
    format_table,
    knn_evaluate,
    linear_probe,
    retrieval_map_at_r,
    risk_decomposition,
)
from selfsup.evaluate.knn import KNN_TEMPERATURES
from selfsup.config import RunConfig
from selfsup.evaluate.run import evaluate_run
from selfsup.methods.base import Encoder
from selfsup.rundir import load_run, load_run_config

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


_blobs = blobs


def _split(x, y, n_train: int):
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _separable():
    """Four classes on orthogonal directions, tiny noise: every protocol should be perfect.

    (No pure-noise dimension: the linear probe standardises features with the statistics of
    the few labelled samples, which would blow a near-constant noise dimension up to the
    signal's scale.)"""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    x = 10.0 * np.eye(4)[y] + 0.05 * rng.normal(size=(y.size, 4))
    perm = rng.permutation(y.size)
    return _split(x[perm].astype(np.float32), y[perm], 80)


def _overlapping():
    """Overlapping blobs where the hyperparameter choices are not trivial."""
    x, y = _blobs(70, 3, 4, sep=2.0, seed=0)
    return _split(x, y, 150)


class _TinyBackbone(nn.Module):
    """A two-layer MLP with a 4-d output: frozen at random init it keeps little of the label."""

    def __init__(self, in_dim: int = 10, embed_dim: int = 4) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.net = nn.Sequential(nn.Linear(in_dim, 32), nn.ReLU(), nn.Linear(32, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _tiny_encoder(in_dim: int = 10, seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    return Encoder(_TinyBackbone(in_dim), torch.zeros(in_dim), torch.ones(in_dim), (in_dim,))


def _xor_task(n: int, in_dim: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Label = sign(x0 * x1): no linear function of the input (or of random features) reads it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_dim, generator=g)
    y = ((x[:, 0] * x[:, 1]) > 0).long()
    return x, y


def _ap_at_r_reference(query_x, query_y, gallery_x, gallery_y, leave_one_out=False) -> list[float]:
    """Musgrave et al. 2020's AP@R written as plainly as possible: loops, no vectorisation."""
    qn = query_x / np.linalg.norm(query_x, axis=1, keepdims=True)
    gn = gallery_x / np.linalg.norm(gallery_x, axis=1, keepdims=True)
    out = []
    for q in range(len(qn)):
        refs = [g for g in range(len(gn)) if not (leave_one_out and g == q)]
        r = sum(1 for g in refs if gallery_y[g] == query_y[q])
        if r == 0:
            out.append(math.nan)
            continue
        ranked = sorted(refs, key=lambda g: -float(qn[q] @ gn[g]))[:r]
        correct, total = 0, 0.0
        for i, g in enumerate(ranked, start=1):
            if gallery_y[g] == query_y[q]:
                correct += 1
                total += correct / i
        out.append(total / r)
    return out


# --------------------------------------------------------------------------------------------
# kNN: k and temperature both chosen on train
# --------------------------------------------------------------------------------------------


def test_knn_chooses_k_and_temperature_on_a_train_split() -> None:
    res = knn_evaluate(*_overlapping())
    assert set(res.chosen) == {"k", "temperature"}
    assert res.chosen["temperature"] in KNN_TEMPERATURES
    # every (k, temperature) pair scored on the held-out part of train
    assert len(res.details["val_accuracies"]) == len(res.details["temperatures"]) * 6
    assert res.val_accuracy == max(res.details["val_accuracies"].values())
    fixed = knn_evaluate(*_overlapping(), temperature=0.5)
    assert fixed.chosen["temperature"] == 0.5 and fixed.details["temperatures"] == [0.5]


# --------------------------------------------------------------------------------------------
# Perfectly separable toys
# --------------------------------------------------------------------------------------------


def test_separable_toy_is_perfect_for_every_feature_protocol() -> None:
    data = _separable()
    results = evaluate_features(*data, probes=("knn", "linear", "fewshot", "retrieval"))
    assert results["knn"].accuracy == 1.0 and results["linear"].accuracy == 1.0
    fewshot = results["fewshot"]
    assert set(fewshot.columns) == {"1% labels", "10% labels", "1-shot", "5-shot", "10-shot"}
    for name, cell in fewshot.columns.items():
        assert cell["mean"] == 1.0 and cell["std"] == 0.0 and cell["draws"] == 5, name
    assert results["retrieval"].columns == {"mAP@R": 1.0}
    assert results["retrieval"].details["precision_at_1"] == 1.0
    assert retrieval_map_at_r(*data, gallery="test").accuracy == 1.0
    risk = risk_decomposition(*data)
    assert risk.details["test_error"] == 0.0 and all(v == 0.0 for v in risk.columns.values())


# --------------------------------------------------------------------------------------------
# Retrieval: mAP@R
# --------------------------------------------------------------------------------------------


def test_map_at_r_on_a_hand_computed_example() -> None:
    # Gallery: unit vectors at angles 0.1 .. 0.6 rad, labels A B A B B A (A = 0, B = 1).
    angles = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    gallery_x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    gallery_y = np.array([0, 1, 0, 1, 1, 0])
    # Query 1 (class A, angle 0): ranking A B A | B B A, R = 3: AP@R = (1/1 + 0 + 2/3) / 3 = 5/9.
    # Query 2 (class B, angle 0.46): ranking B(0.5) B(0.4) A(0.6) | ..., R = 3: AP@R = (1 + 1 + 0) / 3 = 2/3.
    query_angles = np.array([0.0, 0.46])
    query_x = np.stack([np.cos(query_angles), np.sin(query_angles)], axis=1)
    query_y = np.array([0, 1])
    ap, r_prec, p1, r = average_precision_at_r(
        torch.tensor(query_x), torch.tensor(query_y), torch.tensor(gallery_x), torch.tensor(gallery_y)
    )
    assert ap.tolist() == pytest.approx([5 / 9, 2 / 3])
    assert r_prec.tolist() == pytest.approx([2 / 3, 2 / 3])
    assert p1.tolist() == [1.0, 1.0] and r.tolist() == [3, 3]
    result = retrieval_map_at_r(gallery_x, gallery_y, query_x, query_y)  # train = gallery, test = queries
    assert result.accuracy == pytest.approx(11 / 18)
    assert result.chosen == {} and result.details["gallery"] == "train"


@pytest.mark.parametrize("gallery", ["train", "test"])
def test_map_at_r_matches_a_slow_reference(gallery: str) -> None:
    rng = np.random.default_rng(1)
    train_x, test_x = rng.normal(size=(50, 5)), rng.normal(size=(23, 5))
    train_y, test_y = rng.integers(0, 4, 50), rng.integers(0, 4, 23)
    result = retrieval_map_at_r(train_x, train_y, test_x, test_y, gallery=gallery, chunk_size=7)
    if gallery == "train":
        ref = _ap_at_r_reference(test_x, test_y, train_x, train_y)
    else:
        ref = _ap_at_r_reference(test_x, test_y, test_x, test_y, leave_one_out=True)
    assert result.accuracy == pytest.approx(np.nanmean(ref))
    assert result.details["n_queries"] == int(np.sum(~np.isnan(ref)))


# --------------------------------------------------------------------------------------------
# Few-label draws
# --------------------------------------------------------------------------------------------


def test_labelled_subsets_are_stratified_seeded_and_differ_across_draws() -> None:
    y = np.repeat([0, 1, 2], [100, 40, 7])
    a = draw_labelled_subset(y, seed=3, shots=5)
    assert np.bincount(y[a]).tolist() == [5, 5, 5]
    np.testing.assert_array_equal(a, draw_labelled_subset(y, seed=3, shots=5))
    assert not np.array_equal(a, draw_labelled_subset(y, seed=4, shots=5))
    tenth = draw_labelled_subset(y, seed=0, fraction=0.1)
    assert np.bincount(y[tenth]).tolist() == [10, 4, 2]  # max(2, round(0.1 * n_c)): 0.7 -> 2, not 1
    one = draw_labelled_subset(y, seed=0, fraction=0.01)
    assert np.bincount(y[one]).tolist() == [2, 2, 2]  # every class labelled at least twice by default
    # the minimum is a knob: 1 gives the old max(1, round(f * n_c)); a class smaller than it is kept whole
    assert np.bincount(y[draw_labelled_subset(y, seed=0, fraction=0.1, min_per_class=1)]).tolist() == [10, 4, 1]
    assert np.bincount(y[draw_labelled_subset(y, seed=0, fraction=0.01, min_per_class=10)]).tolist() == [10, 10, 7]
    assert np.bincount(y[draw_labelled_subset(y, seed=0, shots=1)]).tolist() == [1, 1, 1]  # k-shot: exactly k
    with pytest.raises(ConfigError, match="min_per_class"):
        draw_labelled_subset(y, seed=0, fraction=0.1, min_per_class=0)


def test_fewshot_fractions_keep_the_minimum_per_class() -> None:
    data = _overlapping()  # 150 train samples, 3 classes of about 50: 1% is 0.5 per class
    default = fewshot_probe(*data, fractions=(0.01,), shots=(), num_draws=2)
    assert default.details["settings"]["1% labels"]["n_labelled"] == [6, 6] and default.details["min_per_class"] == 2
    ones = fewshot_probe(*data, fractions=(0.01,), shots=(), num_draws=2, min_per_class=1)
    assert ones.details["settings"]["1% labels"]["n_labelled"] == [3, 3]
    shots = fewshot_probe(*data, fractions=(), shots=(1,), num_draws=2, min_per_class=4)
    assert shots.details["settings"]["1-shot"]["n_labelled"] == [3, 3]  # k-shot ignores the minimum


def test_fewshot_is_reproducible_and_draws_differ() -> None:
    data = _overlapping()
    a = fewshot_probe(*data, fractions=(0.1,), shots=(1, 5), num_draws=4, seed=7)
    b = fewshot_probe(*data, fractions=(0.1,), shots=(1, 5), num_draws=4, seed=7)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    one_shot = a.details["settings"]["1-shot"]
    assert len(set(one_shot["accuracies"])) > 1  # different draws, different probes
    assert a.columns["1-shot"]["std"] == pytest.approx(np.std(one_shot["accuracies"], ddof=1))
    assert one_shot["C_searched"] == [False] * 4 and "fixed" in one_shot["C_note"]  # 1 per class: no split
    assert a.details["settings"]["10% labels"]["n_labelled"] == [15] * 4
    other = fewshot_probe(*data, fractions=(0.1,), shots=(1, 5), num_draws=4, seed=8)
    assert other.details["settings"]["1-shot"]["accuracies"] != one_shot["accuracies"]


# --------------------------------------------------------------------------------------------
# Leakage: test labels never influence a choice
# --------------------------------------------------------------------------------------------


def _finetune_small(train_x, train_y, test_x, test_y):
    x_train, x_test = torch.as_tensor(train_x), torch.as_tensor(test_x)
    return finetune_evaluate(
        _tiny_encoder(in_dim=x_train.shape[1]), x_train, train_y, x_test, test_y, lrs=(1e-3, 1e-2), epochs=3
    )


PROTOCOLS = {
    "knn": knn_evaluate,
    "fewshot": lambda *a: fewshot_probe(*a, fractions=(0.1,), shots=(1, 5), num_draws=2),
    "retrieval": retrieval_map_at_r,
    "risk": risk_decomposition,
    "finetune": _finetune_small,
}


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_test_labels_never_influence_a_chosen_hyperparameter(protocol: str) -> None:
    run = PROTOCOLS[protocol]
    train_x, train_y, test_x, test_y = _overlapping()
    base = run(train_x, train_y, test_x, test_y)
    rng = np.random.default_rng(5)
    for _ in range(2):
        other = run(train_x, train_y, test_x, rng.permutation(test_y))
        assert other.chosen == base.chosen
        assert other.val_accuracy == base.val_accuracy or (math.isnan(other.val_accuracy) and math.isnan(base.val_accuracy))
        for key in ("val_accuracies", "train_error", "heldout_error"):
            assert other.details.get(key) == base.details.get(key)
    flipped = run(train_x, train_y, test_x, (test_y + 1) % 3)
    assert flipped.accuracy != base.accuracy  # the test labels do reach the score


# --------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------


def test_finetuning_beats_the_frozen_random_init_encoder_and_leaves_it_untouched() -> None:
    train_x, train_y = _xor_task(600, seed=0)
    test_x, test_y = _xor_task(300, seed=1)
    encoder = _tiny_encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.eval()
    with torch.no_grad():
        frozen = linear_probe(encoder(train_x), train_y, encoder(test_x), test_y)
    tuned = finetune_evaluate(encoder, train_x, train_y, test_x, test_y, lrs=(3e-3, 1e-2), epochs=30, batch_size=32)
    assert tuned.accuracy >= 0.85 and tuned.accuracy >= frozen.accuracy + 0.2, (tuned.accuracy, frozen.accuracy)
    assert tuned.chosen["lr"] in (3e-3, 1e-2) and set(tuned.details["val_accuracies"]) == {"0.003", "0.01"}
    assert 0.0 <= tuned.details["train_accuracy"] <= 1.0
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not encoder.training  # its mode is kept too


def test_finetuning_with_one_lr_skips_the_choice_and_the_config_budget_reaches_it(tiny_run: Path) -> None:
    train_x, train_y = _xor_task(200, seed=0)
    test_x, test_y = _xor_task(100, seed=1)
    tuned = finetune_evaluate(_tiny_encoder(), train_x, train_y, test_x, test_y, lrs=(1e-2,), epochs=3, batch_size=32)
    assert tuned.chosen == {"lr": 1e-2} and math.isnan(tuned.val_accuracy)
    config = load_run_config(tiny_run)
    config.eval.finetune_epochs, config.eval.finetune_lrs = 30, (2e-4,)
    with pytest.raises(ConfigError, match="finetune_lrs must hold at least one"):
        RunConfig.from_dict({"eval": {"finetune_lrs": []}})
    _, method, _ = load_run(tiny_run)
    record = evaluate_run(tiny_run, probes=("knn",), finetune=True, config=config, method=method)
    details = record["evaluation"]["details"]["pretrained"]["finetune"]
    assert record["evaluation"]["chosen"]["pretrained"]["finetune"] == {"lr": 2e-4} and details["epochs"] == 30


# --------------------------------------------------------------------------------------------
# Risk decomposition
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("approximation", [None, 0.02])
def test_risk_terms_add_up_to_the_linear_probe_test_error(approximation) -> None:
    data = _overlapping()
    risk = risk_decomposition(*data, approximation_error=approximation, seed=3)
    d = risk.details
    total = d["approximation"] + d["usability"] + d["probe_generalization"] + d["encoder_generalization"]
    assert total == pytest.approx(d["test_error"], abs=1e-12)
    assert sum(risk.columns.values()) == pytest.approx(d["test_error"], abs=1e-12)
    # the decomposed error is exactly the linear probe's (same C chosen on the same train split)
    probe = linear_probe(*data, cs=(1e-3, 1e-2, 1e-1, 1, 10, 100), seed=3)
    assert d["test_error"] == pytest.approx(1.0 - probe.accuracy) and risk.chosen == probe.chosen
    assert d["usability"] == pytest.approx(d["train_error"] - (approximation or 0.0))
    assert d["approximation_estimated"] is (approximation is not None)
    assert abs(d["n_heldout"] - 60) <= 3  # |S_sub| ~ |test| = 60 (40% of train, below the 50% cap; rounded per class)
    assert 0.0 < d["test_error"] < 1.0


def test_risk_caps_an_underfit_approximation_at_the_probe_train_error() -> None:
    data = _overlapping()
    free = risk_decomposition(*data, seed=3).details
    capped = risk_decomposition(*data, approximation_error=free["train_error"] + 0.1, seed=3).details
    assert capped["approximation"] == pytest.approx(free["train_error"]) and capped["usability"] == pytest.approx(0.0)
    assert capped["approximation_capped"] is True and "capped" in capped["approximation_note"]
    total = sum(capped[t] for t in ("approximation", "usability", "probe_generalization", "encoder_generalization"))
    assert total == pytest.approx(capped["test_error"], abs=1e-12)


# --------------------------------------------------------------------------------------------
# Bad inputs and the table
# --------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors() -> None:
    train_x, train_y, test_x, test_y = _overlapping()
    nan_x = train_x.copy()
    nan_x[4, 1] = np.nan
    for run in (fewshot_probe, retrieval_map_at_r, risk_decomposition):
        with pytest.raises(DataError, match=r"train_x contains NaN.*first bad row: 4"):
            run(nan_x, train_y, test_x, test_y)
    y = np.repeat([0, 1, 2], [50, 50, 3])
    x = np.random.default_rng(0).normal(size=(y.size, 4))
    with pytest.raises(ConfigError, match=r"5-shot .* class 2 has only 3; use shots of at most 3"):
        fewshot_probe(x, y, x, y, fractions=(), shots=(5,))
    skipped = fewshot_probe(x, y, x, y, fractions=(0.1,), shots=(1, 5), num_draws=1, skip_infeasible_shots=True)
    assert skipped.details["skipped"] == ["5-shot"] and "5-shot" not in skipped.columns
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=r"label fraction .* outside \(0, 1\]"):
            fewshot_probe(train_x, train_y, test_x, test_y, fractions=(fraction,))
    with pytest.raises(ConfigError, match="num_draws"):
        fewshot_probe(train_x, train_y, test_x, test_y, num_draws=0)
    with pytest.raises(ConfigError, match=r"unknown probe\(s\) 'fewshots'.*fewshot.*retrieval"):
        evaluate_features(train_x, train_y, test_x, test_y, probes=("knn", "fewshots"))
    with pytest.raises(ConfigError, match="gallery"):
        retrieval_map_at_r(train_x, train_y, test_x, test_y, gallery="val")
    with pytest.raises(ConfigError, match="approximation_error"):
        risk_decomposition(train_x, train_y, test_x, test_y, approximation_error=2.0)
    encoder = _tiny_encoder(in_dim=4)
    bad = torch.as_tensor(train_x).clone()
    bad[0, 0] = math.inf
    with pytest.raises(DataError, match="train_x contains infinite"):
        finetune_evaluate(encoder, bad, train_y, torch.as_tensor(test_x), test_y)
    with pytest.raises(DataError, match="test_y"):
        finetune_evaluate(encoder, torch.as_tensor(train_x), train_y, torch.as_tensor(test_x), test_y[:-1])
    with pytest.raises(ConfigError, match="lrs"):
        finetune_evaluate(encoder, torch.as_tensor(train_x), train_y, torch.as_tensor(test_x), test_y, lrs=(0.0,))


def test_format_table_shows_mean_and_std() -> None:
    table = format_table(
        {
            "pretrained": {"linear": 0.9, "1% labels": {"mean": 0.823, "std": 0.031, "draws": 5}, "mAP@R": 0.5},
            "raw input": {"linear": 0.8, "1% labels": {"mean": 0.7, "std": 0.0, "draws": 5}},
        }
    )
    lines = table.splitlines()
    assert lines[0].split() == ["linear", "1%", "labels", "mAP@R"]
    assert lines[1].split() == ["pretrained", "90.0%", "82.3±3.1%", "50.0%"]
    assert lines[2].split()[-2:] == ["70.0±0.0%", "-"]
    assert len({len(line) for line in lines}) == 1


# --------------------------------------------------------------------------------------------
# The evaluate command on a tiny run
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of SimCLR on wine (133 training samples, an MLP): a run directory in seconds."""
    from selfsup.config import RunConfig, TrainConfig
    from selfsup.train.runner import pretrain

    config = RunConfig(data="wine")
    config.train = TrainConfig(epochs=1, batch_size=32, progress_bar=False)
    run = tmp_path_factory.mktemp("protocols") / "run"
    pretrain(config, run_dir=run, evaluate=False)
    return run


def test_cli_evaluate_runs_every_protocol(tiny_run: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "selfsup.cli", "evaluate", str(tiny_run),
         "--probes", "knn", "linear", "fewshot,retrieval", "--finetune", "--risk"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for column in ("knn", "linear", "1% labels", "5-shot", "mAP@R", "finetune", "usability err", "encoder gen err"):
        assert column in result.stdout, column
    assert "±" in result.stdout
    evaluation = json.loads((tiny_run / "metrics.json").read_text())["evaluation"]
    rows = evaluation["results"]
    # wine is a vector dataset: the gradient-boosted-trees row comes by default (eval.trees: auto),
    # with its own accuracy and the few-label settings, none of the encoders' other columns
    assert set(rows) == {"pretrained", "random-init", "raw input", "gradient-boosted trees"}
    trees = rows.pop("gradient-boosted trees")
    assert set(trees) == {"trees", "1% labels", "10% labels", "1-shot", "5-shot", "10-shot"}
    assert "finetune" in rows["pretrained"] and "finetune" in rows["random-init"] and "finetune" not in rows["raw input"]
    assert set(rows["pretrained"]["10-shot"]) == {"mean", "std", "draws"}
    for name, row in rows.items():
        risk = evaluation["details"][name]["risk"]
        terms = sum(risk[t] for t in ("approximation", "usability", "probe_generalization", "encoder_generalization"))
        assert terms == pytest.approx(risk["test_error"]) and risk["test_error"] == pytest.approx(1 - row["linear"])
    # the approximation term of both encoders is the supervised (random-init fine-tune) training
    # error, capped at what the encoder's own linear probe reaches on train
    approx = 1 - evaluation["details"]["random-init"]["finetune"]["train_accuracy"]
    train_error = evaluation["details"]["pretrained"]["risk"]["train_error"]
    assert rows["pretrained"]["approx err"] == pytest.approx(min(approx, train_error))
    assert evaluation["chosen"]["pretrained"]["finetune"]["lr"] in (1e-4, 3e-4, 1e-3)


def test_cli_evaluate_linear_batch_norm_and_no_finetune(tiny_run: Path) -> None:
    """--linear-batch-norm on gives MAE's probe (its lr chosen, not C); --no-finetune wins over --finetune's default."""
    result = subprocess.run(
        [sys.executable, "-m", "selfsup.cli", "evaluate", str(tiny_run), "--probes", "linear",
         "--linear-batch-norm", "on", "--no-finetune"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((tiny_run / "metrics.json").read_text())["evaluation"]
    assert "finetune" not in evaluation["results"]["pretrained"]
    assert "lr" in evaluation["chosen"]["pretrained"]["linear"]


def test_unknown_probe_fails_before_any_work(tiny_run: Path) -> None:
    from selfsup.evaluate.run import evaluate_run

    before = (tiny_run / "metrics.json").read_text()
    with pytest.raises(ConfigError, match=r"unknown probe\(s\) 'retreival'.*retrieval.*--finetune, --risk"):
        evaluate_run(tiny_run, probes=("knn", "retreival"))
    assert (tiny_run / "metrics.json").read_text() == before


def test_the_run_config_can_ask_for_risk_after_training(tmp_path: Path) -> None:
    from selfsup.config import RunConfig
    from selfsup.train.runner import pretrain

    config = RunConfig.from_dict({
        "data": "wine", "train": {"epochs": 1, "batch_size": 32, "progress_bar": False},
        "eval": {"probes": ["linear"], "risk": True},
    })
    metrics = pretrain(config, run_dir=tmp_path / "run").metrics
    rows = metrics["evaluation"]["results"]
    assert "usability err" in rows["pretrained"] and "finetune" not in rows["pretrained"]
    assert "risk decomposition" in metrics["evaluation_table"]
