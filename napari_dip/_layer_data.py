"""Pure functions between napari layers and the core: which pixels go in, what layer comes out.

Nothing here imports Qt, napari or torch, so every rule (which plane, which mask, where the
result sits, how it is named) is tested on plain arrays.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "LayerDataTuple",
    "MIN_REGION",
    "Region",
    "Selection",
    "StackSelection",
    "contrast_limits_for",
    "fill_mask",
    "mask_score",
    "new_mask_name",
    "result_layer_data",
    "result_name",
    "result_placement",
    "select_input",
    "select_stack",
    "select_volume",
    "stack_mask",
    "volume_mask",
]

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

# Fewest pixels a region may have along each side: a network with a handful of pixels to fit
# learns nothing useful, and a one-pixel slip of the mouse should not start a run.
MIN_REGION = 8


@dataclass(frozen=True)
class Region:
    """A rectangle of an image's spatial plane, ``rows`` and ``columns`` as (start, stop) pixel
    indices: what a region run restores, and where its result goes."""

    rows: tuple[int, int]
    columns: tuple[int, int]

    @classmethod
    def around(cls, points: Any, spatial_shape: Sequence[int]) -> Region:
        """The pixels whose centres lie within the bounding box of ``points`` (N, 2): (row,
        column) positions in the image's data coordinates, where pixel ``i`` is centred on ``i``.

        Clipped to the image; one sentence if it has fewer than :data:`MIN_REGION` pixels a side.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if points.size == 0 or not np.isfinite(points).all():
            raise ValueError("the region has no corners: draw a rectangle in the Shapes layer")
        low, high = points.min(axis=0), points.max(axis=0)
        start = np.clip(np.ceil(low - 1e-6), 0, spatial_shape).astype(int)
        stop = np.clip(np.floor(high + 1e-6) + 1, 0, spatial_shape).astype(int)
        region = cls((int(start[0]), int(stop[0])), (int(start[1]), int(stop[1])))
        height, width = region.shape
        if height <= 0 or width <= 0:
            raise ValueError(
                f"the region lies outside the image ({spatial_shape[0]}×{spatial_shape[1]} pixels): "
                "draw the rectangle over it"
            )
        if min(height, width) < MIN_REGION:
            raise ValueError(
                f"the region is {height}×{width} pixels: draw a rectangle at least {MIN_REGION} pixels each way"
            )
        return region

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows[1] - self.rows[0], self.columns[1] - self.columns[0]

    def covers(self, spatial_shape: Sequence[int]) -> bool:
        """Whether the region is the whole plane."""
        return self.rows == (0, spatial_shape[0]) and self.columns == (0, spatial_shape[1])

    def crop(self, data: Any, *, rgb: bool = False) -> Any:
        """``data`` (..., H, W), or (..., H, W, C) when ``rgb``, cut to the region: a view of an
        array (a lazy slice of a dask or zarr one), copied later by the ``select_*`` functions."""
        index = (Ellipsis, slice(*self.rows), slice(*self.columns))
        return data[index + (slice(None),) if rgb else index]

    def translate(self, scale: Sequence[float], translate: Sequence[float]) -> tuple[float, ...]:
        """``translate`` (of the axes a result keeps, the spatial ones last) moved so that a layer
        of the region's pixels sits exactly over them."""
        moved = [float(t) for t in translate]
        moved[-2] += self.rows[0] * float(scale[-2])
        moved[-1] += self.columns[0] * float(scale[-1])
        return tuple(moved)

    def label(self) -> str:
        """``rows 10-60, columns 20-70`` (stops exclusive, as in a slice)."""
        return f"rows {self.rows[0]}-{self.rows[1]}, columns {self.columns[0]}-{self.columns[1]}"

    def as_metadata(self) -> dict[str, list[int]]:
        return {"rows": list(self.rows), "columns": list(self.columns)}


