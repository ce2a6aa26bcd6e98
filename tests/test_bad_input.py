"""Bad input, one case per fault: the exact kind of answer, a result or one sentence naming the
value and the fix. The command line runs as a subprocess: exit code 2, one line on stderr, no
traceback, and no file touched."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from napari_dip import io
from napari_dip.core.arrays import Intensity

# --- the array round trip: Intensity.of / to_unit / from_unit -----------------------------------

INTEGERS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
FLOATS = [np.float16, np.float32, np.float64]


def _round_trip(chw: np.ndarray) -> np.ndarray:
    intensity = Intensity.of(chw)
    unit = intensity.to_unit(chw)
    assert unit.dtype == np.float32 and unit.min() >= 0 and unit.max() <= 1
    back = intensity.from_unit(unit)
    assert back.dtype == chw.dtype and back.shape == chw.shape
    return back


def _images(dtype, elements=None):
    shapes = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6))
    return hnp.arrays(np.dtype(dtype), shapes, elements=elements)


def _integer_images(dtype):
    info = np.iinfo(dtype)
    ends = st.sampled_from([info.min, info.max, 0, 1, info.max - 1])
    return _images(dtype, st.one_of(ends, st.integers(info.min, info.max)))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(INTEGERS).flatmap(_integer_images))
def test_integer_round_trip(chw):
    """Every channel's minimum and maximum come back exact where float64 holds them (all values of
    8-, 16- and 32-bit types; 64-bit ones up to 2**53 and every multiple of their spacing), the
    dtype's own full-scale ends always; all values are exact where float64 holds them and a channel
    spans < 2**24 (float32 inside), which covers every 8- and 16-bit image."""
    back = _round_trip(chw)
    info = np.iinfo(chw.dtype)
    flat, flat_back = chw.reshape(len(chw), -1), back.reshape(len(chw), -1)
    for values, returned in zip(flat, flat_back, strict=True):
        for end in (values.min(), values.max()):
            if int(np.float64(end)) == int(end) or end in (info.min, info.max):
                assert (returned[values == end] == end).all()
        exact_in_float64 = all(int(np.float64(value)) == int(value) for value in values)
        if exact_in_float64 and float(values.max()) - float(values.min()) < 2**24:
            np.testing.assert_array_equal(returned, values)


def _float_limit(dtype) -> float:
    return min(1e300, float(np.finfo(dtype).max))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(FLOATS).flatmap(
    lambda dtype: _images(dtype, st.floats(-_float_limit(dtype), _float_limit(dtype), width=np.finfo(dtype).bits))
))
def test_float_round_trip(chw):
    """Floats come back within float32's resolution of each channel's range ([0, 1] for images
    in it, else minimum to maximum), exact for float16 and float32 images in [0, 1]; magnitudes up
    to 1e300, so a channel's span fits a float64."""
    back = _round_trip(chw).astype(np.float64)
    chw64 = chw.astype(np.float64)
    intensity = Intensity.of(chw)
    tolerance = (intensity.high - intensity.low) * 2.0**-24 + np.abs(chw64) * float(np.finfo(chw.dtype).eps)
    assert (np.abs(back - chw64) <= tolerance).all()
    if chw.dtype != np.float64 and chw.min() >= 0 and chw.max() <= 1:
        np.testing.assert_array_equal(back, chw64)


@given(_images(bool))
def test_bool_round_trip(chw):
    np.testing.assert_array_equal(_round_trip(chw), chw)


@pytest.mark.parametrize("dtype", INTEGERS)
@pytest.mark.parametrize("channels", [1, 3])
def test_full_scale_ends_are_exact(dtype, channels):
    """int64/uint64's maximum is no float64 (it rounds up to 2**63, 2**64): it must not wrap."""
    info = np.iinfo(dtype)
    ends = np.array([[info.min, info.max], [info.max, info.min]], dtype)
    for chw in (np.stack([ends] * channels), np.full((channels, 2, 2), info.max, dtype),
                np.full((channels, 2, 2), info.min, dtype)):
        np.testing.assert_array_equal(_round_trip(chw), chw)


# --- the command line -----------------------------------------------------------------------------

def _png(path: Path, array) -> Path:
    Image.fromarray(np.asarray(array)).save(path)
    return path


def _tiff(path: Path, array, **kwargs) -> Path:
    tifffile.imwrite(path, np.asarray(array), **kwargs)
    return path


