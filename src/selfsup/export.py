"""The encoder leaves the library: a plain PyTorch module, and files other runtimes load.

:func:`load_encoder` gives a run's encoder as a plain ``nn.Module`` in eval mode (no Lightning, no
method, no heads): raw samples as the data loaders give them in, embeddings ``[N, D]`` out, with
the input contract as attributes. :func:`export_encoder` writes it to a file:

- ``onnx`` (``encoder.onnx``): an ONNX graph (opset 17) that takes raw samples, the
  standardisation inside the graph, with a dynamic batch dimension; input ``"x"``, output
  ``"embedding"``. Runs in onnxruntime, no PyTorch or selfsup needed. Written with PyTorch's
  TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), which needs only the
  ``onnx`` package; for a backbone it cannot translate (patch_transformer's ``unfold``), the
  ``torch.export``-based exporter (opset 18) is used when ``onnxscript`` is installed.
- ``torchscript`` (``encoder.pt``): a TorchScript module (``torch.jit.load``, no selfsup needed)
  that takes raw samples, the standardisation inside; it checks the dtype and shape of its input
  and carries the contract as attributes (``input_shape``, ``input_dtype``, ``embed_dim``,
  ``modality``). PyTorch has deprecated TorchScript; prefer ONNX where it will be read by a
  future PyTorch.
- ``safetensors`` (``encoder.safetensors``): the encoder's state dict (backbone weights and the
  ``mean``/``std`` buffers), no code. :func:`load_exported` rebuilds the module from it and the
  JSON beside it; that needs selfsup installed (the architecture is selfsup's backbone).

Beside each file, ``<file>.json`` (the file's whole name plus ``.json``, e.g.
``encoder.onnx.json``, so several formats can share a folder) holds the input contract: sample
shape (the batch dimension ``null``: any batch size), dtype, modality, standardisation (mean,
std, how raw values become floats), ``embed_dim``, the selfsup version, and the run's method,
backbone and configuration. Every file is written atomically; the ONNX and TorchScript files are
checked against the encoder on a batch of another size than the one they were traced with before
they replace anything.

The raw dtype: images are uint8 (0..255) when read from image files, IDX archives or uint8 arrays,
and float32 in ``[0, 1]`` otherwise (scikit-learn's digits, 16-bit files, float arrays); vectors
and series are float32. Unless the checkpoint records it (``input_dtype`` in its metadata), it is
read from one sample of the run's data, loaded as the run loaded it; when that data cannot be read
any more (moved, deleted), images are taken as uint8 (with a warning) and other data as float32. Pass
``input_dtype`` (``--input-dtype``) to choose. The PyTorch module of :func:`load_encoder` accepts
either image dtype (floats read as ``[0, 1]``), as the encoder in training did; the ONNX and
TorchScript files accept the contract's dtype only.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from selfsup.config import RunConfig
from selfsup.core.io import write_atomic
from selfsup.data import load_dataset
from selfsup.data.loader import iterate
from selfsup.errors import ConfigError, DataError, SelfsupError
from selfsup.methods.base import Encoder
from selfsup.rundir import EXPORT_DIR, build_encoder, load_run

FORMATS = {"onnx": ".onnx", "safetensors": ".safetensors", "torchscript": ".pt"}  # format -> file suffix
CONTRACT_VERSION = 1
ONNX_OPSET = 17
DYNAMO_ONNX_OPSET = 18  # the torch.export-based exporter (a fallback, with onnxscript) starts at 18
INPUT_NAME, OUTPUT_NAME = "x", "embedding"
TRACE_BATCH = 2  # batch size of the example the graph is traced with
VERIFY_BATCH = 5  # the written file is checked on a batch of another size (the batch dimension is dynamic)
VERIFY_TOLERANCE = 1e-4  # max abs difference between the exported file and the encoder, relative to the largest value
INSTALL_HINT = 'pip install "selfsup[export]"'
INPUT_DTYPES = ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")  # raw samples' dtypes
# What each format needs beyond PyTorch (onnxruntime only runs the check of an ONNX file).
REQUIRED_PACKAGES = {"onnx": ("onnx",), "safetensors": ("safetensors",), "torchscript": ()}


class StandaloneEncoder(nn.Module):
    """A run's encoder on its own: raw samples ``x [N, *input_shape] -> [N, embed_dim]``.

    The standardisation the run measured (``(to_float(x) - mean) / std``) is part of the module,
    so it takes samples exactly as the data loaders give them.

    Attributes (the input contract):
        input_shape: one sample's shape, e.g. ``(1, 8, 8)`` (images ``[C, H, W]``, vectors
            ``[F]``, series ``[C, T]``).
        input_dtype: the dtype of the run's raw samples (``"uint8"`` or ``"float32"``); float
            images are read as values in ``[0, 1]``, so either image dtype works here.
        embed_dim: ``D``, the size of one embedding.
        modality: the modality's name (``"image"``, ``"vector"``, ``"timeseries"``).
        mean, std: the input statistics, shaped to broadcast over one sample.
        encoder: the :class:`~selfsup.methods.base.Encoder` (backbone + statistics) inside.
    """

    def __init__(self, encoder: Encoder, input_dtype: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.input_shape: tuple[int, ...] = tuple(int(s) for s in encoder.input_shape)
        self.input_dtype = input_dtype
        self.embed_dim: int = int(encoder.embed_dim)
        self.modality: str | None = encoder.modality_name
        self.data_info: dict[str, Any] | None = encoder.data_info

    @property
    def mean(self) -> torch.Tensor:
        return self.encoder.mean

    @property
    def std(self) -> torch.Tensor:
        return self.encoder.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder.modality.sample_shape_of(x) != self.input_shape:
            raise DataError(
                f"the encoder takes samples [N, {', '.join(map(str, self.input_shape))}]; got a batch of shape "
                f"{tuple(x.shape)}"
            )
        return self.encoder(x)


def load_encoder(
    run_dir: str | Path, device: str | torch.device = "cpu", input_dtype: str | None = None,
) -> StandaloneEncoder:
    """The encoder of the run in ``run_dir`` as a plain module in eval mode, on ``device``.

    ``input_dtype``: the raw samples' dtype the contract states (default: that of the run's data,
    see the module docstring); this module accepts either image dtype whatever it says.
    """
    model, _, _ = _load(run_dir, input_dtype)
    return model.to(device).eval()


def export_encoder(
    run_dir: str | Path, path: str | Path | None = None, format: str = "onnx", *, force: bool = False,
    input_dtype: str | None = None,
) -> list[Path]:
    """Write the run's encoder as ``format`` (``onnx``, ``torchscript`` or ``safetensors``) to
    ``path`` and its input contract to ``<path>.json``; returns both paths.

    ``path`` defaults to ``RUN_DIR/export/encoder.<onnx|pt|safetensors>``; another path's folder
    must exist. An existing file is replaced only with ``force``.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(sorted(FORMATS))}")
    for package in REQUIRED_PACKAGES[format]:
        _require(package, f"exporting to {format}")
    model, config, meta = _load(run_dir, input_dtype)
    modality = model.encoder.modality if hasattr(model, "encoder") else None
    if format != "safetensors" and modality is not None and not type(modality).traceable:
        raise ConfigError(
            f"{modality.name} encoders take several tensors per batch, which {format} cannot trace; export with "
            "--format safetensors and load it with selfsup.export.load_exported"
        )
    if path is None:
        target = Path(run_dir) / EXPORT_DIR / f"encoder{FORMATS[format]}"
        if not target.parent.exists():
            target.parent.mkdir()
    else:
        target = Path(path)
    contract_path = contract_path_of(target)
    _check_output(target, contract_path, force)
    writers: dict[str, Callable[[StandaloneEncoder, Path], dict[str, Any]]] = {
        "onnx": _write_onnx, "torchscript": _write_torchscript, "safetensors": _write_safetensors,
    }
    notes = writers[format](model, target)
    contract = _contract(model, config, meta, format, target.name, notes)
    write_atomic(contract_path, json.dumps(contract, indent=2) + "\n")
    return [target, contract_path]


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A module from an export and the ``<path>.json`` beside it, in eval mode on ``device``.

    A ``safetensors`` export is rebuilt as a :class:`StandaloneEncoder` (needs selfsup, and the
    ``safetensors`` package); a ``torchscript`` export is read with ``torch.jit.load``. An ONNX
    export runs in onnxruntime: ``onnxruntime.InferenceSession(path).run(None, {"x": x})[0]``.
    """
    path = Path(path)
    contract = read_contract(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist (its contract {contract_path_of(path).name} does)")
    kind = contract.get("format")
    if kind == "torchscript":
        return torch.jit.load(str(path), map_location=device).eval()
    if kind == "onnx":
        raise ConfigError(
            f"{path} is an ONNX export: run it with onnxruntime (onnxruntime.InferenceSession(path)"
            f".run(None, {{'{INPUT_NAME}': x}})[0]), not load_exported"
        )
    if kind != "safetensors":
        raise DataError(
            f"{contract_path_of(path)} names an unknown format {kind!r}; it was not written by selfsup export"
        )
    safetensors_torch = _require("safetensors.torch", "reading a safetensors export")
    config = RunConfig.from_dict(contract["run"]["config"])
    contract_input = contract["input"]
    input_shape = tuple(contract_input["shape"][1:])
    standardization = contract["standardization"]
    placeholder = torch.zeros(standardization["stat_shape"])
    encoder = build_encoder(
        config, input_shape, placeholder, placeholder + 1, contract.get("modality"), contract.get("data_info"),
    )
    try:
        state = safetensors_torch.load_file(str(path))
    except Exception as error:  # a truncated or foreign file
        raise DataError(f"{path} is not a readable safetensors file ({error})") from error
    encoder.load_state_dict(state)
    return StandaloneEncoder(encoder, contract_input["dtype"]).to(device).eval()


def contract_path_of(path: str | Path) -> Path:
    """Where the input contract of the export at ``path`` lives: ``path`` plus ``.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_contract(path: str | Path) -> dict[str, Any]:
    """The input contract (``<path>.json``) of the export at ``path``."""
    contract_path = contract_path_of(path)
    if not contract_path.is_file():
        raise DataError(
            f"{contract_path} does not exist; an export is read with the contract written beside it by selfsup export"
        )
    try:
        contract = json.loads(contract_path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{contract_path} is not valid JSON ({error})") from None
    if not isinstance(contract, dict) or "input" not in contract:
        raise DataError(f"{contract_path} is not an export contract (no 'input' entry)")
    return contract


# ----------------------------------------------------------------------------------------------


def _load(run_dir: str | Path, input_dtype: str | None) -> tuple[StandaloneEncoder, RunConfig, dict[str, Any]]:
    config, method, meta = load_run(run_dir)
    encoder = method.encoder
    dtype = _input_dtype(config, meta, input_dtype)
    return StandaloneEncoder(encoder, dtype).eval(), config, meta


def _input_dtype(config: RunConfig, meta: dict[str, Any], override: str | None) -> str:
    """The raw samples' dtype: given, recorded in the checkpoint, or read from one sample of the
    run's data (the modality's usual one when the data is gone)."""
    if override is not None:
        if override not in INPUT_DTYPES:
            raise ConfigError(
                f"input dtype {override!r} is not one of {', '.join(INPUT_DTYPES)} (images: uint8 or float32)"
            )
        return str(override)
    if meta.get("input_dtype"):
        return str(meta["input_dtype"]).removeprefix("torch.")
    try:
        data = load_dataset(
            config.data.name, skip_bad_files=True, options=config.data.params, reference=meta.get("data_info"),
        )
        first = data.train.subset(list(range(min(8, len(data.train)))))  # a few, in case one is unreadable
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a skipped file here is not news: training reported it
            batch = next(iterate(first, batch_size=len(first), num_workers=0))
        return str(batch["x"].dtype).removeprefix("torch.")
    except Exception as error:  # best effort: data moved, deleted, or from a module not imported here
        if meta.get("modality") != "image":
            return "float32"
        warnings.warn(
            f"the run's data ({config.data.name}) cannot be read to tell its dtype ({error}); taking uint8 images "
            "(0..255, as from image files). Pass input_dtype='float32' (--input-dtype float32) for images in [0, 1]",
            stacklevel=3,
        )
        return "uint8"


def _require(module: str, why: str) -> Any:
    """Import an optional package, or a one-line SelfsupError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.partition(".")[0]
        raise SelfsupError(f"{why} needs the {package} package, which is not installed; {INSTALL_HINT}") from None


def _check_output(target: Path, contract_path: Path, force: bool) -> None:
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"cannot write {target}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise ConfigError(f"cannot write {target}: the folder {parent} does not exist; create it first")
    if target.is_dir():
        raise ConfigError(f"cannot write {target}: it is a folder; give a file name, e.g. {target / 'encoder.onnx'}")
    existing = [str(p) for p in (target, contract_path) if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise ConfigError(f"{' and '.join(existing)} already {verb}; pass --force (force=True) to overwrite")


def _example(model: StandaloneEncoder, batch_size: int, seed: int) -> torch.Tensor:
    """Random raw samples ``[batch_size, *input_shape]`` of the contract's dtype (integers 0..255
    for uint8, floats in ``[0, 1)`` otherwise)."""
    generator = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, model.input_dtype)
    shape = (batch_size, *model.input_shape)
    if dtype.is_floating_point:
        return torch.rand(shape, generator=generator).to(dtype)
    return torch.randint(0, 256 if dtype == torch.uint8 else 10, shape, generator=generator, dtype=dtype)


def _verify(model: StandaloneEncoder, run: Callable[[torch.Tensor], torch.Tensor], runtime: str) -> dict[str, Any]:
    """Compare the exported file (``run``) with the encoder on a batch of :data:`VERIFY_BATCH`."""
    x = _example(model, VERIFY_BATCH, seed=1)
    with torch.no_grad():
        expected = model(x)
    got = run(x)
    scale = max(1.0, float(expected.abs().max()))
    diff = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    if not diff <= VERIFY_TOLERANCE * scale:
        raise ConfigError(
            f"the {runtime} export of this encoder disagrees with it (max abs difference {diff:.3g} on a batch of "
            f"{VERIFY_BATCH}, output {tuple(got.shape)}): its backbone does not trace faithfully; export it as "
            "safetensors instead"
        )
    return {"runtime": runtime, "batch_size": VERIFY_BATCH, "max_abs_difference": diff}


def _silence_tracing_notes() -> None:
    """Inside ``warnings.catch_warnings()``: silence the tracer's notes (shape checks become
    constants: the sample shape is fixed) and PyTorch's deprecation notes for TorchScript and its
    ONNX exporter; the written file is checked numerically instead."""
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


@contextlib.contextmanager
def _stdout_discarded() -> Iterator[None]:
    """Discard what the process writes to its stdout (file descriptor 1, C++ included): PyTorch's
    TorchScript-based ONNX exporter prints its whole graph there when an operator fails."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0].split("  [Caused by")[0]


def _export_onnx_graph(model: StandaloneEncoder, tmp: Path) -> str:
    """Write the ONNX graph of ``model.encoder`` to ``tmp``; returns the exporter used.

    PyTorch's TorchScript-based exporter (``dynamo=False``) needs only the ``onnx`` package; where
    it cannot translate an operator (``unfold`` of a patch_transformer, for one), the
    ``torch.export``-based exporter takes over when ``onnxscript`` is installed.
    """
    example = _example(model, TRACE_BATCH, seed=0)
    try:
        with warnings.catch_warnings(), _stdout_discarded():
            _silence_tracing_notes()
            torch.onnx.export(
                model.encoder, (example,), str(tmp), dynamo=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=ONNX_OPSET,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        return f"torch.onnx.export (TorchScript-based), opset {ONNX_OPSET}"
    except Exception as error:  # an operator this exporter cannot translate
        reason = _first_line(error)
    backbone = type(model.encoder.backbone).__name__
    try:
        importlib.import_module("onnxscript")
    except ImportError:
        raise ConfigError(
            f"the {backbone} backbone does not export to ONNX with PyTorch's TorchScript-based exporter ({reason}); "
            "pip install onnxscript to use the torch.export-based exporter, or export as torchscript or safetensors"
        ) from None
    try:
        with warnings.catch_warnings(), _stdout_discarded():
            _silence_tracing_notes()
            torch.onnx.export(
                model.encoder, (example,), str(tmp), dynamo=True, external_data=False, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=DYNAMO_ONNX_OPSET,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as error:
        raise ConfigError(
            f"the {backbone} backbone does not export to ONNX ({reason}; torch.export-based exporter: "
            f"{_first_line(error)}); export it as torchscript or safetensors"
        ) from None
    return f"torch.onnx.export (torch.export-based), opset {DYNAMO_ONNX_OPSET}"


def _write_onnx(model: StandaloneEncoder, path: Path) -> dict[str, Any]:
    notes: dict[str, Any] = {"verified": None}

    def write(tmp: Path) -> None:
        notes["exporter"] = _export_onnx_graph(model, tmp)
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:  # the file is written; it is checked where onnxruntime is installed
            return
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])

        notes["verified"] = _verify(model, run, f"onnxruntime {ort.__version__}")

    write_atomic(path, write)
    return notes


class _CheckedInput(nn.Module):
    """The TorchScript file's outer module: checks the input against the contract, then runs the
    traced encoder (a traced graph would silently read another dtype with the wrong scale). The
    attributes are not annotated: TorchScript infers their types from the values."""

    def __init__(self, traced: nn.Module, model: StandaloneEncoder) -> None:
        super().__init__()
        self.traced = traced
        self.input_shape = list(model.input_shape)
        self.input_dtype = model.input_dtype
        self.expected_dtype = getattr(torch, model.input_dtype)
        self.embed_dim = model.embed_dim
        self.modality = model.modality or ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.expected_dtype:
            raise ValueError("the encoder takes " + self.input_dtype + " samples (see its .json contract)")
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                "the encoder takes samples of shape [N] + " + str(self.input_shape) + "; got " + str(x.shape)
            )
        return self.traced(x)


