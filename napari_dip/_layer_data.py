"""Pure functions between napari layers and the core: which pixels go in, what layer comes out.

Nothing here imports Qt, napari or torch, so every rule (which plane, which mask, where the
result sits, how it is named) is tested on plain arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "LayerDataTuple",
    "Selection",
    "contrast_limits_for",
    "fill_mask",
    "result_layer_data",
    "result_name",
    "result_placement",
    "select_input",
]

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]


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


def _leading_ndim(shape: Sequence[int], rgb: bool) -> int:
    """Axes in front of the two spatial ones (and of the RGB axis)."""
    return len(shape) - (3 if rgb else 2)


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
    plane: dict[int, int] = {}
    index: list[int | slice] = []
    for axis in range(leading):
        if axis == channel_axis:
            index.append(slice(None))
            continue
        if axis >= len(step):
            raise ValueError(f"no position given for axis {axis} of an image of shape {shape}")
        position = int(np.clip(step[axis], 0, shape[axis] - 1))
        plane[axis] = position
        index.append(position)
    kept = tuple(axis for axis in range(len(shape)) if axis not in plane)
    image = np.array(data[tuple(index)], copy=True)
    return Selection(image, 0 if channel_axis is not None else None, plane, kept)


def fill_mask(labels: Any, *, image_shape: Sequence[int], rgb: bool, selection: Selection) -> np.ndarray:
    """The (H, W) boolean mask of pixels to fill: painted labels (value > 0).

    The labels layer is either 2D with the image's spatial shape, or has the image's full
    non-RGB shape, in which case the plane being restored is taken from it; painted on any
    channel counts for all channels.
    """
    labels_shape = tuple(labels.shape)
    image_shape = tuple(image_shape)
    full_shape = image_shape[:-1] if rgb else image_shape
    spatial = full_shape[-2:]
    if labels_shape == spatial:
        mask = np.asarray(labels) > 0
    elif labels_shape == full_shape:
        index = tuple(
            selection.plane[axis] if axis in selection.plane else slice(None)
            for axis in range(len(full_shape) - 2)
        )
        mask = np.asarray(labels[index]) > 0
        if mask.ndim == 3:
            mask = mask.any(axis=0)
    else:
        accepted = f"{spatial}" if spatial == full_shape else f"{spatial} or {full_shape}"
        raise ValueError(
            f"mask shape {labels_shape} does not match the image's shape: use a labels layer of shape "
            f"{accepted} (press New mask to make one)"
        )
    if not mask.any():
        raise ValueError("the mask is empty: paint the pixels to fill (any label above 0)")
    return mask


def result_name(source: str, task: str, factor: int = 1, plane: dict[int, int] | None = None) -> str:
    """``cells (DIP denoise)``, ``cells (DIP sr ×4)``, ``stack (DIP denoise, plane 0=5)``."""
    label = f"DIP {task}" + (f" ×{factor}" if factor > 1 else "")
    if plane:
        label += ", plane " + " ".join(f"{axis}={index}" for axis, index in plane.items())
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
