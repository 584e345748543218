"""What the machine can do, detected at run time: native bf16 arithmetic and the theoretical peak FLOP/s.

Processors differ (bf16 matmul is about 4x fp32 on a CPU with AVX512-BF16 and hundreds of times slower on
one without), so nothing here is assumed: CPU features come from ``/proc/cpuinfo`` (Linux) or torch's own
CPU capability, GPUs from ``torch.cuda``.

**Theoretical peak** = cores x FLOP per cycle per core x clock, where FLOP per cycle counts a fused
multiply-add as 2 FLOPs over every FMA pipe's lanes:

- x86 with AVX-512: two 512-bit FMA pipes, 2 x 16 fp32 lanes x 2 = 64 fp32 FLOP/cycle (AMD family 0x19,
  Zen 4, runs AVX-512 on 256-bit pipes: 32); with AVX2 + FMA: 2 x 8 x 2 = 32; otherwise 8 (SSE, no FMA);
  aarch64 NEON: 2 x 4 x 2 = 16.
- bf16: ``avx512_bf16`` (``VDPBF16PS``: two bf16 products per fp32 lane) doubles the fp32 rate; AMX
  (``amx_bf16``) does 1,024 bf16 FLOP/cycle per core; without either, bf16 runs at best at the fp32 rate.
- Clock: ``cpuinfo_max_freq`` when the kernel exposes it, else the ``cpu MHz`` ``/proc/cpuinfo`` reports.
  Under a hypervisor that is often the nominal clock while cores boost past it, so a measured kernel may
  exceed 100% of this peak; that is why :mod:`hf_memotion.benchmarking` reports figures against both the peak
  and the best measured kernel.
- NVIDIA GPUs: streaming multiprocessors x FLOP per cycle per SM (fp32 CUDA cores x 2; dense bf16 tensor
  cores: 2,048 on compute capability 8.x, 4,096 on 9.x and later) x the maximum SM clock.

Examples:
    >>> peak = theoretical_peak("cpu")
    >>> peak.device, peak.cores >= 1, peak.bf16_flop_per_cycle >= peak.fp32_flop_per_cycle
    ('cpu', True, True)
    >>> isinstance(native_bf16("cpu"), bool)
    True
"""

from __future__ import annotations

import gc
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "MachinePeak",
    "cpu_flags",
    "cpu_name",
    "native_bf16",
    "release_memory",
    "resolve_device",
    "synchronize",
    "theoretical_peak",
]


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo_field(name: str) -> str | None:
    match = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", _cpuinfo(), flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo`` on Linux; torch's capability name elsewhere, lower-cased)."""
    flags = _cpuinfo_field("flags") or _cpuinfo_field("Features")
    if flags:
        return frozenset(flags.split())
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return frozenset({capability.lower()} if capability else ())


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device work runs on: ``"auto"`` (or ``None``) is accelerate's process state's device, else as given.

    Under ``accelerate launch`` that is this process's GPU (``cuda:<local rank>``); in a plain process the current
    GPU when there is one, else the CPU.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("auto").type in ("cpu", "cuda")
        True
    """
    if device is None or device == "auto":
        from hf_memotion.distributed import process_state

        return torch.device(process_state().device)
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: torch sees no CUDA device here; use 'auto' or 'cpu'")
    return resolved


def synchronize(device: str | torch.device) -> None:
    """Wait until a GPU has finished its queued work (nothing to wait for on a CPU): what a timing needs."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def native_bf16(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` (default: CUDA when available, else the CPU) computes bf16 natively.

    A CPU counts when it has AVX512-BF16 or AMX-BF16 (detected at run time: no other CPU gains from bf16);
    a CUDA device when torch reports bf16 support (compute capability 8.0 and later).
    """
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def release_memory() -> None:
    """Give freed tensors' memory back: collect reference cycles (a ``Trainer`` holds its model) and empty CUDA's cache.

    Examples:
        >>> release_memory()  # after dropping the last reference to a model
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class MachinePeak:
    """A device's theoretical peak, and how it was worked out.

    Attributes:
        device: ``"cpu"`` or ``"cuda"``.
        name: CPU model or GPU name.
        cores: CPU cores this process may use, or the GPU's streaming multiprocessors.
        clock_ghz: The clock the peak assumes (``None`` when unknown: then no peak).
        fp32_flop_per_cycle: fp32 FLOP per cycle per core (or SM).
        bf16_flop_per_cycle: bf16 FLOP per cycle per core (or SM).
        basis: One line on where the figures came from.
    """

    device: str
    name: str
    cores: int
    clock_ghz: float | None
    fp32_flop_per_cycle: int
    bf16_flop_per_cycle: int
    basis: str

    @property
    def fp32_gflops(self) -> float | None:
        """Peak fp32 GFLOP/s (``None`` without a clock)."""
        return None if self.clock_ghz is None else self.cores * self.fp32_flop_per_cycle * self.clock_ghz

    @property
    def bf16_gflops(self) -> float | None:
        """Peak bf16 GFLOP/s (``None`` without a clock)."""
        return None if self.clock_ghz is None else self.cores * self.bf16_flop_per_cycle * self.clock_ghz

    def as_dict(self) -> dict[str, Any]:
        """The fields and both peaks, for JSON."""
        return {**asdict(self), "fp32_gflops": self.fp32_gflops, "bf16_gflops": self.bf16_gflops}


