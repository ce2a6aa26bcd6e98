"""Reading and writing image files, and the built-in samples (scikit-image's bundled images)."""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "check_format", "check_output", "check_pixels", "check_holds", "read_image", "write_image", "read_psf",
    "read_array",
    "open_tiff",
    "max_pixels", "MAX_PIXELS_ENV", "SAMPLES", "sample_image", "sample_input",
]

_TIFF = {".tif", ".tiff"}
_PIL = {".png", ".jpg", ".jpeg", ".bmp"}
_JPEG = {".jpg", ".jpeg"}
_JPEG_MAX_SIDE = 65500

MAX_PIXELS_ENV = "NAPARI_DIP_MAX_PIXELS"
# Pillow's own decompression-bomb limit (2 × Image.MAX_IMAGE_PIXELS), for every format alike.
_DEFAULT_MAX_PIXELS = 178_956_970

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


def max_pixels() -> int:
    """The most pixels an image file may hold: ``NAPARI_DIP_MAX_PIXELS``, else 178,956,970."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return _DEFAULT_MAX_PIXELS
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r} is not a pixel count; set it to a positive whole number")
    return limit


def check_pixels(
    path: str | Path, pixels: int | None, shape: tuple[int, ...] | None = None, *, at_once: str = ""
) -> None:
    """Refuse ``pixels`` (read ``at_once``, e.g. " in one piece") above :func:`max_pixels`;
    None: more than that, known from Pillow's refusal."""
    limit = max_pixels()
    if pixels is None or pixels > limit:
        held = "more pixels than" if pixels is None else f"{pixels:,} pixels{at_once} (shape {shape}), more than"
        raise ValueError(
            f"{path} holds {held} the limit of {limit:,}; "
            f"set the environment variable {MAX_PIXELS_ENV} to a larger number to read it anyway"
        )


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file or a zarr array, refusing (before reading pixel data) one above
    :func:`max_pixels`."""
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        return _read_zarr(path)
    suffix = check_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if suffix in _TIFF:
        with open_tiff(path) as tiff:
            series = tiff.series[0]
            pixels = math.prod(n for n, axis in zip(series.shape, series.axes, strict=True) if axis != "S")
            check_pixels(path, pixels, tuple(series.shape))
            try:
                return series.asarray()
            except (ValueError, OSError, IndexError, KeyError) as error:  # truncated or corrupt pixel data
                raise ValueError(f"{path} cannot be read ({error}); check that it was written completely") from None
    from PIL import Image

    limit = max_pixels()
    # Pillow warns above its limit and refuses twice that while opening a file: raise its limit
    # to ours (never lower it), and answer a refusal as for any image above ours.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, limit // 2 + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            check_pixels(path, None)
        except (Image.UnidentifiedImageError, OSError, ValueError) as error:
            raise ValueError(f"{path} cannot be read as an image ({error}); check the file") from None
    with image:
        check_pixels(path, image.width * image.height, (image.height, image.width))
        try:
            if image.mode in ("P", "CMYK", "LA", "PA", "YCbCr"):
                image = image.convert("RGBA" if "A" in image.mode else "RGB")
            return np.asarray(image)
        except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt pixel data
            raise ValueError(f"{path} cannot be read ({error}); check that it was written completely") from None


@contextmanager
def open_tiff(path: str | Path) -> Iterator[Any]:
    """A ``tifffile.TiffFile`` with at least one image series, or one sentence naming the file."""
    import logging

    import tifffile

    # tifffile logs what it skips in a damaged header; the sentence below says it once.
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    tiff = None
    try:
        tiff = tifffile.TiffFile(path)
        series = tiff.series
    except MemoryError:
        raise
    except Exception as error:  # tifffile raises TiffFileError, struct.error, IndexError, ... on bad headers
        if tiff is not None:
            tiff.close()
        raise ValueError(
            f"{path} is not a readable TIFF file ({error}); check that it was written completely"
        ) from None
    finally:
        logger.setLevel(level)
    with tiff:
        if not series:
            raise ValueError(f"{path} holds no image data; check that it was written completely")
        yield tiff


def _read_zarr(path: Path) -> np.ndarray:
    from .stack_io import open_stack

    stack = open_stack(path)
    shape = tuple(stack.shape)
    colour = len(shape) > 2 and shape[-1] in (3, 4)
    check_pixels(path, math.prod(shape[:-1] if colour else shape), shape)
    return np.asarray(stack[...])


def _check_pil(path: Path, shape: tuple[int, ...], dtype: np.dtype, low: float, high: float) -> None:
    """Refuse a result of this shape, dtype and value range that PNG, JPEG or BMP cannot hold."""
    suffix = path.suffix.lower()
    name = "JPEG" if suffix in _JPEG else suffix[1:].upper()
    if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))):
        raise ValueError(f"{name} holds gray, RGB or RGBA images, not shape {shape}; write {path.stem}.tif")
    if suffix in _JPEG and len(shape) == 3 and shape[-1] == 4:
        raise ValueError(f"JPEG cannot hold the alpha channel of an RGBA image; write {path.stem}.png or .tif")
    if suffix in _JPEG and max(shape[:2]) > _JPEG_MAX_SIDE:
        raise ValueError(
            f"JPEG holds at most {_JPEG_MAX_SIDE} pixels a side, not {shape[1]}×{shape[0]}; "
            f"write {path.stem}.png or .tif"
        )
    if dtype == np.uint8 or (dtype == np.uint16 and suffix == ".png" and len(shape) == 2):
        return
    if dtype == np.bool_ and suffix in (".png", ".bmp") and len(shape) == 2:
        return  # written as a 1-bit image
    if dtype == np.uint16:
        what = "16-bit grayscale only" if suffix == ".png" else "8-bit images only"
        raise ValueError(f"{name} holds {what}; write {path.stem}.tif for a 16-bit image of shape {shape}")
    if np.issubdtype(dtype, np.floating):
        # Not even in [0, 1]: rounded to 8 bits, the result would lose its dtype and every pixel
        # inpainting keeps would change.
        raise ValueError(f"{name} cannot hold float values in [{low:g}, {high:g}]; write {path.stem}.tif to keep them")
    raise ValueError(f"{name} cannot hold a {dtype} image; write {path.stem}.tif instead")


def check_holds(path: str | Path, image: np.ndarray) -> None:
    """Refuse, naming ``path``, an image its format (by suffix) cannot hold."""
    path = Path(path)
    if check_format(path) in _PIL:
        _check_pil(path, image.shape, image.dtype, float(image.min()), float(image.max()))


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write ``image``; TIFF keeps any dtype, PNG keeps uint8, bool and 16-bit grayscale, JPEG uint8."""
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

    _check_pil(path, image.shape, image.dtype, float(image.min()), float(image.max()))
    Image.fromarray(image).save(path)


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and os.path.samefile(a, b)


