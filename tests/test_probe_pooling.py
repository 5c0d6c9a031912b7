"""Evaluation that fits the method (issue 12): a method's declared pooling reaches the run's
backbone and survives a reload and an export; the linear probe's BatchNorm option is MAE's probe;
a "finetune" headline puts fine-tuning in the results, first."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from selfsup import RunConfig, pretrain
from selfsup.errors import ConfigError
from selfsup.evaluate.linear import BATCH_NORM_EPS, linear_probe, sgd_linear_probe, train_linear_head
from selfsup.evaluate.report import _headline_html
from selfsup.evaluate.run import evaluate_run, evaluation_choices, headline_first
from selfsup.export import load_encoder
from selfsup.methods import METHODS
from selfsup.methods.simclr import SimCLR
from selfsup.rundir import load_run, method_backbone_params
from selfsup.train.runner import resolve_config

TINY_VIT = {"patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}


class _ClsProbed(SimCLR):
    """A method that declares what MAE-like methods declare, on SimCLR's loss (fast to train)."""

    probe_pooling = "cls"
    linear_probe_batch_norm = True
    headline_protocol = "finetune"


class _MeanProbed(SimCLR):
    probe_pooling = "mean"


@pytest.fixture()
def dummy_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the two dummies for one test only (the registry is global)."""
    for name, cls in (("cls_probed", _ClsProbed), ("mean_probed", _MeanProbed)):
        monkeypatch.setitem(METHODS._items, name, cls)
        monkeypatch.setattr(cls, "registered_name", name, raising=False)


# ---------------------------------------------------------------------------------------------
# The declared pooling, applied to the backbone
# ---------------------------------------------------------------------------------------------


def test_declared_pooling_fills_only_what_the_user_left_unset() -> None:
    assert method_backbone_params(_ClsProbed, "vit_tiny", {}) == {"pool": "cls", "cls_token": True}
    assert method_backbone_params(_ClsProbed, "vit_tiny", {"pool": "mean"}) == {"pool": "mean"}  # the user's wins
    # the user turned the CLS token off: no CLS output to pool, the backbone keeps its own pool
    assert method_backbone_params(_ClsProbed, "vit_tiny", {"cls_token": False}) == {"cls_token": False}
    # a series backbone offers mean and max, no CLS: it keeps its own
    assert method_backbone_params(_ClsProbed, "patch_transformer", {"dim": 8}) == {"dim": 8}
    assert method_backbone_params(_MeanProbed, "ts2vec_encoder", {}) == {"pool": "mean"}
    assert method_backbone_params(_MeanProbed, "resnet_tiny", {}) == {}  # no pool setting
    assert method_backbone_params(SimCLR, "vit_tiny", {}) == {}  # None: the backbone's own


def test_a_bad_declaration_is_one_line() -> None:
    class Bad(SimCLR):
        probe_pooling = "max-ish"

    with pytest.raises(ConfigError, match=r"probe_pooling='max-ish'.*'mean', 'cls' or None"):
        method_backbone_params(Bad, "vit_tiny", {})


def test_resolved_config_writes_the_declared_pool_out(dummy_methods: None) -> None:
    resolved = resolve_config(RunConfig(method="cls_probed", backbone="vit_tiny"))
    assert resolved.backbone.params["pool"] == "cls" and resolved.backbone.params["cls_token"] is True
    # resolving again (as the runner does once the data is known) keeps it
    assert resolve_config(resolved, "image").backbone.params == resolved.backbone.params
    user = RunConfig.from_dict({"method": "cls_probed", "backbone": {"name": "vit_tiny", "params": {"pool": "mean"}}})
    params = resolve_config(user).backbone.params
    assert params["pool"] == "mean" and params["cls_token"] is False
    # an "auto" backbone gets the declaration once the modality picks it
    series = resolve_config(RunConfig(method="mean_probed"), "timeseries")
    assert series.backbone.name == "ts2vec_encoder" and series.backbone.params["pool"] == "mean"


# ---------------------------------------------------------------------------------------------
# The BatchNorm linear probe
# ---------------------------------------------------------------------------------------------


def _features(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g) + 1.5 * torch.nn.functional.one_hot(y, 6).float()
    return x * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0, 4.0]) + 2.0, y


def test_batch_norm_head_is_standardisation_with_batch_statistics_then_running_ones() -> None:
    """Full-batch training: BatchNorm(affine=False) = standardising with the batch's mean and
    biased variance (+ eps); at test, the running statistics (unbiased variance, averaged)."""
    x, y = _features(60, 0)
    test_x, _ = _features(30, 1)
    settings = dict(num_classes=3, lr=0.1, epochs=20, batch_size=60, seed=3)
    bn_model, ok = train_linear_head(x, y, batch_norm=True, **settings)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    ref_model, ok_ref = train_linear_head((x - mean) / torch.sqrt(var + BATCH_NORM_EPS), y, batch_norm=False, **settings)
    assert ok and ok_ref
    torch.testing.assert_close(bn_model[1].weight, ref_model[0].weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bn_model[1].bias, ref_model[0].bias, atol=1e-5, rtol=1e-4)
    running = (test_x - mean) / torch.sqrt(x.var(0, unbiased=True) + BATCH_NORM_EPS)
    with torch.no_grad():
        torch.testing.assert_close(bn_model(test_x), ref_model(running), atol=1e-4, rtol=1e-4)


def test_batch_norm_probe_ignores_feature_scales_where_the_plain_sgd_probe_does_not() -> None:
    """mae#186's point: features of wildly different scales. The BatchNorm probe gives the same
    result on rescaled and shifted features; the same SGD probe without it falls apart."""
    x, y = _features(240, 0)
    test_x, test_y = _features(120, 1)
    scale = torch.tensor([1e4, 1.0, 1.0, 1.0, 1.0, 1.0])
    shift = torch.tensor([300.0, 0, 0, 0, 0, 0])
    kwargs = dict(lrs=(0.01, 0.1), epochs=10, min_steps=40, batch_size=64)
    plain = sgd_linear_probe(x, y, test_x, test_y, batch_norm=True, **kwargs)
    scaled = sgd_linear_probe(x * scale + shift, y, test_x * scale + shift, test_y, batch_norm=True, **kwargs)
    no_bn = sgd_linear_probe(x * scale + shift, y, test_x * scale + shift, test_y, batch_norm=False, **kwargs)
    assert plain.accuracy > 0.8 and scaled.accuracy == plain.accuracy and scaled.chosen == plain.chosen
    assert no_bn.accuracy < plain.accuracy - 0.2
    # the option of the linear probe is this probe, with its details
    via_option = linear_probe(x, y, test_x, test_y, batch_norm=True)
    assert set(via_option.chosen) == {"lr"} and via_option.details["batch_norm"] is True
    assert set(linear_probe(x, y, test_x, test_y).chosen) == {"C"}
    with pytest.raises(ConfigError, match="lrs must hold"):
        sgd_linear_probe(x, y, test_x, test_y, lrs=(math.nan,))


def test_eval_options_resolve_auto_from_the_method() -> None:
    method = _ClsProbed.__new__(_ClsProbed)  # only its class is read
    assert evaluation_choices(method, RunConfig()) == (True, True, "finetune")
    config = RunConfig.from_dict({"eval": {"finetune": False, "linear_batch_norm": False}})
    assert evaluation_choices(method, config) == (False, False, "finetune")
    assert evaluation_choices(SimCLR.__new__(SimCLR), RunConfig()) == (False, False, "linear")
    with pytest.raises(ConfigError, match="config.eval.linear_batch_norm must be auto, true or false; got 'yes'"):
        RunConfig.from_dict({"eval": {"linear_batch_norm": "yes"}})
    rows = {"pretrained": {"knn": 0.5, "linear": 0.6, "finetune": 0.9}, "raw input": {"knn": 0.4, "linear": 0.5}}
    assert headline_first(rows, "finetune") == "finetune" and list(rows["pretrained"])[0] == "finetune"
    assert headline_first({"a": {"knn": 1.0}}, "finetune") is None


# ---------------------------------------------------------------------------------------------
# A run: pooling stored and reloaded, fine-tuning as the headline, on a tiny ViT
# ---------------------------------------------------------------------------------------------


def test_a_run_pools_as_declared_reloads_so_and_reports_finetuning_first(
    dummy_methods: None, tmp_path: Path,
) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < 3
    x = (digits.images[keep][:, None] * 16).astype(np.uint8)[:240]
    y = digits.target[keep][:240]
    np.savez(tmp_path / "d.npz", x_train=x[:160], y_train=y[:160], x_test=x[160:], y_test=y[160:])
    config = RunConfig(data=f"arrays:{tmp_path / 'd.npz'}", method="cls_probed", backbone="vit_tiny")
    config.backbone.params = dict(TINY_VIT)
    config.train.epochs, config.train.max_steps, config.train.batch_size = 1, 2, 32
    config.train.warmup_epochs, config.train.progress_bar, config.train.num_workers = 0, False, 0
    config.train.accelerator, config.train.monitor_samples = "cpu", 64
    config.eval.probes = ("knn", "linear")
    run = tmp_path / "run"
    result = pretrain(config, run_dir=run)

    saved = yaml.safe_load((run / "config.yaml").read_text())["backbone"]["params"]
    assert saved["pool"] == "cls" and saved["cls_token"] is True
    assert result.method.encoder.backbone.config.pool == "cls"
    _, method, _ = load_run(run)
    assert method.encoder.backbone.config.pool == "cls"
    samples = torch.from_numpy(x[:8])
    with torch.no_grad():
        expected = result.method.encoder.cpu().eval()(samples)
        torch.testing.assert_close(method.encoder(samples), expected)
        torch.testing.assert_close(load_encoder(run)(samples), expected)

    evaluation = result.metrics["evaluation"]
    assert evaluation["headline"]["protocol"] == "finetune"
    assert list(evaluation["results"]["pretrained"])[0] == "finetune"
    assert evaluation["headline"]["results"]["pretrained"] == evaluation["results"]["pretrained"]["finetune"]
    assert result.metrics["evaluation_table"].splitlines()[0].split()[0] == "finetune"
    assert set(evaluation["chosen"]["pretrained"]["linear"]) == {"lr"}  # the BatchNorm probe, by declaration
    assert "Headline (finetune)" in _headline_html(evaluation)
    # the user's choice wins over the declaration: no fine-tuning, the linear probe first
    record = evaluate_run(run, probes=("knn", "linear"), finetune=False, linear_batch_norm=False)
    rows = record["evaluation"]["results"]["pretrained"]
    assert "finetune" not in rows and list(rows)[0] == "linear" and record["evaluation"]["headline"]["protocol"] == "linear"