@dataclass(frozen=True)
class Selection:
    """The part of a layer's data that one run restores.

    ``image`` is 2D, (H, W, 3|4) for RGB, or (C, H, W) when ``channel_axis`` is 0. ``plane`` maps
    each indexed-out axis of the layer to its index (empty when the whole layer goes in), and
    ``kept_axes`` lists the layer axes that remain, in order, so scale/translate can follow them.
    """

    image: np.ndarray
    channel_axis: int | None
    plane: dict[int, int] = field(default_factory=dict)
    kept_axes: tuple[int, ...] = ()

    @property
    def spatial_axes(self) -> tuple[int, int]:
        """Where height and width are in ``image``."""
        return (1, 2) if self.channel_axis == 0 else (0, 1)

    def output_shape(self, factor: int = 1) -> tuple[int, ...]:
        """Shape of the restoration: the spatial axes ``factor`` times larger."""
        shape = list(self.image.shape)
        for axis in self.spatial_axes:
            shape[axis] *= factor
        return tuple(shape)


@dataclass(frozen=True)
class StackSelection:
    """A whole stack, restored plane by plane by the core's ``restore_stack_iter``.

    ``image`` is the layer's data and ``channel_axis`` where its channels are, as the core takes
    it (a leading axis, -1 for RGB, None for none). It reads like a :class:`Selection` where a run
    plan needs one: no axis is indexed out (``plane`` is empty) and every axis is kept.
    """

    image: Any
    channel_axis: int | None

    @property
    def plane(self) -> dict[int, int]:
        return {}

    @property
    def kept_axes(self) -> tuple[int, ...]:
        return tuple(range(len(self.image.shape)))


def _leading_ndim(shape: Sequence[int], rgb: bool) -> int:
    """Axes in front of the two spatial ones (and of the RGB axis)."""
    return len(shape) - (3 if rgb else 2)


def _check_axes(shape: tuple[int, ...], rgb: bool, channel_axis: int | None) -> int:
    """The number of leading axes, once the shape and the channel axis are known to fit."""
    if len(shape) < 2 or (rgb and len(shape) < 3):
        raise ValueError(f"the image layer must have at least two spatial dimensions, got shape {shape}")
    leading = _leading_ndim(shape, rgb)
    if channel_axis is not None:
        if rgb:
            raise ValueError("an RGB layer already has its channels last; choose no channel axis")
        if not 0 <= channel_axis < leading:
            raise ValueError(
                f"channel axis {channel_axis} is not one of the image's leading axes (0 to {leading - 1})"
            )
    return leading


def select_input(
    data: Any, *, rgb: bool, step: Sequence[int] = (), channel_axis: int | None = None
) -> Selection:
    """Copy out the plane to restore from a layer's ``data``.

    ``step`` gives an index for each leading axis (the viewer's current position in data
    coordinates); it is only used when the layer has more than two non-channel dimensions.
    ``channel_axis`` (a leading axis, non-RGB layers only) is kept whole and restored as channels.
    The copy means the worker never shares memory with the layer, whatever the user does to it.
    """
    shape = tuple(data.shape)
    leading = _check_axes(shape, rgb, channel_axis)
    image, plane, kept = _take(data, leading, {channel_axis}, step)
    return Selection(image, 0 if channel_axis is not None else None, plane, kept)


def _take(
    data: Any, leading: int, keep: set[int | None], step: Sequence[int]
) -> tuple[np.ndarray, dict[int, int], tuple[int, ...]]:
    """A copy of ``data`` indexed at ``step`` on every leading axis not in ``keep``, with the
    axes indexed out (and where) and the axes kept."""
    shape = tuple(data.shape)
    plane: dict[int, int] = {}
    index: list[int | slice] = []
    for axis in range(leading):
        if axis in keep:
            index.append(slice(None))
            continue
        if axis >= len(step):
            raise ValueError(f"no position given for axis {axis} of an image of shape {shape}")
        position = int(np.clip(step[axis], 0, shape[axis] - 1))
        plane[axis] = position
        index.append(position)
    kept = tuple(axis for axis in range(len(shape)) if axis not in plane)
    return np.array(data[tuple(index)], copy=True), plane, kept


