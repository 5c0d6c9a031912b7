"""Whether this CPU computes in bf16 natively, and the one-line warning for a bf16 request where it does not.

bf16 autocast pays on a CPU only where its vector units multiply bf16 themselves: on x86 the
AVX-512 BF16 instructions (``avx512_bf16``: Intel Cooper Lake and later, AMD Zen 4 and later) or
AMX (``amx_bf16``: Intel Sapphire Rapids and later); on ARM the BF16 extension (``bf16``: Neoverse
V1/N2, Graviton 3). Elsewhere PyTorch's kernels widen every bf16 operand to float32 and narrow
the result again (or fall back to reference kernels): a bf16 run is then slower than float32.
"""

from __future__ import annotations

from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 flags, ARM features
BF16_PRECISIONS = frozenset({"bf16", "bf16-mixed", "bf16-true"})


def read_cpuinfo() -> str:
    """This machine's ``/proc/cpuinfo`` (empty where there is none: macOS, Windows)."""
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first CPU in a ``/proc/cpuinfo`` text (x86 ``flags``, ARM ``Features``)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model(cpuinfo: str) -> str:
    """The CPU's model name from a ``/proc/cpuinfo`` text (``"unknown CPU"`` when it has none)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return "unknown CPU"


def native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU has bf16 arithmetic (see the module's docstring); ``None`` when its flags
    cannot be read. ``cpuinfo``: a ``/proc/cpuinfo`` text (default: this machine's)."""
    flags = cpu_flags(read_cpuinfo() if cpuinfo is None else cpuinfo)
    if not flags:
        return None
    return bool(flags & NATIVE_BF16_FLAGS)


def _trains_on_cpu(accelerator: str) -> bool:
    if accelerator in ("gpu", "cuda", "mps"):
        return False
    if accelerator == "auto":  # Lightning's choice: a GPU when one is visible
        mps = getattr(torch.backends, "mps", None)
        return not (torch.cuda.is_available() or (mps is not None and mps.is_available()))
    return True


def precision_warning(requested: str, accelerator: str = "auto", cpuinfo: str | None = None) -> str | None:
    """One line to warn with when ``requested`` is a bf16 precision for a run on a CPU without
    native bf16; ``None`` otherwise (float32 or 16-bit precisions, a GPU, a CPU with bf16, or a
    CPU whose flags cannot be read).

    Args:
        requested: the run's ``train.precision`` (``"bf16-mixed"``, ``"32-true"``, ``"auto"``...).
        accelerator: the run's ``train.accelerator``: no warning for runs on a GPU.
        cpuinfo: a ``/proc/cpuinfo`` text (default: this machine's).
    """
    if requested not in BF16_PRECISIONS or not _trains_on_cpu(accelerator):
        return None
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    if native_bf16(text) is not False:
        return None
    return (
        f"--precision {requested} will be slow on this CPU ({cpu_model(text)}): it has no native bf16 arithmetic "
        "(AVX-512 BF16 or AMX; BF16 on ARM), so every bf16 operation is converted to and from float32; "
        "use --precision 32-true (or auto, which keeps float32 on this CPU)"
    )
