"""Reading and writing image files, and the built-in samples (scikit-image's bundled images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["check_format", "read_image", "write_image", "read_psf", "SAMPLES", "sample_image", "sample_input"]

_TIFF = {".tif", ".tiff"}
_PIL = {".png", ".jpg", ".jpeg", ".bmp"}

# Crops around the interesting part of each bundled image, (rows, cols) at full size.
SAMPLES = {
    "astronaut": (slice(0, 256), slice(128, 384)),
    "camera": (slice(64, 320), slice(160, 416)),
    "coffee": (slice(80, 336), slice(120, 376)),
    "chelsea": (slice(0, 256), slice(100, 356)),
}


def check_format(path: str | Path) -> str:
    """The lower-case suffix of a supported image file, or a clear error."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _TIFF | _PIL:
        raise ValueError(f"unsupported file type {path.suffix!r} for {path}: use PNG, JPEG or TIFF")
    return suffix


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    suffix = check_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if suffix in _TIFF:
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as image:
        if image.mode in ("P", "CMYK", "LA", "PA", "YCbCr"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        return np.asarray(image)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write ``image``; TIFF keeps any dtype, PNG keeps uint8 and 16-bit grayscale, JPEG uint8."""
    path = Path(path)
    suffix = check_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in _TIFF:
        import tifffile

        rgb = image.ndim >= 3 and image.shape[-1] in (3, 4)
        # Explicit, so a stack of 3 or 4 slices is not taken for planar RGB(A).
        tifffile.imwrite(path, image, photometric="rgb" if rgb else "minisblack")
        return
    from PIL import Image

    if image.dtype != np.uint8 and not (suffix == ".png" and image.dtype == np.uint16 and image.ndim == 2):
        if np.issubdtype(image.dtype, np.floating) and image.min() >= 0 and image.max() <= 1:
            image = np.rint(image * 255).astype(np.uint8)
        else:
            raise ValueError(f"{suffix} cannot hold a {image.dtype} image of this range; write a .tif instead")
    Image.fromarray(image).save(path)


def read_psf(path: str | Path) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        return np.load(path)
    psf = read_image(path).astype(np.float64)
    return psf.mean(axis=-1) if psf.ndim == 3 else psf


def sample_image(name: str, size: int | None = None) -> np.ndarray:
    """A crop of one of scikit-image's bundled images (uint8), optionally its top-left SIZE×SIZE."""
    from skimage import data

    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    image = getattr(data, name)()[SAMPLES[name]]
    if size is not None:
        image = image[:size, :size]
    return np.ascontiguousarray(image)


def sample_input(
    name: str, task: str, *, size: int | None = None, noise: float | None = None, scale: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A degraded sample for ``task``: noisy, half its pixels dropped, or downscaled.

    Returns the observation and, for inpainting, the mask of pixels to fill.
    """
    clean = sample_image(name, size)
    rng = np.random.default_rng(seed)
    mask = None
    if task in ("denoise", "jpeg", "deblur") and (noise is None or noise > 0):
        sigma = 25.0 if noise is None else noise
        noisy = clean + rng.normal(scale=sigma, size=clean.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), None
    if task == "inpaint":
        mask = rng.random(clean.shape[:2]) < 0.5
        damaged = clean.copy()
        damaged[mask] = 0
        return damaged, mask
    if task == "sr":
        from PIL import Image

        factor = scale or 4
        h, w = clean.shape[:2]
        low = Image.fromarray(clean).resize((w // factor, h // factor), Image.LANCZOS)
        return np.asarray(low), None
    return clean, mask