def select_volume(
    data: Any, *, rgb: bool, step: Sequence[int] = (), channel_axis: int | None = None
) -> Selection:
    """Copy out the volume to restore as a whole with a 3D network: the last leading axis (other
    than ``channel_axis``) is kept as the depth, with height and width; any axes before it (time
    points, say) are taken at the viewer's position ``step``, as by :func:`select_input`.

    The ``image`` is (D, H, W), (D, H, W, 3|4) for RGB, or (C, D, H, W) with ``channel_axis`` 0.
    """
    shape = tuple(data.shape)
    leading = _check_axes(shape, rgb, channel_axis)
    planes = [axis for axis in range(leading) if axis != channel_axis]
    if not planes:
        raise ValueError(f"an image of shape {shape} has no depth axis: a volume needs at least three dimensions")
    depth = planes[-1]
    image, plane, kept = _take(data, leading, {channel_axis, depth}, list(step) + [0] * (leading - len(step)))
    if channel_axis is not None and channel_axis > depth:
        # Channels first, as the core and Selection take them: (Z, C, Y, X) -> (C, Z, Y, X).
        image = np.moveaxis(image, 1, 0)
        kept = (channel_axis, depth, *kept[2:])
    return Selection(image, 0 if channel_axis is not None else None, plane, kept)


def select_stack(data: Any, *, rgb: bool, channel_axis: int | None = None) -> StackSelection:
    """The whole of a layer's ``data``, to restore every plane: all leading axes but
    ``channel_axis`` (a leading axis, non-RGB layers only, restored as channels).

    An in-memory array is copied, as by :func:`select_input`, so the worker never shares memory
    with the layer. A lazy one (dask, zarr) is handed on as it is: the core reads it one plane at
    a time, and copying it would load the whole stack.
    """
    shape = tuple(data.shape)
    leading = _check_axes(shape, rgb, channel_axis)
    if leading - (channel_axis is not None) < 1:
        raise ValueError(f"an image of shape {shape} has no planes beyond its channels: restore the current plane")
    image = np.array(data, copy=True) if isinstance(data, np.ndarray) else data
    return StackSelection(image, -1 if rgb else channel_axis)


def _labels_cover_the_stack(labels_shape: tuple[int, ...], image_shape: tuple[int, ...], rgb: bool) -> bool:
    """Whether a labels layer has the image's full non-RGB shape (one mask per plane) rather
    than its spatial shape (one mask for all planes); any other shape is an error."""
    full_shape = image_shape[:-1] if rgb else image_shape
    spatial = full_shape[-2:]
    if labels_shape == spatial:
        return False
    if labels_shape == full_shape:
        return True
    accepted = f"{spatial}" if spatial == full_shape else f"{spatial} or {full_shape}"
    raise ValueError(
        f"mask shape {labels_shape} does not match the image's shape: use a labels layer of shape "
        f"{accepted} (press New mask to make one)"
    )


def new_mask_name(image_name: str, taken: Collection[str]) -> str:
    """``camera mask``, or ``camera mask 2``, ``camera mask 3``, ... when that name is taken
    (napari's own renaming, ``camera mask [1]``, reads like an index)."""
    name, number = f"{image_name} mask", 2
    while name in taken:
        name, number = f"{image_name} mask {number}", number + 1
    return name


def _owner(labels_name: str, image_names: Collection[str]) -> str | None:
    """The image a labels layer is named after (``<image> mask ...``, as the samples and New mask
    name them): the longest image name that starts its name."""
    owners = [name for name in image_names if labels_name == name or labels_name.startswith(f"{name} ")]
    return max(owners, key=len, default=None)