def _gray(d: Path, name: str = "g.png") -> Path:
    return _png(d / name, (np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8))


def _mask(d: Path, name: str = "m.png") -> Path:
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    return _png(d / name, mask)


def _tiff_claiming(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes whose header claims width × height 8-bit pixels."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8),
            (278, 4, height), (279, 4, 1)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", tag, kind, 1, value)
                                                  for tag, kind, value in tags) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 16) + b"\x00" * 8 + ifd + b"\x00" * 100)
    return path


def _png_claiming(path: Path, side: int) -> Path:
    """A tiny PNG whose header claims side × side 8-bit gray pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def _hard_link(d: Path) -> list[str]:
    os.link(_gray(d), d / "h.png")
    return [str(d / "g.png"), "-o", str(d / "h.png")]


def _symlink(d: Path) -> list[str]:
    (d / "s.png").symlink_to(_gray(d))
    return [str(d / "g.png"), "-o", str(d / "s.png")]


def _folder_output(d: Path) -> list[str]:
    (d / "out.png").mkdir()
    return [str(_gray(d)), "-o", str(d / "out.png")]


def _npz_psf(d: Path) -> list[str]:
    np.savez(d / "psf.npz", psf=np.ones((3, 3)))
    return [str(_gray(d)), "-o", str(d / "o.png"), "--task", "deblur", "--psf", str(d / "psf.npz")]


# (arguments made in a folder, what the one line must say). Nothing may be written or changed.
CLI_REFUSALS = [
    # 1. no output replaces a file the command reads
    pytest.param(lambda d: [str(_gray(d)), "-o", str(_mask(d)), "--task", "inpaint", "--mask", str(d / "m.png")],
                 r"the output .*m\.png is the mask file .*m\.png; choose another output name", id="out-is-mask"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(_mask(d, "p.png")), "--task", "deblur", "--psf",
                            str(d / "p.png")], r"the output .*p\.png is the PSF file", id="out-is-psf"),
    pytest.param(_hard_link, r"the output .*h\.png is the input file .*g\.png", id="out-is-hard-link-of-input"),
    pytest.param(_symlink, r"the output .*s\.png is the input file", id="out-is-symlink-to-input"),
    pytest.param(lambda d: ["--sample", "camera", "--size", "32", "-o", str(d / "r.png"), "--task", "inpaint",
                            "--mask", str(_mask(d, "r_input.png"))],
                 r"the output .*r_input\.png is the mask file", id="sample-copy-is-mask"),
    # 3. pixel limits, checked on the header before any pixel is read
    pytest.param(lambda d: [str(_tiff_claiming(d / "bomb.tif", 100_000, 100_000)), "-o", str(d / "o.tif")],
                 r"bomb\.tif holds 10,000,000,000 pixels \(shape \(100000, 100000\)\), more than the limit of "
                 r"178,956,970; set the environment variable NAPARI_DIP_MAX_PIXELS", id="tiff-bomb"),
    pytest.param(lambda d: [str(_png_claiming(d / "bomb.png", 50_000)), "-o", str(d / "o.png")],
                 r"bomb\.png holds more pixels than the limit of 178,956,970; set the environment "
                 r"variable NAPARI_DIP_MAX_PIXELS to a larger number to read it anyway$", id="png-bomb"),
    pytest.param(lambda d: [str(_png_claiming(d / "big.png", 10_000)), "-o", str(d / "o.png")],
                 r"big\.png holds 100,000,000 pixels .*more than the limit of 1,000", id="limit-from-environment"),
    # 5. outputs that cannot be written, found before the fit
    pytest.param(lambda d: [str(_gray(d)), "-o", "/proc/napari-dip/out.png"],
                 r"cannot write /proc/napari-dip/out\.png: the folder /proc is not writable; choose another folder",
                 id="read-only-folder"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "g.png" / "sub" / "o.png")],
                 r"g\.png is a file, not a folder", id="folder-is-a-file"),
    pytest.param(_folder_output, r"the output .*out\.png is a folder; give a file name", id="output-is-a-folder"),
    pytest.param(lambda d: [str(_tiff(d / "f.tif", np.linspace(0, 1000, 32 * 32, dtype=np.float32).reshape(32, 32))),
                            "-o", str(d / "o.png")],
                 r"PNG cannot hold float values in \[0, 1000\]; write o\.tif to keep them", id="float-range-to-png"),
    pytest.param(lambda d: [str(_png(d / "rgba.png", np.full((32, 32, 4), 200, np.uint8))), "-o", str(d / "o.jpg")],
                 r"JPEG cannot hold the alpha channel of an RGBA image; write o\.png or \.tif", id="rgba-to-jpeg"),
    pytest.param(lambda d: [str(_tiff(d / "rgb16.tif", np.full((32, 32, 3), 4000, np.uint16), photometric="rgb")),
                            "-o", str(d / "o.png")],
                 r"PNG holds 16-bit grayscale only; write o\.tif for a 16-bit image", id="uint16-rgb-to-png"),
    pytest.param(lambda d: [str(_tiff(d / "g16.tif", np.full((32, 32), 4000, np.uint16))), "-o", str(d / "o.jpg")],
                 r"JPEG holds 8-bit images only; write o\.tif", id="uint16-to-jpeg"),
    # 7. smaller ones
    pytest.param(_npz_psf, r"unsupported PSF file type '\.npz' .*save the PSF as a \.npy array", id="psf-npz"),
    pytest.param(lambda d: ["--sample", "camera", "--size", "0", "-o", str(d / "o.png")],
                 r"the sample size must be a positive number of pixels, got 0", id="size-0"),
    pytest.param(lambda d: ["--sample", "camera", "--size", "-5", "-o", str(d / "o.png")],
                 r"the sample size must be a positive number of pixels, got -5", id="size-negative"),
    pytest.param(lambda d: ["--sample", "camera", "--noise", "nan", "-o", str(d / "o.png")],
                 r"the sample noise σ must be a number ≥ 0 .*got nan", id="noise-nan"),
    pytest.param(lambda d: ["--sample", "camera", "--noise", "-10", "-o", str(d / "o.png")],
                 r"the sample noise σ must be a number ≥ 0 .*got -10", id="noise-negative"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "channels=0"],
                 r"^napari-dip: error: channels must be at least 1, got 0$", id="set-channels-0"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "widht=3"],
                 r"^napari-dip: error: unknown setting\(s\) widht; known: ", id="set-unknown"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--axes", "TYX"],
                 r"^napari-dip: error: axes 'TYX' names 3 axes but the image has 2", id="axes-wrong-length"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(d / "out"), "--memory-limit", "1.5.5GB"],
                 r"^napari-dip batch: error: argument --memory-limit: '1\.5\.5GB' is not a size; write e\.g\. 3GB",
                 id="memory-limit-1.5.5GB"),
]


def _cli(args: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    command = args if args[:1] == ["batch"] else ["restore", *args]
    return subprocess.run(
        [sys.executable, "-m", "napari_dip.cli", *command, "--iterations", "2", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kwargs,
    )


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("make_args, message", CLI_REFUSALS)
def test_cli_refuses_with_one_line(tmp_path, make_args, message):
    import re

    args = make_args(tmp_path)
    before = _files(tmp_path)
    env = {io.MAX_PIXELS_ENV: "1000"} if "big.png" in " ".join(args) else None
    done = _cli(args, env=env, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert re.search(message, lines[0]), lines[0]
    assert done.stdout == ""
    assert _files(tmp_path) == before  # nothing written, no input's bytes or mtime changed


def test_bad_output_fails_before_the_fit(tmp_path):
    """With the default iteration count, a bad output is found in well under the fit's time."""
    (tmp_path / "out.png").mkdir()
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "napari_dip.cli", "restore", "--sample", "camera", "-o", str(tmp_path / "out.png")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120,
    )
    assert time.monotonic() - start < 10
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "is a folder" in done.stderr
    assert done.stdout == "" and not (tmp_path / "out_input.png").exists()


