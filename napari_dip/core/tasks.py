"""The task registry: what each task needs, how it builds its forward operator, its paper setup.

Every shell lists tasks from :data:`TASKS` and asks a :class:`TaskSpec` what a task needs; adding
a task is one entry here. Nothing outside this module branches on a task's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .operators import BlurOperator, DownsampleOperator, ForwardOperator, IdentityOperator, InpaintOperator
from .settings import Settings, as_whole_number

__all__ = ["TaskSpec", "TASKS", "TASK_NAMES", "task_spec", "widget_choices"]


@dataclass(frozen=True)
class TaskSpec:
    """One restoration task.

    ``build(fill, scale, psf)`` makes its forward operator A, with ``fill`` the padded boolean
    (True = missing) mask for inpainting; ``paper`` holds the official notebook's settings per
    super-resolution factor (1 for the other tasks); ``scales`` the factors a menu offers.
    """

    name: str
    label: str
    build: Callable[[np.ndarray | None, int, np.ndarray | None], ForwardOperator]
    paper: dict[int, Settings]
    needs_mask: bool = False
    needs_scale: bool = False
    needs_psf: bool = False
    volume: bool = False
    scales: tuple[int, ...] = field(default=(1,))
    # Tasks that observe the image itself (not a blurred or smaller view of it) can estimate its
    # noise level from it, which the stopping rule's discrepancy test uses.
    noise_from_image: bool = False

    def factor(self, scale: int | None) -> int:
        """How many output pixels one input pixel becomes along each axis."""
        return int(scale) if self.needs_scale else 1

    def paper_settings(self, scale: int | None) -> Settings:
        factor = self.factor(scale)
        # Factors beyond the paper's use the largest one's settings.
        return self.paper.get(factor) or self.paper[max(self.paper)]

    def check_inputs(self, mask: Any, scale: Any, psf: Any) -> int | None:
        """Refuse missing or superfluous inputs with one sentence; returns the checked scale."""
        if self.needs_mask and mask is None:
            raise ValueError("inpainting needs a mask: nonzero where pixels must be filled")
        if not self.needs_mask and mask is not None:
            raise ValueError(f"a mask is only used for inpainting, not for task {self.name!r}")
        if self.needs_scale:
            if scale is None:
                raise ValueError("super-resolution needs a scale, e.g. scale=4")
            try:
                scale = as_whole_number(scale, "super-resolution scale", 2, 64)
            except ValueError:
                raise ValueError(
                    f"super-resolution scale must be a whole number of at least 2 (and at most 64), got {scale!r}"
                ) from None
        elif scale not in (None, 1):
            raise ValueError(f"scale is only used for super-resolution, not for task {self.name!r}")
        else:
            scale = None
        if self.needs_psf and psf is None:
            raise ValueError("deblurring needs a PSF (the blur kernel) as a 2D array")
        if not self.needs_psf and psf is not None:
            raise ValueError(f"a PSF is only used for deblurring, not for task {self.name!r}")
        return scale


_PAPER_DENOISE = Settings(iterations=3000, lr=0.01, reg_noise_std=1 / 30)

# Official notebooks: denoising.ipynb, inpainting.ipynb (the "kate"/"peppers" setup, used for
# pixel-drop and text masks), super-resolution.ipynb (×4 and ×8). The paper gives no ×2 or
# deblurring setup; they use the nearest official one.
_SPECS = (
    TaskSpec("denoise", "Denoise", lambda fill, scale, psf: IdentityOperator(), {1: _PAPER_DENOISE},
             volume=True, noise_from_image=True),
    TaskSpec("inpaint", "Inpaint (fill painted pixels)", lambda fill, scale, psf: InpaintOperator(fill),
             {1: Settings(iterations=6001, lr=0.01, reg_noise_std=0.03, skip_channels=128, upsample_mode="nearest")},
             needs_mask=True, volume=True),
    TaskSpec("sr", "Super-resolve", lambda fill, scale, psf: DownsampleOperator(scale),
             {2: Settings(iterations=2000, lr=0.01, reg_noise_std=0.03),
              4: Settings(iterations=2000, lr=0.01, reg_noise_std=0.03),
              8: Settings(iterations=4000, lr=0.01, reg_noise_std=0.05)},
             needs_scale=True, scales=(2, 4, 8)),
    TaskSpec("deblur", "Deblur (with a PSF layer)", lambda fill, scale, psf: BlurOperator(psf), {1: _PAPER_DENOISE},
             needs_psf=True),
    TaskSpec("jpeg", "Remove JPEG artifacts", lambda fill, scale, psf: IdentityOperator(),
             {1: replace(_PAPER_DENOISE, iterations=2400)}),
)

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def task_spec(name: str) -> TaskSpec:
    """The registered task ``name``, or one sentence listing the known ones."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


def widget_choices() -> tuple[tuple[str, str, int], ...]:
    """(menu label, task, scale factor) per entry of a Task menu: one per super-resolution factor."""
    return tuple(
        (f"{spec.label} ×{factor}" if spec.needs_scale else spec.label, spec.name, factor)
        for spec in _SPECS
        for factor in spec.scales
    )
