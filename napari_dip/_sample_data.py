"""Sample data for File → Open Sample → napari-dip: one degraded image per kind of task, made
from images bundled with scikit-image (nothing is downloaded)."""

from __future__ import annotations

import numpy as np

from . import io
from ._layer_data import LayerDataTuple

__all__ = ["damaged_sample", "low_resolution_sample", "noisy_sample"]


def noisy_sample(size: int | None = None) -> list[LayerDataTuple]:
    """The astronaut with Gaussian noise of σ = 25/255 (the Deep Image Prior paper's setting)."""
    noisy, _ = io.sample_input("astronaut", "denoise", size=size)
    return [(noisy, {"name": "noisy astronaut"}, "image")]


def _scratches(shape: tuple[int, int]) -> np.ndarray:
    """A few thick strokes across the image, like scratches on a print."""
    from skimage.draw import line

    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    for r0, c0, r1, c1 in [(0.15, 0.05, 0.35, 0.95), (0.55, 0.1, 0.45, 0.9), (0.2, 0.7, 0.9, 0.6)]:
        rows, cols = line(int(r0 * (h - 1)), int(c0 * (w - 1)), int(r1 * (h - 1)), int(c1 * (w - 1)))
        for offset in range(-max(1, h // 100), max(1, h // 100) + 1):
            mask[np.clip(rows + offset, 0, h - 1), cols] = True
    return mask


def damaged_sample(size: int | None = None) -> list[LayerDataTuple]:
    """The cameraman with scratched-out pixels, and the labels layer marking them (for inpainting)."""
    image = io.sample_image("camera", size)
    mask = _scratches(image.shape)
    damaged = image.copy()
    damaged[mask] = 255
    return [
        (damaged, {"name": "damaged camera"}, "image"),
        (mask.astype(np.uint8), {"name": "damaged camera mask"}, "labels"),
    ]


def low_resolution_sample(size: int | None = None) -> list[LayerDataTuple]:
    """Chelsea the cat at a quarter of the resolution (for super-resolution ×4)."""
    low, _ = io.sample_input("chelsea", "sr", size=size, scale=4)
    return [(low, {"name": "low-resolution chelsea"}, "image")]
