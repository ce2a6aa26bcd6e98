"""The front door: numpy in, numpy out, any dtype, any layout, any size.

:func:`restore_iter` (and :func:`restore`, which drives it) is the one entry point of every
shell. From the image's axes, the options and the memory budget it plans the run: one fit, tiles
of a plane too big for one, every plane of a stack, or a volume with a 3D network. Whatever the
plan, it yields :class:`~napari_dip.core.engine.Progress` events and returns a
:class:`~napari_dip.core.fitting.Restoration`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import numpy as np

from .engine import Progress
from .fitting import Restoration, check_image, check_unknown_pixels, fit_array, network_shape, relay
from .guide import check_guide
from .layout import Layout
from .memory import default_budget
from .options import RestoreOptions
from .presets import TASKS, resolve_settings
from .progress import says_latest
from .stacks import PlaneProgress, StackRestoration, restore_stack_iter
from .tasks import TASKS as TASK_SPECS
from .tiling import TiledRestoration, TileProgress, plan_regions, plan_tile_size, plan_tiles, restore_tiled_iter

__all__ = [
    "restore", "restore_iter", "consume", "plan_run", "plan_compiles", "Restoration", "resolve_settings", "TASKS",
    "VOLUME_TASKS",
]

VOLUME_TASKS = tuple(name for name, spec in TASK_SPECS.items() if spec.volume)


def _options(task: str, options: RestoreOptions | None, kwargs: dict) -> RestoreOptions:
    if options is None:
        return RestoreOptions.from_kwargs(task, **kwargs)
    if kwargs:
        raise TypeError(f"give either options or keywords, not both: {', '.join(kwargs)}")
    return options


def plan_run(image: Any, options: RestoreOptions) -> tuple[str, Layout, int | None]:
    """How ``image`` will be restored: ``("fit" | "tiles" | "regions" | "planes" | "volume", layout,
    tile side)``; "regions": inpainting fits windows around the painted pixels only.

    Checks the image and its layout first, so a bad one is refused before any work.
    """
    check_image(image)
    layout = Layout.of(tuple(image.shape), options.channel_axis, axes=options.axes, volume=options.volume)
    layout.check_mask(options.mask)
    check_unknown_pixels(image, options, layout)
    check_guide(options.guide, layout, options.factor)
    if options.volume:
        if layout.plane_axes:
            raise ValueError(
                f"a volume has three spatial axes (depth, height, width), with or without a channel axis; "
                f"got shape {tuple(image.shape)}: restore each volume of the series on its own"
            )
        return "volume", layout, None
    if layout.plane_axes:
        return "planes", layout, None
    if plan_regions(layout, options):
        return "regions", layout, None
    tile = plan_tile_size(layout, options)
    return ("fit" if tile is None else "tiles"), layout, tile


def plan_compiles(image: Any, options: RestoreOptions) -> bool:
    """Whether the fits of this run will compile the network (``compile`` "on", or "auto" where
    the work repays it): a shell that must not be frozen by a compile runs those elsewhere."""
    from .device import resolve_compile

    kind, layout, tile = plan_run(image, options)
    if kind == "planes":
        # Planes are cut as the stack path cuts them: its planes' own layout.
        layout = layout.plane()
        tile = plan_tile_size(layout, options)
    spatial = layout.spatial if tile is None else tuple(min(tile, n) for n in layout.spatial)
    if kind == "regions":
        # The largest window: its fit is the one whose compile pays soonest.
        spatial = max(((rows.stop - rows.start, cols.stop - cols.start)
                       for rows, cols in plan_regions(layout, options)), key=math.prod)
    settings = options.settings
    pixels = math.prod(network_shape(spatial, options))
    return resolve_compile(settings.compile, _device(options), pixels, len(spatial), settings.iterations)


def restore_iter(
    image: Any,
    task: str = "denoise",
    *,
    options: RestoreOptions | None = None,
    initial_state: dict | None = None,
    keep_state: bool = False,
    preview_now: Callable[[], bool] | None = None,
    **kwargs,
) -> Generator[Progress, None, Restoration]:
    """Generator form of :func:`restore`: yields :class:`Progress` events, returns a
    :class:`Restoration`. Previews in the events are already in the input's dtype and range.

    Stop iterating (or call ``close()``) to cancel. Takes :func:`restore`'s keywords plus
    ``threads``, the preview schedule (``preview_seconds``, ``preview_iterations``) and tiling
    (``tile_size``, ``overlap``, ``memory_limit``), or a ready ``options``
    (:class:`~napari_dip.core.options.RestoreOptions`). ``initial_state``/``keep_state``
    warm-start a single fit from (and hand on) network weights. ``preview_now``, asked at every
    step, adds a preview when true: a shell that stops the run and keeps the current average
    sets it.
    """
    options = _options(task, options, kwargs)
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    kind, layout, tile = plan_run(image, options)
    if kind == "regions" and (initial_state is not None or keep_state):
        # Weights handed on or in are those of one fit of the whole plane.
        tile = plan_tile_size(layout, options)
        kind = "fit" if tile is None else "tiles"
    if initial_state is not None and kind not in ("fit", "volume"):
        what = f"is cut into tiles of {tile}²" if kind == "tiles" else f"has {layout.planes} planes"
        raise ValueError(
            f"initial_state warm-starts one fit, but this image {what}: use restore_tiled_iter's "
            "initial_states (one per tile) or restore_stack(warm_start=True), or leave initial_state out"
        )
    if kind in ("fit", "volume"):
        return (yield from fit_array(np.asarray(image), options, layout,
                                     initial_state=initial_state, keep_state=keep_state, preview_now=preview_now))
    start = time.perf_counter()
    if kind == "regions":
        run = restore_tiled_iter(image, options=options, preview_now=preview_now)
        result = yield from relay(run, _from_tile)
        return _tiled_restoration(result, options)
    if kind == "tiles":
        budget = default_budget(_device(options), options.memory_limit)
        why = {"asked": "as asked", "fill": "around the painted pixels (the tiles without any are kept as they are)"
               }.get(plan_tiles(layout, options)[1], f"to stay within {_size_text(budget)}")
        size = "×".join(str(n) for n in layout.spatial[::-1])
        factor = options.factor
        output = f" (of the input; {tile * factor}² of the result at ×{factor})" if factor > 1 else ""
        yield _note(f"{size} pixels: restoring in tiles of {tile}²{output} {why}", start)
        overlap = None if options.overlap is None else min(options.overlap, (tile - 1) // 2)
        run = restore_tiled_iter(image, options=replace(options, tile_size=tile, overlap=overlap),
                                 keep_state=keep_state, preview_now=preview_now)
        result = yield from relay(run, _from_tile)
        return _tiled_restoration(result, options)
    yield _note(f"{layout.planes} planes: restoring them one by one", start)
    result = yield from relay(restore_stack_iter(image, options=options), _from_plane)
    return _stack_restoration(result, options)


def _size_text(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _device(options: RestoreOptions):
    from .device import select_device

    return select_device(options.device)


def _note(message: str, start: float) -> Progress:
    return Progress(0, 0, math.nan, time.perf_counter() - start, None, message=message)


def _from_tile(event: TileProgress) -> Progress:
    if event.step is None:
        return Progress(0, 0, math.nan, event.elapsed, None, message=event.message, fraction=event.fraction)
    step = event.step
    part = f"{event.kind} {event.tile + 1}/{event.tiles}"
    return replace(step, elapsed=event.elapsed, eta=event.eta, eta_latest=event.eta_latest, fraction=event.fraction,
                   part=part, preview=event.preview, output=None)


def _from_plane(event: PlaneProgress) -> Progress:
    step = event.tile.step if event.tile is not None else None
    part = f"plane {event.plane + 1}/{event.planes}"
    if step is None:
        return Progress(0, 0, math.nan, event.elapsed, event.eta, message=event.message, fraction=event.fraction,
                        part=part)
    tiles = f", {event.tile.kind} {event.tile.tile + 1}/{event.tile.tiles}" if event.tile.tiles > 1 else ""
    return replace(step, elapsed=event.elapsed, eta=event.eta, eta_latest=event.eta_latest, fraction=event.fraction,
                   part=part + tiles, preview=None, output=None)


def _summary(runs: list[dict], options: RestoreOptions, image: Any, elapsed: float, plan: str) -> Restoration:
    first = runs[0]
    reasons = sorted({reason for run in runs for reason in _reasons(run)})
    return Restoration(
        image=image, task=options.task, iterations=sum(run["iterations"] for run in runs),
        stop_reason=reasons[0] if len(reasons) == 1 else ", ".join(reasons), elapsed=elapsed,
        settings=options.settings, seed=options.seed, device=first["device"], threads=first["threads"],
        precision=first.get("precision", options.settings.precision), plan=plan, parts=runs,
    )


def _reasons(run: dict) -> list[str]:
    return [run["stop_reason"]] if "stop_reason" in run else list(run["stop_reasons"])


def _tiled_restoration(result: TiledRestoration, options: RestoreOptions) -> Restoration:
    return _summary(result.runs, options, result.image, result.elapsed, result.plan)


def _stack_restoration(result: StackRestoration, options: RestoreOptions) -> Restoration:
    return _summary(result.runs, options, result.image, result.elapsed, f"{len(result.runs)} planes")


def restore(
    image: np.ndarray,
    task: str = "denoise",
    *,
    progress: bool | Callable[[Progress], Any] | None = None,
    options: RestoreOptions | None = None,
    **kwargs,
) -> np.ndarray:
    """Restore an image with a Deep Image Prior.

    A randomly initialised network is fitted, for this image alone, so that the task's forward
    model of its output matches ``image``; its output is the restoration. No training data.
    Stacks are restored plane by plane, planes too big for memory in tiles.

    Parameters
    ----------
    image : ndarray
        (H, W) grayscale, (H, W, 3|4) RGB(A), any channel count with ``channel_axis``, a stack
        with leading plane axes ((T, H, W), (Z, H, W, 3), ... or named by ``axes``), or with
        ``volume=True`` a (D, H, W) volume, with or without channels. uint8, uint16,
        float32/float64 in any range.
    task : {"denoise", "inpaint", "sr", "deblur", "jpeg"}
        Denoising, inpainting (needs ``mask``), super-resolution (needs ``scale``), deblurring
        (needs ``psf``), JPEG artifact removal.
    progress : bool or callable, optional
        True shows a tqdm progress bar; a callable is called with every :class:`Progress`.
    options : RestoreOptions, optional
        All choices at once, instead of the keywords below.
    **kwargs
        The fields of :class:`~napari_dip.core.options.RestoreOptions`: ``mask`` (nonzero =
        fill), ``scale``, ``psf``, ``axes`` (e.g. ``"TYX"``, ``"ZYXC"``), ``channel_axis``,
        ``preset`` ("default" stops by itself; "paper" uses the official settings),
        ``iterations`` (fixed; turns automatic stopping off), ``seed``, ``device``, ``threads``,
        ``volume``, ``tile_size``, ``memory_limit``, ``keep_known`` (inpainting: return the
        unpainted pixels exactly; default except for "paper"), ``warm_start``, and fields of
        :class:`~napari_dip.core.settings.Settings` (``lr``, ``channels``, ``auto_stop``, ...).

    Returns
    -------
    ndarray
        The restored image, with the input's dtype, range and layout; ``scale`` times larger for
        super-resolution.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip import restore
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(0.5 + 0.1 * rng.standard_normal((32, 32)), 0, 1).astype(np.float32)
    >>> restored = restore(noisy, iterations=5, channels=8, scales=2)
    >>> restored.shape, restored.dtype
    ((32, 32), dtype('float32'))
    >>> movie = np.stack([noisy, noisy.T])
    >>> restore(movie, axes="TYX", iterations=2, channels=8, scales=2).shape
    (2, 32, 32)
    """
    options = _options(task, options, kwargs) if options is not None else RestoreOptions.from_kwargs(
        task, **{"preview_seconds": None, **kwargs})
    return consume(restore_iter(image, options=options), progress).image


def consume(run: Generator, progress: bool | Callable[[Any], Any] | None = None) -> Any:
    """Drive a run to the end, reporting to a tqdm bar (``progress=True``) or a callable."""
    bar = None
    try:
        while True:
            event = next(run)
            if progress is True:
                bar = _show(bar, event)
            elif callable(progress):
                progress(event)
    except StopIteration as done:
        if bar is not None:  # a run that stops by itself ends before the time it was given
            bar.n = 100
            bar.set_postfix_str("done", refresh=False)
            bar.refresh()
        return done.value
    finally:
        if bar is not None:
            bar.close()
        run.close()


def _show(bar, event: Any):
    """One tqdm bar over the whole run: percent done, the part under way, the time left."""
    from tqdm.auto import tqdm

    if getattr(event, "message", None):
        (tqdm.write if bar is not None else print)(event.message)
        return bar
    if bar is None:
        # Created on the first step, so bad input fails before any bar is drawn.
        bar = tqdm(total=100, unit="%", dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% "
                   "[{elapsed}<{remaining}{postfix}]")
    fraction = event.done_fraction if hasattr(event, "done_fraction") else event.fraction
    # Time-based estimates wobble; a bar that steps back looks broken.
    bar.n = max(bar.n, 100 * fraction)
    left = f"{event.eta:.0f}s" if event.eta is not None else "?"
    latest = getattr(event, "eta_latest", None)
    if says_latest(event.eta, latest):
        left += f" ({latest:.0f}s at the cap)"
    step = getattr(event, "iteration", None)
    postfix = {"it": step} if step is not None else {}
    if getattr(event, "part", None):
        postfix["part"] = event.part
    bar.set_postfix(**postfix, left=left, refresh=False)
    bar.refresh()
    return bar