def test_rgba_mask_alpha_is_ignored(tmp_path):
    """An opaque alpha channel does not mark every pixel missing: only the colour channels count."""
    mask = np.zeros((32, 32, 4), np.uint8)
    mask[..., 3] = 255
    mask[8:16, 8:16, 0] = 255
    _png(tmp_path / "m.png", mask)
    source = _gray(tmp_path)
    before = _files(tmp_path)
    done = _cli([str(source), "-o", str(tmp_path / "o.png"), "--task", "inpaint", "--mask", str(tmp_path / "m.png")],
                timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.startswith(f"wrote {tmp_path / 'o.png'} (32×32, uint8): 2 iterations")
    restored = np.asarray(Image.open(tmp_path / "o.png"))
    assert restored.shape == (32, 32)
    after = _files(tmp_path)
    assert {name: after[name] for name in before} == before


def test_ctrl_c_exits_130_with_one_line_and_no_output(tmp_path):
    out = tmp_path / "o.png"
    process = subprocess.Popen(
        [sys.executable, "-m", "napari_dip.cli", "restore", "--sample", "camera", "--size", "48", "-o", str(out),
         "--iterations", "100000", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        # The degraded sample is written just before the fit; give the fit time to take steps.
        while not (tmp_path / "o_input.png").exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        time.sleep(3)
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.strip().splitlines() == ["napari-dip: interrupted; no unfinished output was written"]
    assert stdout == ""
    assert sorted(path.name for path in tmp_path.iterdir()) == ["o_input.png"]


def test_batch_refuses_a_tiff_bomb_per_item(tmp_path):
    """Batch reads TIFFs lazily, but one strip claiming 100000² pixels would be read whole."""
    source = _tiff_claiming(tmp_path / "bomb.tif", 100_000, 100_000)
    done = _cli(["batch", str(source), "-o", str(tmp_path / "out"), "--workers", "0"], timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"napari-dip: failed: {source}: ValueError: {source} holds 10,000,000,000 pixels in one piece (shape "
        "(100000, 100000)), more than the limit of 178,956,970; set the environment variable NAPARI_DIP_MAX_PIXELS "
        "to a larger number to read it anyway"
    ]
    assert not (tmp_path / "out").exists()


def test_pixel_limit_must_be_a_number(tmp_path, monkeypatch):
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=r"^NAPARI_DIP_MAX_PIXELS='lots' is not a pixel count; set it to a "
                                         r"positive whole number$"):
        io.read_image(_gray(tmp_path))


# --- remembered widget settings ---------------------------------------------------------------------

CORRUPT_SETTINGS = [
    pytest.param('{"seed": 1099511627776}', "seed=1099511627776", id="seed-beyond-int32"),
    pytest.param('{"advanced": {"channels": 2.5}}', "advanced.channels=2.5", id="float-channels"),
    pytest.param('{"advanced": {"lr": NaN}}', "advanced.lr=nan", id="nan-lr"),
    pytest.param('{"threads": "four", "compile": "fast", "volume": 1, "advanced": []}',
                 "threads='four', compile='fast', volume=1, advanced=[]", id="wrong-types"),
    pytest.param('{"task": "denoise", ', "could not read the saved settings", id="not-json"),
    pytest.param("[1, 2]", "are not a JSON object", id="not-an-object"),
]


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    from napari_dip._widget_settings import SETTINGS_ENV

    path = tmp_path / "napari-dip-widget.json"
    monkeypatch.setenv(SETTINGS_ENV, str(path))
    return path


@pytest.fixture
def warnings_shown(monkeypatch):
    import napari.utils.notifications

    shown: list[str] = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", shown.append)
    return shown


@pytest.mark.parametrize("text, named", CORRUPT_SETTINGS)
def test_corrupt_settings_open_the_widget_with_defaults(make_napari_viewer, settings_file, warnings_shown,
                                                        text, named):
    from napari_dip._widget import RestorationWidget

    viewer = make_napari_viewer()
    defaults = RestorationWidget(viewer).settings()
    assert warnings_shown == []
    settings_file.write_text(text)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior restoration")
    assert widget.settings() == defaults
    assert len(warnings_shown) == 1 and named in warnings_shown[0], warnings_shown
    assert str(settings_file) in warnings_shown[0] and "using the defaults" in warnings_shown[0]


def test_valid_settings_are_kept_beside_invalid_ones(settings_file, warnings_shown):
    from napari_dip._widget_settings import load_settings

    settings_file.write_text(json.dumps({
        "task": "sr", "factor": 4, "seed": 7, "threads": 2.0, "compile": "on", "warm_start": True,
        "advanced": {"lr": 0.01, "reg_noise_std": 0, "channels": 16, "scales": True}, "future": 1,
    }))
    assert load_settings() == {
        "task": "sr", "factor": 4, "seed": 7, "compile": "on", "warm_start": True,
        "advanced": {"lr": 0.01, "reg_noise_std": 0, "channels": 16},
    }
    assert len(warnings_shown) == 1 and "threads=2.0, advanced.scales=True" in warnings_shown[0]
    settings_file.unlink()
    assert load_settings() == {} and len(warnings_shown) == 1  # no file: defaults, no warning
