"""Restoring images too big for one fit: overlapping tiles, blended smoothly.

Each tile is fitted on its own, with the same seed and settings, and the results are blended
with weights that taper over the overlaps and sum to exactly one at every pixel, so no seam is
left where a tile ends. The tile size follows from the memory a fit needs per pixel and the
memory available (what CUDA reports free on a GPU), so peak memory stays bounded whatever the
image size; a CUDA out-of-memory error retries with tiles half as large. An image that fits in
one tile is restored by a single :func:`~napari_dip.core.api.restore_iter` call, exactly as
without tiling.

The input is read one tile at a time (``image[window]``), so a dask or zarr array is never
loaded whole; the blended result (float32, one value per output pixel and channel) is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import torch

from .api import resolve_settings, restore_iter
from .arrays import Intensity, from_channels_first, to_channels_first
from .device import select_device
from .engine import Progress
from .presets import Settings
from .progress import overall_progress

__all__ = [
    "TileProgress",
    "TiledRestoration",
    "restore_tiled_iter",
    "auto_tile_size",
    "fit_bytes_per_pixel",
    "available_memory",
    "tile_starts",
    "blend_weights",
    "DEFAULT_OVERLAP",
]

DEFAULT_OVERLAP = 64
# Share of the free memory a fit may take: the CPU's is shared with everything else running,
# a GPU's mostly belongs to us.
_CPU_SHARE = 0.5
_CUDA_SHARE = 0.8
_UNKNOWN_MEMORY = 4 * 2**30


@dataclass
class TileProgress:
    """One optimisation step of one tile, or a note (``step`` is ``None`` then)."""

    tile: int
    tiles: int
    window: tuple[slice, slice]
    fraction: float
    elapsed: float
    eta: float | None
    step: Progress | None = None
    message: str | None = None


@dataclass
class TiledRestoration:
    """The blended image and how each tile's fit ran (row-major order)."""

    image: np.ndarray
    tile_size: int | None
    overlap: int
    windows: list[tuple[slice, slice]]
    runs: list[dict[str, Any]]
    elapsed: float
    states: list[dict | None] = field(default_factory=list, repr=False)

    @property
    def iterations(self) -> int:
        return sum(run["iterations"] for run in self.runs)

    def metadata(self) -> dict[str, Any]:
        """Plain values describing the run; with one tile, exactly that fit's metadata."""
        if len(self.runs) == 1:
            return dict(self.runs[0])
        first = self.runs[0]
        return {
            "task": first["task"],
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "tiles": len(self.runs),
            "iterations": self.iterations,
            "stop_reasons": sorted({run["stop_reason"] for run in self.runs}),
            "elapsed_seconds": round(self.elapsed, 3),
            "seed": first["seed"],
            "device": first["device"],
            "threads": first["threads"],
            "settings": first["settings"],
        }


def available_memory(device: torch.device) -> int:
    """Bytes free for a fit on ``device``: CUDA's free memory, else the system's available RAM.

    Parameters
    ----------
    device : torch.device

    Returns
    -------
    int
        Bytes; 4 GiB when the system does not say.
    """
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil
    except ImportError:
        return _meminfo_available()
    return int(psutil.virtual_memory().available)


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _UNKNOWN_MEMORY


def fit_bytes_per_pixel(settings: Settings, channels: int) -> int:
    """Estimated peak memory of one fit, in bytes per pixel of the network's output.

    The skip network keeps about 14 activations per channel and 7 per skip channel for the
    backward pass (9 and 5 at each level's resolution and the next coarser one, summed over the
    pyramid), and the input code three times (code, noise, their sum). Automatic stopping keeps
    the last ``stop_window`` outputs in float64. The extra KiB covers the rest (gradients in
    flight, allocator slack): calibrated against peak RSS on CPU in float32, where it is 10-20 %
    above the measurement for 128 channels and 8 % below it for 32; in bfloat16 it is about twice
    the measurement (benchmarks/big_image.py). The budget is a share of the free memory, which
    leaves room for the difference.

    Parameters
    ----------
    settings : Settings
        The fit's settings.
    channels : int
        Channels of the image (1 for grayscale, 3 for RGB).

    Returns
    -------
    int
    """
    floats = 14 * settings.channels + 7 * settings.skip_channels + 3 * settings.input_depth
    stopper = 8 * settings.stop_window * channels if settings.auto_stop else 0
    return 4 * floats + stopper + 1024


