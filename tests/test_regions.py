"""Inpainting fits only windows around the painted pixels: what is planned, that nothing else
changes, and that every front door (API, stacks, CLI, widget estimate) takes the same path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_dip import restore
from napari_dip.core import RestoreOptions, consume, plan_run, restore_iter
from napari_dip.core.tiling import REGION_MARGIN, fill_windows, region_windows

TINY = dict(channels=8, scales=2, precision="float32", threads=1)


def _scratches(shape=(200, 300)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[20:26, 30:70] = 1      # upper left
    mask[170:180, 260:268] = 1  # lower right, far from the other
    return mask


@pytest.fixture
def photo() -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:200, :300]
    smooth = 120 + 60 * np.sin(yy / 9) * np.cos(xx / 13)
    return np.clip(smooth[..., None] + rng.normal(0, 8, (200, 300, 3)), 0, 255).astype(np.uint8)


def test_windows_hold_each_region_with_its_margin_and_merge_when_they_meet():
    mask = np.zeros((400, 400), bool)
    mask[100:104, 100:140] = True
    windows = fill_windows(mask, margin=16, multiple=8, minimum=16)
    assert len(windows) == 1
    rows, cols = windows[0]
    assert rows.start <= 100 - 16 and rows.stop >= 104 + 16 and cols.start <= 100 - 16 and cols.stop >= 140 + 16
    assert (rows.stop - rows.start) % 8 == 0 and (cols.stop - cols.start) % 8 == 0
    mask[100:104, 170:180] = True  # 30 px to the right: the grown regions meet
    assert len(fill_windows(mask, margin=16, multiple=8, minimum=16)) == 1
    mask[300:304, 300:304] = True  # far away: a window of its own
    assert len(fill_windows(mask, margin=16, multiple=8, minimum=16)) == 2
    # At the image's edge the window is shifted inside, never cut below its size.
    corner = np.zeros((400, 400), bool)
    corner[0:2, 398:400] = True
    (rows, cols), = fill_windows(corner, margin=16, multiple=8, minimum=16)
    assert rows == slice(0, 24) and cols == slice(376, 400)
    assert fill_windows(np.zeros((50, 50), bool)) == []


def test_windows_that_would_cover_most_of_the_image_give_way_to_the_whole_image():
    from napari_dip.core.presets import preset_settings

    settings = preset_settings("inpaint")
    mask = np.zeros((300, 300), bool)
    mask[150, 150] = True
    assert region_windows(mask, settings) is not None  # 160² of 300²: 28 %
    mask[20, 20] = mask[280, 280] = True
    assert region_windows(mask, settings) is None


def test_only_the_windows_are_fitted_and_every_other_pixel_is_the_input(photo):
    mask = _scratches()
    options = RestoreOptions.from_kwargs("inpaint", mask=mask, iterations=4, **TINY)
    assert plan_run(photo, options)[0] == "regions"
    events = []
    result = consume(restore_iter(photo, options=options), events.append)
    assert result.plan.startswith("2 windows around the painted pixels")
    assert [part["iterations"] for part in result.parts] == [4, 4]
    notes = [event.message for event in events if event.message]
    assert any("inpainting only around the painted pixels: 2 windows" in note for note in notes)
    assert {event.part for event in events if event.part} == {"window 1/2", "window 2/2"}
    painted = mask != 0
    assert result.image[~painted].tobytes() == photo[~painted].tobytes()
    assert np.abs(result.image[painted].astype(int) - photo[painted].astype(int)).mean() > 1
    # Each window holds its region and the margin, and is a small part of the image.
    for rows, cols in fill_windows(mask, REGION_MARGIN, 4, 8):
        assert (rows.stop - rows.start) * (cols.stop - cols.start) < 0.3 * mask.size


def test_previews_are_the_whole_image_with_only_painted_pixels_changed(photo):
    mask = _scratches()
    previews = [event.preview for event in restore_iter(photo, "inpaint", mask=mask, iterations=4,
                                                         preview_iterations=2, **TINY) if event.preview is not None]
    assert previews and all(p.shape == photo.shape and p.dtype == photo.dtype for p in previews)
    assert all(p[mask == 0].tobytes() == photo[mask == 0].tobytes() for p in previews)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_grayscale_windows_keep_the_known_pixels_exactly(dtype):
    rng = np.random.default_rng(8)
    image = (rng.random((200, 300)) * (50000 if dtype == np.uint16 else 3.5)).astype(dtype)
    mask = _scratches()
    result = restore(image, "inpaint", mask=mask, iterations=3, **TINY)
    assert result.dtype == image.dtype
    assert result[mask == 0].tobytes() == image[mask == 0].tobytes()


def test_raw_network_output_and_warm_starts_fit_the_whole_image(photo):
    mask = _scratches()
    raw = RestoreOptions.from_kwargs("inpaint", mask=mask, keep_known=False, iterations=2, **TINY)
    assert plan_run(photo, raw)[0] == "fit"
    kept = consume(restore_iter(photo, "inpaint", mask=mask, iterations=2, keep_state=True, **TINY))
    assert kept.plan == "one fit" and kept.state is not None


def test_a_stack_inpaints_each_plane_in_its_windows(photo):
    stack = np.stack([photo[..., 0], photo[..., 1]])
    mask = _scratches()
    result = restore(stack, "inpaint", mask=mask, iterations=2, axes="TYX", **TINY)
    keep = np.broadcast_to(mask == 0, stack.shape)
    assert result[keep].tobytes() == stack[keep].tobytes()


def test_a_window_too_big_for_memory_is_itself_cut_into_tiles():
    rng = np.random.default_rng(2)
    image = (rng.random((400, 400)) * 255).astype(np.uint8)
    mask = np.zeros((400, 400), np.uint8)
    mask[40:60, 40:80] = 1
    events = []
    result = consume(restore_iter(image, "inpaint", mask=mask, iterations=2, tile_size=64, overlap=16, **TINY),
                     events.append)
    assert result.plan.startswith("1 window ")
    assert len(result.parts) > 1  # the window's tiles
    assert result.image[mask == 0].tobytes() == image[mask == 0].tobytes()


def test_cli_inpaints_in_windows_and_says_so(tmp_path, photo):
    mask = _scratches() * 255
    tifffile.imwrite(tmp_path / "in.tif", photo, photometric="rgb")
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    done = subprocess.run(
        [sys.executable, "-m", "napari_dip.cli", "restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"),
         "--task", "inpaint", "--mask", str(tmp_path / "mask.tif"), "--iterations", "3", "--threads", "1",
         "--set", "channels=8", "--set", "scales=2"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "inpainting only around the painted pixels: 2 windows" in done.stdout + done.stderr
    out = tifffile.imread(tmp_path / "out.tif")
    assert out[mask == 0].tobytes() == photo[mask == 0].tobytes()


def test_the_estimate_counts_only_the_windows():
    from napari_dip._estimate import estimate_run
    from napari_dip.core.presets import preset_settings

    settings = preset_settings("inpaint")
    mask = np.zeros((2048, 2048), bool)
    mask[1000:1010, 900:1100] = True
    windows = [(w.stop - w.start, c.stop - c.start) for w, c in region_windows(mask, settings)]
    whole = estimate_run("default", settings, (2048, 2048))
    around = estimate_run("default", settings, (2048, 2048), windows=windows)
    assert around.seconds < whole.seconds / 20
    assert "in one window around the painted pixels" in around.text()


def test_a_stack_plans_each_plane_from_its_own_mask():
    """A first plane fitted in windows must not pin the others to one whole-plane fit."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (2, 400, 400)).astype(np.uint8)
    masks = np.zeros((2, 400, 400), np.uint8)
    masks[0, 10:14, 10:40] = 1   # a small scratch: windows
    masks[1, ::40, :] = 1        # lines everywhere: the whole plane, in tiles at this budget
    events = []
    result = consume(restore_iter(stack, "inpaint", mask=masks, axes="TYX", memory_limit=40e6, iterations=2, **TINY),
                     events.append)
    assert "windows" in result.parts[0] and result.parts[1]["tiles"] > 1
    assert result.image[masks == 0].tobytes() == stack[masks == 0].tobytes()
    assert any(event.part and ", window 1/" not in event.part and "tile" in event.part for event in events)


