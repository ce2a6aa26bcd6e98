"""The widget's time per step against the command line's core run, same image and threads.

    xvfb-run -a python benchmarks/widget_speed.py [--threads 1 2] [--steps 400]

The noisy sample (the 256² astronaut, σ 25) with the default preset: once through
``restore_iter`` as ``napari-dip restore`` runs it, once through the dock widget (opened as a
plugin, remembered settings ignored), each for ``--steps`` steps. Seconds per step are the median
over steps 100 to the end, from the events' elapsed times, so compiling is not counted. Run it on
an idle machine; each run compiles (the first on a cold cache, the others warm).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def _per_step(samples: list[tuple[int, float]], first: int = 100) -> float:
    samples = [(i, t) for i, t in samples if i >= first]
    steps = np.diff([i for i, _ in samples])
    seconds = np.diff([t for _, t in samples])
    return float(np.median(seconds[steps > 0] / steps[steps > 0]))


def core_run(image: np.ndarray, threads: int, steps: int) -> float:
    from napari_dip.core import restore_iter

    samples = []
    run = restore_iter(image, threads=threads, preview_seconds=None)
    for event in run:
        if event.message is None:
            samples.append((event.iteration, event.elapsed))
        if event.iteration >= steps:
            break
    run.close()
    return _per_step(samples)


def _wait(condition) -> None:
    """Let Qt's event loop idle (as in a real session) until ``condition()`` holds."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: condition() and loop.quit())
    timer.start(100)
    loop.exec_()
    timer.stop()


def widget_run(viewer, image: np.ndarray, threads: int, steps: int, preview_seconds: float) -> float:
    viewer.layers.clear()
    viewer.add_image(image, name="noisy astronaut")
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior restoration")
    widget.threads.setValue(threads)
    widget.preview_seconds = preview_seconds
    samples = []
    shown = widget._on_progress

    def record(event):
        if event.message is None:
            samples.append((event.iteration, event.elapsed))
        shown(event)

    widget._on_progress = record
    gui_cpu = time.process_time()
    widget.run()
    _wait(lambda: not widget.running or (samples and samples[-1][0] >= steps))
    gui_cpu = time.process_time() - gui_cpu
    widget.cancel()
    _wait(lambda: not widget.running)
    viewer.window.remove_dock_widget(widget)
    print(f"(widget run, {threads} thread(s): the napari process used {gui_cpu:.1f} s of CPU)", flush=True)
    return _per_step(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--preview-seconds", type=float, default=2.0, help="the widget's preview interval")
    args = parser.parse_args()
    from napari_dip._widget_settings import SETTINGS_ENV

    os.environ[SETTINGS_ENV] = os.path.join(tempfile.mkdtemp(), "settings.json")
    import napari

    from napari_dip import io

    image, _ = io.sample_input("astronaut", "denoise")
    viewer = napari.Viewer(show=True)
    print("| threads | command line s/step | widget s/step | widget / command line |")
    print("| --- | --- | --- | --- |")
    for threads in args.threads:
        core = core_run(image, threads, args.steps)
        widget = widget_run(viewer, image, threads, args.steps, args.preview_seconds)
        print(f"| {threads} | {core:.4f} | {widget:.4f} | {widget / core:.3f} |", flush=True)
    viewer.close()


if __name__ == "__main__":
    main()
