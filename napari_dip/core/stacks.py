"""Restoring stacks plane by plane: Z, T, both, or any other leading axes.

One generator walks the planes in order and relays every optimisation step with the plane's
index and the overall progress, so a shell shows one progress bar and cancels the whole stack by
no longer iterating. Each finished plane comes with its last event, so a shell can stream planes
into a layer, and is written to ``out`` (a numpy, zarr or memory-mapped TIFF array) at once.
Planes are read one at a time (``stack[index]``), so a dask or zarr stack is never loaded whole.

Each plane is restored by :func:`~napari_dip.core.tiling.restore_tiled_iter` (one fit, unless
the plane is too big for memory) with the same seed. With ``warm_start`` a plane's fit starts from
the previous plane's final weights: neighbouring planes look alike, so it has less to learn, and
it runs a fixed, shorter schedule derived from the first plane's fit (see ``WARM_*`` below).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .fitting import relay, with_threads
from .guide import check_guide, guide_for
from .layout import Layout
from .options import RestoreOptions
from .progress import overall_progress
from .tiling import TiledRestoration, TileProgress, plan_tile_size, restore_tiled_iter

__all__ = ["PlaneProgress", "StackRestoration", "restore_stack_iter", "restore_stack"]

# A warm-started plane runs this share of the first plane's best iteration count (its output
# variance minimum), at this share of its learning rate, without automatic stopping. Measured on a noisy time-lapse
# (benchmarks/warm_start.py): the first Adam steps at the full rate knock a fitted network far
# off (they move every weight by about the learning rate), and the variance-based stopper,
# which expects a fit that starts far from the image, does not find a minimum on a warm one.
WARM_ITERATION_SHARE = 0.5
WARM_LR_SHARE = 0.3


@dataclass
class PlaneProgress:
    """A step of one plane's restoration (``tile``), or that plane's end (``restored``)."""

    plane: int
    planes: int
    index: tuple[int, ...]
    fraction: float
    elapsed: float
    eta: float | None
    tile: TileProgress | None = None
    restored: np.ndarray | None = None
    message: str | None = None
    eta_latest: float | None = None  # the most seconds left (see Progress.eta_latest)


@dataclass
class StackRestoration:
    """The restored stack (``out`` when one was given) and how each plane's fit ran."""

    image: Any
    runs: list[dict[str, Any]]
    elapsed: float
    warm_start: bool
    refit_iterations: int = 0  # of the first plane, to hand on its best weights (warm start)

    @property
    def iterations(self) -> list[int]:
        return [run["iterations"] for run in self.runs]

    def metadata(self) -> dict[str, Any]:
        """Plain values describing the run (for a layer's metadata or a log)."""
        first = self.runs[0]
        return {
            "task": first["task"],
            "planes": len(self.runs),
            "warm_start": self.warm_start,
            "refit_iterations": self.refit_iterations,
            "iterations": self.iterations,
            "stop_reasons": [run["stop_reason"] if "stop_reason" in run else run["stop_reasons"] for run in self.runs],
            "elapsed_seconds": round(self.elapsed, 3),
            "seed": first["seed"],
            "device": first["device"],
            "threads": first["threads"],
            "settings": first["settings"],
        }


