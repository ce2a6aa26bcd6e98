"""What the widget's worker thread runs: the core's generator, with cancel, throttling and errors
turned into one sentence. Qt-free, so it is tested (and usable) without a viewer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Progress, Restoration

__all__ = ["RestorationFailed", "describe_error", "drive"]


class RestorationFailed(Exception):
    """A run failed; ``str()`` is one sentence for the user.

    Deliberately not a RuntimeError: superqt's worker takes a RuntimeError leaving the generator
    for a deleted worker and then emits neither ``errored`` nor ``finished``, which would leave
    the widget stuck in its running state (torch's out-of-memory errors are RuntimeErrors).
    """


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


def drive(
    run: Generator[Progress, None, Restoration],
    cancel: threading.Event,
    report_seconds: float = 0.1,
) -> Generator[Progress, None, Restoration | None]:
    """Step ``run`` until it ends or ``cancel`` is set; returns None when cancelled.

    ``cancel`` is checked before every optimisation step, so a cancel takes effect within one
    step, and the core's generator is closed in this thread. Only preview events and one event
    per ``report_seconds`` are passed on: a small network steps hundreds of times a second, and
    a signal per step would flood the GUI thread's event queue.
    """
    last_report = -float("inf")
    try:
        while not cancel.is_set():
            try:
                event = next(run)
            except StopIteration as done:
                return done.value
            now = time.monotonic()
            if event.preview is not None or now - last_report >= report_seconds:
                last_report = now
                yield event
        return None
    except Exception as exc:
        raise RestorationFailed(describe_error(exc)) from exc
    finally:
        run.close()
