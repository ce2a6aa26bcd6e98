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
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from .progress import overall_progress
from .tiling import TiledRestoration, TileProgress, restore_tiled_iter

__all__ = ["PlaneProgress", "StackRestoration", "StackLayout", "restore_stack_iter", "restore_stack"]

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


@dataclass(frozen=True)
class StackLayout:
    """Which axes of a stack are planes, which are the image's height and width, and channels.

    The last two axes other than ``channel_axis`` are height and width; every other axis (other
    than the channels) runs over planes. With ``channel_axis=None`` a last axis of 3 or 4 is
    taken as RGB(A), as napari and :func:`~napari_dip.core.api.restore` do.
    """

    shape: tuple[int, ...]
    channel_axis: int | None
    plane_axes: tuple[int, ...]
    spatial_axes: tuple[int, int]

    @classmethod
    def of(cls, shape: tuple[int, ...], channel_axis: int | None = None) -> StackLayout:
        ndim = len(shape)
        if channel_axis is None and ndim >= 3 and shape[-1] in (3, 4):
            channel_axis = -1
        if channel_axis is not None:
            if not -ndim <= channel_axis < ndim:
                raise ValueError(f"channel_axis {channel_axis} is out of range for a stack of shape {shape}")
            channel_axis %= ndim
        others = [axis for axis in range(ndim) if axis != channel_axis]
        if len(others) < 2:
            raise ValueError(f"a stack of shape {shape} has no 2D planes: it needs a height and a width axis")
        spatial = (others[-2], others[-1])
        return cls(tuple(shape), channel_axis, tuple(others[:-2]), spatial)

    @property
    def planes(self) -> int:
        return int(np.prod([self.shape[axis] for axis in self.plane_axes], dtype=np.int64))

    @property
    def plane_channel_axis(self) -> int | None:
        """The channel axis within one plane, ``stack[self.index(...)]``."""
        if self.channel_axis is None:
            return None
        return sum(axis not in self.plane_axes for axis in range(self.channel_axis))

    def positions(self) -> Iterator[tuple[int, ...]]:
        """Positions along the plane axes, in C order (the last plane axis varies fastest)."""
        return product(*(range(self.shape[axis]) for axis in self.plane_axes))

    def index(self, position: tuple[int, ...]) -> tuple:
        """The index of one plane (all channels) in the stack."""
        index: list[Any] = [slice(None)] * len(self.shape)
        for axis, at in zip(self.plane_axes, position, strict=True):
            index[axis] = at
        return tuple(index)

    def output_shape(self, factor: int) -> tuple[int, ...]:
        return tuple(size * factor if axis in self.spatial_axes else size for axis, size in enumerate(self.shape))

    def mask_for(self, mask: Any, position: tuple[int, ...]) -> np.ndarray | None:
        """One plane's mask from a (H, W) mask shared by all planes or one per plane."""
        if mask is None:
            return None
        if np.ndim(mask) == 2:
            return np.asarray(mask)
        mask_axes = [axis for axis in range(len(self.shape)) if axis != self.channel_axis]
        index = [slice(None)] * len(mask_axes)
        for axis, at in zip(self.plane_axes, position, strict=True):
            index[mask_axes.index(axis)] = at
        return np.asarray(mask[tuple(index)])

    def check_mask(self, mask: Any) -> None:
        if mask is None:
            return
        spatial = tuple(self.shape[axis] for axis in self.spatial_axes)
        per_plane = tuple(size for axis, size in enumerate(self.shape) if axis != self.channel_axis)
        if tuple(np.shape(mask)) not in (spatial, per_plane):
            raise ValueError(
                f"mask shape {tuple(np.shape(mask))} matches neither a plane {spatial} nor the stack "
                f"without channels {per_plane}"
            )


