"""One description of a run, built by every shell and handed down unchanged.

:class:`RestoreOptions` holds everything a restoration needs besides the image: the task and its
inputs, the preset and its overrides, seed, device, threads, the preview schedule, tiling and
how stacks are read. It is checked once, when it is made, with one sentence per bad value, so a
mistake is reported before any work starts; per-tile and per-plane variants are
``dataclasses.replace`` of it. Its JSON form (without the mask, PSF and guide arrays, which are data,
not settings) is what the widget saves between sessions.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from .arrays import check_finite
from .guide import prepare_guide
from .presets import PRESETS, resolve_settings
from .settings import Settings, as_whole_number
from .tasks import TASKS, TaskSpec, task_spec

__all__ = ["RestoreOptions", "DEVICE_NAMES", "MAX_SEED", "keeps_known"]

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
MAX_SEED = 2**63 - 1
# More threads than any machine has cores only slow a fit down; far more cannot be started at all.
MAX_THREADS = 1024
# Fields that are arrays (data for one image), not settings: left out of the JSON form.
_ARRAYS = ("mask", "psf", "guide")


def _optional_whole(value, name: str, minimum: int, maximum: int | None = None) -> int | None:
    return None if value is None else as_whole_number(value, name, minimum, maximum)


def _check_psf(psf: Any) -> np.ndarray | None:
    if psf is None:
        return None
    if np.iscomplexobj(np.asarray(psf)):
        raise ValueError("the PSF holds complex numbers: give the real blur kernel (e.g. its absolute value)")
    try:
        psf = np.asarray(psf, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("the PSF must be a 2D array of real numbers") from None
    if psf.ndim != 2:
        raise ValueError(f"the PSF must be a 2D array, got shape {psf.shape}")
    check_finite(psf, "PSF")
    if (psf < 0).any() or psf.sum() <= 0:
        raise ValueError("the PSF must be non-negative with a positive sum (it is normalised to sum 1)")
    return psf


def _whole_axis(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"channel_axis must be a whole number (an axis index such as 0 or -1), got {value!r}")
    return int(value)


def _check_not_options(advanced: dict) -> None:
    """An advanced setting named like an option of its own (``iterations``, ``seed``, ...)."""
    own = sorted(set(advanced) & ({f.name for f in fields(RestoreOptions)} - {"advanced"}))
    if own:
        name = own[0]
        raise ValueError(
            f"{name} is an option of its own, not an advanced setting: give {name}={advanced[name]!r} "
            f"directly (on the command line --{name.replace('_', '-')} where there is one)"
        )


@dataclass(frozen=True, eq=False)
class RestoreOptions:
    """How to restore an image: every choice a shell can make, checked when it is made.

    Parameters
    ----------
    task : str
        A task of :data:`~napari_dip.core.tasks.TASKS`: denoise, inpaint, sr, deblur, jpeg.
    mask, scale, psf
        The task's inputs: inpainting mask (nonzero = fill; one plane's shape or the stack's
        without channels), super-resolution factor, deblurring PSF (2D).
    guide : array, optional
        Guided restoration (any task): an image of the same scene that replaces the network's
        random input code, e.g. the flash photograph guiding a no-flash one. The result's spatial
        shape with any channels last; for stacks one guide for all planes or one per plane (see
        :mod:`~napari_dip.core.guide`). Stretched to [0, 1] as a whole; its channel count is the
        network's input depth.
    preset : {"default", "fast", "paper"}
    iterations : int, optional
        A fixed count (turns automatic stopping off unless ``advanced`` has ``auto_stop=True``).
    seed : int
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    threads : int, optional
        CPU threads; by default chosen from the image size and the free cores.
    preview_seconds, preview_iterations
        Preview schedule of a single image's fit.
    axes : str, optional
        The array's axes, e.g. ``"YX"``, ``"YXC"``, ``"TYX"``, ``"ZYXC"`` (Z is space with
        ``volume``, planes without it). Without it a last axis of 3 or 4 is RGB(A) and every axis
        before the last two is a plane axis.
    channel_axis : int, optional
        The channel axis, instead of ``axes``.
    volume : bool
        Restore a z-stack whole with a 3D network (tasks whose spec allows volumes).
    tile_size, overlap, memory_limit
        Tiling of planes too big for one fit: tile side, overlap, and the bytes one fit may use
        (default: a share of the free memory, which also decides whether to tile).
    warm_start, warm_iterations
        Stacks: start each plane from the previous plane's weights (see ``core.stacks``).
    keep_known : bool, optional
        Inpainting: return every unpainted pixel exactly as it was (default, except for the
        ``paper`` preset, which returns the network's output everywhere as the paper does).
    advanced : dict
        Fields of :class:`~napari_dip.core.settings.Settings` that override the preset.

    Examples
    --------
    >>> options = RestoreOptions(task="sr", scale=4, iterations=100, advanced={"channels": 16})
    >>> options.settings.iterations, options.factor
    (100, 4)
    >>> RestoreOptions.from_json(options.to_json()) == options
    True
    >>> RestoreOptions(advanced={"ema": 2.0})
    Traceback (most recent call last):
    ...
    ValueError: ema must be in [0, 1), got 2.0
    """

    task: str = "denoise"
    mask: Any = field(default=None, repr=False)
    scale: int | None = None
    psf: Any = field(default=None, repr=False)
    guide: Any = field(default=None, repr=False)
    preset: str = "default"
    iterations: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    preview_seconds: float | None = 2.0
    preview_iterations: int | None = None
    axes: str | None = None
    channel_axis: int | None = None
    volume: bool = False
    tile_size: int | None = None
    overlap: int | None = None
    memory_limit: int | None = None
    warm_start: bool = False
    warm_iterations: int | None = None
    keep_known: bool | None = None
    advanced: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        spec = task_spec(self.task)
        set_(self, "scale", spec.check_inputs(self.mask, self.scale, self.psf))
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        set_(self, "iterations", _optional_whole(self.iterations, "iterations", 1))
        set_(self, "seed", as_whole_number(self.seed, "seed", 0, MAX_SEED))
        if not isinstance(self.device, str) or self.device.lower().split(":")[0] not in DEVICE_NAMES:
            raise ValueError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICE_NAMES)}")
        set_(self, "threads", _optional_whole(self.threads, "threads", 1, MAX_THREADS))
        if self.preview_seconds is not None and (
            isinstance(self.preview_seconds, bool) or not isinstance(self.preview_seconds, numbers.Real)
            or not math.isfinite(self.preview_seconds) or self.preview_seconds < 0
        ):
            raise ValueError(f"preview_seconds must be a number of seconds ≥ 0 or None, got {self.preview_seconds!r}")
        set_(self, "preview_iterations", _optional_whole(self.preview_iterations, "preview_iterations", 1))
        if self.axes is not None and not (isinstance(self.axes, str) and self.axes.isalpha() and self.axes.isascii()):
            raise ValueError(f"axes must be a string of axis letters such as 'TYX', got {self.axes!r}")
        if self.channel_axis is not None:
            set_(self, "channel_axis", _whole_axis(self.channel_axis))
            if self.axes is not None:
                raise ValueError("give either axes or channel_axis, not both (axes names the channels with 'C')")
        for name in ("volume", "warm_start"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.keep_known is not None and not isinstance(self.keep_known, bool):
            raise ValueError(f"keep_known must be True, False or None, got {self.keep_known!r}")
        if self.volume and not spec.volume:
            raise ValueError(
                f"task {self.task!r} is not available for volumes, only "
                f"{' and '.join(name for name, s in TASKS.items() if s.volume)}: "
                f"restore the planes one by one for {self.task!r}"
            )
        set_(self, "tile_size", _optional_whole(self.tile_size, "tile size", 1))
        if self.tile_size is not None and self.tile_size < 8:
            raise ValueError(f"tile size {self.tile_size} is too small: use at least 8 pixels")
        set_(self, "overlap", _optional_whole(self.overlap, "tile overlap", 0))
        if self.tile_size is not None and self.overlap is not None and 2 * self.overlap >= self.tile_size:
            raise ValueError(
                f"tile overlap {self.overlap} must be less than half the tile size {self.tile_size}"
            )
        set_(self, "memory_limit", _optional_whole(self.memory_limit, "memory limit (bytes)", 2**20))
        set_(self, "warm_iterations", _optional_whole(self.warm_iterations, "warm_iterations", 1))
        set_(self, "psf", _check_psf(self.psf))
        set_(self, "guide", prepare_guide(self.guide))
        if self.mask is not None and not hasattr(self.mask, "shape"):
            set_(self, "mask", np.asarray(self.mask))
        if not isinstance(self.advanced, dict):
            raise ValueError(f"advanced must be a dict of Settings fields, got {type(self.advanced).__name__}")
        set_(self, "advanced", {name: value for name, value in self.advanced.items() if value is not None})
        _check_not_options(self.advanced)
        if self.guide is not None and "input_depth" in self.advanced:
            raise ValueError("input_depth is the guide's channel count: leave it out when giving a guide")
        # Resolving the settings checks every advanced value's name and range.
        set_(self, "_settings", resolve_settings(self.task, self.preset, self.scale, self.iterations, **self.advanced))

    # --- derived -------------------------------------------------------------------------------

    @property
    def spec(self) -> TaskSpec:
        return task_spec(self.task)

    @property
    def settings(self) -> Settings:
        """The preset's settings with ``iterations`` and ``advanced`` applied."""
        return self._settings

    @property
    def factor(self) -> int:
        return self.spec.factor(self.scale)

    @property
    def keeps_known(self) -> bool:
        """Whether inpainting returns the unpainted pixels exactly (see ``keep_known``)."""
        return keeps_known(self.task, self.preset, self.keep_known)

    def with_settings(self, **changes) -> RestoreOptions:
        """A copy whose ``advanced`` has ``changes`` too (e.g. a warm-started plane's lr)."""
        return replace(self, advanced={**self.advanced, **changes})

    @classmethod
    def from_kwargs(cls, task: str = "denoise", **kwargs) -> RestoreOptions:
        """From :func:`~napari_dip.core.api.restore`'s keywords: Settings fields go to ``advanced``."""
        names = {f.name for f in fields(cls)}
        advanced = dict(kwargs.pop("advanced", None) or {})
        advanced.update({name: kwargs.pop(name) for name in list(kwargs) if name not in names})
        return cls(task=task, advanced=advanced, **kwargs)

    # --- JSON ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain values (no arrays): the JSON form."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _ARRAYS}
        values["advanced"] = dict(self.advanced)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict, **arrays) -> RestoreOptions:
        """From :meth:`to_json`'s text (or dict), with ``mask``/``psf``/``guide`` given separately."""
        try:
            values = json.loads(text) if isinstance(text, str) else dict(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"the saved options are not valid JSON ({error}); save them again with to_json()"
            ) from None
        if not isinstance(values, dict):
            raise ValueError("saved options must be a JSON object")
        unknown = set(values) - {f.name for f in fields(cls)} | (set(values) & set(_ARRAYS))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} in the saved options")
        return cls(**values, **arrays)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RestoreOptions):
            return NotImplemented
        same_arrays = all(
            (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
            for a, b in ((self.mask, other.mask), (self.psf, other.psf), (self.guide, other.guide))
        )
        return same_arrays and self.to_dict() == other.to_dict()

    __hash__ = None  # mutable arrays inside


def keeps_known(task: str, preset: str, keep_known: bool | None = None) -> bool:
    """Whether a run of ``task`` with ``preset`` returns the unpainted pixels exactly: inpainting,
    unless ``keep_known`` is False or, when it is None, the preset is "paper" (the network's
    output everywhere, as the paper returns it)."""
    return task_spec(task).needs_mask and (keep_known if keep_known is not None else preset != "paper")
