"""The settings of one fit, each checked against its range when the object is made."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["Settings", "PRECISIONS", "COMPILE_MODES", "as_whole_number"]

PRECISIONS = ("float32", "bfloat16", "float16", "auto")
COMPILE_MODES = ("auto", "on", "off")
UPSAMPLE_MODES = ("bilinear", "nearest")


def as_whole_number(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int, or one sentence naming it: numpy integers and integral floats
    (``3.0``) pass, ``2.7``, ``'2'``, NaN, infinity and booleans do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not (isinstance(value, numbers.Integral) or (math.isfinite(value) and float(value).is_integer())):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {number}")
    return number


def _as_real(value, name: str, *, low: float, high: float = math.inf, low_open: bool = False,
             high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        span = f"above {low:g}" if high == math.inf and low_open else (
            f"at least {low:g}" if high == math.inf else f"in {left}{low:g}, {high:g}{right}")
        raise ValueError(f"{name} must be {span}, got {value!r}")
    return number


def _one_of(value, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


# Field -> how it is checked; every field of Settings has a line.
# Ten million steps is days of fitting even on a GPU: more is a typing slip, refused at once.
MAX_ITERATIONS = 10_000_000
_INTEGERS = {
    "iterations": (1, MAX_ITERATIONS), "input_depth": (1, 4096), "channels": (1, 4096), "scales": (1, 12),
    "skip_channels": (0, 4096), "stop_window": (2, None), "stop_patience": (1, None),
    "min_iterations": (0, None), "checkpoint_every": (1, None), "stop_band": (1, 4096),
}
_REALS = {
    "lr": dict(low=0, high=10, low_open=True), "reg_noise_std": dict(low=0, high=10),
    "input_scale": dict(low=0, high=1e3, low_open=True), "ema": dict(low=0, high=1, high_open=True),
    "stop_rise": dict(low=0), "stop_discrepancy": dict(low=0, high=10), "backtrack_ratio": dict(low=1, low_open=True),
    "stop_holdout": dict(low=0, high=0.5), "stop_tolerance": dict(low=0, high=1, high_open=True),
}


@dataclass(frozen=True)
class Settings:
    """Everything that shapes one DIP fit. Field names are the ``**advanced`` keywords.

    Every value is checked when a Settings is made (also by :meth:`updated`), so a bad one is
    refused with one sentence before any work starts.
    """

    iterations: int = 3000
    lr: float = 0.01
    reg_noise_std: float = 1 / 30
    input_depth: int = 32
    input_scale: float = 0.1
    channels: int = 128
    top_channels: int | None = None  # width of the finest (full-resolution) level, at most channels
    scales: int = 5
    skip_channels: int = 4
    upsample_mode: str = "bilinear"
    ema: float = 0.99
    auto_stop: bool = False
    stop_window: int = 100
    stop_patience: int = 1000
    stop_rise: float = 0.3
    # Denoising: also stop once the smoothed loss falls below this share of the noise variance
    # estimated from the image (0: off). See napari_dip/core/stopping.py.
    stop_discrepancy: float = 0.85
    # Inpainting: hold this share of the known pixels within ``stop_band`` pixels of the fill out
    # of the fit, and stop once the average's error on them has not fallen by ``stop_tolerance``
    # (relative) for ``stop_patience`` iterations (0: off, the variance rule instead).
    stop_holdout: float = 0.0
    stop_band: int = 16
    stop_tolerance: float = 0.01
    min_iterations: int = 200
    precision: str = "float32"  # or "bfloat16", "float16", "auto" (fastest native one)
    channels_last: bool = False
    # Fit each channel stretched from its own minimum to its maximum, whatever the dtype
    # (uint8 and [0, 1] floats otherwise keep their nominal range): see napari_dip/core/presets.py.
    stretch: bool = False
    compile: str = "off"  # "on", "off", or "auto" (on where the run is long enough to repay compiling)
    backtrack_ratio: float = 10 ** (5 / 10)
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        for name, (low, high) in _INTEGERS.items():
            object.__setattr__(self, name, as_whole_number(getattr(self, name), name, low, high))
        for name, bounds in _REALS.items():
            object.__setattr__(self, name, _as_real(getattr(self, name), name, **bounds))
        if self.top_channels is not None:
            object.__setattr__(self, "top_channels", as_whole_number(self.top_channels, "top_channels", 1, 4096))
        for name in ("auto_stop", "channels_last", "stretch"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _one_of(self.upsample_mode, "upsample_mode", UPSAMPLE_MODES)
        _one_of(self.precision, "precision", PRECISIONS)
        if isinstance(self.compile, bool):
            object.__setattr__(self, "compile", "on" if self.compile else "off")
        _one_of(self.compile, "compile setting", COMPILE_MODES)

    def network_kwargs(self) -> dict:
        return dict(
            channels=self.channels,
            # Never wider than the rest: a user narrowing ``channels`` narrows the top level too.
            top_channels=min(self.top_channels, self.channels) if self.top_channels else None,
            scales=self.scales,
            skip_channels=self.skip_channels,
            upsample_mode=self.upsample_mode,
        )

    def updated(self, **changes) -> Settings:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ValueError(f"unknown setting(s) {names}; known: {', '.join(f.name for f in fields(self))}")
        changes = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)