def check_output(
    path: str | Path, like: np.ndarray, *, scale: int = 1, reads: Mapping[str, str | Path | None] | None = None
) -> None:
    """Refuse, before any work, an output that could not be written or would replace an input.

    Parameters
    ----------
    path : str or Path
        The output file.
    like : ndarray
        An array with the result's dtype, channels and value range (the input: restoration keeps
        them); its height and width are multiplied by ``scale``.
    scale : int
        The super-resolution factor.
    reads : mapping
        What each file the command reads is ("input", "mask", ...) to its path (``None`` entries
        are skipped); none of them may be ``path``, also not through a hard or symbolic link.

    Raises
    ------
    ValueError
        Naming the path and the fix.
    """
    path = Path(path)
    suffix = check_format(path)
    like = np.asarray(like)
    # The input's own fault first: NaN would otherwise read as a value range no format holds.
    if np.issubdtype(like.dtype, np.inexact) and not np.isfinite(like).all():
        from .core.arrays import check_finite  # core.arrays imports numpy only, not torch

        check_finite(like)
    for what, source in (reads or {}).items():
        if source is not None and _same_file(path, Path(source)):
            raise ValueError(f"the output {path} is the {what} file {source}; choose another output name")
    if path.is_dir():
        raise ValueError(f"the output {path} is a folder; give a file name, e.g. {path / ('restored' + suffix)}")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder; choose another output folder")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        raise ValueError(f"cannot write {path}: the folder {folder} is not writable; choose another folder") from None
    if suffix in _PIL:
        shape = (like.shape[0] * scale, like.shape[1] * scale, *like.shape[2:]) if like.ndim >= 2 else like.shape
        _check_pil(path, shape, like.dtype, float(like.min()), float(like.max()))


def read_array(path: str | Path, what: str) -> np.ndarray:
    """``what`` (e.g. "PSF", "guide") from a .npy array (never unpickled) or an image file."""
    path = Path(path)
    if path.suffix.lower() not in {".npy"} | _TIFF | _PIL:
        raise ValueError(
            f"unsupported {what} file type {path.suffix!r} for {path}: save the {what} as a .npy array "
            "(numpy.save) or as a PNG, JPEG or TIFF image"
        )
    if path.suffix.lower() != ".npy":
        return read_image(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:  # Python objects (pickled), or a damaged file
        raise ValueError(
            f"{path} is not a .npy array of numbers ({error}); save the {what} with numpy.save of a numeric array"
        ) from None


def colour_collapsed(mask: np.ndarray) -> np.ndarray:
    """A mask image's colour channels (a last axis of 3 or 4) as one: nonzero colour marks a
    pixel, the alpha channel is ignored (an opaque one would mark everything). Anything else (a
    plane, or a stack of planes) is returned as it is."""
    if mask.ndim >= 3 and mask.shape[-1] in (3, 4):
        return mask[..., :3].max(axis=-1)
    return mask


def read_psf(path: str | Path) -> np.ndarray:
    """A PSF from a .npy array or an image file (the colour channels of an RGB(A) image averaged,
    alpha left out); anything but one plane is refused, naming the file."""
    psf = read_array(path, "PSF")
    if Path(path).suffix.lower() == ".npy":
        return psf
    psf = psf.astype(np.float64)
    if psf.ndim == 3 and psf.shape[-1] in (3, 4):
        psf = psf[..., :3].mean(axis=-1)
    if psf.ndim != 2:
        raise ValueError(f"the PSF must be one 2D image, but {path} holds shape {psf.shape}; save a single plane")
    return psf


def sample_image(name: str, size: int | None = None) -> np.ndarray:
    """A crop of one of scikit-image's bundled images (uint8), optionally its top-left SIZE×SIZE."""
    from skimage import data

    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    if size is not None and size < 1:
        raise ValueError(f"the sample size must be a positive number of pixels, got {size}")
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
    if noise is not None and not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"the sample noise σ must be a number ≥ 0 (0-255 scale; 0 adds none), got {noise}")
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
        if min(h, w) < factor:
            raise ValueError(f"a {w}×{h} sample shrunk ×{factor} has no pixels left; give --size {8 * factor} "
                             "or more, or a smaller --scale")
        low = Image.fromarray(clean).resize((w // factor, h // factor), Image.LANCZOS)
        return np.asarray(low), None
    return clean, mask
