"""The encoder outside the library: load_encoder, and the ONNX / TorchScript / safetensors files
read back by their own runtimes, on raw samples as the data loaders give them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import selfsup
from selfsup import RunConfig, pretrain
from selfsup.cli import main
from selfsup.data import load_dataset
from selfsup.data.loader import materialize
from selfsup.errors import ConfigError, SelfsupError
from selfsup.backbones import create_backbone
from selfsup.export import (
    FORMATS, StandaloneEncoder, _write_onnx, export_encoder, load_encoder, load_exported, read_contract,
)
from selfsup.methods.base import Encoder
from selfsup.rundir import load_run

ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-5


def _tiny(config: RunConfig, batch_size: int) -> RunConfig:
    config.train.epochs = 1
    config.train.max_steps = 2
    config.train.batch_size = batch_size
    config.train.warmup_epochs = 0
    config.train.progress_bar = False
    config.train.monitor_samples = 64
    config.train.num_workers = 0
    config.train.accelerator = "cpu"
    config.eval.after_training = False
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny runs: uint8 images (resnet_tiny), float images (digits, mlp), series with
    missing values (ts2vec_encoder)."""
    tmp = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(128, 1, 8, 8), dtype=np.uint8)
    np.save(tmp / "images.npy", images)
    series = rng.normal(size=(32, 2, 24)).astype(np.float32)
    series[::3, :, 18:] = np.nan  # unequal lengths: NaN-padded at the end
    np.savez(tmp / "series.npz", x=series)

    configs = {
        "uint8_images": _tiny(RunConfig(data=f"arrays:{tmp / 'images.npy'}", backbone="resnet_tiny"), 32),
        "float_images": _tiny(RunConfig(data="digits", backbone="mlp"), 64),
        "series": _tiny(RunConfig(data=f"series:{tmp / 'series.npz'}", method="ts2vec"), 8),
    }
    configs["float_images"].backbone.params = {"hidden_dims": [32, 16]}
    configs["series"].backbone.params = {"hidden_dim": 16, "output_dim": 24, "depth": 2}
    out = {}
    for name, config in configs.items():
        pretrain(config, run_dir=tmp / name)
        out[name] = tmp / name
    return out


def _raw_samples(run_dir: Path, n: int) -> torch.Tensor:
    """``n`` samples of the run's data exactly as the data loaders give them."""
    config, _, _ = load_run(run_dir)
    data = load_dataset(config.data.name, options=config.data.params)
    return materialize(data.train.subset(list(range(n))))["x"]


RUN_DTYPES = {"uint8_images": "uint8", "float_images": "float32", "series": "float32"}


@pytest.mark.parametrize("name", sorted(RUN_DTYPES))
def test_load_encoder_gives_the_runs_embeddings_from_raw_samples(runs: dict[str, Path], name: str) -> None:
    _, method, meta = load_run(runs[name])
    model = selfsup.load_encoder(runs[name])
    assert isinstance(model, StandaloneEncoder) and not model.training
    assert not any(isinstance(m, type(method)) for m in model.modules())  # the encoder only, no heads
    x = _raw_samples(runs[name], 9)
    assert str(x.dtype) == f"torch.{RUN_DTYPES[name]}" and model.input_dtype == RUN_DTYPES[name]
    assert model.input_shape == tuple(meta["input_shape"]) == tuple(x.shape[1:])
    assert model.modality == meta["modality"] and model.embed_dim == method.encoder.embed_dim
    assert torch.equal(model.mean, method.encoder.mean) and torch.equal(model.std, method.encoder.std)
    with torch.no_grad():
        z = model(x)
        expected = method.encoder(x)
    assert z.shape == (9, model.embed_dim) and torch.isfinite(z).all()
    assert (z - expected).abs().max() <= TOLERANCE
    with pytest.raises(SelfsupError, match="takes samples"):
        model(x[:, ..., :-1])  # a sample of another shape: a clear error, not a matmul traceback


