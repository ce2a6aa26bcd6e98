"""Regenerate the user guide's screenshots (docs/images/widget_*.png, dock_*.png) with real runs.

    xvfb-run -a python docs/make_screenshots.py                 # headless, all of them
    xvfb-run -a python docs/make_screenshots.py --only region   # one group: denoise, inpaint, region
    python docs/make_screenshots.py                             # with a display

Uses 128-pixel images and the fast preset (inpainting: a small network) so that it finishes in a
few minutes on a CPU, and a temporary settings file so that your remembered widget settings are
left alone. ``dock_*.png`` are the dock alone, at its own size, where the window's screenshot
makes its text small.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

IMAGES = Path(__file__).resolve().parent / "images"
WINDOW = (1500, 860)
SIZE = 128  # pixels: small enough for the runs to take a couple of minutes on a CPU
NETWORK = {"channels": 32, "scales": 4}


def wait_until(condition, timeout: float) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting after {timeout} s")
        QApplication.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    """Let Qt finish laying out and painting before a screenshot."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def shoot(viewer, name: str) -> None:
    settle()
    viewer.reset_view()  # fit the image to the canvas as it is now, with the widget docked
    settle()
    path = IMAGES / f"{name}.png"
    viewer.screenshot(path=str(path), canvas_only=False, flash=False)
    print(f"wrote {path.relative_to(IMAGES.parent.parent)}")


def shoot_dock(widget, name: str) -> None:
    """The dock's widget alone, as it is drawn now."""
    settle()
    path = IMAGES / f"{name}.png"
    widget.grab().save(str(path))
    print(f"wrote {path.relative_to(IMAGES.parent.parent)}")


def noisy_astronaut():
    """The noisy sample's whole face at SIZE pixels (the sample itself is 256 px)."""
    import numpy as np
    from skimage.transform import resize

    from napari_dip import io

    face = resize(io.sample_image("astronaut"), (SIZE, SIZE), anti_aliasing=True)
    noise = np.random.default_rng(0).normal(scale=25 / 255, size=face.shape)
    return np.rint(np.clip(face + noise, 0, 1) * 255).astype(np.uint8)


def open_widget(viewer, preset: str = "fast", network: bool = False):
    """The dock as a user opens it, with ``preset`` chosen (and the small network of
    ``NETWORK`` set under Advanced where ``network``)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior restoration")
    widget.preset_picker.setCurrentIndex(widget.preset_picker.findData(preset))
    if network:
        for name, value in NETWORK.items():
            widget.advanced[name].setValue(value)
    widget.threads.setValue(1)
    widget.preview_seconds = 1.0
    return widget


def denoise_screenshots(napari) -> None:
    """Before a run (the presets with their cost, the estimate), during it (the live curve, a bar
    in % of the expected time) and after it; the fast preset, stopping by itself."""
    viewer = napari.Viewer(title="napari-dip: denoise")
    viewer.window.resize(*WINDOW)
    viewer.add_image(noisy_astronaut(), name="noisy astronaut")
    widget = open_widget(viewer)
    wait_until(lambda: widget.preset_costs.text() != "", timeout=10)
    shoot(viewer, "widget_before")
    shoot_dock(widget, "dock_presets_estimate")

    widget.run_button.click()
    # Past the first best iteration of the automatic stop, so its mark is on the curve.
    wait_until(lambda: widget.curve.history.snapshot().iterations.size >= 500 or not widget.running, timeout=600)
    wait_until(lambda: "best at" in widget.curve.legend.text() or not widget.running, timeout=600)
    shoot(viewer, "widget_during")
    shoot_dock(widget, "dock_curve")

    wait_until(lambda: not widget.running, timeout=1200)
    viewer.canvas.grid.enabled = True
    shoot(viewer, "widget_after")
    viewer.close()


def region_screenshots(napari) -> None:
    """A region of the 256² noisy sample restored alone, its result over the rectangle drawn."""
    from napari_dip._sample_data import noisy_sample

    viewer = napari.Viewer(title="napari-dip: region")
    viewer.window.resize(*WINDOW)
    data, meta, _ = noisy_sample()[0]
    viewer.add_image(data, **meta)
    widget = open_widget(viewer)
    shapes = widget.new_region()
    shapes.add_rectangles([[40, 80], [150, 190]])  # the face, in the sample's pixels
    shapes.mode = "pan_zoom"
    settle()
    shoot_dock(widget, "dock_region")
    widget.run_button.click()
    wait_until(lambda: not widget.running, timeout=1200)
    # The rectangle on top, so that its outline shows around the result.
    viewer.layers.move(viewer.layers.index(shapes), len(viewer.layers))
    viewer.layers.selection.active = shapes
    shoot(viewer, "widget_region")
    viewer.close()


def inpaint_screenshots(napari) -> None:
    from napari_dip._sample_data import damaged_sample

    viewer = napari.Viewer(title="napari-dip: inpaint")
    viewer.window.resize(*WINDOW)
    (image, meta, _), (scratches, _, _) = damaged_sample(size=SIZE)
    viewer.add_image(image, **meta)
    widget = open_widget(viewer, preset="default", network=True)
    widget.task_picker.setCurrentText("Inpaint (fill painted pixels)")
    widget.iterations.setValue(1000)

    # What a user does by hand: New mask, then brush over the scratches.
    labels = widget.new_mask()
    rows, cols = scratches.nonzero()
    labels.data[rows, cols] = 1
    labels.refresh()
    shoot(viewer, "widget_mask")

    widget.run_button.click()
    wait_until(lambda: not widget.running, timeout=1200)
    labels.visible = False
    shoot(viewer, "widget_inpainted")
    viewer.close()


GROUPS = {"denoise": denoise_screenshots, "inpaint": inpaint_screenshots, "region": region_screenshots}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    args = parser.parse_args()
    # Temporary settings for napari and the widget: the user's own are neither used nor changed.
    settings = Path(tempfile.mkdtemp())
    os.environ["NAPARI_DIP_SETTINGS"] = str(settings / "widget.json")
    os.environ["NAPARI_CONFIG"] = str(settings / "napari.yaml")
    IMAGES.mkdir(parents=True, exist_ok=True)
    import napari
    from napari.settings import get_settings

    # napari's own warnings (e.g. about the Qt backend) would be toasts over the canvas.
    get_settings().application.gui_notification_level = "error"

    for group in args.only:
        # Each group starts from the widget's defaults, not from the choices the last one left.
        os.environ["NAPARI_DIP_SETTINGS"] = str(settings / f"widget-{group}.json")
        GROUPS[group](napari)
    return 0


if __name__ == "__main__":
    sys.exit(main())
