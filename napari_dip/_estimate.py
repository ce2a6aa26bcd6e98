"""How long a run will take, said before it starts, and what it will run on. Qt-free.

The time is a measured table: seconds per optimisation step on one CPU thread, as a fixed cost
plus a cost per network pixel, for each preset's network in each precision (fitted to two image
sizes by ``python benchmarks/widget_estimate.py --table``), times the iterations the run may
take. A network the user narrowed or deepened under Advanced scales the pixel cost by its share
of the work (``network_work``). No table exists for GPUs: there the widget says so and shows the time left
once the run is under way. After a run, the estimate for the next is corrected by how the last
one's steps compared with the table (``Calibration``): the table was measured on one machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .core.progress import says_latest
from .core.settings import Settings

__all__ = ["Calibration", "Estimate", "STEP_COST", "describe_device", "estimate_run", "format_seconds",
           "step_seconds"]

# (preset, precision) -> (seconds per step, seconds per step and network megapixel), one CPU
# thread, eager, measured on an Intel Xeon with AMX (benchmarks/results/widget_estimate/).
STEP_COST: dict[tuple[str, str], tuple[float, float]] = {
    ("fast", "bfloat16"): (0.0106, 1.62),
    ("fast", "float32"): (0.0062, 2.30),
    ("default", "bfloat16"): (0.0140, 2.97),
    ("default", "float32"): (0.0073, 4.49),
    ("paper", "float32"): (0.0043, 21.98),
}

# Compiled steps of the default network took 0.69 of the eager time (benchmarks/results/
# threads_256.md), after a first step of 65-104 s on a cold cache (compile_pays/).
COMPILED_STEP_SHARE = 0.69
COMPILE_SECONDS = 90.0

# Share of a step that spreads over threads (Amdahl), from 1 and 2 threads at 256²: the default
# network's steps took 0.68 of the time at 2 threads, the paper's 0.59 (threads_256.md).
PARALLEL_SHARE = 0.7

# Longer than this, the estimate suggests a region or the fast preset.
LONG_SECONDS = 300.0


def format_seconds(seconds: float) -> str:
    """``4.2 s``, ``42 s``, ``12 min 05 s``, ``2 h 08 min``: as precise as a reader needs."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def time_left(eta: float | None, latest: float | None = None) -> str:
    """``about 42 s left``, or ``about 42 s left (4 min 10 s at the cap)`` where automatic
    stopping may well end the run much later than its guess (``latest``); ``""`` when unknown."""
    if eta is None:
        return ""
    text = f"about {format_seconds(eta)} left"
    if says_latest(eta, latest):
        text += f" ({format_seconds(latest)} at the cap)"
    return text


# What a step costs per pixel besides the network's multiply-adds, in multiply-adds: the code, the
# loss, the normalisation and the optimiser's passes over memory. Fitted so that the work of the
# fast and paper networks relative to the default's matches their measured steps (0.50 and 4.85
# against 0.51 and 4.90 measured, float32).
_WORK_BESIDES_CONVOLUTIONS = 20_000


def network_work(settings: Settings, out_channels: int = 3) -> float:
    """A step's work per output pixel: the convolutions' multiply-adds, level by level as
    ``networks.SkipNet`` builds them, plus what does not scale with the network."""
    scales, skip = settings.scales, settings.skip_channels
    widths = [min(settings.top_channels or settings.channels, settings.channels)] + [settings.channels] * (scales - 1)
    macs = 0.0
    for level, width in enumerate(widths):
        here, below = 4.0**-level, 4.0 ** -(level + 1)
        inputs = settings.input_depth if level == 0 else widths[level - 1]
        inner = widths[level + 1] if level + 1 < scales else width
        macs += here * (inputs * skip + 9 * (skip + inner) * width + width * width)
        macs += below * (9 * inputs * width + 9 * width * width)
    return macs + widths[0] * out_channels + _WORK_BESIDES_CONVOLUTIONS


def _precision(settings: Settings, device: str) -> str:
    if settings.precision != "auto":
        return settings.precision
    from .core.device import resolve_precision, select_device

    return resolve_precision(select_device(device), "auto")


def step_seconds(preset: str, settings: Settings, pixels: int, *, device: str = "cpu", threads: int = 1,
                 compiled: bool = False) -> float | None:
    """Seconds per step of a fit of ``pixels`` network pixels, from :data:`STEP_COST`; None where
    nothing was measured (a GPU, a precision the table lacks)."""
    from .core.device import select_device

    if select_device(device).type != "cpu":
        return None
    precision = _precision(settings, device)
    cost = STEP_COST.get((preset, precision)) or STEP_COST.get(("default", precision))
    if cost is None:
        return None
    fixed, per_megapixel = cost
    from .core.presets import preset_settings

    # The table's network, for a preset whose widths or depth the user changed.
    reference = preset_settings("denoise", preset if (preset, precision) in STEP_COST else "default")
    per_megapixel *= network_work(settings) / network_work(reference)
    seconds = fixed + per_megapixel * pixels / 1e6
    seconds /= (1 - PARALLEL_SHARE) + PARALLEL_SHARE / max(1, threads)
    return seconds * (COMPILED_STEP_SHARE if compiled else 1.0)


