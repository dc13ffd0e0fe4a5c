"""What this machine's CPU can do, asked rather than assumed: its name and the instruction-set flags that decide
which precisions run natively (x86: AVX2, AVX-512, VNNI, AVX-512 BF16, AMX; Arm: dot products, I8MM, BF16), and,
where OpenVINO is installed, the precisions its CPU plugin reports it accelerates (OPTIMIZATION_CAPABILITIES).
Every speed figure names the CPU with `cpu_summary()`."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

# Flags that matter for inference precision, in the order they are reported.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                  "asimddp", "i8mm", "bf16")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@cache
def cpu_flags() -> frozenset[str]:
    """The first processor's flags (x86 `flags`, Arm `Features`); empty where /proc/cpuinfo is unreadable."""
    line = next((line for line in _cpuinfo().splitlines() if line.startswith(("flags", "Features"))), "")
    return frozenset(line.split(":", 1)[-1].split())


@cache
def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith(("model name", "Model", "Hardware")):
            return line.split(":", 1)[-1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def flag_summary(flags: frozenset[str] | set[str]) -> str:
    """'avx2; lacks avx512f, avx512_vnni, ...': the relevant flags present, then those absent (of its family)."""
    arm = platform.machine().lower() in ("aarch64", "arm64") or bool(flags & {"asimd", "asimddp"})
    family = [f for f in RELEVANT_FLAGS if (f in ("asimddp", "i8mm", "bf16")) == arm]
    present = [f for f in family if f in flags]
    absent = [f for f in family if f not in flags]
    return f"{', '.join(present) or 'none of ' + '/'.join(family)}" + (f"; lacks {', '.join(absent)}" if absent
                                                                         and present else "")


def cpu_summary() -> str:
    """The CPU's name and its precision-relevant flags, for every speed figure and the test log."""
    return f"{cpu_name()} ({flag_summary(cpu_flags())})"


def accelerates_bf16(flags: frozenset[str] | set[str] | None = None) -> bool:
    return bool((cpu_flags() if flags is None else flags) & BF16_FLAGS)


def accelerates_int8(flags: frozenset[str] | set[str] | None = None) -> bool:
    return bool((cpu_flags() if flags is None else flags) & INT8_DOT_FLAGS)


def openvino_cpu_capabilities() -> tuple[str, ...] | None:
    """OpenVINO's CPU plugin's OPTIMIZATION_CAPABILITIES (e.g. FP32, INT8, BF16), or None without OpenVINO."""
    try:
        import openvino
    except ImportError:
        return None
    return tuple(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def precision_support(flags: frozenset[str] | set[str] | None = None) -> str:
    """One line for `mnet doctor`: which precisions this CPU runs natively, and what becomes of the others."""
    flags = cpu_flags() if flags is None else flags
    bf16 = "BF16 native" if accelerates_bf16(flags) else \
        "BF16 not accelerated (no avx512_bf16/amx_bf16: OpenVINO computes FP32 when BF16 is asked, and says so)"
    int8 = "INT8 dot products (VNNI/dotprod)" if accelerates_int8(flags) else \
        "INT8 without dot-product instructions (emulated with wider integer arithmetic: little or no gain)"
    return f"{cpu_summary()}: FP32; {bf16}; {int8}"


if __name__ == "__main__":
    print(f"cpu: {cpu_summary()}")
    print(f"precisions: {precision_support()}")