def auto_tile_size(
    spatial: tuple[int, int],
    settings: Settings,
    channels: int = 1,
    factor: int = 1,
    device: torch.device | str = "cpu",
    memory_limit: int | None = None,
) -> int | None:
    """Side of the largest square tile whose fit fits in memory, or ``None`` if the image does.

    Parameters
    ----------
    spatial : (int, int)
        Height and width of the input image.
    settings : Settings
        The fit's settings (network size, automatic stopping).
    channels : int
        Channels of the image.
    factor : int
        Super-resolution factor: the network works at ``factor`` times the input size.
    device : torch.device or str
        Where the fit runs; its free memory sets the budget.
    memory_limit : int, optional
        Bytes the fit may use, instead of a share of the free memory.

    Returns
    -------
    int or None
        Tile side in input pixels, a multiple of the network's size multiple where possible.

    Raises
    ------
    ValueError
        If not even a tile of twice the network's size multiple fits.
    """
    budget = memory_limit if memory_limit is not None else _default_budget(select_device(device))
    per_input_pixel = fit_bytes_per_pixel(settings, channels) * factor * factor
    if spatial[0] * spatial[1] * per_input_pixel <= budget:
        return None
    side = math.isqrt(int(budget // per_input_pixel))
    multiple = max(1, 2**settings.scales // factor)
    smallest = 2 * multiple
    if side < smallest:
        raise ValueError(
            f"a fit needs about {per_input_pixel * smallest * smallest / 2**20:.0f} MiB even for "
            f"{smallest}×{smallest} tiles, more than the {budget / 2**20:.0f} MiB available; "
            "free memory or use a smaller network (channels)"
        )
    return side // multiple * multiple


def _default_budget(device: torch.device) -> int:
    share = _CUDA_SHARE if device.type == "cuda" else _CPU_SHARE
    return int(available_memory(device) * share)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced starts of tiles of ``tile`` pixels covering ``length``, each overlapping
    the next by at least ``overlap``.

    Parameters
    ----------
    length, tile, overlap : int

    Returns
    -------
    list of int

    Examples
    --------
    >>> tile_starts(1000, 512, 64)
    [0, 244, 488]
    >>> tile_starts(300, 512, 64)
    [0]
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def blend_weights(starts: list[int], size: int, length: int) -> list[np.ndarray]:
    """1D weights of tiles of ``size`` at ``starts``: raised-cosine ramps across each overlap,
    normalised so that at every position of ``length`` the tiles' weights sum to one.

    The 2D weight of a tile is the outer product of its row and column weights; the 2D weights
    then sum to one too, because the grid is a product of row and column positions.

    Parameters
    ----------
    starts : list of int
        As returned by :func:`tile_starts`.
    size, length : int
        Tile size and the length covered.

    Returns
    -------
    list of ndarray
        One float32 array of ``size`` per tile.
    """
    centres = np.arange(size) + 0.5
    raw = []
    for index, start in enumerate(starts):
        weight = np.ones(size)
        if index > 0 and (ramp := starts[index - 1] + size - start) > 0:
            weight = np.minimum(weight, np.sin(np.pi / 2 * np.clip(centres / ramp, 0, 1)) ** 2)
        if index < len(starts) - 1 and (ramp := start + size - starts[index + 1]) > 0:
            weight = np.minimum(weight, np.sin(np.pi / 2 * np.clip((size - centres) / ramp, 0, 1)) ** 2)
        raw.append(weight)
    total = np.zeros(length)
    for start, weight in zip(starts, raw, strict=True):
        total[start : start + size] += weight
    return [
        (weight / total[start : start + size]).astype(np.float32) for start, weight in zip(starts, raw, strict=True)
    ]


@dataclass(frozen=True)
class _Layout:
    """Where the channels and the two spatial axes of an image are."""

    ndim: int
    channel_axis: int | None
    spatial: tuple[int, int]
    channels: int

    @classmethod
    def of(cls, shape: tuple[int, ...], channel_axis: int | None) -> _Layout:
        ndim = len(shape)
        if channel_axis is None and ndim == 3 and shape[-1] in (3, 4):
            channel_axis = -1
        if channel_axis is None:
            if ndim != 2:
                raise ValueError(
                    f"an image of shape {shape} needs channel_axis: tiles are cut from 2D planes, "
                    "with or without one channel axis"
                )
            return cls(2, None, (shape[0], shape[1]), 1)
        if ndim != 3:
            raise ValueError(
                f"an image of shape {shape} with channel_axis={channel_axis} must have 3 "
                "dimensions (height, width and channels)"
            )
        axis = channel_axis % 3
        spatial = tuple(size for dim, size in enumerate(shape) if dim != axis)
        return cls(3, axis, (spatial[0], spatial[1]), shape[axis])

    def read(self, image: Any, window: tuple[slice, slice]) -> np.ndarray:
        """The window of ``image`` as a (C, h, w) array, reading only that window."""
        index = list(window)
        if self.channel_axis is not None:
            index.insert(self.channel_axis, slice(None))
        return to_channels_first(np.asarray(image[tuple(index)]), self.channel_axis)


def _tile_intensity(image: Any, layout: _Layout, windows: list[tuple[slice, slice]]) -> Intensity:
    """One intensity mapping for all tiles (per-tile stretching would show at the seams).

    It depends only on the dtype and each channel's minimum and maximum, so it is computed from
    those, gathered tile by tile, without holding the image.
    """
    lows, highs = [], []
    for window in windows:
        chw = layout.read(image, window).reshape(layout.channels, -1)
        lows.append(chw.min(axis=1))
        highs.append(chw.max(axis=1))
    extremes = np.stack([np.min(lows, axis=0), np.max(highs, axis=0)], axis=-1)
    return Intensity.of(extremes[:, None, :])


def restore_tiled_iter(
    image: Any,
    task: str = "denoise",
    *,
    mask: np.ndarray | None = None,
    scale: int | None = None,
    psf: np.ndarray | None = None,
    channel_axis: int | None = None,
    preset: str = "default",
    iterations: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    threads: int | None = None,
    preview_seconds: float | None = 2.0,
    preview_iterations: int | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    memory_limit: int | None = None,
    initial_states: list[dict | None] | None = None,
    keep_state: bool = False,
    **advanced,
) -> Generator[TileProgress, None, TiledRestoration]:
    """Restore a 2D image of any size tile by tile: yields :class:`TileProgress`, returns a
    :class:`TiledRestoration`.

    Parameters
    ----------
    image : array-like
        (H, W), (H, W, 3|4) or channels at ``channel_axis``; a numpy, dask or zarr array (only
        ``image[window]`` is read).
    task, mask, scale, psf, channel_axis, preset, iterations, seed, device, threads
        As for :func:`~napari_dip.core.api.restore`; ``mask`` is a whole-image (H, W) array.
    preview_seconds, preview_iterations
        Preview schedule of each tile's fit (previews are of the tile).
    tile_size : int, optional
        Tile side in input pixels. Default: the largest that fits in memory
        (:func:`auto_tile_size`); the whole image if it fits.
    overlap : int, optional
        Pixels shared by neighbouring tiles, over which they are blended (default 64, at most a
        quarter of the tile).
    memory_limit : int, optional
        Bytes a fit may use when choosing the tile size (default: a share of the free memory).
    initial_states, keep_state
        Per-tile network weights to warm-start from, and whether to return them
        (``TiledRestoration.states``), e.g. from the previous plane of a stack.
    **advanced
        Fields of :class:`~napari_dip.core.presets.Settings`.

    Yields
    ------
    TileProgress
        Every optimisation step of every tile, and a note (``message``) when a CUDA
        out-of-memory error makes it retry with smaller tiles.

    Returns
    -------
    TiledRestoration
        ``image`` has the input's dtype, range and layout (``scale`` times larger for "sr").

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip.core import consume
    >>> image = np.random.default_rng(0).random((96, 80)).astype(np.float32)
    >>> run = restore_tiled_iter(image, tile_size=64, overlap=16, iterations=2, channels=8, scales=2,
    ...                          preview_seconds=None)
    >>> result = consume(run)
    >>> result.image.shape, len(result.windows)
    ((96, 80), 4)
    """
    start = time.perf_counter()
    dtype = np.dtype(image.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"the image must hold real numbers, got dtype {dtype}")
    layout = _Layout.of(tuple(image.shape), channel_axis)
    settings = resolve_settings(task, preset, scale, iterations, **advanced)
    if mask is not None and np.shape(mask) != layout.spatial:
        raise ValueError(
            f"mask shape {np.shape(mask)} does not match the image's spatial shape {layout.spatial}"
        )
    torch_device = select_device(device)
    factor = int(scale) if task == "sr" and scale else 1
    if tile_size is None:
        tile_size = auto_tile_size(layout.spatial, settings, layout.channels, factor, torch_device, memory_limit)
    elif tile_size < min(8, max(layout.spatial)):
        raise ValueError(f"tile size {tile_size} is too small: use at least 8 pixels")
    if overlap is not None and not 0 <= 2 * overlap < (tile_size or math.inf):
        raise ValueError(f"tile overlap {overlap} must be at least 0 and less than half the tile size {tile_size}")
    fit = dict(
        task=task, mask=mask, scale=scale, psf=psf, preset=preset, iterations=iterations, seed=seed,
        device=torch_device, threads=threads, preview_seconds=preview_seconds,
        preview_iterations=preview_iterations, keep_state=keep_state, **advanced,
    )
    while True:
        try:
            if tile_size is None or (tile_size >= layout.spatial[0] and tile_size >= layout.spatial[1]):
                return (yield from _restore_whole(image, layout, fit, initial_states, start))
            tile_overlap = min(DEFAULT_OVERLAP, tile_size // 4) if overlap is None else overlap
            return (
                yield from _restore_tiles(image, layout, fit, settings, tile_size, tile_overlap, initial_states, start)
            )
        except torch.cuda.OutOfMemoryError:
            failed = tile_size or max(layout.spatial)
            multiple = max(1, 2**settings.scales // factor)
            smaller = failed // 2 // multiple * multiple
            if smaller < 2 * multiple:
                raise
            torch.cuda.empty_cache()
            # The tile grid changes, so per-tile warm-start weights no longer line up.
            initial_states = None
            tile_size = smaller
            if overlap is not None:
                overlap = min(overlap, smaller // 4)
            yield TileProgress(
                0, 0, (slice(None), slice(None)), 0.0, time.perf_counter() - start, None,
                message=f"the GPU ran out of memory with {failed}-pixel tiles; retrying with {smaller}-pixel tiles",
            )


def _restore_whole(
    image: Any, layout: _Layout, fit: dict, initial_states: list | None, start: float
) -> Generator[TileProgress, None, TiledRestoration]:
    window = (slice(0, layout.spatial[0]), slice(0, layout.spatial[1]))
    run = restore_iter(
        np.asarray(image), channel_axis=layout.channel_axis,
        initial_state=initial_states[0] if initial_states else None, **fit,
    )
    restoration = yield from _drive(run, 0, 1, window, [], start)
    return TiledRestoration(
        image=restoration.image, tile_size=None, overlap=0, windows=[window], runs=[restoration.metadata()],
        elapsed=time.perf_counter() - start, states=[restoration.state],
    )


def _restore_tiles(
    image: Any, layout: _Layout, fit: dict, settings: Settings, tile_size: int, overlap: int,
    initial_states: list | None, start: float,
) -> Generator[TileProgress, None, TiledRestoration]:
    height, width = layout.spatial
    factor = int(fit["scale"]) if fit["task"] == "sr" else 1
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    rows, cols = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    # Weights on the output grid, which is ``factor`` times the input's for super-resolution.
    row_weights = blend_weights([r * factor for r in rows], tile_h * factor, height * factor)
    col_weights = blend_weights([c * factor for c in cols], tile_w * factor, width * factor)
    grid = list(product(enumerate(rows), enumerate(cols)))
    windows = [(slice(r, r + tile_h), slice(c, c + tile_w)) for (_, r), (_, c) in grid]
    if initial_states is not None and len(initial_states) != len(windows):
        raise ValueError(
            f"{len(initial_states)} warm-start states were given for {len(windows)} tiles; "
            "warm-start from a restoration with the same tile grid"
        )
    intensity = _tile_intensity(image, layout, windows)
    blended = np.zeros((layout.channels, height * factor, width * factor), dtype=np.float32)
    runs, states, finished = [], [], []
    for index, ((row, r), (col, c)) in enumerate(grid):
        window = windows[index]
        unit = intensity.to_unit(layout.read(image, window))
        tile_fit = dict(fit, **_tile_task(fit, settings, window))
        run = restore_iter(
            unit[0] if layout.channels == 1 else unit,
            channel_axis=None if layout.channels == 1 else 0,
            initial_state=initial_states[index] if initial_states else None,
            **tile_fit,
        )
        tile_start = time.perf_counter()
        restoration = yield from _drive(run, index, len(grid), window, finished, start)
        finished.append(time.perf_counter() - tile_start)
        tile_weight = row_weights[row][:, None] * col_weights[col][None, :]
        out_rows = slice(r * factor, (r + tile_h) * factor)
        out_cols = slice(c * factor, (c + tile_w) * factor)
        blended[:, out_rows, out_cols] += restoration.image.reshape(layout.channels, *tile_weight.shape) * tile_weight
        runs.append(restoration.metadata())
        states.append(restoration.state)
    restored = from_channels_first(intensity.from_unit(blended), layout.channel_axis)
    return TiledRestoration(
        image=restored, tile_size=tile_size, overlap=overlap, windows=windows, runs=runs,
        elapsed=time.perf_counter() - start, states=states,
    )


def _tile_task(fit: dict, settings: Settings, window: tuple[slice, slice]) -> dict:
    """The task and mask of one tile: inpainting's mask is cut to the tile.

    A tile without pixels to fill is fitted as an identity problem with the inpainting settings,
    which is what inpainting with an empty mask would compute (restore_iter refuses an empty
    mask, rightly so for a whole image).
    """
    if fit["task"] != "inpaint":
        return {}
    tile_mask = np.asarray(fit["mask"][window]) != 0
    if tile_mask.all():
        raise ValueError(
            f"the tile at rows {window[0].start}-{window[0].stop}, columns {window[1].start}-{window[1].stop} "
            "is entirely masked: nothing is known there; use larger tiles"
        )
    if tile_mask.any():
        return {"mask": tile_mask}
    return {"task": "denoise", "mask": None, "preset": "default", "iterations": None, **settings.as_dict()}


def _drive(
    run: Generator[Progress, None, Any], tile: int, tiles: int, window: tuple[slice, slice],
    finished: list[float], start: float,
) -> Generator[TileProgress, None, Any]:
    """Relay one fit's steps as tile events; return its result."""
    try:
        while True:
            step = next(run)
            fraction, eta = overall_progress(tile, tiles, finished, step.elapsed, step.eta)
            yield TileProgress(tile, tiles, window, fraction, time.perf_counter() - start, eta, step=step)
    except StopIteration as done:
        return done.value
    finally:
        run.close()