def restore_stack_iter(
    stack: Any,
    task: str = "denoise",
    *,
    channel_axis: int | None = None,
    mask: Any = None,
    scale: int | None = None,
    warm_start: bool = False,
    warm_iterations: int | None = None,
    out: Any = None,
    **options,
) -> Generator[PlaneProgress, None, StackRestoration]:
    """Restore every 2D plane of a stack: yields :class:`PlaneProgress`, returns a
    :class:`StackRestoration`.

    Parameters
    ----------
    stack : array-like
        Any number of leading axes before height and width, e.g. (T, Z, Y, X), with channels at
        ``channel_axis``; a numpy, dask or zarr array (read one plane at a time).
    task : str
        As for :func:`~napari_dip.core.api.restore`.
    channel_axis : int, optional
        Axis of channels in ``stack``. ``None``: none, except a last axis of 3 or 4 (RGB(A)).
    mask : array-like, optional
        Inpainting mask: (H, W) for every plane, or the stack's shape without channels.
    scale : int, optional
        Super-resolution factor.
    warm_start : bool
        Start each plane's fit from the previous plane's final network weights, for
        ``warm_iterations`` at ``WARM_LR_SHARE`` times the learning rate. The first plane is
        fitted as without warm start; if it stopped automatically, it is refitted up to its best
        iteration, the minimum of its output variance (the same seed retraces the same path),
        to hand on weights from before it began to fit the noise rather than its final ones.
    warm_iterations : int, optional
        Iterations of each warm-started plane; default ``WARM_ITERATION_SHARE`` times the first
        plane's best iteration (the median over tiles).
    out : array-like, optional
        Where to write the planes as they finish (e.g. a zarr array or ``tifffile.memmap``), of
        the result's shape; by default a new numpy array.
    **options
        Keywords of :func:`~napari_dip.core.tiling.restore_tiled_iter` (``seed``, ``iterations``,
        ``preset``, ``device``, ``tile_size``, ``memory_limit``, Settings fields, ...).

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
    layout = StackLayout.of(tuple(stack.shape), channel_axis)
    layout.check_mask(mask)
    factor = int(scale) if task == "sr" and scale else 1
    shape = layout.output_shape(factor)
    if out is None:
        out = np.empty(shape, dtype=stack.dtype)
    elif tuple(out.shape) != shape:
        raise ValueError(f"the output array has shape {tuple(out.shape)}; this stack's result needs {shape}")
    runs: list[dict[str, Any]] = []
    finished: list[float] = []
    states = None
    warm_options: dict[str, Any] | None = None
    refit_iterations = 0
    for plane, position in enumerate(layout.positions()):
        plane_start = time.perf_counter()
        plane_fit = dict(
            task=task, mask=layout.mask_for(mask, position), scale=scale, channel_axis=layout.plane_channel_axis,
            keep_state=warm_start,
        )
        plane_image = stack[layout.index(position)]
        run = restore_tiled_iter(plane_image, initial_states=states, **plane_fit, **(warm_options or options))
        result: TiledRestoration = yield from _relay(run, plane, layout.planes, position, finished, start)
        # Keep the first plane's tile grid: warm-start weights are per tile, and every plane
        # should be cut the same way even if free memory changes meanwhile.
        options["tile_size"] = result.tile_size or max(layout.shape[axis] for axis in layout.spatial_axes)
        options["overlap"] = result.overlap if result.tile_size else None
        if warm_start and warm_options is None:
            states, span = result.states, _best_span(result)
            if any(run["stop_reason"] == "auto" for run in result.runs):
                note = f"warm start: refitting the first plane for its best {span} iterations to hand on those weights"
                yield PlaneProgress(plane, layout.planes, position, plane / layout.planes,
                                    time.perf_counter() - start, None, message=note)
                refit = restore_tiled_iter(plane_image, **plane_fit, **dict(options, iterations=span, auto_stop=False))
                refitted = yield from _relay(refit, plane, layout.planes, position, finished, start)
                states, refit_iterations = refitted.states, refitted.iterations
            warm_options = _warm_options(result, span, options, warm_iterations)
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


def _warm_options(first: TiledRestoration, span: int, options: dict, warm_iterations: int | None) -> dict:
    """Options of the planes after the first when warm-starting (see ``WARM_*``)."""
    iterations = warm_iterations or max(1, round(span * WARM_ITERATION_SHARE))
    lr = first.runs[0]["settings"]["lr"] * WARM_LR_SHARE
    return dict(options, iterations=iterations, lr=lr, auto_stop=False)


def _best_span(result: TiledRestoration) -> int:
    """Iterations of a plane's fit worth handing on: up to its best iteration (variance minimum)
    when it stopped by itself, else all of them; the median over tiles."""
    spans = [run["best_iteration"] if run["stop_reason"] == "auto" else run["iterations"] for run in result.runs]
    return int(np.median(spans))


def _relay(
    run: Generator[TileProgress, None, TiledRestoration], plane: int, planes: int, position: tuple[int, ...],
    finished: list[float], start: float,
) -> Generator[PlaneProgress, None, TiledRestoration]:
    try:
        while True:
            event = next(run)
            if event.step is None:
                yield PlaneProgress(plane, planes, position, plane / planes, time.perf_counter() - start, None,
                                    message=event.message)
                continue
            fraction, eta = overall_progress(plane, planes, finished, event.elapsed, event.eta)
            yield PlaneProgress(plane, planes, position, fraction, time.perf_counter() - start, eta, tile=event)
    except StopIteration as done:
        return done.value
    finally:
        run.close()


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
    kwargs.setdefault("preview_seconds", None)
    run = restore_stack_iter(stack, task, **kwargs)
    bar = None
    try:
        while True:
            event = next(run)
            if progress is True:
                if bar is None:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=event.planes, unit="plane", dynamic_ncols=True,
                               bar_format="{l_bar}{bar}| {n:.2f}/{total} [{elapsed}<{remaining}{postfix}]")
                # Time-based estimates wobble; a bar that steps back looks broken.
                bar.n = max(bar.n, event.fraction * event.planes)
                left = f"{event.eta:.0f}s" if event.eta is not None else "?"
                bar.set_postfix(plane=f"{event.plane + 1}/{event.planes}", left=left, refresh=False)
                bar.refresh()
            elif callable(progress):
                progress(event)
    except StopIteration as done:
        return done.value
    finally:
        if bar is not None:
            bar.close()
        run.close()
