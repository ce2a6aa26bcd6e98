"""The one place that decides which axes of an array are planes, channels and space.

Either explicit (``axes="TZYX"``, ``"YXC"``: the letters bioimage tools use) or guessed: with
no ``channel_axis`` a last axis of 3 or 4 is RGB(A), as napari guesses; the last two other axes
(three for a volume) are space and every axis before them runs over planes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from .arrays import to_channels_first

__all__ = ["Layout", "guess_channel_axis"]


def guess_channel_axis(shape: tuple[int, ...], spatial_dims: int = 2) -> int | None:
    """-1 when the last axis looks like RGB(A) (3 or 4 long, after at least ``spatial_dims``
    others), else None."""
    return -1 if len(shape) > spatial_dims and shape[-1] in (3, 4) else None


def _axes_from_letters(shape: tuple[int, ...], axes: str, volume: bool) -> tuple[int | None, tuple[int, ...]]:
    """(channel axis, spatial axes) from an axes string such as ``"TYX"`` or ``"ZYXC"``."""
    letters = str(axes).upper()
    if len(letters) != len(shape):
        raise ValueError(f"axes {axes!r} names {len(letters)} axes but the image has {len(shape)} (shape {shape})")
    if len(set(letters)) != len(letters):
        raise ValueError(f"axes {axes!r} repeats a letter: name each axis once (e.g. 'TYX', 'ZYXC')")
    if "Y" not in letters or "X" not in letters:
        raise ValueError(f"axes {axes!r} needs a Y and an X axis (height and width), e.g. 'YX' or 'TYXC'")
    spatial = "ZYX" if volume else "YX"
    if volume and "Z" not in letters:
        raise ValueError(f"a volume needs a Z axis: axes {axes!r} has none (e.g. 'ZYX')")
    channel_axis = letters.index("C") if "C" in letters else None
    return channel_axis, tuple(sorted(letters.index(letter) for letter in spatial))


@dataclass(frozen=True)
class Layout:
    """Which axes of an array run over planes, which are space (2, or 3 for a volume) and which
    one holds channels."""

    shape: tuple[int, ...]
    channel_axis: int | None
    plane_axes: tuple[int, ...]
    spatial_axes: tuple[int, ...]

    @classmethod
    def of(
        cls, shape: tuple[int, ...], channel_axis: int | None = None, *, axes: str | None = None, volume: bool = False
    ) -> Layout:
        shape = tuple(int(n) for n in shape)
        ndim = len(shape)
        dims = 3 if volume else 2
        if axes is not None:
            if channel_axis is not None:
                raise ValueError("give either axes or channel_axis, not both (axes names the channels with 'C')")
            channel_axis, spatial = _axes_from_letters(shape, axes, volume)
        else:
            if channel_axis is None:
                channel_axis = guess_channel_axis(shape, dims)
            if channel_axis is not None:
                if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
                    raise ValueError(f"channel_axis must be a whole number, got {channel_axis!r}")
                if not -ndim <= channel_axis < ndim:
                    raise ValueError(f"channel_axis {channel_axis} is out of range for an image of shape {shape}")
                channel_axis = int(channel_axis) % ndim
            others = [axis for axis in range(ndim) if axis != channel_axis]
            if len(others) < dims:
                if volume:
                    raise ValueError(
                        f"a volume has three spatial axes (depth, height, width), with or without a channel "
                        f"axis; got shape {shape} (give channel_axis if one of its axes is channels)"
                    )
                raise ValueError(f"an image of shape {shape} has no 2D planes: it needs a height and a width axis")
            spatial = tuple(others[-dims:])
        planes = tuple(axis for axis in range(ndim) if axis != channel_axis and axis not in spatial)
        return cls(shape, channel_axis, planes, spatial)

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.shape[axis] for axis in self.spatial_axes)

    @property
    def channels(self) -> int:
        return 1 if self.channel_axis is None else self.shape[self.channel_axis]

    @property
    def planes(self) -> int:
        return int(np.prod([self.shape[axis] for axis in self.plane_axes], dtype=np.int64))

    @property
    def plane_channel_axis(self) -> int | None:
        """The channel axis within one plane, ``array[self.index(...)]``."""
        if self.channel_axis is None:
            return None
        return sum(axis not in self.plane_axes for axis in range(self.channel_axis))

    def plane(self) -> Layout:
        """The layout of one plane, ``array[self.index(...)]``."""
        kept = [axis for axis in range(len(self.shape)) if axis not in self.plane_axes]
        return Layout(tuple(self.shape[axis] for axis in kept), self.plane_channel_axis, (),
                      tuple(kept.index(axis) for axis in self.spatial_axes))

    def positions(self) -> Iterator[tuple[int, ...]]:
        """Positions along the plane axes, in C order (the last plane axis varies fastest)."""
        return product(*(range(self.shape[axis]) for axis in self.plane_axes))

    def index(self, position: tuple[int, ...]) -> tuple:
        """The index of one plane (all channels) in the array."""
        index: list[Any] = [slice(None)] * len(self.shape)
        for axis, at in zip(self.plane_axes, position, strict=True):
            index[axis] = at
        return tuple(index)

    def output_shape(self, factor: int) -> tuple[int, ...]:
        return tuple(size * factor if axis in self.spatial_axes else size for axis, size in enumerate(self.shape))

    def to_channels_first(self, array: np.ndarray) -> np.ndarray:
        """One plane (or volume) as (C, *spatial)."""
        return to_channels_first(np.asarray(array), self.channel_axis, len(self.spatial_axes))

    def window_index(self, window: tuple[slice, ...]) -> tuple:
        """The index of a spatial window of a plane, all channels, in the plane's own layout."""
        index: list[Any] = [slice(None)] * len(self.shape)
        for axis, part in zip(self.spatial_axes, window, strict=True):
            index[axis] = part
        return tuple(index)

    def read(self, image: Any, window: tuple[slice, ...]) -> np.ndarray:
        """A spatial window of a plane as (C, h, w), reading only that window (dask, zarr)."""
        return self.to_channels_first(np.asarray(image[self.window_index(window)]))

    def mask_for(self, mask: Any, position: tuple[int, ...]) -> np.ndarray | None:
        """One plane's mask from a mask shared by all planes or one per plane."""
        if mask is None:
            return None
        if np.ndim(mask) == len(self.spatial_axes):
            return np.asarray(mask)
        mask_axes = [axis for axis in range(len(self.shape)) if axis != self.channel_axis]
        index: list[Any] = [slice(None)] * len(mask_axes)
        for axis, at in zip(self.plane_axes, position, strict=True):
            index[mask_axes.index(axis)] = at
        return np.asarray(mask[tuple(index)])

    def mask_covers(self, mask: Any) -> np.ndarray:
        """Where a mask (checked by :meth:`check_mask`) is nonzero, broadcast to the image's shape."""
        mask = np.asarray(mask) != 0
        if mask.ndim == len(self.spatial_axes):
            # The plane's mask, put on the image's spatial axes (ascending, as Layout.of gives them).
            mask = np.expand_dims(mask, tuple(axis for axis in range(len(self.shape)) if axis not in self.spatial_axes))
        elif self.channel_axis is not None:
            mask = np.expand_dims(mask, self.channel_axis)
        return np.broadcast_to(mask, self.shape)

    def check_mask(self, mask: Any) -> None:
        """A mask is one plane's spatial shape (shared by all planes) or the array's without channels."""
        if mask is None:
            return
        per_plane = tuple(size for axis, size in enumerate(self.shape) if axis != self.channel_axis)
        if tuple(np.shape(mask)) not in (self.spatial, per_plane):
            where = f"the image's spatial shape {self.spatial}"
            if self.plane_axes:
                where = f"a plane {self.spatial} nor the stack without channels {per_plane}"
                raise ValueError(f"mask shape {tuple(np.shape(mask))} matches neither {where}")
            raise ValueError(f"mask shape {tuple(np.shape(mask))} does not match {where}")