def mask_score(
    labels_name: str, labels_shape: Sequence[int], image_name: str, image_shape: Sequence[int], *, rgb: bool,
    image_names: Collection[str],
) -> tuple[bool, bool] | None:
    """How well a labels layer suits an image as its mask, higher is better: (named after it, of
    a shape it accepts). None for a mask named after another of ``image_names``: proposing one
    image's mask for another (of the same size) would fill the wrong pixels without a word."""
    owner = _owner(labels_name, image_names)
    if owner is not None and owner != image_name:
        return None
    full_shape = tuple(image_shape[:-1] if rgb else image_shape)
    return owner == image_name, tuple(labels_shape) in (full_shape[-2:], full_shape)


_EMPTY_MASK = "the mask is empty: paint the pixels to fill (any label above 0)"


def _painted_at(labels: Any, selection: Selection) -> np.ndarray:
    """Painted (label > 0) pixels of a labels layer of the image's full shape, at the axes the
    selection indexed out; the axes it kept stay whole."""
    index = tuple(
        selection.plane[axis] if axis in selection.plane else slice(None) for axis in range(len(labels.shape) - 2)
    )
    return np.asarray(labels[index]) > 0


def fill_mask(labels: Any, *, image_shape: Sequence[int], rgb: bool, selection: Selection) -> np.ndarray:
    """The (H, W) boolean mask of pixels to fill: painted labels (value > 0).

    The labels layer is either 2D with the image's spatial shape, or has the image's full
    non-RGB shape, in which case the plane being restored is taken from it; painted on any
    channel counts for all channels.
    """
    if _labels_cover_the_stack(tuple(labels.shape), tuple(image_shape), rgb):
        mask = _painted_at(labels, selection)
        if mask.ndim == 3:
            mask = mask.any(axis=0)
    else:
        mask = np.asarray(labels) > 0
    if not mask.any():
        raise ValueError(_EMPTY_MASK)
    return mask


def stack_mask(labels: Any, *, image_shape: Sequence[int], rgb: bool, selection: StackSelection) -> np.ndarray:
    """The boolean mask of pixels to fill in every plane, as the core's stack restoration takes
    it: (H, W) from a 2D labels layer, used for every plane, or one per plane from a labels layer
    of the image's full non-RGB shape (painted on any channel counts for all channels).

    Every plane must have painted pixels: the core would stop at the first that has none,
    possibly after restoring the others for hours.
    """
    if not _labels_cover_the_stack(tuple(labels.shape), tuple(image_shape), rgb):
        mask = np.asarray(labels) > 0
        if not mask.any():
            raise ValueError(_EMPTY_MASK)
        return mask
    mask = np.asarray(labels) > 0
    plane_axes = list(range(mask.ndim - 2))
    if not rgb and selection.channel_axis is not None:
        mask = mask.any(axis=selection.channel_axis)
        plane_axes.remove(selection.channel_axis)
    painted = mask.reshape(-1, *mask.shape[-2:]).any(axis=(1, 2))
    if not painted.any():
        raise ValueError(_EMPTY_MASK)
    if not painted.all():
        first = np.unravel_index(int(np.argmin(painted)), mask.shape[:-2])
        where = " ".join(f"{axis}={index}" for axis, index in zip(plane_axes, first, strict=True))
        raise ValueError(
            f"the mask is empty on {int((~painted).sum())} of {painted.size} planes (first: plane {where}): "
            "paint every plane, or use a 2D labels layer to fill the same pixels in all planes"
        )
    return mask


def volume_mask(labels: Any, *, image_shape: Sequence[int], rgb: bool, selection: Selection) -> np.ndarray:
    """The (D, H, W) boolean mask of voxels to fill in a volume :class:`Selection`: a 2D labels
    layer fills the same pixels in every slice; one of the image's full non-RGB shape is taken at
    the selection's position (painted on any channel counts for all channels)."""
    depth = selection.image.shape[1 if selection.channel_axis == 0 else 0]
    if _labels_cover_the_stack(tuple(labels.shape), tuple(image_shape), rgb):
        mask = _painted_at(labels, selection)
        if mask.ndim == 4:
            # Channels and depth, in the layer's order; the selection lists the channel axis first.
            leading_kept = sorted(axis for axis in range(len(labels.shape) - 2) if axis not in selection.plane)
            mask = mask.any(axis=leading_kept.index(selection.kept_axes[0]))
    else:
        mask = np.broadcast_to(np.asarray(labels) > 0, (depth, *labels.shape))
    if not mask.any():
        raise ValueError(_EMPTY_MASK)
    return mask


