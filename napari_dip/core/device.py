"""The one place that picks the compute device and the CPU thread count."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = [
    "available_devices",
    "select_device",
    "choose_threads",
    "usable_cores",
    "busy_cores",
    "torch_threads",
    "resolve_precision",
    "resolve_compile",
]


def available_devices() -> list[str]:
    """Devices usable here, best first; always ends with ``"cpu"``."""
    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def select_device(request: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an explicit request must be available."""
    if isinstance(request, torch.device):
        return request
    request = str(request).lower()
    present = available_devices()
    if request == "auto":
        return torch.device(present[0])
    kind = request.split(":")[0]
    if kind not in ("cuda", "mps", "cpu"):
        raise ValueError(f"unknown device {request!r}; choose auto, {', '.join(present)}")
    if kind not in present:
        raise ValueError(f"device {request!r} is not available here; available: {', '.join(present)}")
    return torch.device(request)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as stat:
            values = [float(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


def busy_cores(sample_seconds: float = 0.1) -> float:
    """How many of the machine's cores other work keeps busy now (sampled over ``sample_seconds``);
    the 1-minute load average where /proc/stat is missing."""
    first = _cpu_times()
    if first is None:
        try:
            return float(os.getloadavg()[0])
        except (AttributeError, OSError):
            return 0.0
    time.sleep(sample_seconds)
    second = _cpu_times()
    busy, total = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * busy / total if total > 0 else 0.0


def choose_threads(pixels: int, requested: int | None = None) -> int:
    """CPU threads for a fit on an image of ``pixels`` network pixels: never more than the
    cores that are free.

    Small images spend most of each step in per-operator overhead, which extra threads only add
    to (measured: benchmarks/threads.py). Large images split well across cores, but only across
    idle ones: on 2 cores with one busy, 2 threads took 2.4 s a step against 0.47 s with one
    (the threads wait for each other at every operator), so the busy cores are left out.
    """
    if requested:
        return max(1, int(requested))
    if pixels <= 128 * 128:
        return 1
    cores = usable_cores()
    if cores == 1:
        return 1
    # Rounded up from 0.5: a core that is busy half the time still stalls a thread at every step.
    free = cores - math.floor(busy_cores() + 0.5)
    return max(1, min(cores, free))


def _cpu_has_fast_bfloat16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 convolutions run natively (elsewhere they are emulated, slowly)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(device: torch.device, precision: str) -> str:
    """``"auto"`` becomes the fastest precision this device runs natively; others pass through."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu" and _cpu_has_fast_bfloat16():
        return "bfloat16"
    return "float32"


# Pixel-iterations below which compiling does not pay. Measured on a cold cache, one thread, the
# default denoising network (benchmarks/compile_pays.py; benchmarks/results/compile_pays/): the
# first compiled step took 65-104 s, and compiled steps saved 0.82-1.26 µs per pixel, so the
# compile paid for itself after 7.4e7 (128²), 1.3e8 (256²) and 6.3e7 (512²) pixel-iterations.
COMPILE_MIN_WORK = 100_000_000


def resolve_compile(setting: str | bool, device: torch.device, pixels: int, dims: int = 2,
                    iterations: int | None = None) -> bool:
    """Whether to compile the network. ``"auto"``: on CPU and CUDA when the run's work, network
    pixels × its iteration cap, is at least :data:`COMPILE_MIN_WORK`, so that the per-step saving
    repays the compile time within the run (a 5-step test never compiles); MPS and volumes
    (``dims`` 3) stay eager. Compiling the 3D network gave no faster steps on CPU (16×64×64:
    0.313 against 0.317 s/step at one thread, 0.176 against 0.206 at two) and its first step
    took 119 s on a cold cache."""
    if isinstance(setting, bool):
        return setting
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"unknown compile setting {setting!r}; choose auto, on or off")
    if setting == "auto":
        work = pixels * (iterations if iterations is not None else 1)
        return dims == 2 and device.type in ("cpu", "cuda") and work >= COMPILE_MIN_WORK
    return setting == "on"


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with ``count`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
