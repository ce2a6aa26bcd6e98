"""Guided restoration: an image of the same scene takes the place of the network's random code.

The paper's flash/no-flash experiment feeds the flash photograph to the network as its input z
and fits the no-flash one, so the result has the target's lighting and the guide's structure
(and its low noise). A clean channel guiding a noisy one of the same sample is the same idea in
microscopy. The guide's channel count is the network's input depth.

Layout: a guide has the spatial shape of what the network produces (the image's, or for
super-resolution the result's, ``scale`` times larger), with any number of its own channels on a
last axis: ``(H, W)`` or ``(H, W, C)``, ``(D, H, W[, C])`` for a volume. A stack takes one such
guide for every plane, or one per plane with the stack's plane axes first, in order:
``(T, H, W[, C])``. Where a shape reads both ways (a ``(32, 32, 32)`` guide for a stack of 32
planes of 32²), it is one guide per plane.

The guide is stretched to [0, 1] once, as a whole, from its minimum to its maximum, whatever its
dtype: it is a code, not an image whose levels mean something, and a dim one (a 12-bit camera's
image as uint16 or divided by 65535, a dark flash photograph) would otherwise be a faint signal
under the input noise (``reg_noise_std``), which made guided results worse than unguided ones.
The result is a :class:`PreparedGuide`, whose tiles and planes (views of it) are not stretched
again, so they share one scale. A constant guide (or, one per plane, a constant plane's) is
refused by :func:`check_guide`: as the only input it makes the result flat.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .layout import Layout

__all__ = ["PreparedGuide", "prepare_guide", "check_guide", "guide_for", "cut_guide", "guide_code"]


class PreparedGuide(np.ndarray):
    """A guide already stretched to [0, 1] (float32): its views (a plane's guide, a tile's part)
    are kept as they are when options are replaced for a plane or a tile."""


def prepare_guide(guide: Any) -> np.ndarray | None:
    """The guide stretched to float32 in [0, 1] (a :class:`PreparedGuide`), or one sentence
    saying why it cannot be one."""
    if guide is None:
        return None
    if isinstance(guide, PreparedGuide):
        return guide
    if not hasattr(guide, "shape") or not hasattr(guide, "dtype"):
        guide = np.asarray(guide)
    dtype = np.dtype(guide.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"the guide must be an image of real numbers, got dtype {dtype}")
    guide = np.asarray(guide)
    if guide.ndim < 2 or guide.size == 0:
        raise ValueError(f"the guide must be an image with a height and a width, got shape {guide.shape}")
    if np.issubdtype(dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(guide)))
        if bad:
            raise ValueError(f"the guide contains {bad} NaN or infinite value(s); replace them before restoring")
    # One scale for every channel, tile and plane.
    values = guide.astype(np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    if not math.isfinite(high - low):
        raise ValueError("the guide's values span more than a float64 can hold: rescale it first")
    unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.clip(unit, 0.0, 1.0).astype(np.float32).view(PreparedGuide)


def _shapes(guide: np.ndarray, spatial: tuple[int, ...]) -> bool:
    """Whether ``guide`` is one guide of ``spatial``, with or without a channel axis last."""
    return guide.ndim in (len(spatial), len(spatial) + 1) and guide.shape[: len(spatial)] == spatial


def check_guide(guide: np.ndarray | None, layout: Layout, factor: int = 1) -> None:
    """Refuse, before any work, a guide whose shape fits neither a plane nor the stack's planes,
    or that is constant (for one guide per plane: any plane's)."""
    if guide is None:
        return
    spatial = tuple(n * factor for n in layout.spatial)
    planes = tuple(layout.shape[axis] for axis in layout.plane_axes)
    # One guide per plane first, as guide_for reads a shape that fits both ways.
    if planes and guide.shape[: len(planes)] == planes and _shapes(guide[(0,) * len(planes)], spatial):
        for position in np.ndindex(*planes):
            where = position[0] if len(position) == 1 else position
            _check_varies(guide[position], f"the guide of plane {where}")
        return
    if _shapes(guide, spatial):
        _check_varies(guide)
        return
    what = "the image's spatial shape" if factor == 1 else f"the result's spatial shape ({factor} × the image's)"
    if planes:
        raise ValueError(
            f"guide shape {guide.shape} matches neither a plane {spatial} nor the stack's planes {planes + spatial} "
            "(with or without a channel axis last)"
        )
    raise ValueError(
        f"guide shape {guide.shape} does not match {what} {spatial}: give a guide of that size, "
        "with or without a channel axis last"
    )


def _check_varies(guide: np.ndarray, what: str = "the guide") -> None:
    """Refuse a constant guide: as the network's only input it makes every pixel of the result
    the same (the fit can only match the image's mean)."""
    if float(np.max(guide)) == float(np.min(guide)):
        raise ValueError(
            f"{what} is constant: as the network's input it would make the result flat; "
            "give an image of the scene, or leave the guide out"
        )


def guide_for(guide: np.ndarray | None, layout: Layout, position: tuple[int, ...], factor: int = 1) -> Any:
    """One plane's guide, from a guide shared by every plane or one per plane."""
    if guide is None:
        return None
    planes = tuple(layout.shape[axis] for axis in layout.plane_axes)
    if planes and guide.shape[: len(planes)] == planes and _shapes(guide[(0,) * len(planes)],
                                                                   tuple(n * factor for n in layout.spatial)):
        return guide[tuple(position)]
    return guide


def cut_guide(guide: np.ndarray | None, window: tuple[slice, ...], factor: int = 1) -> np.ndarray | None:
    """The part of a plane's guide under a tile ``window`` of the input (``factor`` times larger
    for super-resolution, whose guide is at the result's resolution)."""
    if guide is None:
        return None
    return guide[tuple(slice(part.start * factor, part.stop * factor) for part in window)]


def guide_code(guide: np.ndarray, spatial: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """The network's input code from a prepared guide: (C, *out_shape) float32, the guide's
    channels first, mirror-padded to the network's (padded) output shape as the image is.

    ``spatial`` is the unpadded output shape the guide must have.
    """
    spatial = tuple(spatial)
    if not _shapes(guide, spatial):
        raise ValueError(
            f"guide shape {guide.shape} does not match the spatial shape {spatial} of the fit's output: "
            "give a guide of that size, with or without a channel axis last"
        )
    chw = guide[None] if guide.ndim == len(spatial) else np.moveaxis(guide, -1, 0)
    pads = ((0, 0),) + tuple((0, target - n) for n, target in zip(spatial, out_shape, strict=True))
    return np.ascontiguousarray(np.pad(chw, pads, mode="symmetric"), dtype=np.float32)