@dataclass
class Calibration:
    """How the last runs' steps compared with the table, per device: the next estimate is
    multiplied by the latest ratio (the table was measured on one machine)."""

    ratios: dict[str, float] = field(default_factory=dict)

    def learn(self, device: str, predicted_step: float | None, elapsed: float, iterations: int) -> None:
        if predicted_step and iterations >= 20 and elapsed > 0:
            self.ratios[device] = (elapsed / iterations) / predicted_step

    def factor(self, device: str) -> float | None:
        return self.ratios.get(device)


@dataclass(frozen=True)
class Estimate:
    """What a run will cost: ``seconds`` at most (None: not known for this device), over
    ``iterations`` steps per fit of ``fits`` fits, stopping sooner by itself if ``auto``."""

    seconds: float | None
    step: float | None
    table_step: float | None
    iterations: int
    fits: int
    auto: bool
    compile_seconds: float = 0.0
    calibrated: bool = False
    windows: int = 0  # inpainting fits this many windows around the painted pixels (0: the plane)

    @property
    def long(self) -> bool:
        return self.seconds is not None and self.seconds > LONG_SECONDS

    def short_text(self) -> str:
        """``≤ 1 min 20 s`` (automatic stop), ``≈ 20 s`` (a fixed count), or the iterations."""
        if self.seconds is None:
            return f"≤ {self.iterations} it." if self.auto else f"{self.iterations} it."
        return ("≤ " if self.auto else "≈ ") + format_seconds(self.seconds)

    def text(self) -> str:
        """One or two sentences for the widget, before Run."""
        each = f"{self.iterations} iterations" + (f" for each of {self.fits} planes" if self.fits > 1 else "")
        if self.windows:
            each += (f" in each of {self.windows} windows" if self.windows > 1 else " in one window") + \
                " around the painted pixels"
        if self.seconds is None:
            return f"Time: no measured figures for this device; {each} at most, time left shown once it runs."
        notes = ", ".join(
            ([f"including about {format_seconds(self.compile_seconds)} to compile"] if self.compile_seconds else [])
            + (["corrected by your last run's speed"] if self.calibrated else [])
        )
        notes = f" ({notes})" if notes else ""
        if self.auto:
            text = (f"Time: at most {format_seconds(self.seconds)} for {each}{notes}; the automatic stop often "
                    "ends it sooner.")
        else:
            text = f"Time: about {format_seconds(self.seconds)} for {each}{notes}."
        if self.long:
            # Inpainting in windows already fits only around the painted pixels.
            text += (" That is long: try the fast preset." if self.windows else
                     " That is long: pick a Region (a rectangle in a Shapes layer), or the fast preset.")
        return text


def network_pixels(spatial: tuple[int, int], settings: Settings, factor: int = 1) -> int:
    """Pixels of the network's output for a plane of ``spatial``: padded to what the network
    divides by (as the core pads), ``factor`` times larger each way."""
    multiple = 2**settings.scales
    sides = [max(-(-n * factor // multiple) * multiple, 2 * multiple) for n in spatial]
    return math.prod(sides)


def estimate_run(preset: str, settings: Settings, spatial: tuple[int, int], *, factor: int = 1, fits: int = 1,
                 device: str = "cpu", threads: int | None = None, compile: str = "off",
                 calibration: Calibration | None = None, windows: list[tuple[int, int]] | None = None) -> Estimate:
    """The cost of ``fits`` fits of a ``spatial`` plane with ``settings``; ``threads`` None is the
    core's choice for small images (one), which larger ones may better; ``compile`` is the
    compile setting ("auto" compiles where the core's policy would). ``windows``: the sizes of
    the windows inpainting fits instead of the plane (``tiling.region_windows``)."""
    from .core.device import resolve_compile, select_device

    sizes = windows or [spatial]
    pixels = sum(network_pixels(size, settings, factor) for size in sizes)
    largest = max(network_pixels(size, settings, factor) for size in sizes)
    compile = resolve_compile(compile, select_device(device), largest, 2, settings.iterations)
    step = table_step = step_seconds(preset, settings, pixels, device=device, threads=threads or 1, compiled=compile)
    factor_seen = calibration.factor(device) if calibration is not None else None
    if step is not None and factor_seen is not None:
        step *= factor_seen
    seconds = None if step is None else step * settings.iterations * fits
    compile_seconds = COMPILE_SECONDS if compile and step is not None else 0.0
    if seconds is not None:
        seconds += compile_seconds
    return Estimate(seconds, step, table_step, settings.iterations, fits, settings.auto_stop, compile_seconds,
                    factor_seen is not None, len(windows or []))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "CPU"


def describe_device(request: str) -> str:
    """What ``request`` ("auto", "cpu", "cuda", ...) runs on: ``GPU: NVIDIA H200 (cuda)``,
    ``CPU: Intel Xeon (2 cores)``; for "auto", what it chose."""
    from .core.device import select_device, usable_cores

    device = select_device(request)
    chosen = "auto chose " if request == "auto" else ""
    if device.type == "cuda":
        import torch

        return f"{chosen}GPU: {torch.cuda.get_device_name(device)} (cuda)"
    if device.type == "mps":
        return f"{chosen}GPU: Apple (mps)"
    from .core.device import available_devices

    cores = usable_cores()
    none = "; no GPU found" if available_devices() == ["cpu"] else ""
    return f"{chosen}CPU: {_cpu_name()} ({cores} core{'s' if cores != 1 else ''}){none}"
