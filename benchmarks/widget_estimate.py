"""The widget's time estimate: the table it is made from, and how it compares with real runs.

    python benchmarks/widget_estimate.py --table                 # seconds per step, for _estimate.STEP_COST
    xvfb-run -a python benchmarks/widget_estimate.py --compare    # estimate before Run against the run

``--table`` times steps of each preset's network (fast, default: bfloat16 and float32; paper:
float32) on the noisy astronaut at 64² and 192², one thread, compile off, and fits
seconds = fixed + per-megapixel × network pixels through the two sizes. Steps are timed in CPU
seconds of this (one-thread) process, which other work on a shared machine inflates far less
than wall time; on an idle machine the two agree.

``--compare`` opens the dock widget as napari does, with the default preset and a fixed count of
``--iterations``, at each of ``--sizes`` in turn, reads the estimate shown before Run, runs, and
prints the table's own estimate, the one shown (from the second size on, corrected by the run
before it), the run's wall time and the process's CPU time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def astronaut(size: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    clean = resize(data.astronaut().astype(np.float64) / 255, (size, size), anti_aliasing=True)
    noisy = np.clip(clean + np.random.default_rng(0).normal(scale=25 / 255, size=clean.shape), 0, 1)
    return np.rint(noisy * 255).astype(np.uint8)


def cpu_seconds_per_step(preset: str, precision: str, size: int, steps: int) -> float:
    from napari_dip.core import restore_iter

    times = []
    run = restore_iter(astronaut(size), preset=preset, iterations=steps, threads=1, compile="off",
                       preview_seconds=None, precision=precision)
    for _ in run:
        times.append(time.process_time())
    warm = np.diff(times[3:])  # the first steps allocate
    return float(np.median(warm))


def table() -> None:
    import torch

    torch.set_num_threads(1)
    sizes = {64: 40, 192: 12}
    pixels = {size: size * size for size in sizes}
    print("| preset | precision | s/step at 64² | s/step at 192² | fixed s | s per megapixel |")
    print("| --- | --- | --- | --- | --- | --- |")
    for preset, precision in (("fast", "bfloat16"), ("fast", "float32"), ("default", "bfloat16"),
                              ("default", "float32"), ("paper", "float32")):
        small, large = (cpu_seconds_per_step(preset, precision, size, steps) for size, steps in sizes.items())
        per_pixel = (large - small) / (pixels[192] - pixels[64])
        fixed = small - per_pixel * pixels[64]
        print(f"| {preset} | {precision} | {small:.4f} | {large:.4f} | {fixed:.4f} | {per_pixel * 1e6:.2f} |",
              flush=True)


def _wait(condition) -> None:
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: condition() and loop.quit())
    timer.start(20)
    loop.exec_()
    timer.stop()


def compare(sizes: list[int], iterations: int) -> None:
    os.environ["NAPARI_DIP_SETTINGS"] = os.path.join(tempfile.mkdtemp(), "widget.json")
    import napari
    import torch

    torch.set_num_threads(1)
    viewer = napari.Viewer(show=False)
    print("| image | iterations | table's estimate | estimate shown before Run | wall time of the run "
          "| CPU time of the run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        viewer.layers.clear()
        viewer.add_image(astronaut(size), name=f"astronaut {size}")
        _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior restoration")
        widget.preset_picker.setCurrentIndex(widget.preset_picker.findData("default"))
        widget.iterations.setValue(iterations)
        widget.threads.setValue(1)
        widget.compile.setCurrentText("off")
        widget._update_estimate()
        said = widget.estimate.text()
        estimate = widget._estimate_for("default")
        start, cpu = time.perf_counter(), time.process_time()
        widget.run()
        _wait(lambda widget=widget: not widget.running)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        table_seconds = estimate.table_step * iterations
        print(f"| {size}² RGB | {iterations} | {table_seconds:.1f} s | {estimate.seconds:.1f} s: {said} "
              f"| {wall:.1f} s | {cpu:.1f} s |", flush=True)
        viewer.window.remove_dock_widget(widget)
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 192])
    parser.add_argument("--iterations", type=int, default=150)
    args = parser.parse_args()
    if args.table:
        table()
    if args.compare:
        compare(args.sizes, args.iterations)


if __name__ == "__main__":
    main()
