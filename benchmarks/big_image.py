"""Peak memory and time of a big single-channel image through each front end.

    python benchmarks/big_image.py [--size 2048] [--iterations 2] [--via api|cli|widget] [--threads 1]

A noisy SIZE×SIZE uint16 image (scikit-image's camera, resized up, σ 25 of 255) is denoised
with the default preset and a few iterations per tile: ``api`` calls ``restore()``, ``cli`` runs
``napari-dip restore`` on a TIFF in a subprocess, ``widget`` runs the dock widget in a napari
viewer (under Xvfb: ``xvfb-run -a python benchmarks/big_image.py --via widget``), each with no
tiling option, so the planner decides from the memory budget. Prints the plan, the time and the
peak RSS of the process that ran the fit ("Maximum resident set size" of ``/usr/bin/time -v``).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _image(size: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    camera = resize(data.camera(), (size, size), order=1, preserve_range=True)
    noisy = camera * 257 + np.random.default_rng(0).normal(scale=25 * 257, size=camera.shape)
    return np.clip(noisy, 0, 65535).astype(np.uint16)


def _peak_gib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 2**20


def via_api(image: np.ndarray, args) -> str:
    from napari_dip.core import consume, restore_iter

    notes = []
    result = consume(restore_iter(image, iterations=args.iterations, threads=args.threads, preview_seconds=None),
                     lambda event: event.message and notes.append(event.message))
    assert result.image.shape == image.shape and result.image.dtype == image.dtype
    return f"{'; '.join(notes)}; {result.plan}; peak RSS {_peak_gib(resource.RUSAGE_SELF):.2f} GiB"


def via_cli(image: np.ndarray, args) -> str:
    import tifffile

    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder) / "big.tif", Path(folder) / "big_restored.tif"
        tifffile.imwrite(source, image)
        done = subprocess.run(
            ["napari-dip", "restore", str(source), "-o", str(output), "--iterations", str(args.iterations),
             "--threads", str(args.threads), "--quiet"], capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr
        assert tifffile.imread(output).shape == image.shape
    return f"{done.stdout.strip()}; peak RSS of napari-dip {_peak_gib(resource.RUSAGE_CHILDREN):.2f} GiB"


def via_widget(image: np.ndarray, args) -> str:
    import os

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_dip._widget_settings import SETTINGS_ENV

    # The defaults, not what the widget remembers from earlier sessions.
    os.environ[SETTINGS_ENV] = os.path.join(tempfile.mkdtemp(), "settings.json")

    viewer = napari.Viewer(show=True)
    viewer.add_image(image, name="big")
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior restoration")
    widget.iterations.setValue(args.iterations)
    widget.threads.setValue(args.threads)
    notes = []
    widget.run()
    while widget.running:
        QApplication.processEvents()
        if widget.status.text() not in notes:
            notes.append(widget.status.text())
        time.sleep(0.05)
    layer = viewer.layers[-1]
    assert layer.data.shape == image.shape, layer.data.shape
    tiled = next((note for note in notes if "tiles" in note), "no tiling note")
    text = f"{tiled} {widget.status.text()} peak RSS {_peak_gib(resource.RUSAGE_SELF):.2f} GiB"
    viewer.close()
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--via", choices=["api", "cli", "widget"], default="api")
    args = parser.parse_args()
    image = _image(args.size)
    start = time.perf_counter()
    text = {"api": via_api, "cli": via_cli, "widget": via_widget}[args.via](image, args)
    print(f"{args.via}: {args.size}×{args.size} uint16, {args.iterations} iterations per fit, default preset, "
          f"{args.threads} thread(s): {time.perf_counter() - start:.0f} s; {text}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
