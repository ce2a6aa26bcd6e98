"""Restoring images too big for one fit: overlapping tiles, blended smoothly.

Each tile is fitted on its own, with the same seed and settings, and the results are blended
with weights that taper over the overlaps and sum to exactly one at every pixel, so no seam is
left where a tile ends. The tile size follows from the memory a fit needs per pixel and the
memory available (what CUDA reports free on a GPU), so peak memory stays bounded whatever the
image size; a CUDA out-of-memory error retries with tiles half as large. An image that fits in
one tile is restored by a single :func:`~napari_dip.core.api.restore_iter` call, exactly as
without tiling.

Inpainting that keeps the known pixels (the default) changes nothing outside the painted
pixels, so it fits only a window around each painted region (:func:`fill_windows`): the
region and ``REGION_MARGIN`` pixels of its surroundings on every side. A scratch on a 2048²
image then costs what its window costs, not what the image does.

The input is read one tile at a time (``image[window]``), so a dask or zarr array is never
loaded whole; the blended result (float32, one value per output pixel and channel) is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from itertools import combinations, product
from typing import Any

import numpy as np
import torch

from .arrays import Intensity, from_channels_first
from .device import select_device
from .engine import Progress
from .fitting import check_image, fit_array, relay, unknown_pixels_filled, with_threads
from .guide import check_guide, cut_guide
from .layout import Layout
from .memory import default_budget, fit_bytes_per_pixel
from .options import RestoreOptions
from .progress import overall_progress
from .settings import Settings

__all__ = [
    "TileProgress",
    "TiledRestoration",
    "restore_tiled_iter",
    "auto_tile_size",
    "balanced_tile",
    "tile_starts",
    "blend_weights",
    "DEFAULT_OVERLAP",
    "REGION_MARGIN",
    "fill_windows",
    "plan_regions",
    "region_windows",
    "fill_tile_size",
    "fill_parts",
]

DEFAULT_OVERLAP = 64
# Inpainting fits a window around each painted region: this many known pixels on every side
# (benchmarks/inpaint_regions.py measures the margin against fitting the whole image), and
# only while the windows cover at most REGION_SHARE of the image; above that, the whole image
# (or its tiles) is fitted as before.
REGION_MARGIN = 64
REGION_SHARE = 0.5
# Where the windows would cover more (a scratch across the image), the tiles of one of these
# sides that hold painted pixels, if they cover at most REGION_SHARE.
FILL_TILES = (256, 384, 512)
# Where the plane is tiled for memory anyway, the tiles that hold painted pixels are fitted
# either way; smaller ones are taken if they hold at most this share of those tiles' pixels.
FILL_TILE_SAVING = 0.75


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
    preview: np.ndarray | None = None  # the whole image, on the tile's preview steps
    kind: str = "tile"  # or "window": a window around painted pixels (inpainting)
    eta_latest: float | None = None  # the most seconds left (see Progress.eta_latest)


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
    regions: bool = False  # the windows are around painted regions, not a tile grid

    @property
    def iterations(self) -> int:
        return sum(run["iterations"] for run in self.runs)

    @property
    def plan(self) -> str:
        """How the image was cut, in words."""
        if self.regions:
            sizes = ", ".join(f"{w.stop - w.start}×{h.stop - h.start}" for h, w in self.windows)
            return f"{_windows_text(len(self.windows))} around the painted pixels ({sizes})"
        return f"{len(self.windows)} tiles of {self.tile_size}² (overlap {self.overlap})"

    def metadata(self) -> dict[str, Any]:
        """Plain values describing the run; with one tile, exactly that fit's metadata."""
        windows = {"windows": [[w.start, w.stop, c.start, c.stop] for w, c in self.windows]} if self.regions else {}
        if len(self.runs) == 1:
            return {**self.runs[0], **windows}
        first = self.runs[0]
        parts = windows or {"tile_size": self.tile_size, "overlap": self.overlap, "tiles": len(self.runs)}
        return {
            "task": first["task"],
            **parts,
            "iterations": self.iterations,
            "stop_reasons": sorted({run["stop_reason"] for run in self.runs}),
            "elapsed_seconds": round(self.elapsed, 3),
            "seed": first["seed"],
            "device": first["device"],
            "threads": first["threads"],
            "settings": first["settings"],
        }


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
    budget = default_budget(select_device(device), memory_limit)
    per_input_pixel = fit_bytes_per_pixel(settings, channels) * factor * factor
    if spatial[0] * spatial[1] * per_input_pixel <= budget:
        return None
    side = math.isqrt(int(budget // per_input_pixel))
    multiple = max(1, 2**settings.scales // factor)
    smallest = 2 * multiple
    if side < smallest:
        raise ValueError(
            f"a fit needs about {per_input_pixel * smallest * smallest / 2**20:.0f} MiB even for "
            f"{smallest}×{smallest} tiles, more than the {budget / 2**20:.0f} MiB "
            + ("memory_limit allows; raise memory_limit or use a smaller network (channels)" if memory_limit
               else "available; free memory or use a smaller network (channels)")
        )
    return side // multiple * multiple


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


def _tile_intensity(image: Any, layout: Layout, windows: list[tuple[slice, slice]], stretch: bool = False) -> Intensity:
    """One intensity mapping for all tiles (per-tile stretching would show at the seams).

    It depends only on the dtype and each channel's minimum and maximum, so it is computed from
    those, gathered tile by tile, without holding the image.
    """
    lows, highs = [], []
    for window in windows:
        chw = layout.read(image, window).reshape(layout.channels, -1)
        lows.append(chw.min(axis=1))
        highs.append(chw.max(axis=1))
    extremes = np.stack([np.min(lows, axis=0), np.max(highs, axis=0)], axis=-1)[:, None, :]
    nominal = Intensity.of(extremes)
    # ``stretch``: the whole image's own range, once (the tiles are not stretched again).
    return Intensity.spanned(extremes, fallback=nominal) if stretch else nominal


def plan_tile_size(layout: Layout, options: RestoreOptions) -> int | None:
    """The tile side a plane of ``layout`` is fitted with (``None``: whole), from the options'
    ``tile_size``, the memory budget, or for inpainting painted pixels spread too far apart for
    windows, the tiles that hold them (:func:`fill_tile_size`)."""
    return plan_tiles(layout, options)[0]


def plan_tiles(layout: Layout, options: RestoreOptions) -> tuple[int | None, str | None]:
    """:func:`plan_tile_size` and why: ``"asked"`` (``tile_size``), ``"memory"``, ``"fill"``
    (the tiles that hold painted pixels), or ``None`` for a whole plane."""
    if options.tile_size is not None:
        if options.tile_size >= max(layout.spatial):
            return None, None
        return options.tile_size, "asked"
    side = auto_tile_size(layout.spatial, options.settings, layout.channels, options.factor,
                          select_device(options.device), options.memory_limit)
    sparse = plan_fill_tiles(layout, options, side)
    if sparse is not None:
        return sparse, "fill"
    if side is None:
        return None, None
    overlap = DEFAULT_OVERLAP if options.overlap is None else options.overlap
    multiple = max(1, 2**options.settings.scales // options.factor)
    # At most a quarter of the tile, as restore_tiled_iter's default (and so never the whole tile).
    return balanced_tile(layout.spatial, side, min(overlap, side // 4), multiple), "memory"


def balanced_tile(spatial: tuple[int, int], side: int, overlap: int, multiple: int) -> int:
    """The smallest tile (a multiple of ``multiple``, at most ``side``) that covers ``spatial``
    with as few tiles as tiles of ``side`` would: the largest tile that fits in memory can
    overlap its neighbours far more than needed (a 1024² image in 4 tiles of 768² fits 2.25 times
    its pixels; in 4 of 544², 1.13 times).

    Examples
    --------
    >>> balanced_tile((1024, 1024), 768, 64, 32), balanced_tile((2048, 2048), 768, 64, 32)
    (544, 736)
    """
    tile = multiple
    for length in spatial:
        if length <= side:
            tile = max(tile, length)
            continue
        count = math.ceil((length - overlap) / (side - overlap))
        tile = max(tile, -(-(length + (count - 1) * overlap) // count))
    return min(side, -(-tile // multiple) * multiple)


def fill_windows(
    mask: np.ndarray, margin: int = REGION_MARGIN, multiple: int = 32, minimum: int = 64
) -> list[tuple[slice, slice]]:
    """Windows that hold every painted pixel of ``mask`` with ``margin`` pixels around it.

    Each connected region of the mask, grown by ``margin`` on every side, gets the bounding box
    of what it grew into, enlarged (within the image) to a multiple of ``multiple`` of at least
    ``minimum`` pixels, so the network needs no padding; windows that overlap are merged.

    Examples
    --------
    >>> mask = np.zeros((1000, 1000), dtype=bool)
    >>> mask[100:110, 100:300] = True  # a scratch
    >>> mask[800, 900] = True          # a speck
    >>> fill_windows(mask, margin=64)
    [(slice(25, 185, None), slice(24, 376, None)), (slice(721, 881, None), slice(821, 981, None))]
    """
    from scipy import ndimage

    fill = np.asarray(mask) != 0
    if not fill.any():
        return []
    grown = ndimage.maximum_filter1d(fill.astype(np.uint8), 2 * margin + 1, axis=0)
    grown = ndimage.maximum_filter1d(grown, 2 * margin + 1, axis=1)
    labels, _ = ndimage.label(grown)
    boxes = [_rounded_box(box, fill.shape, multiple, minimum) for box in ndimage.find_objects(labels)]
    merged = True
    while merged:
        merged = False
        for i, j in combinations(range(len(boxes)), 2):
            if all(a.start < b.stop and b.start < a.stop for a, b in zip(boxes[i], boxes[j], strict=True)):
                union = tuple(slice(min(a.start, b.start), max(a.stop, b.stop))
                              for a, b in zip(boxes[i], boxes[j], strict=True))
                boxes[i] = _rounded_box(union, fill.shape, multiple, minimum)
                del boxes[j]
                merged = True
                break
    return sorted(boxes, key=lambda box: (box[0].start, box[1].start))


def _rounded_box(box: tuple[slice, ...], shape: tuple[int, ...], multiple: int, minimum: int) -> tuple[slice, ...]:
    """``box`` grown about its centre to a multiple of ``multiple`` (at least ``minimum``) per
    axis, shifted to lie inside ``shape``; the whole axis where the image is smaller."""
    rounded = []
    for part, length in zip(box, shape, strict=True):
        size = max(part.stop - part.start, minimum)
        size = min(-(-size // multiple) * multiple, length)
        start = part.start - (size - (part.stop - part.start)) // 2
        start = min(max(start, 0), length - size)
        rounded.append(slice(start, start + size))
    return tuple(rounded)


def plan_regions(layout: Layout, options: RestoreOptions) -> list[tuple[slice, slice]] | None:
    """The windows inpainting fits instead of the whole plane (:func:`region_windows`), or
    ``None`` where the whole plane is fitted: another task, known pixels not kept (the network's
    output everywhere), or a mask that is not one plane's."""
    fill = _plane_fill(layout, options)
    return None if fill is None else region_windows(fill, options.settings)


def _plane_fill(layout: Layout, options: RestoreOptions) -> np.ndarray | None:
    """The pixels to fill of a plane whose inpainting keeps the known pixels (a mask of the
    plane's shape), or ``None``: then everything the network outputs is kept, and it is fitted
    whole or in memory tiles."""
    if not options.keeps_known or options.mask is None or layout.plane_axes or options.factor != 1:
        return None
    if tuple(np.shape(options.mask)) != layout.spatial:
        return None
    return np.asarray(options.mask) != 0


def region_windows(mask: np.ndarray, settings: Settings) -> list[tuple[slice, slice]] | None:
    """The windows around the painted pixels of a plane's ``mask`` that a fit with ``settings``
    uses, or ``None`` when there are none or they would cover more than ``REGION_SHARE`` of it."""
    multiple = 2**settings.scales
    windows = fill_windows(mask, max(REGION_MARGIN, settings.stop_band), multiple, 2 * multiple)
    covered = sum((rows.stop - rows.start) * (cols.stop - cols.start) for rows, cols in windows)
    if not windows or covered > REGION_SHARE * math.prod(mask.shape):
        return None
    return windows


def fill_tile_size(mask: np.ndarray, largest: int, overlap: int = DEFAULT_OVERLAP,
                   instead: int | None = None, share: float | None = None) -> int | None:
    """For inpainting whose painted pixels are spread too far for windows (a scratch across the
    image): the tile side from ``FILL_TILES`` (at most ``largest``) whose tiles holding painted
    pixels cover the fewest pixels, if they cover at most ``share`` (default ``REGION_SHARE``)
    of the pixels fitted ``instead`` (default: the plane's); only those tiles are fitted, the
    others are kept as they are. ``None``: fit what would be fitted instead.

    Examples
    --------
    >>> scratch = np.zeros((2048, 2048), dtype=bool)
    >>> scratch[np.arange(2048), np.arange(2048)] = True  # corner to corner
    >>> fill_tile_size(scratch, largest=736)
    256
    """
    fill = np.asarray(mask) != 0
    best = None
    for side in FILL_TILES:
        if side > largest or side >= max(fill.shape):
            continue
        pixels = _held_tiles(fill, side, min(overlap, side // 4)) * min(side, fill.shape[0]) * min(side, fill.shape[1])
        if best is None or pixels < best[0]:
            best = (pixels, side)
    if best is None or best[0] > (REGION_SHARE if share is None else share) * (instead or fill.size):
        return None
    return best[1]


def plan_fill_tiles(layout: Layout, options: RestoreOptions, memory_side: int | None) -> int | None:
    """:func:`fill_tile_size` for a plane whose inpainting keeps the known pixels, or ``None``."""
    fill = _plane_fill(layout, options)
    if fill is None:
        return None
    overlap = DEFAULT_OVERLAP if options.overlap is None else options.overlap
    return _fill_tile(fill, options.settings, memory_side, overlap)


def _fill_tile(fill: np.ndarray, settings: Settings, memory_side: int | None, overlap: int) -> int | None:
    if memory_side is None:
        return fill_tile_size(fill, max(fill.shape), overlap)
    # The plane is tiled for memory anyway, and its tiles without painted pixels are skipped:
    # smaller tiles must save a quarter of the pixels those hold to be worth their lesser context.
    tile = balanced_tile(fill.shape, memory_side, min(overlap, memory_side // 4), 2**settings.scales)
    held = _held_tiles(fill, tile, min(overlap, tile // 4))
    instead = held * math.prod(min(tile, n) for n in fill.shape)
    return fill_tile_size(fill, memory_side, overlap, instead, FILL_TILE_SAVING)


def _held_tiles(fill: np.ndarray, side: int, overlap: int) -> int:
    """How many tiles of ``side`` (overlapping by ``overlap``) hold a painted pixel."""
    rows, cols = tile_starts(fill.shape[0], side, overlap), tile_starts(fill.shape[1], side, overlap)
    height, width = min(side, fill.shape[0]), min(side, fill.shape[1])
    return sum(bool(fill[r:r + height, c:c + width].any()) for r in rows for c in cols)


def fill_parts(mask: np.ndarray, settings: Settings, memory_side: int | None = None) -> list[tuple[int, int]] | None:
    """The sizes of the fits inpainting a plane with ``mask`` will make: its windows, or its
    tiles that hold painted pixels; ``None`` when it fits the whole plane (or, with
    ``memory_side``, the largest tile that fits in memory, the memory budget's tiles). What the
    widget's estimate counts."""
    fill = np.asarray(mask) != 0
    windows = region_windows(fill, settings)
    if windows is not None:
        return [(rows.stop - rows.start, cols.stop - cols.start) for rows, cols in windows]
    side = _fill_tile(fill, settings, memory_side, DEFAULT_OVERLAP)
    if side is None:
        return None
    held = _held_tiles(fill, side, min(DEFAULT_OVERLAP, side // 4))
    return [(min(side, fill.shape[0]), min(side, fill.shape[1]))] * held


def restore_tiled_iter(
    image: Any,
    task: str = "denoise",
    *,
    options: RestoreOptions | None = None,
    initial_states: list[dict | None] | None = None,
    keep_state: bool = False,
    preview_now: Callable[[], bool] | None = None,
    **kwargs,
) -> Generator[TileProgress, None, TiledRestoration]:
    """Restore a 2D image of any size tile by tile: yields :class:`TileProgress`, returns a
    :class:`TiledRestoration`.

    Parameters
    ----------
    image : array-like
        (H, W), (H, W, 3|4) or channels at ``channel_axis``; a numpy, dask or zarr array (only
        ``image[window]`` is read).
    task, **kwargs
        As for :func:`~napari_dip.core.api.restore` (``mask`` a whole-image (H, W) array,
        ``tile_size``, ``overlap``, ``memory_limit``, ...), or a ready ``options``.
    options : RestoreOptions, optional
        The run's options. ``tile_size`` default: the largest tile that fits in memory
        (:func:`auto_tile_size`), the whole image if it fits; ``overlap`` default 64, at most a
        quarter of the tile; previews are of the tile being fitted.
    initial_states, keep_state
        Per-tile network weights to warm-start from, and whether to return them
        (``TiledRestoration.states``), e.g. from the previous plane of a stack.
    preview_now : callable, optional
        Asked at every step of every tile; a preview (of the whole image) is added when true.

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
    if options is None:
        options = RestoreOptions.from_kwargs(task, **kwargs)
    elif kwargs:
        raise TypeError(f"give either options or keywords, not both: {', '.join(kwargs)}")
    check_image(image)
    layout = Layout.of(tuple(image.shape), options.channel_axis, axes=options.axes)
    if layout.plane_axes:
        raise ValueError(
            f"an image of shape {tuple(image.shape)} needs channel_axis: tiles are cut from 2D planes, "
            "with or without one channel axis (or restore it with restore(), which restores its planes)"
        )
    if options.mask is not None and np.shape(options.mask) != layout.spatial:
        raise ValueError(
            f"mask shape {np.shape(options.mask)} does not match the image's spatial shape {layout.spatial}"
        )
    image = unknown_pixels_filled(image, options, layout)
    check_guide(options.guide, layout, options.factor)
    # Warm starts hand on weights per tile of a fixed grid; windows follow each plane's mask.
    windows = None if initial_states is not None or keep_state else plan_regions(layout, options)
    if windows:
        return (yield from _restore_regions(image, layout, options, windows, start, preview_now))
    return (yield from _restore_plane(image, layout, options, initial_states, keep_state, start, preview_now))


def _restore_plane(
    image: Any, layout: Layout, options: RestoreOptions, initial_states: list | None, keep_state: bool, start: float,
    preview_now: Callable[[], bool] | None,
) -> Generator[TileProgress, None, TiledRestoration]:
    """A whole plane, in one fit or in tiles."""
    tile_size = plan_tile_size(layout, options)
    options = with_threads(options, layout.spatial if tile_size is None else (tile_size, tile_size))
    overlap = options.overlap
    settings = options.settings
    while True:
        try:
            if tile_size is None or (tile_size >= layout.spatial[0] and tile_size >= layout.spatial[1]):
                return (yield from _restore_whole(image, layout, options, initial_states, keep_state, start,
                                                  preview_now))
            tile_overlap = min(DEFAULT_OVERLAP, tile_size // 4) if overlap is None else overlap
            return (yield from _restore_tiles(
                image, layout, options, tile_size, tile_overlap, initial_states, keep_state, start, preview_now
            ))
        except torch.cuda.OutOfMemoryError:
            failed = tile_size or max(layout.spatial)
            multiple = max(1, 2**settings.scales // options.factor)
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
    image: Any, layout: Layout, options: RestoreOptions, initial_states: list | None, keep_state: bool, start: float,
    preview_now: Callable[[], bool] | None,
) -> Generator[TileProgress, None, TiledRestoration]:
    window = (slice(0, layout.spatial[0]), slice(0, layout.spatial[1]))
    if _nothing_to_fill(options, window):
        yield TileProgress(0, 1, window, 1.0, time.perf_counter() - start, 0.0,
                           message="nothing to fill: no pixel of the mask is set, the image is kept as it is")
        return TiledRestoration(
            image=np.array(image, copy=True), tile_size=None, overlap=0, windows=[window],
            runs=[_unchanged_run(options)],
            elapsed=time.perf_counter() - start, states=[initial_states[0] if initial_states else None],
        )
    run = fit_array(
        np.asarray(image), options, layout,
        initial_state=initial_states[0] if initial_states else None, keep_state=keep_state, preview_now=preview_now,
    )
    restoration = yield from _drive(run, 0, 1, window, [], start)
    return TiledRestoration(
        image=restoration.image, tile_size=None, overlap=0, windows=[window], runs=[restoration.metadata()],
        elapsed=time.perf_counter() - start, states=[restoration.state],
    )


def _restore_tiles(
    image: Any, layout: Layout, options: RestoreOptions, tile_size: int, overlap: int,
    initial_states: list | None, keep_state: bool, start: float, preview_now: Callable[[], bool] | None,
) -> Generator[TileProgress, None, TiledRestoration]:
    height, width = layout.spatial
    factor = options.factor
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
    intensity = _tile_intensity(image, layout, windows, options.settings.stretch)
    blended = np.zeros((layout.channels, height * factor, width * factor), dtype=np.float32)
    runs, states, finished = [], [], []
    tile_layout = Layout.of((layout.channels, tile_h, tile_w), 0)
    previews = options.preview_seconds is not None or options.preview_iterations is not None or preview_now
    fill = np.asarray(options.mask) != 0 if options.keeps_known else None
    canvas = _Canvas(image, layout, intensity, factor, fill) if previews else None
    # Inpainting that keeps the known pixels: a tile with nothing to fill comes back as it is,
    # so it is not fitted (its pixels are all replaced by the input's in the end).
    fitted = [index for index, window in enumerate(windows) if not _nothing_to_fill(options, window)]
    if len(fitted) < len(windows):
        yield TileProgress(0, len(fitted), windows[0], 0.0, time.perf_counter() - start, None,
                           message=f"{len(fitted)} of the {len(windows)} tiles have pixels to fill; "
                                   "the others are kept as they are")
    for index, ((row, r), (col, c)) in enumerate(grid):
        window = windows[index]
        unit = intensity.to_unit(layout.read(image, window))
        if index in fitted:
            run = fit_array(
                unit, _tile_options(options, window), tile_layout,
                initial_state=initial_states[index] if initial_states else None, keep_state=keep_state,
                preview_now=preview_now,
            )
            tile_start = time.perf_counter()
            restoration = yield from _drive(run, fitted.index(index), len(fitted), window, finished, start, canvas)
            if canvas is not None:
                canvas.paste(window, restoration.image)
            finished.append(time.perf_counter() - tile_start)
            tile_image, run_metadata, state = restoration.image, restoration.metadata(), restoration.state
        else:
            tile_image, run_metadata = unit, _unchanged_run(options)
            state = initial_states[index] if initial_states else None
        tile_weight = row_weights[row][:, None] * col_weights[col][None, :]
        out_rows = slice(r * factor, (r + tile_h) * factor)
        out_cols = slice(c * factor, (c + tile_w) * factor)
        blended[:, out_rows, out_cols] += tile_image * tile_weight
        runs.append(run_metadata)
        states.append(state)
    restored = from_channels_first(intensity.from_unit(blended), layout.channel_axis)
    if options.keeps_known:
        restored = _keep_known(restored, image, options.mask, layout)
    return TiledRestoration(
        image=restored, tile_size=tile_size, overlap=overlap, windows=windows, runs=runs,
        elapsed=time.perf_counter() - start, states=states,
    )


def _restore_regions(
    image: Any, layout: Layout, options: RestoreOptions, windows: list[tuple[slice, slice]], start: float,
    preview_now: Callable[[], bool] | None,
) -> Generator[TileProgress, None, TiledRestoration]:
    """Inpaint each window around painted pixels on its own (tiled if it is too big for one
    fit) and put its fill into a copy of the image; every other pixel stays the input's."""
    restored = np.array(image, copy=True)
    area = sum((rows.stop - rows.start) * (cols.stop - cols.start) for rows, cols in windows)
    sizes = ", ".join(f"{cols.stop - cols.start}×{rows.stop - rows.start}" for rows, cols in windows)
    yield TileProgress(0, len(windows), windows[0], 0.0, time.perf_counter() - start, None, kind="window",
                       message=f"inpainting only around the painted pixels: {_windows_text(len(windows))} ({sizes}), "
                               f"{area / math.prod(layout.spatial):.0%} of the image")
    runs, finished = [], []
    options = with_threads(options, max(((w.stop - w.start, c.stop - c.start) for w, c in windows),
                                        key=math.prod))
    for index, window in enumerate(windows):
        part = np.asarray(image[layout.window_index(window)])
        part_layout = Layout.of(part.shape, options.channel_axis, axes=options.axes)
        part_options = replace(options, mask=np.asarray(options.mask[window]),
                               guide=cut_guide(options.guide, window, options.factor))
        part_start = time.perf_counter()
        run = _restore_plane(part, part_layout, part_options, None, False, part_start, preview_now)
        result = yield from relay(run, _as_region_event(index, len(windows), window, finished, start, part_start,
                                                        restored, layout))
        finished.append(time.perf_counter() - part_start)
        restored[layout.window_index(window)] = result.image
        runs.extend(result.runs)
    return TiledRestoration(image=restored, tile_size=None, overlap=0, windows=windows, runs=runs,
                            elapsed=time.perf_counter() - start, regions=True)


def _windows_text(count: int) -> str:
    return f"{count} window" + ("s" if count != 1 else "")


def _as_region_event(index: int, count: int, window: tuple[slice, slice], finished: list[float], start: float,
                     part_start: float, restored: np.ndarray, layout: Layout) -> Callable[[TileProgress], TileProgress]:
    """Relabel a window's own events (whose previews are of the window) as the image's."""

    def event(inner: TileProgress) -> TileProgress:
        if inner.step is None:
            return replace(inner, tile=index, tiles=count, window=window, kind="window", fraction=index / count,
                           elapsed=time.perf_counter() - start, preview=None)
        # The window's own time so far and left (it may be cut into tiles), over all windows.
        fraction, eta, latest = overall_progress(index, count, finished, time.perf_counter() - part_start,
                                                 inner.eta, inner.eta_latest)
        # A window fitted whole previews in its steps; one cut into tiles in its own events.
        part = inner.preview if inner.preview is not None else inner.step.preview if inner.tiles == 1 else None
        preview = None
        if part is not None:
            preview = restored.copy()
            preview[layout.window_index(window)] = part
        return TileProgress(index, count, window, fraction, time.perf_counter() - start, eta, step=inner.step,
                            preview=preview, kind="window", eta_latest=latest)

    return event


def _keep_known(restored: np.ndarray, image: Any, mask: np.ndarray, layout: Layout) -> np.ndarray:
    """The input's own values wherever the mask does not ask for a fill (blending tiles' exact
    copies of them sums weights in float32, which may round them off by one level)."""
    fill = np.asarray(mask) != 0
    if layout.channel_axis is not None:
        fill = np.expand_dims(fill, layout.channel_axis)
    return np.where(fill, restored, np.asarray(image))


def _nothing_to_fill(options: RestoreOptions, window: tuple[slice, slice]) -> bool:
    """Inpainting that keeps the known pixels, with no pixel to fill in ``window``."""
    return options.spec.needs_mask and options.keeps_known and not np.any(np.asarray(options.mask[window]))


def _unchanged_run(options: RestoreOptions) -> dict[str, Any]:
    """The metadata of a part that was kept as it was, for want of pixels to fill."""
    return {
        "task": options.task, "iterations": 0, "stop_reason": "unchanged", "best_iteration": None,
        "elapsed_seconds": 0.0, "seed": options.seed, "device": str(select_device(options.device)),
        "threads": options.threads, "backtracks": 0, "precision": options.settings.precision,
        "settings": options.settings.as_dict(),
    }


def _tile_options(options: RestoreOptions, window: tuple[slice, slice]) -> RestoreOptions:
    """One tile's options: unit-range (C, h, w) data, and inpainting's mask cut to the tile.

    A tile without pixels to fill is fitted as an identity problem with the inpainting settings,
    which is what inpainting with an empty mask would compute (the fit refuses an empty mask,
    rightly so for a whole image).
    """
    tile = replace(options, channel_axis=0, axes=None, tile_size=None, overlap=None,
                   guide=cut_guide(options.guide, window, options.factor))
    if options.settings.stretch:
        # Stretched once for the whole image (_tile_intensity): a tile stretched on its own
        # would be fitted in another range than its neighbours.
        tile = tile.with_settings(stretch=False)
    if not options.spec.needs_mask:
        return tile
    tile_mask = np.asarray(options.mask[window]) != 0
    if tile_mask.all():
        raise ValueError(
            f"the tile at rows {window[0].start}-{window[0].stop}, columns {window[1].start}-{window[1].stop} "
            "is entirely masked: nothing is known there; use larger tiles"
        )
    if tile_mask.any():
        return replace(tile, mask=tile_mask)
    settings = options.settings.as_dict()
    return replace(tile, task="denoise", mask=None, preset="default", iterations=settings.pop("iterations"),
                   keep_known=None, advanced=settings)


class _Canvas:
    """The whole image as a preview while tiles are fitted: the input (enlarged for
    super-resolution) where no tile has been fitted yet, finished tiles, and the tile under way."""

    def __init__(self, image: Any, layout: Layout, intensity: Intensity, factor: int,
                 keep: np.ndarray | None = None) -> None:
        self._layout, self._intensity, self._factor = layout, intensity, factor
        self._input = layout.to_channels_first(np.asarray(image))
        chw = self._input
        self._chw = np.repeat(np.repeat(chw, factor, axis=1), factor, axis=2) if factor > 1 else chw.copy()
        # Inpainting that keeps known pixels: only these (True = fill) may change, in previews too.
        self._fill = keep

    def paste(self, window: tuple[slice, slice], unit_chw: np.ndarray) -> None:
        f = self._factor
        rows, cols = window
        out = (slice(None), slice(rows.start * f, rows.stop * f), slice(cols.start * f, cols.stop * f))
        values = self._intensity.from_unit(unit_chw)
        if self._fill is not None:
            values = np.where(self._fill[window][None], values, self._input[(slice(None), *window)])
        self._chw[out] = values

    def with_tile(self, window: tuple[slice, slice], unit_chw: np.ndarray) -> np.ndarray:
        self.paste(window, unit_chw)
        return from_channels_first(self._chw, self._layout.channel_axis).copy()


def _drive(
    run: Generator[Progress, None, Any], tile: int, tiles: int, window: tuple[slice, slice],
    finished: list[float], start: float, canvas: _Canvas | None = None,
) -> Generator[TileProgress, None, Any]:
    """Relay one fit's steps as tile events; return its result."""

    def as_tile_event(step: Progress) -> TileProgress:
        fraction, eta, latest = overall_progress(tile, tiles, finished, step.elapsed, step.eta, step.eta_latest)
        preview = canvas.with_tile(window, step.preview) if canvas is not None and step.preview is not None else None
        return TileProgress(tile, tiles, window, fraction, time.perf_counter() - start, eta, step=step,
                            preview=preview, eta_latest=latest)

    return (yield from relay(run, as_tile_event))