def test_progress_only_moves_forward_through_windows_cut_into_tiles():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 300)).astype(np.uint8)
    mask = np.zeros((300, 300), np.uint8)
    mask[40:60, 40:80] = 1
    mask[250:255, 250:255] = 1
    fractions = [event.fraction for event in restore_iter(image, "inpaint", mask=mask, tile_size=64, overlap=16,
                                                          iterations=3, **TINY) if event.fraction is not None]
    assert fractions and all(later >= earlier - 1e-9 for earlier, later in zip(fractions, fractions[1:], strict=False))


def test_one_window_is_named_in_the_metadata(photo):
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[100:104, 100:120] = 1
    result = consume(restore_iter(photo, "inpaint", mask=mask, iterations=2, **TINY))
    assert result.plan.startswith("1 window around the painted pixels")
    assert len(result.parts) == 1 and result.parts[0]["stop_reason"] == "iterations"


def test_a_scratch_across_the_image_fits_only_the_tiles_that_hold_it():
    size = 2048
    image = (np.add.outer(np.arange(size), np.arange(size)) % 251).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[np.arange(size), np.arange(size)] = 1  # corner to corner: one window would be the image
    options = RestoreOptions.from_kwargs("inpaint", mask=mask, iterations=1, preview_seconds=None, **TINY)
    kind, _, tile = plan_run(image, options)
    assert (kind, tile) == ("tiles", 256)
    events = []
    result = consume(restore_iter(image, options=options), events.append)
    notes = [event.message for event in events if event.message]
    assert "2048×2048 pixels: restoring in tiles of 256² around the painted pixels" in notes[0]
    assert any(note.startswith("31 of the 121 tiles have pixels to fill") for note in notes)
    assert sum(part["stop_reason"] != "unchanged" for part in result.parts) == 31
    assert result.image[mask == 0].tobytes() == image[mask == 0].tobytes()


def test_the_widget_counts_the_fits_it_will_make():
    from napari_dip.core.presets import preset_settings
    from napari_dip.core.tiling import fill_parts

    settings = preset_settings("inpaint")
    mask = np.zeros((2048, 2048), bool)
    mask[np.arange(2048), np.arange(2048)] = True
    assert fill_parts(mask, settings) == [(256, 256)] * 31
    mask[:] = False
    mask[100:110, 100:200] = True
    assert fill_parts(mask, settings) == [(160, 256)]
    mask[::50, :] = True  # everywhere: the whole plane
    assert fill_parts(mask, settings) is None
