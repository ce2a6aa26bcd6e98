"""Regenerate the user guide's screenshots (docs/images/widget_*.png) with real runs.

    xvfb-run -a python docs/make_screenshots.py        # headless
    python docs/make_screenshots.py                    # with a display

Uses 128-pixel images and a small network so that it finishes in about ten minutes on a CPU
(most of it inpainting), and a temporary settings file so that your remembered widget settings
are left alone.
"""

from __future__ import annotations

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


def noisy_astronaut():
    """The noisy sample's whole face at SIZE pixels (the sample itself is 256 px)."""
    import numpy as np
    from skimage.transform import resize

    from napari_dip import io

    face = resize(io.sample_image("astronaut"), (SIZE, SIZE), anti_aliasing=True)
    noise = np.random.default_rng(0).normal(scale=25 / 255, size=face.shape)
    return np.rint(np.clip(face + noise, 0, 1) * 255).astype(np.uint8)


def open_widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior restoration")
    widget.advanced_section.expand(animate=False)
    for name, value in NETWORK.items():
        widget.advanced[name].setValue(value)
    widget.preview_seconds = 1.0
    return widget


def denoise_screenshots(napari) -> None:
    viewer = napari.Viewer(title="napari-dip: denoise")
    viewer.window.resize(*WINDOW)
    viewer.add_image(noisy_astronaut(), name="noisy astronaut")
    widget = open_widget(viewer)
    widget.iterations.setValue(1000)
    shoot(viewer, "widget_before")

    widget.run_button.click()
    wait_until(lambda: widget.progress.value() >= 400, timeout=600)
    shoot(viewer, "widget_during")

    wait_until(lambda: not widget.running, timeout=1200)
    viewer.canvas.grid.enabled = True
    shoot(viewer, "widget_after")
    viewer.close()


def inpaint_screenshots(napari) -> None:
    from napari_dip._sample_data import damaged_sample

    viewer = napari.Viewer(title="napari-dip: inpaint")
    viewer.window.resize(*WINDOW)
    (image, meta, _), (scratches, _, _) = damaged_sample(size=SIZE)
    viewer.add_image(image, **meta)
    widget = open_widget(viewer)
    widget.task_picker.setCurrentText("Inpaint (fill painted pixels)")
    widget.iterations.setValue(1500)

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


def main() -> int:
    # Temporary settings for napari and the widget: the user's own are neither used nor changed.
    settings = Path(tempfile.mkdtemp())
    os.environ["NAPARI_DIP_SETTINGS"] = str(settings / "widget.json")
    os.environ["NAPARI_CONFIG"] = str(settings / "napari.yaml")
    IMAGES.mkdir(parents=True, exist_ok=True)
    import napari
    from napari.settings import get_settings

    # napari's own warnings (e.g. about the Qt backend) would be toasts over the canvas.
    get_settings().application.gui_notification_level = "error"

    denoise_screenshots(napari)
    inpaint_screenshots(napari)
    return 0


if __name__ == "__main__":
    sys.exit(main())
