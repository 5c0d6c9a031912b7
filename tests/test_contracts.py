"""The v2 contracts: a new modality is one file, batches stream, the step context and declarations.

- A toy modality registered from this test module (its own samples, collate, statistics, raw
  baseline, views and dataset) trains SimCLR end to end without touching the package.
- ``train.max_steps`` ends the run and the schedules follow it; DINO's weight-decay schedule
  reaches the optimiser; a method's run defaults apply through ``selfsup.pretrain()``.
- Image folders stream: an unreadable file found mid-run stops with one line naming it (also
  when a worker process read it), or is skipped with ``skip_bad_files``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from selfsup import RunConfig, pretrain
from selfsup.core.schedules import cosine_schedule
from selfsup.data import ArrayDataset, DatasetSplits
from selfsup.data.base import Batch, SampleSource
from selfsup.data.builtin import DATASETS
from selfsup.data.modalities import Modality, register_modality
from selfsup.errors import DataError
from selfsup.rundir import load_run_config
from selfsup.views.base import Views, register_views

# ---------------------------------------------------------------------------------------------
# A modality defined here, outside the package: counts of events per feature.


class CountsSource(SampleSource):
    """Samples are integer counts ``[D]`` stored under the field name "counts" (not "x")."""

    in_memory = True  # no worker processes: this test counts the collate calls in this process

    def __init__(self, counts: torch.Tensor, labels: torch.Tensor) -> None:
        self.counts, self.labels = counts, labels
        self.name, self.modality = "toy_counts", "toy_counts"

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.counts.shape[1:])

    def __getitem__(self, index: int) -> dict:
        return {"counts": self.counts[index], "y": self.labels[index], "index": torch.tensor(index)}


@register_modality("toy_counts")
class CountsModality(Modality):
    default_views = "toy_dropout"
    default_backbone = "mlp"
    stat_dims = (0,)
    collated = 0  # how many batches this modality's own collate made

    def collate(self, samples):
        CountsModality.collated += 1
        return Batch({
            "x": torch.stack([s["counts"] for s in samples]),
            "y": torch.stack([s["y"] for s in samples]),
            "index": torch.stack([s["index"] for s in samples]),
        })

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x.float())  # counts are compared on a log scale

    def raw_features(self, x: torch.Tensor, standardized: torch.Tensor) -> torch.Tensor:
        return standardized.flatten(1)


@dataclass
class DropoutConfig:
    drop: float = 0.3


@register_views("toy_dropout")
class CountDropout:
    """Views of log-counts: each feature dropped (set to 0) with probability ``drop``, per sample."""

    Config = DropoutConfig

    def __init__(self, config: DropoutConfig) -> None:
        self.config = config

    def __call__(self, x: torch.Tensor, generator: torch.Generator, num_views: int, num_local_views: int = 0) -> Views:
        views = [x * (torch.rand(x.shape, generator=generator, device=x.device) > self.config.drop)
                 for _ in range(num_views + num_local_views)]
        return Views(views[:num_views], views[num_views:])


def _counts_splits() -> DatasetSplits:
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 3.0, size=(4, 24))  # 4 classes, each with its own rate per feature
    y = np.repeat(np.arange(4), 150)
    counts = torch.from_numpy(rng.poisson(rates[y]).astype(np.int32))
    labels = torch.from_numpy(y)
    order = torch.from_numpy(rng.permutation(len(y)))
    train, test = order[:450], order[450:]
    return DatasetSplits(CountsSource(counts[train], labels[train]), CountsSource(counts[test], labels[test]))


DATASETS.register("toy_counts")(_counts_splits)


def _small(config: RunConfig, epochs: int) -> RunConfig:
    config.train.epochs = epochs
    config.train.batch_size = 64
    config.train.warmup_epochs = 1
    config.train.progress_bar = False
    config.train.monitor_every_n_epochs = epochs
    config.train.monitor_samples = 128
    return config


@pytest.mark.slow
def test_a_modality_defined_outside_the_package_trains_simclr(tmp_path: Path) -> None:
    config = _small(RunConfig(data="toy_counts", method="simclr"), epochs=15)
    config.backbone.params = {"hidden_dims": [64, 32]}
    result = pretrain(config, run_dir=tmp_path / "run")
    resolved = load_run_config(tmp_path / "run")
    assert resolved.views.name == "toy_dropout" and resolved.backbone.name == "mlp"  # the modality's defaults
    assert CountsModality.collated > 0  # batches came through the modality's own collate
    rows = result.metrics["evaluation"]["results"]
    # The raw baseline is the modality's (standardised log-counts); the encoder learnt something.
    assert set(rows) == {"pretrained", "random-init", "raw input"}
    assert rows["pretrained"]["linear"] > 0.6 and rows["pretrained"]["rankme"] > 3


# ---------------------------------------------------------------------------------------------
# Steps, schedules and declarations


def _digits(method: str = "simclr", epochs: int = 50) -> RunConfig:
    config = _small(RunConfig(data="digits", method=method), epochs)
    config.train.batch_size = 256
    config.backbone = "mlp"
    config.backbone.params = {"hidden_dims": [64, 32]}
    return config


def test_max_steps_ends_the_run_and_the_schedule_spans_it(tmp_path: Path) -> None:
    config = _digits(epochs=50)
    config.train.max_steps = 7
    config.train.min_lr_ratio = 0.1
    config.eval.after_training = False
    result = pretrain(config, run_dir=tmp_path / "run")
    history = result.metrics["history"]
    assert result.metrics["steps"] == 7 and len(history) == 7
    # Warm-up of 1 epoch (5 steps of digits at batch 256) capped at half the 7-step run (3 steps),
    # then cosine decay that ends with the run: steps 3..6 cover 4 of the 4 decay steps.
    lrs = [h["lr"] for h in history]
    assert lrs[2] == pytest.approx(config.train.lr)
    assert lrs[-1] == pytest.approx(config.train.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 4))), rel=1e-6)


class _RecordWeightDecay(L.Callback):
    def __init__(self) -> None:
        self.decayed: list[float] = []
        self.not_decayed: set[float] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        groups = trainer.optimizers[0].param_groups
        self.decayed.append(next(g["weight_decay"] for g in groups if g["params"][0].ndim > 1))
        self.not_decayed |= {g["weight_decay"] for g in groups if g["params"][0].ndim <= 1}


def test_dino_weight_decay_schedule_reaches_the_optimizer(tmp_path: Path) -> None:
    config = _digits("dino", epochs=2)
    config.method.params = {"num_local_crops": 0, "num_prototypes": 64, "head_hidden_dim": 64, "bottleneck_dim": 32,
                            "weight_decay_start": 0.04, "weight_decay_end": 0.4}
    config.eval.after_training = False
    recorder = _RecordWeightDecay()
    pretrain(config, run_dir=tmp_path / "run", callbacks=[recorder])
    total = len(recorder.decayed)
    assert total == 10  # 2 epochs x 5 steps
    expected = [cosine_schedule(step, total, 0.04, 0.4) for step in range(total)]
    assert recorder.decayed == pytest.approx(expected)
    assert recorder.decayed[0] == pytest.approx(0.04) and recorder.decayed[-1] == pytest.approx(0.4)
    assert recorder.not_decayed == {0.0}  # biases and norms never decay


def test_a_methods_run_defaults_apply_in_the_python_api(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "series.npz", x=rng.normal(size=(24, 1, 16)).astype(np.float32), y=np.arange(24) % 2)
    config = RunConfig(data=f"series:{tmp_path / 'series.npz'}", method="ts2vec")
    config.train.epochs = 1  # given by the user: kept
    config.train.progress_bar = False
    config.eval.after_training = False
    pretrain(config, run_dir=tmp_path / "run")
    resolved = load_run_config(tmp_path / "run")
    assert resolved.train.batch_size == 8 and resolved.train.lr == 1e-3  # TS2Vec's published protocol
    assert resolved.train.epochs == 1 and resolved.eval.probes == ("svm",)
    assert resolved.apply_method_defaults is False  # written out: a resume does not apply them again

    config = RunConfig(data=f"series:{tmp_path / 'series.npz'}", method="ts2vec", apply_method_defaults=False)
    config.train.epochs, config.train.batch_size = 1, 12
    config.train.progress_bar, config.eval.after_training = False, False
    pretrain(config, run_dir=tmp_path / "off")
    assert load_run_config(tmp_path / "off").train.lr == RunConfig().train.lr


def test_a_backbone_without_what_the_method_requires_is_a_clear_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "series.npz", x=rng.normal(size=(24, 1, 16)).astype(np.float32))
    config = RunConfig(data=f"series:{tmp_path / 'series.npz'}", method="ts2vec", backbone="patch_transformer")
    with pytest.raises(Exception, match="needs a backbone that provides timesteps"):
        pretrain(config, run_dir=tmp_path / "run")
    config = RunConfig(data="digits", method="ts2vec")
    with pytest.raises(Exception, match="works on timeseries data"):
        pretrain(config, run_dir=tmp_path / "digits")


# ---------------------------------------------------------------------------------------------
# Streaming image folders


def _folder(root: Path, n: int = 24, size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"c{i % 2}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)).save(path)
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header reads, the pixels do not


def test_folder_is_read_on_demand_as_uint8_and_resized(tmp_path: Path) -> None:
    from selfsup.data import load_dataset
    from selfsup.data.loader import iterate

    root = _folder(tmp_path / "imgs")
    data = load_dataset(f"folder:{root}", options={"image_size": 8})
    assert data.train.sample_shape == (3, 8, 8) and len(data.train) == 24
    assert data.train.sample_id(0).endswith("000.png")
    batches = list(iterate(data.train, batch_size=10, num_workers=0))
    assert [len(b) for b in batches] == [10, 10, 4]
    assert batches[0]["x"].dtype == torch.uint8 and batches[0]["x"].shape == (10, 3, 8, 8)
    assert torch.equal(torch.cat([b["index"] for b in batches]), torch.arange(24))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_an_unreadable_file_mid_run_is_one_line_or_skipped(tmp_path: Path, num_workers: int) -> None:
    root = _folder(tmp_path / "imgs")
    _truncate(root / "c1" / "007.png")
    config = RunConfig(data=f"folder:{root}", method="simclr", backbone="mlp")
    config.backbone.params = {"hidden_dims": [16, 8]}
    _small(config, epochs=1)
    config.train.batch_size = 8
    config.train.num_workers = num_workers
    config.eval.after_training = False
    with pytest.raises(DataError) as info:
        pretrain(config, run_dir=tmp_path / "run")
    message = str(info.value)
    assert "007.png" in message and "--skip-bad-files" in message and "\n" not in message
    config.skip_bad_files = True
    with pytest.warns(UserWarning, match="007.png"):
        result = pretrain(config, run_dir=tmp_path / "skipped")
    assert result.metrics["status"] == "finished"


def test_batch_moves_named_tensors_and_counts_samples() -> None:
    batch = Batch({"x": torch.zeros(5, 3, dtype=torch.uint8), "index": torch.arange(5)})
    assert len(batch) == 5 and set(batch.keys()) == {"x", "index"}
    moved = batch.to("cpu")
    assert moved["x"].dtype == torch.uint8 and moved is not batch
    source = ArrayDataset(torch.arange(12.0).view(6, 2), torch.tensor([0, 1, 0, 1, 0, 1]), "t", "vector")
    part = source.subset([4, 1])
    assert torch.equal(part.__getitems__([0, 1])["index"], torch.tensor([4, 1]))
    assert part.labels.tolist() == [0, 1]


def test_the_training_step_stops_or_warns_at_a_sample_a_worker_could_not_read() -> None:
    from selfsup.config import TrainConfig
    from selfsup.methods import create_method
    from selfsup.methods.base import Encoder
    from selfsup.backbones import create_backbone
    from selfsup.train.module import PretrainModule
    from selfsup.views import create_views

    encoder = Encoder(create_backbone("mlp", (4,), hidden_dims=[8]), torch.zeros(4), torch.ones(4), (4,), "vector")
    batch = Batch({"x": torch.rand(6, 4), "index": torch.arange(6)}, bad=[("/data/broken.png", "image file is truncated")])
    for skip in (False, True):
        module = PretrainModule(create_method("simclr", encoder), create_views("auto", "vector"), TrainConfig(), 1,
                                modality="vector", skip_bad_files=skip)
        module.log = lambda *args, **kwargs: None  # no trainer attached
        if not skip:
            with pytest.raises(DataError, match="/data/broken.png is not a readable sample .*--skip-bad-files"):
                module.training_step(batch, 0)
        else:
            with pytest.warns(UserWarning, match="broken.png"):
                assert module.training_step(batch, 0) is not None


def test_reading_data_does_not_move_the_global_random_stream() -> None:
    """Statistics, checks and evaluation read through loaders; the model's initialisation and the
    training shuffle must not depend on whether they ran."""
    from selfsup.data import load_dataset
    from selfsup.data.loader import iterate

    data = load_dataset("digits")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for _ in iterate(data.train, batch_size=256):
        pass
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    "modality, shape, expected",
    [
        ("image", (1, 8, 8), ("vit_tiny", {"patch_size": 2})),  # digits: 16 tokens
        ("image", (1, 28, 28), ("vit_tiny", {"patch_size": 4})),  # Fashion-MNIST: 49 tokens
        ("image", (3, 224, 224), ("vit_tiny", {"patch_size": 16})),  # 196 tokens
        ("image", (3, 5, 7), ("vit_tiny", {"patch_size": 1})),
        ("timeseries", (1, 24), ("patch_transformer", {"patch_len": 2, "stride": 2})),  # 12 tokens
        ("timeseries", (1, 150), ("patch_transformer", {"patch_len": 5, "stride": 5})),  # 30 tokens
        ("vector", (13,), None),
    ],
)
def test_modalities_size_their_token_backbone(modality: str, shape: tuple[int, ...], expected) -> None:
    from selfsup.data.modalities import get_modality

    assert get_modality(modality).token_backbone(shape) == expected


def test_auto_backbone_of_a_masked_method_is_the_token_backbone_and_user_params_win() -> None:
    from selfsup.config import RunConfig
    from selfsup.train.runner import resolve_config

    resolved = resolve_config(RunConfig(method="mae"), "image", (1, 8, 8))
    assert resolved.backbone.name == "vit_tiny" and resolved.backbone.params["patch_size"] == 2
    user = RunConfig.from_dict({"method": "mae", "backbone": {"name": "auto", "params": {"patch_size": 4, "depth": 2}}})
    params = resolve_config(user, "image", (1, 8, 8)).backbone.params
    assert params["patch_size"] == 4 and params["depth"] == 2
    assert resolve_config(RunConfig(method="simclr"), "image", (1, 8, 8)).backbone.name == "resnet_tiny"
    series = resolve_config(RunConfig(method="mae"), "timeseries", (1, 150)).backbone
    assert series.name == "patch_transformer" and series.params["stride"] == 5
