"""What the widget's worker thread runs: the core's generator, with cancel, throttling and errors
turned into one sentence. Qt-free, so it is tested (and usable) without a viewer.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from .core import Progress
    from .core.stacks import PlaneProgress

__all__ = ["CurveHistory", "Kept", "RestorationFailed", "carries_preview", "describe_error", "drive", "ends_a_plane"]

Event = TypeVar("Event")
Result = TypeVar("Result")


class RestorationFailed(Exception):
    """A run failed; ``str()`` is one sentence for the user.

    Deliberately not a RuntimeError: superqt's worker takes a RuntimeError leaving the generator
    for a deleted worker and then emits neither ``errored`` nor ``finished``, which would leave
    the widget stuck in its running state (torch's out-of-memory errors are RuntimeErrors).
    """


@dataclass(frozen=True)
class Kept:
    """What a run stopped by the user returns: the event of the step it stopped at, whose
    ``preview`` (the running average, in the input's dtype) is kept as the result."""

    event: Progress


@dataclass(frozen=True)
class CurveSnapshot:
    """A copy of a :class:`CurveHistory`, for drawing."""

    iterations: np.ndarray
    losses: np.ndarray
    signals: np.ndarray
    best: int | None
    part: str | None
    version: int


class CurveHistory:
    """The loss and stop signal of every step of the fit under way, and its best iteration.

    The worker thread calls :meth:`record` with each event; the GUI thread takes a
    :meth:`snapshot` when it redraws. A fit that starts again from its first step (the next tile
    or plane) starts a new curve.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._iterations: list[int] = []
            self._losses: list[float] = []
            self._signals: list[float] = []
            self._best: int | None = None
            self._part: str | None = None
            self._version += 1

    def record(self, event: Any) -> None:
        """Add a step's event; notes and stack events without a step are skipped."""
        step = getattr(event, "tile", None)
        if step is not None:  # a stack's PlaneProgress: the step is inside
            step = step.step
        elif hasattr(event, "loss"):
            step = event
        if step is None or getattr(step, "message", None) is not None or step.iteration <= 0:
            return
        part = getattr(step, "part", None)
        signal = getattr(step, "signal", None)
        with self._lock:
            if self._iterations and (step.iteration <= self._iterations[-1] or part != self._part):
                self._iterations, self._losses, self._signals, self._best = [], [], [], None
            self._part = part
            self._iterations.append(step.iteration)
            self._losses.append(float(step.loss))
            self._signals.append(float(signal) if signal is not None else math.nan)
            best = getattr(step, "best_iteration", None)
            if best is not None:
                self._best = int(best)
            self._version += 1

    def snapshot(self) -> CurveSnapshot:
        with self._lock:
            return CurveSnapshot(np.array(self._iterations, dtype=np.float64), np.array(self._losses),
                                 np.array(self._signals), self._best, self._part, self._version)


def _is_out_of_memory(exc: BaseException) -> bool:
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or "out of memory" in str(exc).lower()
    )


def describe_error(exc: BaseException) -> str:
    """One sentence telling the user what went wrong (and, where known, what to do)."""
    if isinstance(exc, ValueError):
        return str(exc)
    if _is_out_of_memory(exc):
        return (
            "the device ran out of memory: restore a smaller image, narrow the network "
            "(Advanced → width) or pick another device"
        )
    return f"the restoration failed with {type(exc).__name__}: {exc}"


def carries_preview(event: Progress) -> bool:
    """A single image's event that must reach the GUI: it has a preview to show, or a note
    (how the image is cut into tiles)."""
    return event.preview is not None or event.message is not None


def ends_a_plane(event: PlaneProgress) -> bool:
    """A stack's event that must reach the GUI: a finished plane to put into the result layer,
    or a note (e.g. that warm start refits the first plane)."""
    return event.restored is not None or event.message is not None


def drive(
    run: Generator[Event, None, Result],
    cancel: threading.Event,
    report_seconds: float = 0.1,
    always: Callable[[Event], bool] = carries_preview,
    keep: threading.Event | None = None,
    record: Callable[[Event], None] | None = None,
) -> Generator[Event, None, Result | Kept | None]:
    """Step ``run`` until it ends or ``cancel`` is set; returns None when cancelled.

    ``cancel`` is checked before every optimisation step, so a cancel takes effect within one
    step, and the core's generator is closed in this thread. Only events for which ``always``
    is true and one event per ``report_seconds`` are passed on: a small network steps hundreds
    of times a second, and a signal per step would flood the GUI thread's event queue.

    Once ``keep`` is set, the first event with a preview ends the run as :class:`Kept`: the
    core's generator, made with ``preview_now=keep.is_set``, adds one at the next step.
    ``record``, if given, is called here (in the worker's thread) with every event, also those
    not passed on: the live curve keeps every step.
    """
    last_report = -float("inf")
    try:
        while not cancel.is_set():
            try:
                event = next(run)
            except StopIteration as done:
                return done.value
            if record is not None:
                record(event)
            if keep is not None and keep.is_set() and event.preview is not None:
                return Kept(event)
            now = time.monotonic()
            if always(event) or now - last_report >= report_seconds:
                last_report = now
                yield event
        return None
    except Exception as exc:
        raise RestorationFailed(describe_error(exc)) from exc
    finally:
        run.close()
