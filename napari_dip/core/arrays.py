"""The one place where user arrays become float32 CHW in [0, 1], and come back.

Any dtype and range goes in; the result has the input's dtype and range. Spatial sizes are padded
(never cropped) to what the network needs and cropped back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Intensity", "to_channels_first", "from_channels_first", "pad_to_multiple", "check_finite", "finite_copy",
           "fill_nonfinite"]


def check_finite(array: np.ndarray, name: str = "image") -> None:
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(f"the {name} contains {int(bad.sum())} NaN or infinite value(s); {finite_fix(name)}")


def fill_nonfinite(array: np.ndarray) -> None:
    """Replace, in place, every NaN or infinite value by the smallest finite one (0 if none)."""
    finite = np.isfinite(array)
    array[~finite] = array[finite].min() if finite.any() else 0


def finite_copy(array: np.ndarray) -> np.ndarray:
    """A copy with :func:`fill_nonfinite` applied: what a result can hold where such pixels are
    filled (the command line checks its output's range on it before any work; the fit fills
    each channel on its own)."""
    filled = array.copy()
    fill_nonfinite(filled)
    return filled


def finite_fix(name: str) -> str:
    """What to do about NaN or infinite values in ``name`` (the image, the PSF, the guide...)."""
    if name == "image":
        # Inpainting fits the known pixels only, but reads the range and dtype of every pixel.
        return "replace them with numbers before restoring, or mark them in an inpainting mask to have them filled"
    return "replace them with numbers"


def to_channels_first(image: np.ndarray, channel_axis: int | None, spatial_dims: int = 2) -> np.ndarray:
    """(H, W), or (D, H, W) for a volume, with or without a channel axis anywhere -> (C, ...)."""
    what = "(height, width)" if spatial_dims == 2 else "(depth, height, width)"
    if channel_axis is None:
        if spatial_dims == 3 and image.ndim != 3:
            raise ValueError(
                f"a volume has three spatial axes (depth, height, width), with or without a channel "
                f"axis; got shape {image.shape} (give channel_axis if one of its axes is channels)"
            )
        if image.ndim != spatial_dims:
            raise ValueError(
                f"an image of shape {image.shape} needs channel_axis: "
                "restore() takes 2D planes, with or without one channel axis"
            )
        return image[None]
    if image.ndim != spatial_dims + 1:
        raise ValueError(
            f"an image of shape {image.shape} with channel_axis={channel_axis} must have "
            f"{spatial_dims + 1} dimensions, {what} and channels"
        )
    return np.moveaxis(image, channel_axis, 0)


def from_channels_first(chw: np.ndarray, channel_axis: int | None) -> np.ndarray:
    if channel_axis is None:
        return chw[0]
    return np.moveaxis(chw, 0, channel_axis)


@dataclass(frozen=True)
class Intensity:
    """How stored values map to [0, 1]: ``value = low + unit * (high - low)``.

    uint8 and float images already in [0, 1] keep their nominal range (so σ = 25/255 means what
    it says); other images (uint16 microscopy, floats in any range) are stretched per channel
    from their minimum to their maximum so that the network sees its full output range.
    """

    low: np.ndarray  # (C, 1, 1), or (C, 1, 1, 1) for a volume
    high: np.ndarray
    dtype: np.dtype

    @classmethod
    def of(cls, chw: np.ndarray) -> Intensity:
        channels = chw.shape[0]
        if chw.dtype == np.uint8:
            low, high = np.zeros(channels), np.full(channels, 255.0)
        elif np.issubdtype(chw.dtype, np.floating) and chw.min() >= 0 and chw.max() <= 1:
            low, high = np.zeros(channels), np.ones(channels)
        elif chw.dtype == bool:
            low, high = np.zeros(channels), np.ones(channels)
        else:
            return cls.spanned(chw)
        shape = (channels,) + (1,) * (chw.ndim - 1)
        return cls(low.reshape(shape), high.reshape(shape), chw.dtype)

    @classmethod
    def spanned(cls, chw: np.ndarray, where: np.ndarray | None = None, fallback: Intensity | None = None) -> Intensity:
        """Each channel stretched from its own minimum to its maximum (over the spatial pixels
        ``where`` is true, when given), whatever the dtype: a low-contrast uint8 image then spans
        the network's whole output range. A constant channel keeps ``fallback``'s range where
        given (a stretch has nothing to go by there)."""
        values = chw if where is None else chw[:, where]
        if values.size == 0:
            return fallback or cls.of(chw)
        flat = values.reshape(chw.shape[0], -1).astype(np.float64)
        low, high = flat.min(axis=1), flat.max(axis=1)
        constant = high <= low
        # A constant channel gets a span that is not lost in low's rounding (low + 1 == low
        # beyond 2**53).
        high = np.where(constant, low + np.maximum(1.0, np.spacing(np.abs(low))), high)
        if fallback is not None:
            low = np.where(constant, fallback.low.reshape(-1), low)
            high = np.where(constant, fallback.high.reshape(-1), high)
        shape = (chw.shape[0],) + (1,) * (chw.ndim - 1)
        return cls(low.reshape(shape), high.reshape(shape), chw.dtype)

    def to_unit(self, chw: np.ndarray) -> np.ndarray:
        unit = (chw.astype(np.float64) - self.low) / (self.high - self.low)
        return np.clip(unit, 0.0, 1.0).astype(np.float32)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Back to stored values; 0 and 1 give ``low`` and ``high`` exactly.

        Integers round to the nearest value and clip to the dtype's range; its full-scale ends
        come back exact even for 64-bit types, whose maximum is not a float64.
        """
        unit = np.asarray(unit, dtype=np.float64)
        values = self.low * (1.0 - unit) + self.high * unit
        if self.dtype == bool:
            return np.rint(values).astype(bool)
        if not np.issubdtype(self.dtype, np.integer):
            return values.astype(self.dtype)
        info = np.iinfo(self.dtype)
        values = np.rint(values)
        top = float(info.max)  # 2**63 (2**64) for int64 (uint64): one past the maximum
        full_scale = values >= top
        below_top = np.nextafter(top, 0.0) if int(top) > info.max else top
        stored = np.clip(values, info.min, below_top).astype(self.dtype)
        stored[full_scale] = info.max
        return stored


def pad_to_multiple(
    chw: np.ndarray, multiple: int | tuple[int, ...], minimum: int | tuple[int, ...] = 1
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Mirror-pad every spatial axis up to a multiple of ``multiple`` and at least ``minimum``
    (one value for all axes, or one per axis).

    Returns the padded array and the original spatial shape.
    """
    spatial = chw.shape[1:]
    multiples = (multiple,) * len(spatial) if isinstance(multiple, int) else tuple(multiple)
    minimums = (minimum,) * len(spatial) if isinstance(minimum, int) else tuple(minimum)
    target = tuple(
        max(-(-n // m) * m, -(-low // m) * m) for n, m, low in zip(spatial, multiples, minimums, strict=True)
    )
    if target != spatial:
        pads = ((0, 0),) + tuple((0, t - n) for n, t in zip(spatial, target, strict=True))
        chw = np.pad(chw, pads, mode="symmetric")
    return chw, tuple(spatial)