def result_name(
    source: str, task: str, factor: int = 1, plane: dict[int, int] | None = None, volume: bool = False,
    region: Region | None = None,
) -> str:
    """``cells (DIP denoise)``, ``cells (DIP sr ×4)``, ``stack (DIP denoise, plane 0=5)``,
    ``stack (DIP denoise 3D)``, ``cells (DIP denoise, rows 10-60, columns 20-70)``."""
    label = f"DIP {task}" + (f" ×{factor}" if factor > 1 else "") + (" 3D" if volume else "")
    if plane:
        label += ", plane " + " ".join(f"{axis}={index}" for axis, index in plane.items())
    if region is not None:
        label += ", " + region.label()
    return f"{source} ({label})"


def result_placement(
    scale: Sequence[float], translate: Sequence[float], factor: int = 1
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Scale and translate that make an output ``factor`` times larger overlay its input.

    Only the last two (spatial) axes change: pixels get ``factor`` times smaller, and since napari
    places pixel centres at ``translate + index * scale``, the first output pixel's centre moves
    by ``(1/factor - 1) / 2`` input pixels so that both images cover the same extent.
    """
    scale = tuple(float(s) for s in scale)
    translate = tuple(float(t) for t in translate)
    if factor == 1:
        return scale, translate
    spatial_scale = tuple(s / factor for s in scale[-2:])
    spatial_translate = tuple(t + (1 / factor - 1) / 2 * s for t, s in zip(translate[-2:], scale[-2:], strict=True))
    return scale[:-2] + spatial_scale, translate[:-2] + spatial_translate


def contrast_limits_for(data: np.ndarray, reference: Sequence[float] | None = None) -> tuple[float, float]:
    """Display range: the dtype's for uint8/bool and [0, 1] floats, else ``reference`` (the input
    layer's limits, so both display alike) or the data's own range."""
    if data.dtype == np.uint8:
        return 0.0, 255.0
    if data.dtype == bool:
        return 0.0, 1.0
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 1.0)
    if np.issubdtype(data.dtype, np.floating) and low >= 0 and high <= 1:
        return 0.0, 1.0
    if reference is not None:
        return float(reference[0]), float(reference[1])
    return (low, high) if high > low else (low, low + 1)


def result_layer_data(
    image: np.ndarray,
    *,
    name: str,
    scale: Sequence[float],
    translate: Sequence[float],
    factor: int = 1,
    rgb: bool = False,
    colormap: str | None = None,
    reference_limits: Sequence[float] | None = None,
    metadata: dict[str, Any] | None = None,
) -> LayerDataTuple:
    """The layer for a restoration (or its live preview), given the *input's* ``scale`` and
    ``translate`` restricted to the axes the output keeps."""
    image = np.asarray(image)
    spatial_ndim = image.ndim - (1 if rgb else 0)
    if len(scale) != spatial_ndim or len(translate) != spatial_ndim:
        raise ValueError(
            f"scale {tuple(scale)} and translate {tuple(translate)} need one value per non-RGB axis "
            f"of the result (shape {image.shape})"
        )
    out_scale, out_translate = result_placement(scale, translate, factor)
    meta: dict[str, Any] = {
        "name": name,
        "scale": out_scale,
        "translate": out_translate,
        "rgb": rgb,
        "contrast_limits": contrast_limits_for(image, reference_limits),
        "metadata": dict(metadata or {}),
    }
    if colormap is not None and not rgb:
        meta["colormap"] = colormap
    return image, meta, "image"