def _write_torchscript(model: StandaloneEncoder, path: Path) -> dict[str, Any]:
    notes: dict[str, Any] = {"exporter": "torch.jit.trace, checked by torch.jit.script"}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            _silence_tracing_notes()
            # check_trace=False: the saved file is compared with the encoder below, on another batch size
            traced = torch.jit.trace(model.encoder, (_example(model, TRACE_BATCH, seed=0),), check_trace=False)
            torch.jit.save(torch.jit.script(_CheckedInput(traced, model)), str(tmp))
            loaded = torch.jit.load(str(tmp))

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return loaded(x)

        notes["verified"] = _verify(model, run, f"torch.jit {torch.__version__}")

    write_atomic(path, write)
    return notes


def _write_safetensors(model: StandaloneEncoder, path: Path) -> dict[str, Any]:
    safetensors_torch = _require("safetensors.torch", "exporting to safetensors")
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.encoder.state_dict().items()}
    metadata = {"format": "pt", "selfsup_contract": contract_path_of(path).name}
    write_atomic(path, lambda tmp: safetensors_torch.save_file(state, str(tmp), metadata=metadata))
    # Nothing traced: the tensors are the encoder's own, read back by load_exported.
    return {"exporter": f"safetensors {version('safetensors')}", "verified": None}


