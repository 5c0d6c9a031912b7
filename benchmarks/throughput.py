"""Training throughput of SimCLR with the small-image ResNet-18 at 32 px, beside lightly and the backbone-only bound.

Issue 11 asks, on the same machine and in one run: images/s of selfsup's SimCLR (``resnet18``, the
CIFAR-stem ResNet-18: 3x3 stem, no max-pool) on 32x32 RGB images at batch 128, through the real
training path, beside

* **lightly**: lightly's SimCLR recipe for CIFAR-10 (``ResNetGenerator("resnet-18")``, the CIFAR
  stem; ``SimCLRTransform(input_size=32, gaussian_blur=0.0)`` on PIL images in DataLoader worker
  processes; ``SimCLRProjectionHead(512, 512, 128)``; ``NTXentLoss``; SGD), as a plain PyTorch
  loop (no Lightning, so no trainer overhead on its side), in a child process: this interpreter
  when lightly imports here, else ``--lightly-python`` (lightly needs torchvision, which this
  project's environment does not install);
* **the backbone-only bound**: forward and backward of the same backbone on the 2B views of one
  step (a ready float32 tensor), same memory format and precision, nothing else (no views, no
  head, no loss, no optimiser step, no data loading).

Each measurement trains ``--warmup`` steps (not timed) and then ``--windows`` windows of
``--window-steps`` steps; a window's images/s is ``batch x steps / seconds`` (an image is one
sample; SimCLR makes 2 views of it), timed from the end of one optimiser step to the end of another,
so data loading, views, logging and every hook are inside. The table gives the median window (over
``--rounds`` rounds, run in alternating order) and the range, one section per thread count, with
the backbone's FLOP rate and the cores' matrix-product roof at that thread count beside it.
selfsup runs go through ``selfsup.train.runner.pretrain`` (the ``selfsup pretrain`` path:
PretrainModule under a Lightning Trainer, ``arrays:`` data, no progress bar, monitors and epoch-end
checkpoints out of the timed steps, no evaluation). The data are synthetic: 2,560 random uint8
images ``[3, 32, 32]`` (seed 0), held in memory, the same for every measurement.

Rows (measured in this order; ``before`` rows switch one speed change off to show what it buys):

* ``bound nchw``, ``bound channels_last``, ``bound channels_last (weights too)``: the bound;
* ``selfsup fp32 nchw`` (before: channels_last off), ``selfsup fp32`` (the defaults);
* ``lightly fp32``;
* ``selfsup fp32 compiled``: the backbone under ``torch.compile`` (what ``train.compile=true``
  does: ``nn.Module.compile`` of the backbone); compile time is in the warm-up, not in the windows;
* where the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo):
  ``bound bf16``, ``selfsup bf16 views in autocast`` (before: views made under bf16 autocast, as
  before issue 11) and ``selfsup bf16`` (``--precision bf16-mixed``).

The default budget (1 warm-up step and 3 one-step windows per row, one round) takes about 6 minutes
with 1 thread on a 2-core AMD EPYC (Zen 4), plus torch.compile's first compilation.

    OMP_NUM_THREADS=1 python benchmarks/throughput.py --lightly-python /path/to/venv/bin/python
    OMP_NUM_THREADS=2 python benchmarks/throughput.py --lightly-python ...   # a second section
    python benchmarks/throughput.py --only bound            # rows whose name contains "bound"
    python benchmarks/throughput.py --rerun                 # measure again, ignoring the finished rows

Every finished measurement is one row of benchmarks/results/throughput.jsonl, keyed by name, thread
count and round (a rerun skips the rows already there with the same budget, so an interrupted
benchmark resumes), and benchmarks/results/throughput.md is rebuilt from them; notes from its
"## Notes" heading on are kept. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

try:  # the lightly child runs this file in lightly's interpreter, where selfsup is not installed
    import lightning as L

    from selfsup.backbones import create_backbone
    from selfsup.config import RunConfig, TrainConfig
    from selfsup.train.precision import cpu_flags, cpu_model, native_bf16, read_cpuinfo
    from selfsup.train.runner import pretrain
except ImportError:
    L = None

from common import ROOT, code_version  # benchmarks/ is on sys.path when a script here runs

RESULTS = ROOT / "benchmarks" / "results"
JSONL = RESULTS / "throughput.jsonl"
TABLE = RESULTS / "throughput.md"
NOTES_MARK = "## Notes"  # text from this heading on is kept when the table is rebuilt

IMAGES, CHANNELS, SIZE = 2560, 3, 32
BACKBONE = "resnet18"


# ----------------------------------------------------------------------------------------------
# Shared by every measurement
# ----------------------------------------------------------------------------------------------


def synthetic_images(n: int = IMAGES, seed: int = 0) -> np.ndarray:
    """``[n, 3, 32, 32]`` uint8 noise, the same in every process (numpy's PCG64 stream)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, CHANNELS, SIZE, SIZE), dtype=np.uint8)


def window_rates(step_ends: list[float], warmup: int, window_steps: int, batch: int) -> list[float]:
    """images/s of each window of ``window_steps`` steps after the ``warmup`` steps.

    ``step_ends[i]``: the time step ``i`` ended (``step_ends[0]``: when step 0 started, so
    ``step_ends[i + 1] - step_ends[i]`` is step ``i``'s duration).
    """
    rates = []
    start = warmup
    while start + window_steps < len(step_ends):
        seconds = step_ends[start + window_steps] - step_ends[start]
        rates.append(batch * window_steps / seconds)
        start += window_steps
    return rates


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (``/proc/stat``; NaN elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process and of its finished children (the lightly child and its workers)."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def total_steps(args: argparse.Namespace) -> int:
    return args.warmup + args.windows * args.window_steps


def backbone_flops(batch: int) -> float:
    """FLOPs of the backbone's forward and backward on ``2 x batch`` views (counted on the meta device)."""
    with torch.device("meta"):
        backbone = create_backbone(BACKBONE, (CHANNELS, SIZE, SIZE))
        views = torch.empty(2 * batch, CHANNELS, SIZE, SIZE)
    with FlopCounterMode(display=False) as counter:
        backbone(views).sum().backward()
    return float(counter.get_total_flops())


def matmul_roof(dtype: torch.dtype, n: int = 2048, repeats: int = 7) -> float:
    """GFLOP/s of an ``n x n`` matrix product in ``dtype`` (median of ``repeats``): what this CPU's
    vector units deliver at this thread count, the ceiling for the convolutions."""
    a, b = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
    a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9


# ----------------------------------------------------------------------------------------------
# selfsup through its training path
# ----------------------------------------------------------------------------------------------


if L is not None:

    class StepClock(L.Callback):
        """Times every optimiser step: the end of one ``on_train_batch_end`` to the end of the next."""

        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
            if not self.ends:
                self.ends.append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
            self.ends.append(time.perf_counter())

    class Variant(L.Callback):
        """Switches one speed change off (or compile on) before the first step."""

        def __init__(self, memory_format: torch.memory_format | None, compile_backbone: bool, views_in_autocast: bool):
            self.memory_format = memory_format
            self.compile_backbone = compile_backbone
            self.views_in_autocast = views_in_autocast

        def on_fit_start(self, trainer, pl_module) -> None:
            backbone = pl_module.method.encoder.backbone
            if self.memory_format is not None:
                backbone.memory_format = self.memory_format
            if self.compile_backbone:
                backbone.compile()
            if self.views_in_autocast:
                pl_module.views = ViewsUnderAutocast(pl_module.views)


class ViewsUnderAutocast:
    """The view generator run under bf16 autocast, as PretrainModule did before issue 11."""

    def __init__(self, views: Callable[..., Any]) -> None:
        self.views = views

    def __getattr__(self, name: str) -> Any:
        return getattr(self.views, name)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            return self.views(x, *args, **kwargs)


def measure_selfsup(spec: dict[str, Any], args: argparse.Namespace, data: Path) -> dict[str, Any]:
    config = RunConfig()
    config.data.name = f"arrays:{data}"
    config.method.name = "simclr"
    config.backbone.name = BACKBONE
    config.train = TrainConfig(
        epochs=100, max_steps=total_steps(args), batch_size=args.batch_size, precision=spec["precision"],
        accelerator="cpu", progress_bar=False, monitor_every_n_epochs=100, monitor_samples=256,
        checkpoint_every_n_epochs=100,
    )
    clock = StepClock()
    variant = Variant(spec.get("memory_format"), spec.get("compile", False), spec.get("views_in_autocast", False))
    with tempfile.TemporaryDirectory() as tmp:
        pretrain(config, run_dir=Path(tmp) / "run", callbacks=[variant, clock], evaluate=False)
    return {"step_ends": clock.ends}


# ----------------------------------------------------------------------------------------------
# The backbone-only bound
# ----------------------------------------------------------------------------------------------


def measure_bound(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Forward + backward of the backbone on ``2 x batch`` ready views; nothing else."""
    torch.manual_seed(0)
    backbone = create_backbone(BACKBONE, (CHANNELS, SIZE, SIZE)).train()
    backbone.memory_format = spec["memory_format"]
    if spec.get("weights_channels_last"):
        backbone.to(memory_format=torch.channels_last)
    views = torch.rand(2 * args.batch_size, CHANNELS, SIZE, SIZE)  # contiguous, as the view generator makes them
    bf16 = spec["precision"] == "bf16-mixed"
    ends = [time.perf_counter()]
    for _ in range(total_steps(args)):
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
            features = backbone(views)
        features.float().sum().backward()
        for p in backbone.parameters():
            p.grad = None
        ends.append(time.perf_counter())
    return {"step_ends": ends}


# ----------------------------------------------------------------------------------------------
# lightly (a child process, possibly in another interpreter)
# ----------------------------------------------------------------------------------------------


def lightly_child(args: argparse.Namespace) -> None:
    """Runs in lightly's interpreter: lightly's CIFAR-10 SimCLR recipe; prints one JSON line."""
    import lightly
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.models import ResNetGenerator
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from PIL import Image

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = synthetic_images().transpose(0, 2, 3, 1).copy()  # HWC for PIL

    class Images(torch.utils.data.Dataset):
        def __init__(self, transform: Callable[[Any], Any]) -> None:
            self.transform = transform

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> Any:
            return self.transform(Image.fromarray(images[i])), 0

    class SimCLR(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            resnet = ResNetGenerator("resnet-18")
            self.backbone = torch.nn.Sequential(*list(resnet.children())[:-1], torch.nn.AdaptiveAvgPool2d(1))
            self.projection_head = SimCLRProjectionHead(512, 512, 128)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

    model = SimCLR()
    criterion = NTXentLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(
        Images(SimCLRTransform(input_size=SIZE, gaussian_blur=0.0)), batch_size=args.batch_size, shuffle=True,
        drop_last=True, num_workers=args.lightly_workers, persistent_workers=args.lightly_workers > 0,
    )
    steps = total_steps(args)
    ends: list[float] = []
    while len(ends) <= steps:
        for (x0, x1), _ in loader:
            if not ends:
                ends.append(time.perf_counter())
            z0, z1 = model(x0), model(x1)
            loss = criterion(z0, z1)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            ends.append(time.perf_counter())
            if len(ends) > steps:
                break
    print(json.dumps({
        "step_ends": ends, "lightly": lightly.__version__, "lightly_torch": torch.__version__,
        "torchvision": torchvision.__version__, "lightly_threads": torch.get_num_threads(),
    }))


def lightly_interpreter(args: argparse.Namespace) -> str | None:
    if args.lightly_python:
        return args.lightly_python
    return sys.executable if importlib.util.find_spec("lightly") is not None else None


def measure_lightly(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    python = lightly_interpreter(args)
    if python is None:
        return {"skipped": "lightly is not importable here and no --lightly-python was given"}
    cmd = [
        python, str(Path(__file__).resolve()), "--lightly-child", "--threads", str(args.threads),
        "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--windows", str(args.windows),
        "--window-steps", str(args.window_steps), "--lightly-workers", str(args.lightly_workers),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        return {"skipped": f"the lightly child ({python}) failed with exit code {proc.returncode}", "log": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# The measurements
# ----------------------------------------------------------------------------------------------


def specs(bf16: bool) -> list[dict[str, Any]]:
    """Every measurement, in the order they run (bf16 rows only where the CPU has bf16 arithmetic)."""
    cl, nchw = torch.channels_last, torch.contiguous_format
    rows: list[dict[str, Any]] = [
        {"name": "bound nchw", "kind": "bound", "precision": "32-true", "memory_format": nchw},
        {"name": "bound channels_last", "kind": "bound", "precision": "32-true", "memory_format": cl},
        {"name": "bound channels_last (weights too)", "kind": "bound", "precision": "32-true", "memory_format": cl,
         "weights_channels_last": True},
        {"name": "selfsup fp32 nchw", "kind": "selfsup", "precision": "32-true", "memory_format": nchw},
        {"name": "selfsup fp32", "kind": "selfsup", "precision": "32-true"},
        {"name": "lightly fp32", "kind": "lightly", "precision": "32-true"},
        {"name": "selfsup fp32 compiled", "kind": "selfsup", "precision": "32-true", "compile": True},
    ]
    if bf16:
        rows += [
            {"name": "bound bf16", "kind": "bound", "precision": "bf16-mixed", "memory_format": cl},
            {"name": "selfsup bf16 views in autocast", "kind": "selfsup", "precision": "bf16-mixed",
             "views_in_autocast": True},
            {"name": "selfsup bf16", "kind": "selfsup", "precision": "bf16-mixed"},
        ]
    return rows


def describe(spec: dict[str, Any]) -> dict[str, str]:
    """The table's columns for a measurement."""
    fmt = spec.get("memory_format", torch.channels_last)  # the resnet backbones' default
    if spec["kind"] == "lightly":
        layout = "NCHW (lightly's default)"
    elif fmt != torch.channels_last:
        layout = "NCHW"
    else:
        layout = "channels_last (input and weights)" if spec.get("weights_channels_last") else "channels_last (input)"
    precision = "bf16 autocast" if spec["precision"] == "bf16-mixed" else "fp32"
    if spec.get("views_in_autocast"):
        precision += ", views too"
    return {"layout": layout, "precision": precision, "compiled": "yes" if spec.get("compile") else "no"}


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """What a row's numbers depend on besides the code: a row with another budget is measured again."""
    return {
        "batch_size": args.batch_size, "images": IMAGES, "image_size": SIZE, "warmup": args.warmup,
        "windows": args.windows, "window_steps": args.window_steps, "lightly_workers": args.lightly_workers,
    }


def run(spec: dict[str, Any], args: argparse.Namespace, data: Path, flops: float) -> dict[str, Any]:
    print(f"{spec['name']} ({args.threads} threads, round {args.round}): {total_steps(args)} steps ...", flush=True)
    load = os.getloadavg()[0]
    start, busy, own = time.perf_counter(), machine_busy_seconds(), own_seconds()
    if spec["kind"] == "selfsup":
        out = measure_selfsup(spec, args, data)
    elif spec["kind"] == "bound":
        out = measure_bound(spec, args)
    else:
        out = measure_lightly(spec, args)
    wall = time.perf_counter() - start
    # Cores that other jobs kept busy meanwhile: what this measurement did not have.
    others = (machine_busy_seconds() - busy - (own_seconds() - own)) / wall
    row = {"name": spec["name"], "threads": args.threads, "round": args.round, "kind": spec["kind"],
           **describe(spec), **out, "wall_s": wall, "load_before": load, "others_cores": max(0.0, others)}
    if "step_ends" in out:
        ends = out["step_ends"]
        row["warmup_s"] = ends[args.warmup] - ends[0]
        row["rates"] = window_rates(ends, args.warmup, args.window_steps, args.batch_size)
        row["backbone_flops_per_step"] = flops
        print(f"  {statistics.median(row['rates']):.1f} images/s (windows: {', '.join(f'{r:.1f}' for r in row['rates'])}; "
              f"warm-up {row['warmup_s']:.0f} s)", flush=True)
    else:
        print(f"  not measured: {out['skipped']}", flush=True)
    row.update(budget=budget(args), date=time.strftime("%Y-%m-%d %H:%M"), code=code_version(), torch=torch.__version__)
    return row


def roof_row(args: argparse.Namespace) -> dict[str, Any]:
    """The matrix-product roof of this sitting's thread count (fp32, and bf16 where native)."""
    roof = {"fp32": matmul_roof(torch.float32)}
    if native_bf16():
        roof["bf16"] = matmul_roof(torch.bfloat16)
    print(f"matmul roof ({args.threads} threads): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in roof.items()))
    return {"name": "matmul roof", "kind": "roof", "threads": args.threads, "round": args.round, "roof": roof,
            "budget": budget(args), "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg()[0]}


def _key(row: dict[str, Any]) -> tuple[str, int, int]:
    return row["name"], row["threads"], row["round"]


def read_rows() -> list[dict[str, Any]]:
    if not JSONL.exists():
        return []
    return [json.loads(line) for line in JSONL.read_text().splitlines() if line.strip()]


def save_row(row: dict[str, Any]) -> None:
    rows = [r for r in read_rows() if _key(r) != _key(row)]
    rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSONL.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------


def machine() -> str:
    info = read_cpuinfo()
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = cpu_flags(info)
    simd = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "flags unknown"
    bf16 = {True: "yes", False: "no", None: "unknown"}[native_bf16(info)]
    return (f"{cpu_model(info)} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}; {simd}; "
            f"native bf16: {bf16}), {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


COMPARISONS = [  # (what, numerator, denominator, issue 11's target)
    ("selfsup / lightly, fp32", "selfsup fp32", "lightly fp32", 1.5),
    ("selfsup / bound, fp32 (channels_last)", "selfsup fp32", "bound channels_last", 0.85),
    ("selfsup / bound, bf16", "selfsup bf16", "bound bf16", 0.85),
    ("channels_last, bare backbone (bound channels_last / bound nchw)", "bound channels_last", "bound nchw", None),
    ("channels_last weights as well (bound ... (weights too) / bound channels_last)",
     "bound channels_last (weights too)", "bound channels_last", None),
    ("channels_last in training (selfsup fp32 / selfsup fp32 nchw)", "selfsup fp32", "selfsup fp32 nchw", None),
    ("selfsup / bound, both NCHW", "selfsup fp32 nchw", "bound nchw", None),
    ("torch.compile of the backbone (selfsup fp32 compiled / selfsup fp32)", "selfsup fp32 compiled", "selfsup fp32",
     None),
    ("selfsup compiled / lightly, fp32", "selfsup fp32 compiled", "lightly fp32", None),
    ("views outside autocast (selfsup bf16 / selfsup bf16 views in autocast)", "selfsup bf16",
     "selfsup bf16 views in autocast", None),
    ("bf16 over fp32, training (selfsup bf16 / selfsup fp32)", "selfsup bf16", "selfsup fp32", None),
    ("bf16 over fp32, bare backbone (bound bf16 / bound channels_last)", "bound bf16", "bound channels_last", None),
    ("selfsup bf16 / lightly fp32", "selfsup bf16", "lightly fp32", None),
]


QUIET = 0.25  # a row ran undisturbed when other jobs used at most this many of the cores it used


def _merged(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rounds of each measurement as one: the median over every window of its quiet rounds
    (of all its rounds when none was quiet), and each round's median and others' CPU use."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["round"]):
        m = out.setdefault(r["name"], {**r, "by_round": {}, "others": {}, "windows": {}, "dates": []})
        m["dates"].append(r["date"])
        if "rates" in r:
            m["windows"][r["round"]] = r["rates"]
            m["by_round"][r["round"]] = statistics.median(r["rates"])
            m["others"][r["round"]] = r.get("others_cores", float("nan"))  # NaN: not measured (counts as quiet)
            m.pop("skipped", None)
    for m in out.values():
        free = max(0, (os.cpu_count() or 1) - m["threads"])  # cores the row left to other jobs
        quiet = [k for k, v in m["others"].items() if not v > free + QUIET] or list(m["windows"])
        m["quiet_rounds"] = quiet
        m["rates"] = [rate for k in quiet for rate in m["windows"][k]]
        if m["rates"]:
            m["images_per_s"] = statistics.median(m["rates"])
    return out


def _ratios(by: dict[str, dict[str, Any]], a: str, c: str) -> tuple[list[float], list[str]]:
    """``a / c`` in the rounds that measured both (side by side, minutes apart): the ratios of the
    rounds where both rows had a quiet machine (of every round when there is none), and every
    round's ratio as text, ``*`` marking the rounds left out."""
    ra, rc = by.get(a, {}).get("by_round", {}), by.get(c, {}).get("by_round", {})
    rounds = sorted(set(ra) & set(rc))
    quiet = [k for k in rounds if k in by[a]["quiet_rounds"] and k in by[c]["quiet_rounds"]] or rounds
    text = [f"{ra[k] / rc[k]:.2f}" + ("" if k in quiet else "*") for k in rounds]
    return [ra[k] / rc[k] for k in quiet], text


def _section(threads: int, rows: list[dict[str, Any]]) -> list[str]:
    by = _merged(rows)
    order = [s["name"] for s in specs(True)]
    roofs = [r["roof"] for r in rows if r["kind"] == "roof"]
    by.pop("matmul roof", None)
    roof_text = "; ".join(
        f"round {i}: " + ", ".join(f"{k} {v:.0f}" for k, v in roof.items()) for i, roof in enumerate(roofs)
    ) or "not measured"
    loads = [r["load_before"] for r in rows]
    rounds = max((len(r["by_round"]) for r in by.values()), default=0)
    free = max(0, (os.cpu_count() or 1) - threads)
    lines = [
        f"## {threads} thread{'s' if threads > 1 else ''}",
        "",
        f"torch.set_num_threads({threads}), OMP_NUM_THREADS={threads} (lightly's child too). Load average of the "
        f"machine before the rows: {min(loads):.1f} to {max(loads):.1f}. Matrix-product roof at this thread count "
        f"(2048 x 2048, GFLOP/s, measured at the start of each round: what these cores gave a dense kernel then): "
        f"{roof_text}.",
        "",
        "| measurement | precision | memory format | compiled | images/s (median) | windows: min-max | s/step "
        "| backbone GFLOP/s | each round: median (others' cores) | date |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for name in sorted(by, key=lambda n: order.index(n) if n in order else len(order)):
        r = by[name]
        date = max(r["dates"])
        if "images_per_s" not in r:
            lines.append(f"| {name} | {r['precision']} | {r['layout']} | {r['compiled']} | not measured: "
                         f"{r.get('skipped', '?')} | | | | | {date} |")
            continue
        rate = r["images_per_s"]
        step = r["budget"]["batch_size"] / rate
        per_round = ", ".join(f"{v:.1f} ({r['others'][k]:.2f})" + ("" if k in r["quiet_rounds"] else "*")
                              for k, v in sorted(r["by_round"].items()))
        lines.append(
            f"| {name} | {r['precision']} | {r['layout']} | {r['compiled']} | {rate:.1f} | "
            f"{min(r['rates']):.1f}-{max(r['rates']):.1f} | {step:.2f} | {r['backbone_flops_per_step'] / step / 1e9:.0f} "
            f"| {per_round} | {date} |"
        )
    lines += [
        "",
        "Comparisons: the ratio of two rows' medians within each round (side by side, minutes apart), and the "
        "median of those ratios" + (f" over the {rounds} rounds" if rounds > 1 else "") + ". Others' cores: the "
        "CPU that other jobs on the machine used while a row ran (from /proc/stat, less this process and its "
        f"children), in cores; a row where they used more than {QUIET} cores beyond the {free} the row left free "
        "(`*`) is left out of the medians and ratios when the same row has a quieter round.",
        "",
        "| comparison | ratio | each round | issue 11's target |",
        "|---|---:|---|---|",
    ]
    for what, a, c, target in COMPARISONS:
        ratios, text = _ratios(by, a, c)
        if not ratios:
            continue
        ratio = statistics.median(ratios)
        met = "" if target is None else f"{target}: {'met' if ratio >= target else '**not met**'}"
        lines.append(f"| {what} | {ratio:.2f} | {', '.join(text)} | {met} |")
    return lines + [""]


def write_table(rows: list[dict[str, Any]]) -> None:
    measured = [r for r in rows if r["kind"] != "roof"]
    b = measured[0]["budget"] if measured else {}
    lightly = next((r for r in rows if r["kind"] == "lightly" and "lightly" in r), None)
    lines = [
        f"# Training throughput: SimCLR, ResNet-18 (CIFAR stem), 32x32 RGB, batch {b.get('batch_size')}, CPU",
        "",
        "Written by `python benchmarks/throughput.py` (rows kept in `throughput.jsonl`; a rerun skips finished rows).",
        "",
        f"Machine: {machine()}. Code: {', '.join(sorted({r.get('code', 'unknown') for r in measured}))}."
        + (f" lightly {lightly['lightly']} with torch {lightly['lightly_torch']} and torchvision "
           f"{lightly['torchvision']} (its own environment)." if lightly else ""),
        "",
        f"Budget per row and round: {b.get('warmup')} warm-up step(s), not timed (they include torch.compile's "
        f"compilation), then {b.get('windows')} windows of {b.get('window_steps')} step(s); a window's images/s is "
        f"{b.get('batch_size')} x steps / seconds from the end of one optimiser step to the end of another (data, "
        "views, loss, optimiser, logging and hooks inside); the table shows the median over the windows of every "
        f"round (rounds run in alternating order), their range, and each round's median. Data: {b.get('images', 0):,} "
        f"synthetic random uint8 images [3, {b.get('image_size')}, "
        f"{b.get('image_size')}] (seed 0), in memory. selfsup: `selfsup.train.runner.pretrain` (the `selfsup "
        "pretrain` path: Lightning Trainer, PretrainModule, views made batched in the training process, AdamW; no "
        "progress bar, no monitors or checkpoints during the timed steps, no evaluation). lightly: its CIFAR-10 "
        "SimCLR recipe in a plain PyTorch loop (`ResNetGenerator('resnet-18')`, `SimCLRTransform(input_size=32, "
        f"gaussian_blur=0.0)` in {b.get('lightly_workers')} DataLoader workers, `SimCLRProjectionHead(512, 512, "
        "128)`, `NTXentLoss`, SGD). Bound: forward + backward of the same backbone on 2 x batch ready float32 "
        "views, nothing else. An image is one sample (SimCLR makes two views of it). Backbone GFLOP/s: the "
        "backbone's forward and backward FLOPs per step (counted by torch's FlopCounterMode, the convolutions: "
        f"{(measured[0].get('backbone_flops_per_step') or 0) / 1e9 if measured else 0:.0f} GFLOP) over the step's "
        "time, for every row (lightly's backbone has the same convolutions). The machine is shared with other "
        "jobs: compare rows of one section, measured minutes apart in one sitting.",
        "",
    ]
    for threads in sorted({r["threads"] for r in rows}):
        lines += _section(threads, [r for r in rows if r["threads"] == threads])
    if TABLE.exists():
        text = TABLE.read_text()
        if NOTES_MARK in text:
            lines += [text[text.index(NOTES_MARK):].rstrip()]
    TABLE.write_text("\n".join(lines).rstrip() + "\n")


# ----------------------------------------------------------------------------------------------


def main() -> None:
    global RESULTS, JSONL, TABLE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count(),
                        help="torch threads in every measurement (default: OMP_NUM_THREADS, else the core count)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=1, help="steps before the timed windows")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-steps", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="measure every row this many times, in alternating order")
    parser.add_argument("--lightly-python", help="a Python interpreter where lightly imports (default: this one)")
    parser.add_argument("--lightly-workers", type=int, default=os.cpu_count(),
                        help="lightly's DataLoader workers (default: one per core)")
    parser.add_argument("--only", nargs="+", help="measure only the rows whose name contains one of these words")
    parser.add_argument("--rerun", action="store_true", help="measure again even where a row exists")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of throughput.jsonl and .md")
    parser.add_argument("--table", action="store_true", help="only rebuild throughput.md from throughput.jsonl")
    parser.add_argument("--lightly-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lightly_child:
        lightly_child(args)
        return
    if L is None:
        sys.exit("benchmarks/throughput.py needs selfsup installed (pip install -e .)")
    RESULTS, JSONL, TABLE = args.results, args.results / "throughput.jsonl", args.results / "throughput.md"
    if args.table:
        write_table(read_rows())
        print(f"wrote {TABLE}")
        return
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for anything this process starts
    done = set() if args.rerun else {_key(r) for r in read_rows() if r.get("budget") == budget(args) and "skipped" not in r}
    flops = backbone_flops(args.batch_size)
    todo = [s for s in specs(bool(native_bf16())) if not args.only or any(w in s["name"] for w in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synthetic.npz"
        np.savez(data, x=synthetic_images())  # an .npz is read into memory (a .npy would be memory-mapped)
        for round_index in range(args.rounds):
            args.round = round_index
            if ("matmul roof", args.threads, args.round) not in done:
                save_row(roof_row(args))
            for spec in todo if args.round % 2 == 0 else todo[::-1]:  # alternate the order: drift cancels
                if (spec["name"], args.threads, args.round) in done:
                    print(f"{spec['name']} ({args.threads} threads, round {args.round}): done, skipped", flush=True)
                    continue
                save_row(run(spec, args, data, flops))
                write_table(read_rows())
    write_table(read_rows())
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
