"""Label-free monitors (evaluate/quality.py), the EmbeddingMonitor callback and the collapse alarm."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from selfsup.config import ComponentConfig, RunConfig, TrainConfig
from selfsup.data import load_dataset
from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.quality import (
    alignment,
    alpha_req,
    covariance_eigenvalues,
    normalized_std,
    online_probes,
    ridge_classifier_accuracy,
    uniformity,
)
from selfsup.train.callbacks import EmbeddingMonitor
from selfsup.train.logs import AppendingCSVLogger
from selfsup.train.monitors import CollapseAlarm, CollapseWarning, detect_collapse
from selfsup.train.runner import CHECKPOINT, build_method, input_statistics, pretrain, resolve_config
from selfsup.views import create_views

SIGNALS = (
    "rankme", "alpha_req", "alignment", "uniformity", "embedding_std", "embedding_std_min", "knn_acc", "linear_acc",
)


def power_law_embeddings(N: int, D: int, alpha: float, offset: float = 0.0, seed: int = 0) -> torch.Tensor:
    """``[N, D]`` embeddings whose (centred, 1/N) covariance has eigenvalues exactly ``k^(-alpha)``.

    ``Z = Q diag(sqrt(N λ)) Vᵀ + offset`` with ``Q`` orthonormal centred columns and ``V`` a rotation,
    so ``Cov(Z) = V diag(λ) Vᵀ``.
    """
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(N, D, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(A - A.mean(dim=0))
    V, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    eigenvalues = torch.arange(1, D + 1, dtype=torch.float64) ** (-alpha)
    return Q @ torch.diag((N * eigenvalues).sqrt()) @ V.T + offset


# ----------------------------------------------------------------------------------------------
# Pure functions: closed forms
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_a_known_power_law(alpha: float) -> None:
    Z = power_law_embeddings(400, 32, alpha, offset=5.0)  # the offset checks the centring
    eigenvalues = covariance_eigenvalues(Z)
    np.testing.assert_allclose(eigenvalues, np.arange(1, 33) ** (-alpha), rtol=1e-9)
    assert alpha_req(Z) == pytest.approx(alpha, abs=1e-9)
    assert alpha_req(Z.numpy().astype(np.float32)) == pytest.approx(alpha, abs=1e-4)


def test_alpha_req_fits_only_the_requested_ranks() -> None:
    Z = power_law_embeddings(300, 24, 1.5).clone()
    # Scale the leading direction up: the whole-spectrum fit moves, a fit from rank 2 does not.
    eig = covariance_eigenvalues(Z)
    U, S, Vh = torch.linalg.svd(Z - Z.mean(dim=0), full_matrices=False)
    S[0] *= 10.0
    bumped = U @ torch.diag(S) @ Vh
    assert covariance_eigenvalues(bumped)[0] == pytest.approx(100 * eig[0])
    assert alpha_req(bumped) > 1.6
    assert alpha_req(bumped, first=2) == pytest.approx(1.5, abs=1e-9)
    assert alpha_req(bumped, first=2, last=10) == pytest.approx(1.5, abs=1e-9)


def test_alpha_req_of_a_collapsed_representation_is_nan() -> None:
    assert math.isnan(alpha_req(torch.ones(50, 8)))
    one_direction = torch.randn(50, 1) * torch.ones(1, 8)  # rank 1: one eigenvalue above the floor
    assert math.isnan(alpha_req(one_direction))


def test_alignment_closed_forms() -> None:
    z = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    assert alignment(z, z) == 0.0
    assert alignment(z, 3.0 * z) == pytest.approx(0.0, abs=1e-12)  # measured on the sphere
    assert alignment(z, -z) == pytest.approx(4.0)  # antipodal: ||u - (-u)||^2 = 4
    assert alignment(z, -z, alpha=1.0) == pytest.approx(2.0)
    e1, e2 = torch.eye(2)[:1], torch.eye(2)[1:]
    assert alignment(e1, e2) == pytest.approx(2.0)  # orthogonal: ||e1 - e2||^2 = 2


def test_uniformity_closed_forms() -> None:
    antipodal = torch.tensor([[1.0, 0.0], [-2.0, 0.0]])  # one pair at squared distance 4
    assert uniformity(antipodal) == pytest.approx(-8.0)
    assert uniformity(antipodal, t=0.5) == pytest.approx(-2.0)
    # D orthonormal vectors: every pair at squared distance 2 -> log exp(-2t) = -2t.
    assert uniformity(torch.eye(7), t=2.0) == pytest.approx(-4.0)
    assert uniformity(torch.ones(10, 4)) == pytest.approx(0.0)  # complete collapse
    # Mixed distances: 3 points, pairs at squared distances 2, 2, 4 (e1, e2, -e1).
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert uniformity(points) == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3))


def test_normalized_std_closed_forms() -> None:
    D = 5
    collapsed = torch.full((30, D), 2.0)
    assert normalized_std(collapsed) == (0.0, 0.0)
    pair = torch.zeros(2, D)
    pair[0, 0], pair[1, 0] = 3.0, -1.0  # normalised: e1 and -e1
    std = normalized_std(pair)
    assert std.mean == pytest.approx(math.sqrt(2) / D)  # unbiased std of [1, -1] is sqrt(2)
    assert std.min == 0.0


def test_ridge_probe_and_online_probes_on_separable_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centres = 10.0 * torch.eye(4, 16)
    labels = torch.arange(200) % 4
    x = centres[labels] + torch.randn(200, 16, generator=g)
    assert ridge_classifier_accuracy(x[:100], labels[:100], x[100:], labels[100:]) == 1.0
    assert online_probes(x, labels) == {"knn_acc": 1.0, "linear_acc": 1.0}
    # Labels unrelated to the features: no better than about chance on 100 scored samples.
    shuffled = labels[torch.randperm(200, generator=g)]
    scores = online_probes(torch.randn(200, 16, generator=g), shuffled)
    assert scores["knn_acc"] < 0.45 and scores["linear_acc"] < 0.45


def test_bad_inputs_raise_clear_errors() -> None:
    z = torch.randn(10, 4)
    nan = z.clone()
    nan[3, 1] = float("nan")
    with pytest.raises(DataError, match=r"NaN or infinite.*first bad row: 3"):
        alpha_req(nan)
    with pytest.raises(DataError, match="NaN"):
        uniformity(nan)
    with pytest.raises(DataError, match=r"2-D array of shape \[N, D\]"):
        alignment(z[0], z[0])
    with pytest.raises(DataError, match="same shape"):
        alignment(z, z[:5])
    with pytest.raises(DataError, match="at least 2 samples"):
        uniformity(z[:1])
    with pytest.raises(ConfigError, match="alpha must be positive"):
        alignment(z, z, alpha=0.0)
    with pytest.raises(ConfigError, match="t must be positive"):
        uniformity(z, t=-1.0)
    with pytest.raises(ConfigError, match="first must be a positive integer"):
        alpha_req(z, first=0)
    with pytest.raises(ConfigError, match="last must be"):
        alpha_req(z, first=3, last=3)
    with pytest.raises(DataError, match="10 rows but labels has 9"):
        online_probes(z, torch.arange(9) % 2)


# ----------------------------------------------------------------------------------------------
# The collapse rule
# ----------------------------------------------------------------------------------------------


def _record(rankme: float, std_relative: float, D: int = 64, N: int = 256) -> dict:
    return {"rankme": rankme, "embedding_std": std_relative / math.sqrt(D), "embed_dim": D, "num_samples": N}


def test_detect_collapse_thresholds() -> None:
    assert detect_collapse(_record(30.0, 0.4), rank_fraction=0.1, std_threshold=0.05) is None
    assert detect_collapse(_record(30.0, 0.04), rank_fraction=0.1, std_threshold=0.05) == "complete"
    # 0.1 * min(256, 64) = 6.4
    assert detect_collapse(_record(6.3, 0.4), rank_fraction=0.1, std_threshold=0.05) == "dimensional"
    assert detect_collapse(_record(6.5, 0.4), rank_fraction=0.1, std_threshold=0.05) is None
    assert detect_collapse(_record(6.3, 0.4, N=32), rank_fraction=0.1, std_threshold=0.05) is None  # min(N, D) = 32
    assert detect_collapse(_record(1.0, 0.0), rank_fraction=0.0, std_threshold=0.0) is None  # both off
    for bad in ({"rank_fraction": -0.1, "std_threshold": 0.05}, {"rank_fraction": 0.1, "std_threshold": 1.5}):
        with pytest.raises(ConfigError, match="must be in \\[0, 1\\]"):
            detect_collapse(_record(30.0, 0.4), **bad)


def test_complete_collapse_needs_a_fall_from_the_start() -> None:
    """A ViT's mean-pooled tokens start near 5% of 1/sqrt(D) and stay there while they learn: low
    but not fallen, no alarm; a fall to a quarter of the start (or below) is collapse."""
    low = _record(30.0, 0.04)
    start = 0.059 / math.sqrt(64)  # vit_tiny at random init on digits
    assert detect_collapse(low, 0.1, 0.05, initial_std=start) is None
    assert detect_collapse(_record(30.0, 0.01), 0.1, 0.05, initial_std=start) == "complete"
    assert detect_collapse(low, 0.1, 0.05, initial_std=0.4 / math.sqrt(64)) == "complete"  # a ResNet's start
    assert detect_collapse(low, 0.1, 0.05, initial_std=None) == "complete"  # no start known: the threshold alone


# ----------------------------------------------------------------------------------------------
# The EmbeddingMonitor callback
# ----------------------------------------------------------------------------------------------


def _tiny_module(seed: int = 0) -> tuple[SimpleNamespace, torch.Tensor, torch.Tensor]:
    """A stand-in for PretrainModule (method, views, device) with a small MLP SimSiam on digits."""
    torch.manual_seed(seed)
    data = load_dataset("digits").train
    config = RunConfig()
    config.backbone = ComponentConfig("mlp", {"hidden_dims": [32]})
    config.method = ComponentConfig("simsiam", {"proj_hidden_dim": 16, "proj_dim": 16, "pred_hidden_dim": 4})
    config = resolve_config(config, data.modality)
    mean, std = input_statistics(data)
    method = build_method(config, data.sample_shape, mean, std)
    views = create_views(config.views.name, data.modality, config.views.params)
    return SimpleNamespace(method=method, views=views, device=torch.device("cpu")), data.x[:128], data.y[:128]


def test_monitor_never_trains_the_encoder_nor_touches_the_training_random_stream() -> None:
    module, x, y = _tiny_module()
    encoder = module.method.encoder
    encoder.train()
    for p in encoder.parameters():
        p.grad = torch.full_like(p, 0.5)
    params = {k: v.clone() for k, v in encoder.state_dict().items()}  # weights and BN running stats
    grads = [p.grad.clone() for p in encoder.parameters()]
    rng = torch.get_rng_state()

    monitor = EmbeddingMonitor(x, labels=y, seed=3)
    first = monitor.measure(module)

    for k, v in encoder.state_dict().items():
        assert torch.equal(v, params[k]), k
    assert all(torch.equal(p.grad, g) for p, g in zip(encoder.parameters(), grads))
    assert encoder.training  # train mode restored
    assert torch.equal(torch.get_rng_state(), rng)  # the views used the monitor's own generator
    # Same seed, same views, same weights: the same record.
    assert monitor.measure(module) == first
    assert set(SIGNALS) <= set(first)
    assert first["embed_dim"] == 32 and first["num_samples"] == 128
    assert 0.0 < first["alignment"] < 4.0 and -4.0 <= first["uniformity"] <= 0.0
    assert 0.1 < first["knn_acc"] <= 1.0  # digits: well above chance even at random init


def test_monitor_without_usable_labels_has_no_online_probes() -> None:
    module, x, _ = _tiny_module()
    assert "knn_acc" not in EmbeddingMonitor(x).measure(module)
    one_class = torch.zeros(len(x), dtype=torch.long)
    assert EmbeddingMonitor(x, labels=one_class).labels is None


def test_tensorboard_logger_is_added_only_when_tensorboard_is_importable(monkeypatch, tmp_path: Path) -> None:
    import importlib.util

    import lightning as L

    from selfsup.train import runner

    real_find_spec = importlib.util.find_spec

    def pretend(installed: bool):
        return lambda name, *a: (object() if installed else None) if name == "tensorboard" else real_find_spec(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", pretend(False))
    csv_log = AppendingCSVLogger(tmp_path)
    assert [type(x).__name__ for x in runner._loggers(tmp_path, csv_log)] == ["AppendingCSVLogger"]

    class FakeTensorBoard:
        def __init__(self, save_dir: str, name: str, version: str) -> None:
            self.save_dir = save_dir

    monkeypatch.setattr(importlib.util, "find_spec", pretend(True))
    monkeypatch.setattr(L.pytorch.loggers, "TensorBoardLogger", FakeTensorBoard)
    loggers = runner._loggers(tmp_path, csv_log)
    assert [type(x).__name__ for x in loggers] == ["AppendingCSVLogger", "FakeTensorBoard"]
    assert loggers[1].save_dir == str(tmp_path)


# ----------------------------------------------------------------------------------------------
# End to end: a collapsing configuration trips the alarm, a healthy one does not
# ----------------------------------------------------------------------------------------------


def simsiam_config(stop_gradient: bool, epochs: int = 5, seed: int = 0, **train) -> RunConfig:
    """SimSiam on digits with a small ReLU MLP (no BN in the backbone), SGD at a constant lr of 0.1.

    Without the stop-gradient this collapses within 2-4 epochs (RankMe of the 64-d embeddings from
    ~20 to 1-5; checked on 10 seeds), as in Chen & He 2021 (arXiv 2011.10566, fig. 2); with it,
    RankMe stays above 12. With D = 64 the default 1% rank threshold (0.64) is below RankMe's minimum
    of 1, so the test uses 10% (6.4).
    """
    config = RunConfig()
    config.backbone = ComponentConfig("mlp", {"hidden_dims": [64, 64], "batch_norm": False})
    config.method = ComponentConfig(
        "simsiam", {"proj_hidden_dim": 64, "proj_dim": 64, "pred_hidden_dim": 16, "stop_gradient": stop_gradient}
    )
    settings = dict(
        epochs=epochs, batch_size=64, optimizer="sgd", lr=0.1, warmup_epochs=0, min_lr_ratio=1.0, seed=seed,
        accelerator="cpu", progress_bar=False, monitor_every_n_epochs=1, monitor_samples=256,
        collapse_rank_fraction=0.1,
    )
    settings.update(train)
    config.train = TrainConfig(**settings)
    return config


def test_simsiam_without_stop_gradient_trips_the_alarm_and_stops_cleanly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.warns(CollapseWarning, match=r"collapse \((complete|dimensional)\) detected at epoch"):
        result = pretrain(simsiam_config(stop_gradient=False, stop_on_collapse=True), run_dir=run, evaluate=True)
    metrics = json.loads((run / "metrics.json").read_text())
    collapse = metrics["collapse"]
    assert collapse["detected"] and collapse["stopped"] and collapse["kind"] in ("complete", "dimensional")
    epoch = collapse["epoch"]
    assert 2 <= epoch <= 4, metrics["monitors"]
    assert metrics["status"] == f"stopped: collapse detected at epoch {epoch}"
    assert metrics["epochs_done"] == epoch < 5  # stopped early
    assert "evaluation" not in metrics  # a stopped run skips the probes
    last = metrics["monitors"][-1]
    assert last["epoch"] == epoch and (last["rankme"] < 6.4 or last["embedding_std"] * 8 < 0.05)
    # The checkpoint of the collapse epoch was written (not only the previous one).
    steps_per_epoch = 1347 // 64
    assert torch.load(run / CHECKPOINT, weights_only=False)["global_step"] == epoch * steps_per_epoch
    assert result.metrics["collapse"] == collapse


def test_simsiam_with_stop_gradient_does_not_trip_the_alarm(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        result = pretrain(simsiam_config(stop_gradient=True, stop_on_collapse=True), run_dir=run, evaluate=False)
    metrics = result.metrics
    assert metrics["status"] == "finished" and metrics["epochs_done"] == 5
    settings = {"rank_fraction": 0.1, "std_threshold": 0.05, "stop_on_collapse": True}
    assert metrics["collapse"].pop("initial_embedding_std") > 0.05  # measured as training started
    assert metrics["collapse"] == {"detected": False, **settings}
    monitors = metrics["monitors"]
    assert [m["epoch"] for m in monitors] == [1, 2, 3, 4, 5]
    assert min(m["rankme"] for m in monitors) > 9.0, monitors
    # Every signal reaches metrics.json and the CSV log.
    for key in SIGNALS:
        assert all(isinstance(m[key], float) for m in monitors), key
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"rankme", "alpha_req", "alignment", "uniformity", "knn_acc", "linear_acc"} <= set(header)


def test_alarm_warns_once_and_training_goes_on_without_stop(tmp_path: Path, capsys) -> None:
    # rank_fraction = 1: RankMe < min(N, D) always holds, so the alarm trips at the first monitored epoch.
    config = simsiam_config(stop_gradient=True, epochs=3, collapse_rank_fraction=1.0)
    with pytest.warns(CollapseWarning) as caught:
        result = pretrain(config, run_dir=tmp_path / "run", evaluate=False)
    assert sum(issubclass(w.category, CollapseWarning) for w in caught) == 1
    assert result.metrics["status"] == "finished" and result.metrics["epochs_done"] == 3
    assert result.metrics["collapse"]["epoch"] == 1 and not result.metrics["collapse"]["stopped"]
    err = capsys.readouterr().err
    assert err.count("Representation collapse at epoch 1") == 1
    assert "What to try" in err and "stop-gradient" in err


def test_cli_stop_on_collapse_exits_non_zero_with_the_checkpoint_kept(tmp_path: Path, capsys) -> None:
    from selfsup.cli import main

    run = tmp_path / "run"
    code = main([
        "pretrain", "--data", "digits", "--method", "simsiam", "--backbone", "mlp", "--epochs", "3",
        "--batch-size", "128", "--set", "backbone.hidden_dims=[32]", "--set", "train.monitor_every_n_epochs=1",
        "--set", "train.monitor_samples=128", "--set", "train.collapse_rank_fraction=1.0",
        "--stop-on-collapse", "--no-progress", "-o", str(run),
    ])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "error: the run was stopped at epoch 1: dimensional collapse" in err
    assert "Traceback" not in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "stopped: collapse detected at epoch 1"
    assert metrics["collapse"]["epoch"] == 1 and metrics["collapse"]["stopped"]
    assert torch.load(run / CHECKPOINT, weights_only=False)["global_step"] == 1347 // 128


def test_bad_collapse_threshold_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    config = simsiam_config(stop_gradient=True, collapse_std_threshold=-0.5)
    with pytest.raises(ConfigError, match="collapse_std_threshold must be in"):
        pretrain(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_monitor_needs_two_samples() -> None:
    with pytest.raises(ConfigError, match="at least 2 samples.*train.monitor_samples"):
        EmbeddingMonitor(torch.zeros(1, 4))
