"""The one place that picks the compute device and the CPU thread count."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = [
    "available_devices",
    "select_device",
    "choose_threads",
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


def choose_threads(pixels: int, requested: int | None = None) -> int:
    """CPU threads for a fit on an image of ``pixels`` network pixels.

    Small images spend most of each step in per-operator overhead, which extra threads only add
    to (measured: benchmarks/threads.py); large images split well across cores.
    """
    if requested:
        return max(1, int(requested))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if pixels <= 128 * 128:
        return 1
    return cores


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


def resolve_compile(setting: str | bool, device: torch.device, pixels: int, dims: int = 2) -> bool:
    """Whether to compile the network. ``"auto"``: on CPU and CUDA for images of at least 128²
    network pixels, where the per-step saving repays the compile time (tens of seconds) within a
    run; small images, MPS and volumes (``dims`` 3) stay eager. Compiling the 3D network gave no
    faster steps on CPU (16×64×64: 0.313 against 0.317 s/step at one thread, 0.176 against
    0.206 at two) and its first step took 119 s on a cold cache."""
    if isinstance(setting, bool):
        return setting
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"unknown compile setting {setting!r}; choose auto, on or off")
    if setting == "auto":
        return dims == 2 and device.type in ("cpu", "cuda") and pixels >= 128 * 128
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
