"""The one place that knows how much memory a fit needs and how much it may take."""

from __future__ import annotations

import torch

from .settings import Settings

__all__ = ["available_memory", "fit_bytes_per_pixel", "default_budget"]

# Share of the free memory a fit may take: the CPU's is shared with everything else running
# (napari, the user's other work), a GPU's mostly belongs to us. On the CPU a fit also never
# plans for more than _CPU_CAP: larger tiles are no faster per pixel there, and a 2048² plane
# then stays well under 4 GB (benchmarks/big_image.py).
_CPU_SHARE = 0.5
_CPU_CAP = 3 * 2**30
_CUDA_SHARE = 0.8
_UNKNOWN_MEMORY = 4 * 2**30


def available_memory(device: torch.device) -> int:
    """Bytes free for a fit on ``device``: CUDA's free memory, else the system's available RAM.

    Parameters
    ----------
    device : torch.device

    Returns
    -------
    int
        Bytes; 4 GiB when the system does not say.
    """
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil
    except ImportError:
        return _meminfo_available()
    return int(psutil.virtual_memory().available)


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _UNKNOWN_MEMORY


def default_budget(device: torch.device, memory_limit: int | None = None) -> int:
    """Bytes one fit may use: ``memory_limit`` when given, else a share of the free memory."""
    if memory_limit is not None:
        return int(memory_limit)
    if device.type == "cuda":
        return int(available_memory(device) * _CUDA_SHARE)
    return int(min(available_memory(device) * _CPU_SHARE, _CPU_CAP))


def fit_bytes_per_pixel(settings: Settings, channels: int) -> int:
    """Estimated peak memory of one fit, in bytes per pixel of the network's output.

    The skip network keeps about 14 activations per channel and 7 per skip channel for the
    backward pass (9 and 5 at each level's resolution and the next coarser one, summed over the
    pyramid), and the input code three times (code, noise, their sum). Automatic stopping keeps
    the last ``stop_window`` outputs in float64. The extra KiB covers the rest (gradients in
    flight, allocator slack): calibrated against peak RSS on CPU in float32, where it is 10-20 %
    above the measurement for 128 channels and 8 % below it for 32; in bfloat16 it is about twice
    the measurement (benchmarks/big_image.py). The budget is a share of the free memory, which
    leaves room for the difference.

    Parameters
    ----------
    settings : Settings
        The fit's settings.
    channels : int
        Channels of the image (1 for grayscale, 3 for RGB).

    Returns
    -------
    int
    """
    floats = 14 * settings.channels + 7 * settings.skip_channels + 3 * settings.input_depth
    stopper = 8 * settings.stop_window * channels if settings.auto_stop else 0
    return 4 * floats + stopper + 1024
