import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_dip.cli import main

FAST = ["--iterations", "3", "--quiet"]


def test_sample_run_writes_result_and_input(tmp_path, capsys):
    out = tmp_path / "restored.png"
    assert main(["restore", "--sample", "camera", "--size", "32", "-o", str(out), *FAST]) == 0
    restored = np.asarray(Image.open(out))
    assert restored.shape == (32, 32) and restored.dtype == np.uint8
    assert (tmp_path / "restored_input.png").is_file()
    assert "3 iterations" in capsys.readouterr().out


def test_16_bit_tiff_stays_16_bit(tmp_path):
    source = tmp_path / "cells.tif"
    image = (np.random.default_rng(0).random((32, 40)) * 4000 + 500).astype(np.uint16)
    tifffile.imwrite(source, image)
    out = tmp_path / "cells_dip.tif"
    assert main(["restore", str(source), "-o", str(out), *FAST]) == 0
    restored = tifffile.imread(out)
    assert restored.dtype == np.uint16 and restored.shape == image.shape
    assert 500 <= restored.min() and restored.max() <= 4500
    np.testing.assert_array_equal(tifffile.imread(source), image)


def test_super_resolution_and_inpainting_from_files(tmp_path):
    source = tmp_path / "small.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(source)
    out = tmp_path / "big.png"
    assert main(["restore", str(source), "-o", str(out), "--task", "sr", "--scale", "2", *FAST]) == 0
    assert np.asarray(Image.open(out)).shape == (64, 64, 3)
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 5:9] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "filled.png"
    assert main(["restore", str(source), "-o", str(out), "--task", "inpaint", "--mask",
                 str(tmp_path / "mask.png"), *FAST]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)


def _write(path, array):
    if path.suffix == ".tif":
        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: [str(d / "missing.png"), "-o", str(d / "o.png")], "no such file"),
        (lambda d: [str(_write(d / "a.png", np.zeros((32, 32), np.uint8))), "-o", str(d / "a.png")],
         "is the input file"),
        (lambda d: [str(_write(d / "a.png", np.zeros((32, 32), np.uint8))), "-o", str(d / "o.png"),
                    "--task", "inpaint", "--mask", str(_write(d / "m.png", np.ones((16, 16), np.uint8)))],
         r"mask shape \(16, 16\) does not match"),
        (lambda d: [str(_write(d / "a.png", np.zeros((32, 32), np.uint8))), "-o", str(d / "o.png"),
                    "--task", "inpaint", "--mask", str(_write(d / "m.png", np.zeros((32, 32), np.uint8)))],
         "mask is empty"),
        (lambda d: [str(_write(d / "a.png", np.zeros((32, 32), np.uint8))), "-o", str(d / "o.png"),
                    "--task", "sr", "--scale", "1"], "at least 2"),
        (lambda d: [str(_write(d / "nan.tif", np.full((32, 32), np.nan, np.float32))), "-o", str(d / "o.tif")],
         "NaN"),
        (lambda d: [str(_write(d / "a.png", np.zeros((32, 32), np.uint8))), "-o", str(d / "o.gif")],
         "unsupported file type"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make_args, message):
    args = make_args(tmp_path)
    assert main(["restore", *args, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("napari-dip: error:")
    assert message in err or __import__("re").search(message, err)
    assert not (tmp_path / "o.png").exists()


def test_unknown_task_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", "--sample", "camera", "-o", str(tmp_path / "o.png"), "--task", "unmix"])
    assert exit_info.value.code == 2


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "napari_dip.cli", "restore", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--task" in done.stdout


def test_volume_from_a_tiff_stack(tmp_path, capsys):
    source = tmp_path / "stack.tif"
    stack = (np.random.default_rng(0).random((4, 32, 40)) * 4000 + 500).astype(np.uint16)
    tifffile.imwrite(source, stack)
    out = tmp_path / "stack_dip.tif"
    assert main(["restore", str(source), "-o", str(out), "--volume", *FAST]) == 0
    restored = tifffile.imread(out)
    assert restored.shape == stack.shape and restored.dtype == np.uint16
    assert "(4×32×40, uint16)" in capsys.readouterr().out
    # One 2D mask fills the same pixels in every slice.
    mask = np.zeros((32, 40), np.uint8)
    mask[10:14, 5:9] = 1
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    assert main(["restore", str(source), "-o", str(out), "--volume", "--task", "inpaint",
                 "--mask", str(tmp_path / "mask.tif"), *FAST]) == 0
    filled = tifffile.imread(out)
    assert filled.shape == stack.shape
    keep = np.broadcast_to(mask == 0, stack.shape)
    np.testing.assert_array_equal(filled[keep], stack[keep])
    # An RGBA mask with an opaque alpha channel: only its colour marks the voxels to fill.
    rgba = np.zeros((32, 40, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[10:14, 5:9, 0] = 255
    tifffile.imwrite(tmp_path / "mask_rgba.tif", rgba, photometric="rgb")
    assert main(["restore", str(source), "-o", str(out), "--volume", "--task", "inpaint",
                 "--mask", str(tmp_path / "mask_rgba.tif"), *FAST]) == 0
    np.testing.assert_array_equal(tifffile.imread(out)[keep], stack[keep])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sample", "camera", "-o", "o.tif"], "give a TIFF stack"),
        (["stack.tif", "-o", "o.png"], "is not a .tif"),
        (["stack.tif", "-o", "o.tif", "--task", "sr", "--scale", "2"], "not available for volumes"),
    ],
)
def test_volume_bad_input_exits_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((4, 32, 32), np.uint8), photometric="minisblack")
    assert main(["restore", *args, "--volume", *FAST]) == 2
    assert message in capsys.readouterr().err