def _to_float_text(modality: str | None, dtype: str) -> str:
    """How raw values become floats, in words (the modality's ``to_float``)."""
    if modality == "image" and dtype == "uint8":
        return "float32(x) / 255"
    if modality == "table":
        return ("float32(x): numeric columns as numbers, categorical ones as the index in data_info's vocabulary; "
                "NaN marks a missing value; (x - mean) / std applies to numeric columns only")
    if modality in ("image", "vector", "timeseries"):
        return "float32(x)" + ("; NaN marks a missing value" if modality == "timeseries" else "")
    return f"the to_float of selfsup's modality {modality!r}"


def _contract(
    model: StandaloneEncoder, config: RunConfig, meta: dict[str, Any], format: str, file_name: str,
    notes: dict[str, Any],
) -> dict[str, Any]:
    """The input contract; ``notes``: the writer's ``exporter`` and ``verified`` (how the written
    file was checked against the encoder: runtime, batch size, max abs difference; ``None``
    for safetensors, which holds the encoder's own tensors)."""
    try:
        selfsup_version = version("selfsup")
    except PackageNotFoundError:  # run from a source tree that was not installed
        selfsup_version = "unknown"
    in_file = format != "safetensors"  # ONNX and TorchScript standardise inside the file
    return {
        "contract_version": CONTRACT_VERSION,
        "format": format,
        "file": file_name,
        "input": {
            "name": INPUT_NAME,
            "shape": [None, *model.input_shape],  # null: any batch size
            "dtype": model.input_dtype,
        },
        "output": {"name": OUTPUT_NAME, "shape": [None, model.embed_dim], "dtype": "float32"},
        "embed_dim": model.embed_dim,
        "modality": model.modality,
        "data_info": model.data_info,  # a table's schema: column types and category vocabularies
        "standardization": {
            "in_file": in_file,  # False: load_exported applies it (the mean/std buffers are in the state dict)
            "formula": "(to_float(x) - mean) / std",
            "to_float": _to_float_text(model.modality, model.input_dtype),
            "stat_shape": list(model.mean.shape),  # mean and std broadcast over one sample
            "mean": model.mean.tolist(),
            "std": model.std.tolist(),
        },
        "exporter": notes.get("exporter"),
        "verified": notes.get("verified"),
        "selfsup_version": selfsup_version,
        "torch_version": torch.__version__,
        "run": {
            "method": config.method.name,
            "backbone": config.backbone.name,
            "data": config.data.name,
            "checkpoint_meta": {k: v for k, v in meta.items() if isinstance(v, (str, int, float, list, type(None)))},
            "config": config.to_dict(),
        },
    }