def _run_export(fmt: str, path: Path, x: torch.Tensor) -> torch.Tensor:
    """Embeddings of ``x`` from the exported file, read with its own runtime."""
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        return load_exported(path)(x)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("name", sorted(RUN_DTYPES))
def test_each_format_round_trips(runs: dict[str, Path], name: str, fmt: str, tmp_path: Path) -> None:
    model = load_encoder(runs[name])
    paths = export_encoder(runs[name], tmp_path / f"enc{FORMATS[fmt]}", fmt)
    assert paths == [tmp_path / f"enc{FORMATS[fmt]}", tmp_path / f"enc{FORMATS[fmt]}.json"]
    for batch_size in (7, 1):  # the file was traced on a batch of 2: the batch dimension is dynamic
        x = _raw_samples(runs[name], batch_size)
        with torch.no_grad():
            expected = model(x)
        got = _run_export(fmt, paths[0], x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= TOLERANCE
    contract = read_contract(paths[0])
    assert contract["format"] == fmt and contract["input"]["dtype"] == RUN_DTYPES[name]
    assert contract["standardization"]["in_file"] == (fmt != "safetensors")
    if fmt != "safetensors":
        assert contract["verified"]["max_abs_difference"] <= TOLERANCE


def test_the_contract_says_how_to_feed_the_file(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["uint8_images"]
    _, method, _ = load_run(run)
    export_encoder(run, tmp_path / "enc.onnx", "onnx")
    contract = json.loads((tmp_path / "enc.onnx.json").read_text())
    assert contract["input"] == {"name": "x", "shape": [None, 1, 8, 8], "dtype": "uint8"}
    assert contract["output"] == {"name": "embedding", "shape": [None, 128], "dtype": "float32"}
    assert contract["modality"] == "image" and contract["embed_dim"] == 128
    standardization = contract["standardization"]
    assert standardization["to_float"] == "float32(x) / 255"
    assert torch.tensor(standardization["mean"]).allclose(method.encoder.mean)
    assert torch.tensor(standardization["std"]).allclose(method.encoder.std)
    assert contract["selfsup_version"] == selfsup.__version__
    assert contract["run"]["method"] == "simclr" and contract["run"]["backbone"] == "resnet_tiny"
    assert contract["run"]["config"] == yaml.safe_load((run / "config.yaml").read_text())

    # The ONNX file, by hand, as a user without selfsup would: uint8 in, the contract's scaling inside.
    x = _raw_samples(run, 3).numpy()
    assert x.dtype == np.uint8
    z = ort.InferenceSession(str(tmp_path / "enc.onnx")).run(None, {"x": x})[0]
    mean, std = np.array(standardization["mean"]), np.array(standardization["std"])
    with torch.no_grad():
        by_hand = method.encoder.backbone(torch.from_numpy(((x / 255.0 - mean) / std).astype(np.float32)))
    assert np.abs(z - by_hand.numpy()).max() <= 1e-4


def test_torchscript_refuses_another_dtype_or_shape(runs: dict[str, Path], tmp_path: Path) -> None:
    export_encoder(runs["uint8_images"], tmp_path / "enc.pt", "torchscript")
    scripted = torch.jit.load(str(tmp_path / "enc.pt"))
    assert scripted.input_dtype == "uint8" and list(scripted.input_shape) == [1, 8, 8] and scripted.embed_dim == 128
    with pytest.raises(Exception, match="takes uint8 samples"):
        scripted(torch.rand(2, 1, 8, 8))  # floats through a uint8 graph would be scaled wrongly
    with pytest.raises(Exception, match="shape"):
        scripted(torch.zeros(2, 1, 8, 9, dtype=torch.uint8))


def test_bad_requests_are_one_line_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["float_images"]
    with pytest.raises(ConfigError, match="format 'tflite'; choose one of onnx, safetensors, torchscript"):
        export_encoder(run, tmp_path / "enc.tflite", "tflite")
    with pytest.raises(ConfigError, match="does not exist; create it first"):
        export_encoder(run, tmp_path / "missing" / "enc.onnx", "onnx")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        export_encoder(run, tmp_path / "file" / "enc.onnx", "onnx")
    with pytest.raises(ConfigError, match="it is a folder"):
        export_encoder(run, tmp_path, "onnx")
    with pytest.raises(ConfigError, match="input dtype 'uint7' is not one of uint8"):
        export_encoder(run, tmp_path / "enc.onnx", "onnx", input_dtype="uint7")
    export_encoder(run, tmp_path / "enc.safetensors", "safetensors")
    before = (tmp_path / "enc.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already exist.*--force"):
        export_encoder(run, tmp_path / "enc.safetensors", "safetensors")
    assert (tmp_path / "enc.safetensors").read_bytes() == before  # nothing overwritten
    export_encoder(run, tmp_path / "enc.safetensors", "safetensors", force=True)
    export_encoder(run, tmp_path / "enc.onnx", "onnx")
    with pytest.raises(ConfigError, match="run it with onnxruntime"):
        load_exported(tmp_path / "enc.onnx")


def _patch_transformer() -> StandaloneEncoder:
    """A random-init patch_transformer encoder: its ``unfold`` has no TorchScript-based ONNX export."""
    backbone = create_backbone("patch_transformer", (2, 32))
    encoder = Encoder(backbone, torch.zeros(2, 1), torch.ones(2, 1), (2, 32), "timeseries")
    return StandaloneEncoder(encoder, "float32").eval()


def test_a_backbone_the_onnx_exporter_cannot_translate_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # no torch.export-based exporter to fall back on
    with pytest.raises(ConfigError) as info:
        _write_onnx(_patch_transformer(), tmp_path / "enc.onnx")
    message = str(info.value)
    assert "\n" not in message and "Unfold" in message and "pip install onnxscript" in message
    assert capfd.readouterr().out == ""  # the exporter's dump of the whole graph is discarded
    assert list(tmp_path.iterdir()) == []  # and no file is left behind


def test_the_torch_export_based_exporter_takes_over_where_onnxscript_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    model = _patch_transformer()
    notes = _write_onnx(model, tmp_path / "enc.onnx")
    assert "torch.export-based" in notes["exporter"] and notes["verified"]["max_abs_difference"] <= TOLERANCE


def test_a_missing_optional_package_says_what_to_install(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors now raises ImportError
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(SelfsupError) as info:
        export_encoder(runs["float_images"], tmp_path / "enc.safetensors", "safetensors")
    assert str(info.value) == (
        'exporting to safetensors needs the safetensors package, which is not installed; pip install "selfsup[export]"'
    )


def test_images_of_a_run_whose_data_is_gone_are_taken_as_uint8(runs: dict[str, Path], tmp_path: Path) -> None:
    moved = tmp_path / "run"
    shutil.copytree(runs["float_images"], moved)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    config["data"]["name"] = f"arrays:{tmp_path / 'gone.npy'}"
    (moved / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert load_encoder(moved).input_dtype == "float32"  # the checkpoint records it: no data needed
    last = moved / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    del checkpoint["selfsup"]["input_dtype"]  # as checkpoints before format 2 were
    torch.save(checkpoint, last)
    with pytest.warns(UserWarning, match="cannot be read to tell its dtype"):
        assert load_encoder(moved).input_dtype == "uint8"
    assert load_encoder(moved, input_dtype="float32").input_dtype == "float32"  # chosen: no guess, no warning


def test_cli_export_writes_the_file_and_its_contract(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    run = runs["series"]
    assert main(["export", str(run), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    written = run / "export" / "encoder.onnx"
    assert f"wrote {written} (onnx: raw float32 samples [N, 2, 24] -> embeddings [N, 24])" in out
    assert f"wrote {written}.json" in out
    assert read_contract(written)["modality"] == "timeseries"

    assert main(["export", str(run), "--format", "tflite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown export format 'tflite'")

    # An existing export is kept without --force: exit code 2, one line on stderr, no traceback.
    result = subprocess.run(
        [sys.executable, "-m", "selfsup.cli", "export", str(run), "--format", "onnx"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {written} and {written}.json already exist") and "--force" in result.stderr

    assert main(["export", str(run), "--format", "onnx", "--force"]) == 0
    assert main(["export", str(run), "--format", "torchscript", "-o", str(run / "export" / "s.pt")]) == 0
    assert (run / "export" / "s.pt").is_file() and (run / "export" / "s.pt.json").is_file()