def _cpu_clock_ghz() -> float | None:
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6
    except (OSError, ValueError):
        pass
    mhz = _cpuinfo_field("cpu MHz")
    try:
        return float(mhz) / 1000 if mhz else None
    except ValueError:
        return None


def _cpu_peak() -> MachinePeak:
    flags = cpu_flags()
    machine = platform.machine().lower()
    family = _cpuinfo_field("cpu family")
    if machine in ("aarch64", "arm64"):
        fp32, why = 16, "NEON, 2 FMA pipes x 4 lanes"
    elif "avx512f" in flags:
        zen4 = _cpuinfo_field("vendor_id") == "AuthenticAMD" and family == "25"
        fp32, why = (32, "AVX-512 on 256-bit pipes (AMD Zen 4)") if zen4 else (64, "AVX-512, 2 FMA pipes x 16 lanes")
    elif {"avx2", "fma"} <= flags:
        fp32, why = 32, "AVX2 + FMA, 2 pipes x 8 lanes"
    else:
        fp32, why = 8, "SSE without FMA"
    if "amx_bf16" in flags:
        bf16, why = 1024, why + "; AMX-BF16 1,024 bf16 FLOP/cycle"
    elif "avx512_bf16" in flags:
        bf16, why = 2 * fp32, why + "; AVX512-BF16 doubles it for bf16"
    else:
        bf16, why = fp32, why + "; no native bf16"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores = min(cores, torch.get_num_threads())  # what torch's kernels use
    clock = _cpu_clock_ghz()
    at = f"{clock:.3f} GHz" if clock else "an unknown clock"
    return MachinePeak("cpu", cpu_name(), cores, clock, fp32, bf16, f"{cores} cores x FLOP/cycle ({why}) x {at}")


def _gpu_clock_ghz(index: int) -> float | None:
    props = torch.cuda.get_device_properties(index)
    khz = getattr(props, "clock_rate", None)
    if khz:
        return khz / 1e6
    try:
        query = ["nvidia-smi", f"--id={index}", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
        return float(out.stdout.strip().splitlines()[0]) / 1000
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _gpu_peak(index: int) -> MachinePeak:
    props = torch.cuda.get_device_properties(index)
    fp32 = 128 if (props.major, props.minor) == (8, 0) else 256  # fp32 CUDA cores per SM x 2 (A100: 64 per SM)
    bf16 = 4096 if props.major >= 9 else 2048 if props.major == 8 else fp32
    clock = _gpu_clock_ghz(index)
    at = f"{clock:.3f} GHz" if clock else "an unknown clock"
    basis = f"{props.multi_processor_count} SMs x FLOP/cycle (fp32 {fp32}, dense bf16 tensor cores {bf16}) x {at}"
    return MachinePeak("cuda", props.name, props.multi_processor_count, clock, fp32, bf16, basis)


def theoretical_peak(device: str | torch.device | None = None) -> MachinePeak:
    """The theoretical peak of ``device`` (default: CUDA device 0 when available, else the CPU)."""
    default = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device if device is not None else default)
    if target.type == "cuda":
        return _gpu_peak(target.index or 0)
    return _cpu_peak()