def restore_stack_iter(
    stack: Any,
    task: str = "denoise",
    *,
    options: RestoreOptions | None = None,
    out: Any = None,
    **kwargs,
) -> Generator[PlaneProgress, None, StackRestoration]:
    """Restore every 2D plane of a stack: yields :class:`PlaneProgress`, returns a
    :class:`StackRestoration`.

    Parameters
    ----------
    stack : array-like
        Any number of leading axes before height and width, e.g. (T, Z, Y, X), with channels at
        ``channel_axis`` (or named by ``axes``); a numpy, dask or zarr array (read one plane at a
        time).
    task, **kwargs
        As for :func:`~napari_dip.core.api.restore`, or a ready ``options``
        (:class:`~napari_dip.core.options.RestoreOptions`). Its ``mask`` is (H, W) for every
        plane, or the stack's shape without channels; with ``warm_start`` each plane's fit starts
        from the previous plane's final network weights, for ``warm_iterations`` at
        ``WARM_LR_SHARE`` times the learning rate. The first plane is fitted as without warm
        start; if it stopped automatically, it is refitted up to its best iteration, the minimum
        of its output variance (the same seed retraces the same path), to hand on weights from
        before it began to fit the noise rather than its final ones. ``warm_iterations`` default:
        ``WARM_ITERATION_SHARE`` times the first plane's best iteration (the median over tiles).
    out : array-like, optional
        Where to write the planes as they finish (e.g. a zarr array or ``tifffile.memmap``), of
        the result's shape; by default a new numpy array.

    Yields
    ------
    PlaneProgress
        Each optimisation step (``tile``), then each plane's end with the plane (``restored``).

    Returns
    -------
    StackRestoration

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip.core import consume
    >>> movie = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    >>> run = restore_stack_iter(movie, iterations=2, channels=8, scales=2, preview_seconds=None)
    >>> result = consume(run)
    >>> result.image.shape, result.iterations
    ((3, 32, 32), [2, 2, 2])
    """
    start = time.perf_counter()
    if options is None:
        options = RestoreOptions.from_kwargs(task, **kwargs)
    elif kwargs:
        raise TypeError(f"give either options or keywords, not both: {', '.join(kwargs)}")
    layout = Layout.of(tuple(stack.shape), options.channel_axis, axes=options.axes)
    layout.check_mask(options.mask)
    check_guide(options.guide, layout, options.factor)
    shape = layout.output_shape(options.factor)
    if out is None:
        out = np.empty(shape, dtype=stack.dtype)
    elif tuple(out.shape) != shape:
        raise ValueError(f"the output array has shape {tuple(out.shape)}; this stack's result needs {shape}")
    warm_start = options.warm_start
    planes = replace(options, channel_axis=layout.plane_channel_axis, axes=None, warm_start=False)
    tile = plan_tile_size(layout.plane(), planes)
    planes = with_threads(planes, layout.spatial if tile is None else (tile, tile))
    runs: list[dict[str, Any]] = []
    finished: list[float] = []
    states = None
    warm: RestoreOptions | None = None
    refit_iterations = 0
    for plane, position in enumerate(layout.positions()):
        plane_start = time.perf_counter()
        plane_options = replace(warm or planes, mask=layout.mask_for(options.mask, position),
                                guide=guide_for(options.guide, layout, position, options.factor))
        plane_image = stack[layout.index(position)]
        run = restore_tiled_iter(plane_image, options=plane_options, initial_states=states, keep_state=warm_start)
        result: TiledRestoration = yield from _relay(run, plane, layout.planes, position, finished, start)
        # Keep the first plane's tile grid: warm-start weights are per tile, and every plane
        # should be cut the same way even if free memory changes meanwhile.
        # (At least 8: a tile side of a whole small plane would be refused.)
        # Windows around painted pixels are no grid: each plane plans its own from its mask.
        if not result.regions:
            planes = replace(planes, tile_size=result.tile_size or max(8, *layout.spatial),
                             overlap=result.overlap if result.tile_size else None)
        if warm_start and warm is None:
            states, span = result.states, _best_span(result)
            if any(run["stop_reason"] == "auto" for run in result.runs):
                note = f"warm start: refitting the first plane for its best {span} iterations to hand on those weights"
                yield PlaneProgress(plane, layout.planes, position, plane / layout.planes,
                                    time.perf_counter() - start, None, message=note)
                refit_options = replace(planes, mask=plane_options.mask, guide=plane_options.guide, iterations=span,
                                        advanced={**planes.advanced, "auto_stop": False})
                refit = restore_tiled_iter(plane_image, options=refit_options, keep_state=True)
                refitted = yield from _relay(refit, plane, layout.planes, position, finished, start)
                states, refit_iterations = refitted.states, refitted.iterations
            warm = _warm_options(result, span, planes, options.warm_iterations)
        elif warm_start:
            states = result.states
        finished.append(time.perf_counter() - plane_start)
        out[layout.index(position)] = result.image
        runs.append({"plane": list(position), **result.metadata()})
        elapsed = time.perf_counter() - start
        yield PlaneProgress(
            plane, layout.planes, position, (plane + 1) / layout.planes, elapsed,
            elapsed / (plane + 1) * (layout.planes - plane - 1), restored=result.image,
        )
    return StackRestoration(out, runs, time.perf_counter() - start, warm_start, refit_iterations)


def _warm_options(first: TiledRestoration, span: int, options: RestoreOptions, warm_iterations: int | None):
    """Options of the planes after the first when warm-starting (see ``WARM_*``)."""
    iterations = warm_iterations or max(1, round(span * WARM_ITERATION_SHARE))
    lr = first.runs[0]["settings"]["lr"] * WARM_LR_SHARE
    return replace(options, iterations=iterations, advanced={**options.advanced, "lr": lr, "auto_stop": False})


def _best_span(result: TiledRestoration) -> int:
    """Iterations of a plane's fit worth handing on: up to its best iteration (variance minimum)
    when it stopped by itself, else all of them; the median over tiles."""
    spans = [run["best_iteration"] if run["stop_reason"] == "auto" else run["iterations"] for run in result.runs]
    return int(np.median(spans))


def _relay(
    run: Generator[TileProgress, None, TiledRestoration], plane: int, planes: int, position: tuple[int, ...],
    finished: list[float], start: float,
) -> Generator[PlaneProgress, None, TiledRestoration]:
    def as_plane_event(event: TileProgress) -> PlaneProgress:
        if event.step is None:
            return PlaneProgress(plane, planes, position, plane / planes, time.perf_counter() - start, None,
                                 message=event.message)
        fraction, eta, latest = overall_progress(plane, planes, finished, event.elapsed, event.eta, event.eta_latest)
        return PlaneProgress(plane, planes, position, fraction, time.perf_counter() - start, eta, tile=event,
                             eta_latest=latest)

    return (yield from relay(run, as_plane_event))


def restore_stack(
    stack: Any,
    task: str = "denoise",
    *,
    progress: bool | Callable[[PlaneProgress], Any] | None = None,
    **kwargs,
) -> StackRestoration:
    """Restore every plane of a stack; :func:`restore_stack_iter` driven to its end.

    Parameters
    ----------
    stack, task
        As for :func:`restore_stack_iter`.
    progress : bool or callable, optional
        True shows one tqdm bar for the whole stack; a callable receives every event.
    **kwargs
        Keywords of :func:`restore_stack_iter`.

    Returns
    -------
    StackRestoration
    """
    from .api import consume

    kwargs.setdefault("preview_seconds", None)
    return consume(restore_stack_iter(stack, task, **kwargs), progress)
