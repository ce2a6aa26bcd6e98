"""Runs a restoration in a worker process and streams its events back; Qt-free.

A first ``torch.compile`` holds Python's lock for stretches of up to a second while it
generates code (measured in the dock widget: 15 event-loop gaps over 200 ms, the largest 849 ms,
during a 36 s cold compile). In its own process it cannot freeze the viewer. The widget runs
compiled fits here and eager ones in a thread, where they start at once and never stalled the
event loop by more than 200 ms.

Processes come from a fork server that has imported the core once, so a run starts in a
fraction of a second after the first; cancelling sets a flag the child checks at every step and,
if it does not answer within 0.3 s (a compile under way), ends the process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["run_in_process", "WorkerProcessDied"]

_TARGETS = ("restore_iter", "restore_stack_iter")
_CANCEL_GRACE_SECONDS = 0.3
_POLL_SECONDS = 0.05
_context = None


class WorkerProcessDied(RuntimeError):
    """The worker process ended without a result (killed, out of memory, a crash)."""


def _get_context():
    global _context
    if _context is None:
        methods = multiprocessing.get_all_start_methods()
        _context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            _context.set_forkserver_preload(["napari_dip.core"])
    return _context


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start processes without re-running the user's main script in them.

    multiprocessing re-imports ``__main__`` in a new process (and the fork server) when it has a
    file and no module name; a script that opens napari without an ``if __name__ ==
    "__main__"`` guard would then open another viewer or fail. The child needs nothing from it:
    its target lives in this module.
    """
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if hasattr(main, name)}
    try:
        for name in saved:
            setattr(main, name, None) if name == "__spec__" else delattr(main, name)
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def _serve(conn, target: str, image: Any, options: Any, stop, keep, report_seconds: float,
           environment: dict[str, str]) -> None:
    """The child: run ``target`` and send ("event" | "result" | "error", payload) tuples."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the parent's to handle
    os.environ.update(environment)
    from napari_dip import core
    from napari_dip.core import stacks

    try:
        if target == "restore_iter":
            run = core.restore_iter(image, options=options, preview_now=keep.is_set)
        else:
            run = stacks.restore_stack_iter(image, options=options)
        last = -float("inf")
        while not stop.is_set():
            try:
                event = next(run)
            except StopIteration as done:
                conn.send(("result", done.value))
                return
            now = time.monotonic()
            must = any(getattr(event, name, None) is not None for name in ("preview", "message", "restored"))
            if must or now - last >= report_seconds:
                last = now
                conn.send(("event", event))
        run.close()
        conn.send(("result", None))
    except Exception as exc:  # sent to the parent, which raises it there
        conn.send(("error", (isinstance(exc, ValueError), type(exc).__name__, str(exc))))
    finally:
        conn.close()


def run_in_process(
    target: str,
    image: Any,
    options: Any,
    *,
    cancel: threading.Event,
    keep: threading.Event | None = None,
    report_seconds: float = 0.1,
    environment: dict[str, str] | None = None,
) -> Generator[Any, None, Any]:
    """Run ``core.restore_iter`` or ``core.stacks.restore_stack_iter`` (``target``) on ``image``
    with ``options`` in a worker process; yield its events here and return its result (``None``
    once ``cancel`` is set). Setting ``keep`` asks the fit for a preview at its next step.
    ``environment`` is set in the child before it starts (e.g. ``TORCHINDUCTOR_CACHE_DIR``): the
    fork server's own environment is the one it was started with."""
    if target not in _TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(_TARGETS)}")
    context = _get_context()
    receiver, sender = context.Pipe(duplex=False)
    stop, keep_flag = context.Event(), context.Event()
    process = context.Process(
        target=_serve, args=(sender, target, image, options, stop, keep_flag, report_seconds, dict(environment or {})),
        daemon=True,
    )
    with _main_module_hidden():
        process.start()
    sender.close()
    ended = False
    try:
        while not cancel.is_set():
            if keep is not None and keep.is_set():
                keep_flag.set()
            if not receiver.poll(_POLL_SECONDS):
                if not process.is_alive() and not receiver.poll(0):
                    raise WorkerProcessDied(
                        f"the worker process ended without a result (exit code {process.exitcode})"
                    )
                continue
            try:
                kind, payload = receiver.recv()
            except EOFError:
                process.join(_CANCEL_GRACE_SECONDS)
                raise WorkerProcessDied(
                    f"the worker process ended without a result (exit code {process.exitcode}): "
                    "it may have run out of memory; restore a smaller image or narrow the network"
                ) from None
            if kind == "event":
                yield payload
                continue
            ended = True  # the worker sent its last message and is exiting on its own
            if kind == "result":
                return payload
            is_value_error, name, text = payload
            raise ValueError(text) if is_value_error else RuntimeError(f"{name}: {text}")
        return None
    finally:
        # Cancelled, or closed early (a kept preview): nothing the worker could still send is
        # wanted, and a worker in a compile would not see `stop` for seconds, so it is killed at
        # once (the compile cache writes its files atomically). One that has sent its result
        # gets a moment to exit by itself.
        stop.set()
        if ended:
            process.join(_CANCEL_GRACE_SECONDS)
        if process.is_alive():
            process.kill()
            process.join(1.0)
        receiver.close()
