"""The bf16 check: CPU flags read from /proc/cpuinfo texts, and the warning for a bf16 request."""

from __future__ import annotations

import pytest

from selfsup.train.precision import cpu_flags, cpu_model, native_bf16, precision_warning

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse sse2 avx avx2 fma\n\nprocessor\t: 1\n"
AVX512_BF16 = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: avx2 avx512f avx512bw avx512_bf16\n"
AMX = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: avx2 avx512f amx_tile amx_bf16\n"
ARM_BF16 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\nCPU part\t: 0xd40\n"
ARM_NO_BF16 = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32\n"


def test_flags_and_model_are_read_from_cpuinfo() -> None:
    assert cpu_flags(AVX2_ONLY) == {"fpu", "sse", "sse2", "avx", "avx2", "fma"}
    assert "bf16" in cpu_flags(ARM_BF16)
    assert cpu_model(AVX2_ONLY) == "AMD EPYC 7B12"
    assert cpu_model(ARM_BF16) == "unknown CPU"
    assert cpu_flags("") == frozenset()


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [(AVX2_ONLY, False), (AVX512_BF16, True), (AMX, True), (ARM_BF16, True), (ARM_NO_BF16, False), ("", None)],
)
def test_native_bf16(cpuinfo: str, expected: bool | None) -> None:
    assert native_bf16(cpuinfo) is expected


@pytest.mark.parametrize("requested", ["bf16-mixed", "bf16-true", "bf16"])
def test_bf16_on_a_cpu_without_it_warns_in_one_line_naming_the_fix(requested: str) -> None:
    message = precision_warning(requested, "cpu", cpuinfo=AVX2_ONLY)
    assert message is not None and "\n" not in message
    assert requested in message and "AMD EPYC 7B12" in message and "32-true" in message


@pytest.mark.parametrize("requested", ["auto", "32-true", "32", "16-mixed", "64-true"])
def test_no_warning_for_other_precisions(requested: str) -> None:
    assert precision_warning(requested, "cpu", cpuinfo=AVX2_ONLY) is None


@pytest.mark.parametrize("cpuinfo", [AVX512_BF16, AMX, ARM_BF16, ""])
def test_no_warning_where_the_cpu_has_bf16_or_its_flags_are_unknown(cpuinfo: str) -> None:
    assert precision_warning("bf16-mixed", "cpu", cpuinfo=cpuinfo) is None


@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "mps"])
def test_no_warning_for_runs_on_an_accelerator(accelerator: str) -> None:
    assert precision_warning("bf16-mixed", accelerator, cpuinfo=AVX2_ONLY) is None


def test_auto_accelerator_on_a_machine_without_gpu_is_a_cpu_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("torch.backends.mps.is_available", lambda: False)
    assert precision_warning("bf16-mixed", "auto", cpuinfo=AVX2_ONLY) is not None
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert precision_warning("bf16-mixed", "auto", cpuinfo=AVX2_ONLY) is None
