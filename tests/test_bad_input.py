"""Bad input, one case per fault: the exact kind of answer, a result or one sentence naming the
value and the fix. The command line runs as a subprocess: exit code 2, one line on stderr, no
traceback, and no file touched."""

from __future__ import annotations

import importlib.util
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
    (d / name).parent.mkdir(parents=True, exist_ok=True)
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


def _stack_args(command: str, source: Path, d: Path) -> list[str]:
    if command == "restore":
        return [str(source), "-o", str(d / "o.tif")]
    return ["batch", str(source), "-o", str(d / "out"), "--workers", "0"]


def _empty_zarr(d: Path) -> Path:
    (d / "e.zarr").mkdir()
    return d / "e.zarr"


def _group_zarr(d: Path) -> Path:
    import zarr

    zarr.open_group(str(d / "g.zarr"), mode="w")
    return d / "g.zarr"


def _junk_zarr(d: Path) -> Path:
    (d / "j.zarr").mkdir()
    (d / "j.zarr" / "notes.txt").write_text("not zarr")
    return d / "j.zarr"


def _zero_zarr(d: Path) -> Path:
    import zarr

    zarr.open_array(str(d / "z.zarr"), mode="w", shape=(0, 16, 16), dtype="uint8")
    return d / "z.zarr"


def _text_tiff(d: Path) -> Path:
    (d / "t.tif").write_text("hello, not a TIFF")
    return d / "t.tif"


def _notes(d: Path) -> Path:
    (d / "notes.txt").write_text("a file, not a folder")
    return d / "notes.txt"


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _nan_tiff(d: Path) -> Path:
    image = np.linspace(0, 5, 16 * 16, dtype=np.float32).reshape(16, 16)
    image[3, 3] = np.nan
    return _tiff(d / "nan.tif", image)


def _object_npy(d: Path) -> Path:
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return d / "objects.npy"


def _stack_tiff(d: Path) -> Path:
    return _tiff(d / "s.tif", np.full((2, 16, 16), 100, np.uint8))


def _in_outdir(d: Path, name: str, make) -> Path:
    """``make`` called on ``d / "out"``: a file already in a batch's output folder."""
    (d / "out").mkdir(exist_ok=True)
    return make(d / "out", name)


def _truncated_png(d: Path) -> Path:
    whole = _gray(d, "whole.png").read_bytes()
    (d / "cut.png").write_bytes(whole[: len(whole) // 2])
    return d / "cut.png"


def _stem_twins(d: Path) -> list[str]:
    """A 2D image and a stack whose outputs would both be OUTDIR/img.tif."""
    return [str(_tiff(d / "img.tif", np.full((16, 16), 9, np.uint8))),
            str(_tiff(d / "img.v2.tif", np.full((2, 16, 16), 9, np.uint8)))]


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
    pytest.param(lambda d: [str(_tiff(d / "f.tif", np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32))),
                            "-o", str(d / "o.png")],
                 r"PNG cannot hold float values in \[0, 1\]; write o\.tif to keep them", id="float-in-0-1-to-png"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.jpg"), "--task", "inpaint", "--mask", str(_mask(d))],
                 r"^napari-dip: error: JPEG is lossy, so .*o\.jpg would change the pixels inpainting keeps exactly; "
                 r"write o\.png or \.tif \(or add --keep-raw", id="inpaint-to-jpeg"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--task", "deblur", "--psf", str(_stack_tiff(d))],
                 r"^napari-dip: error: the PSF must be one 2D image, but .*s\.tif holds shape \(2, 16, 16\); save a "
                 r"single plane$", id="psf-stack"),
    pytest.param(lambda d: ["--sample", "camera", "--size", "32", "-o", str(d / "o.png"), "--set", "chanels=8"],
                 r"^napari-dip: error: --set chanels: unknown setting", id="sample-copy-not-written-when-refused"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--noise", "10"],
                 r"^napari-dip: error: --noise shapes the built-in --sample; with an INPUT file, leave it out$",
                 id="noise-without-sample"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--keep-raw"],
                 r"^napari-dip: error: --keep-raw is for inpainting .*not --task denoise$", id="keep-raw-denoise"),
    pytest.param(lambda d: [str(_truncated_png(d)), "-o", str(d / "o.png")],
                 r"^napari-dip: error: .*cut\.png cannot be read \(image file is truncated\); check that it was "
                 r"written completely$", id="truncated-png"),
    pytest.param(lambda d: ["--sample", "camera", "--size", "32", "--task", "sr", "--scale", "64",
                            "-o", str(d / "o.png")],
                 r"^napari-dip: error: a 32×32 sample shrunk ×64 has no pixels left; give --size 512 or more",
                 id="sample-smaller-than-the-scale"),
    pytest.param(lambda d: ["batch", *_stem_twins(d), "-o", str(d / "out"), "--workers", "0"],
                 r"^napari-dip: error: the inputs .*img\.tif and .*img\.v2\.tif would both be written to "
                 r".*out/img\.tif; rename one$", id="batch-image-and-stack-share-an-output"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(d / "out"), "--workers", "0", "--task", "inpaint",
                            "--mask", str(_in_outdir(d, "g.png", _mask))],
                 r"^napari-dip: error: the output .*out/g\.png is the mask file .*out/g\.png; choose another output",
                 id="batch-mask-stands-where-an-output-goes"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(d / "out"), "--workers", "0", "--task", "sr",
                            "--scale", "2", *([] if _in_outdir(d, "g.png", _gray) else [])],
                 r"^napari-dip: error: .*out/g\.png exists with shape \(32, 32\), but this job writes shape "
                 r"\(64, 64\) there \(from another task or scale\?\); remove it or choose another output folder$",
                 id="batch-rerun-with-another-scale"),
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
                 r"^napari-dip: error: --set widht: unknown setting; known settings: lr, ", id="set-unknown"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--axes", "TYX"],
                 r"^napari-dip: error: axes 'TYX' names 3 axes but the image has 2", id="axes-wrong-length"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(d / "out"), "--memory-limit", "1.5.5GB"],
                 r"^napari-dip batch: error: argument --memory-limit: '1\.5\.5GB' is not a size; write e\.g\. 3GB",
                 id="memory-limit-1.5.5GB"),
    # 8. stacks on disk that hold nothing, for restore and batch alike
    *[pytest.param(lambda d, make=make, command=command: _stack_args(command, make(d), d), message,
                   id=f"{command}-{name}")
      for command in ("restore", "batch")
      for name, make, message in [*([] if command == "batch" else [
          ("tiff-that-is-text", _text_tiff,  # batch: one failed item (test_batch_fails_a_corrupt_tiff_alone)
           r"^napari-dip: error: .*t\.tif is not a readable TIFF file \(.*\); check that it was written")]),
          ("empty-zarr", _empty_zarr,
           r"^napari-dip: error: the zarr folder .*e\.zarr is empty: it holds no array; give the folder of a zarr "
           r"array$"),
          ("zarr-group-without-array", _group_zarr,
           r"^napari-dip: error: the zarr group .*g\.zarr holds no array; give the folder of a zarr array"),
          ("zarr-without-metadata", _junk_zarr,
           r"^napari-dip: error: the folder .*j\.zarr holds no zarr array or group \(no zarr\.json"),
          ("zarr-of-no-pixels", _zero_zarr,
           r"^napari-dip: error: .*z\.zarr holds no pixels \(shape \(0, 16, 16\)\): give a stack with at least"),
      ]],
    # 9. batch: the output folder, checked before any fit
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(_notes(d)), "--workers", "0"],
                 r"^napari-dip: error: the output folder .*notes\.txt is a file; give a folder \(it is made if "
                 r"missing\)$", id="batch-outdir-is-a-file"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(_notes(d) / "out"), "--workers", "0"],
                 r"^napari-dip: error: cannot make the output folder .*notes\.txt/out: .*notes\.txt is a file; "
                 r"choose another output folder$", id="batch-outdir-inside-a-file"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", "/proc/napari-dip", "--workers", "0"],
                 r"^napari-dip: error: cannot write to the output folder /proc/napari-dip: /proc is not writable",
                 id="batch-outdir-read-only"),
    pytest.param(lambda d: ["batch", str(_gray(d, "in/g.png")), "-o", str(_folder(d / "out" / "g.png").parent),
                            "--workers", "0"],
                 r"^napari-dip: error: the output .*out/g\.png is a folder; remove it or choose another output",
                 id="batch-output-is-a-folder"),
    # 10. the image's own fault comes before what the output format could hold
    pytest.param(lambda d: [str(_nan_tiff(d)), "-o", str(d / "o.png")],
                 r"^napari-dip: error: the image contains 1 NaN or infinite value\(s\); replace them", id="nan-to-png"),
    pytest.param(lambda d: [str(_nan_tiff(d)), "-o", str(d / "o.jpg")],
                 r"^napari-dip: error: the image contains 1 NaN or infinite value\(s\)", id="nan-to-jpeg"),
    # 11. --set NAME=VALUE
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "channels=8", "--set", "channels=16"],
                 r"^napari-dip: error: --set channels is given twice \(8, then 16\): give it once$",
                 id="set-repeated"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(d / "out"), "--workers", "0", "--set", "lr=0.1",
                            "--set", "lr=0.2"],
                 r"^napari-dip: error: --set lr is given twice \(0\.1, then 0\.2\): give it once$",
                 id="batch-set-repeated"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "iterations=5"],
                 r"^napari-dip: error: iterations has an option of its own: write --iterations instead of --set "
                 r"iterations=\.\.\.$", id="set-iterations"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "task=sr"],
                 r"^napari-dip: error: task has an option of its own: write --task instead", id="set-task"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "tile_size=16"],
                 r"^napari-dip: error: tile_size has an option of its own: write --tile-size instead",
                 id="set-tile-size"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "overlap=4"],
                 r"^napari-dip: error: --set overlap: overlap is an option of the Python API \(RestoreOptions\), not "
                 r"a setting; the command line does not take it", id="set-api-option"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "chanels=8"],
                 r"^napari-dip: error: --set chanels: unknown setting; did you mean channels\? known settings: ",
                 id="set-typo"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "channels=x"],
                 r"^napari-dip: error: channels must be a whole number, got 'x'$", id="set-channels-text"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "channels=2.5"],
                 r"^napari-dip: error: channels must be a whole number, got 2\.5$", id="set-channels-fraction"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "lr=nan"],
                 r"^napari-dip: error: lr must be a finite number, got 'nan'$", id="set-lr-nan"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "ema=2"],
                 r"^napari-dip: error: ema must be in \[0, 1\), got 2$", id="set-ema-2"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "compile=fast"],
                 r"^napari-dip: error: unknown compile setting 'fast'; choose one of auto, on, off$",
                 id="set-compile-word"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--set", "channels"],
                 r"^napari-dip restore: error: argument --set: 'channels' is not NAME=VALUE; write e\.g\. --set "
                 r"channels=32$", id="set-without-value"),
    # 12. --axes
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--axes", "YY"],
                 r"^napari-dip: error: axes 'YY' repeats a letter: name each axis once", id="axes-repeated-letter"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--axes", "CY"],
                 r"^napari-dip: error: axes 'CY' needs a Y and an X axis", id="axes-without-x"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--axes", "Y X"],
                 r"^napari-dip: error: axes must be a string of axis letters such as 'TYX', got 'Y X'$",
                 id="axes-with-a-space"),
    pytest.param(lambda d: [str(_stack_tiff(d)), "-o", str(d / "o.tif"), "--axes", "TYX", "--volume"],
                 r"^napari-dip: error: a volume needs a Z axis: axes 'TYX' has none", id="axes-volume-without-z"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(d / "out"), "--workers", "0", "--axes", "TYX"],
                 r"^napari-dip: error: .*g\.png: axes 'TYX' names 3 axes but the image has 2 \(shape \(32, 32\)\)$",
                 id="batch-axes-wrong-length-for-a-png"),
    pytest.param(lambda d: ["batch", str(_stack_tiff(d)), "-o", str(d / "out"), "--workers", "0", "--axes", "ZZX"],
                 r"^napari-dip: error: .*s\.tif: axes 'ZZX' repeats a letter", id="batch-axes-repeated-letter"),
    # 13. tiling and memory extremes
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--tile-size", "0"],
                 r"^napari-dip: error: tile size must be at least 1, got 0$", id="tile-size-0"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--tile-size", "7"],
                 r"^napari-dip: error: tile size 7 is too small: use at least 8 pixels$", id="tile-size-7"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--tile-size", "1.5"],
                 r"^napari-dip restore: error: argument --tile-size: invalid int value: '1\.5'$", id="tile-size-1.5"),
    pytest.param(lambda d: ["batch", str(_gray(d)), str(_gray(d, "h.png")), "-o", str(d / "out"), "--workers", "0",
                            "--tile-size", "0"],
                 r"^napari-dip: error: tile size must be at least 1, got 0$", id="batch-tile-size-0-once"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--memory-limit", "1KB"],
                 r"^napari-dip restore: error: argument --memory-limit: '1KB' is 1000 bytes, less than the 1MiB any "
                 r"fit needs; write e\.g\. 3GB or 512MiB$", id="memory-limit-1KB"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--memory-limit", "1MiB", "--tile-size", "8"],
                 r"^napari-dip: error: an output of 64×64 pixels needs about \d+ MiB to fit whole, more than the 1 MiB "
                 r"that memory_limit allows: raise memory_limit, narrow the network \(channels\) or use fewer scales$",
                 id="memory-limit-below-the-smallest-tile"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--threads", "100000"],
                 r"^napari-dip: error: threads must be at most 1024, got 100000$", id="threads-100000"),
    pytest.param(lambda d: ["batch", str(_gray(d)), "-o", str(d / "out"), "--workers", "100000"],
                 r"^napari-dip: error: a local cluster runs 1 to \d+ worker processes here \(4 per core\), not "
                 r"100000: give --workers \d+ \(one per core\), 0 to run here, or --scheduler", id="workers-100000",
                 marks=pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                          reason="needs dask.distributed")),
    # 14. arrays from .npy files: never unpickled, one sentence naming the file
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--task", "deblur", "--psf", str(_object_npy(d))],
                 r"^napari-dip: error: .*objects\.npy is not a \.npy array of numbers \(.*\); save the PSF with "
                 r"numpy\.save of a numeric array$", id="psf-of-python-objects"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--guide", str(_object_npy(d))],
                 r"^napari-dip: error: .*objects\.npy is not a \.npy array of numbers \(.*\); save the guide with",
                 id="guide-of-python-objects"),
    pytest.param(lambda d: [str(_gray(d)), "-o", str(d / "o.png"), "--guide", str(_notes(d))],
                 r"^napari-dip: error: unsupported guide file type '\.txt' for .*notes\.txt: save the guide as a "
                 r"\.npy array \(numpy\.save\) or as a PNG, JPEG or TIFF image$", id="guide-txt"),
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


@pytest.mark.parametrize("command", ["restore", "batch"])
def test_a_mask_per_plane_of_a_stack_is_read_as_one(tmp_path, command):
    """A 3-plane mask TIFF for a 3-plane stack: each plane filled where its own mask says, and
    every other pixel exactly as it was (its last axis is not taken for colour channels)."""
    stack = (np.random.default_rng(0).random((3, 24, 24)) * 255).astype(np.uint8)
    mask = np.zeros((3, 24, 24), np.uint8)
    for plane in range(3):
        mask[plane, 4 + 5 * plane:9 + 5 * plane, 6:12] = 255
    source = _tiff(tmp_path / "s.tif", stack, photometric="minisblack")
    mask_file = _tiff(tmp_path / "m.tif", mask, photometric="minisblack")
    args = (["batch", str(source), "-o", str(tmp_path / "out"), "--workers", "0"] if command == "batch"
            else [str(source), "-o", str(tmp_path / "out" / "s.tif")])
    done = _cli([*args, "--task", "inpaint", "--mask", str(mask_file), "--set", "channels=8",
                 "--set", "skip_channels=2", "--set", "scales=2", "--threads", "1"], timeout=300)
    assert done.returncode == 0, done.stderr
    result = tifffile.imread(tmp_path / "out" / "s.tif")
    assert result.shape == stack.shape and result.dtype == stack.dtype
    np.testing.assert_array_equal(result[mask == 0], stack[mask == 0])
    assert not np.array_equal(result[mask > 0], stack[mask > 0])


def test_iterations_and_non_finite_values_are_refused_with_a_fix_that_works():
    from napari_dip.core import restore, restore_iter

    with pytest.raises(ValueError, match=r"^the mask must hold numbers or booleans \(nonzero = fill\), not <U1"):
        restore(np.zeros((16, 16), np.uint8), "inpaint", mask=np.full((16, 16), "a"), iterations=1)

    image = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match=r"^iterations must be at most 10000000, got 100000000000$"):
        restore(image, iterations=10**11)
    image[3, 3] = np.nan
    with pytest.raises(ValueError, match=r"^the image contains 1 NaN .*replace them with numbers before restoring, "
                                         r"or mark them in an inpainting mask to have them filled$"):
        restore(image, iterations=1)
    # The fix works as said: under a mask the NaN is filled, and nothing else changes.
    mask = np.zeros((16, 16), bool)
    mask[2:5, 2:5] = True
    image[8, 8] = 0.25
    kept = image.copy()
    filled = restore(image, "inpaint", mask=mask, iterations=2, channels=8, scales=2)
    assert np.isfinite(filled).all() and np.array_equal(filled[~mask], image[~mask])
    assert np.array_equal(image, kept, equal_nan=True)  # the caller's array keeps its NaN
    image[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^the image contains 1 NaN or infinite value\(s\) outside the inpainting "
                                         r"mask; paint them into the mask to have them filled, or replace them"):
        restore(image, "inpaint", mask=mask, iterations=2)
    # One channel's NaN under a mask shared by the channels, and a mask per plane of a stack.
    rgb = np.zeros((16, 16, 3), np.float32)
    rgb[3, 3, 1] = np.nan
    assert np.isfinite(restore(rgb, "inpaint", mask=mask, channel_axis=-1, iterations=2, channels=8,
                               scales=2)).all()
    stack = np.zeros((2, 16, 16), np.float32)
    stack[1, 3, 3] = np.nan
    per_plane = np.zeros((2, 16, 16), bool)
    per_plane[1, 2:5, 2:5] = True
    assert np.isfinite(restore(stack, "inpaint", mask=per_plane, iterations=2, channels=8, scales=2)).all()
    # The same through the stack's and the tiles' own entry points (the widget's all-planes run).
    from napari_dip.core import consume
    from napari_dip.core.stacks import restore_stack_iter
    from napari_dip.core.tiling import restore_tiled_iter

    tiny = dict(iterations=2, channels=8, scales=2, preview_seconds=None)
    assert np.isfinite(consume(restore_stack_iter(stack, "inpaint", mask=per_plane, **tiny)).image).all()
    assert np.isfinite(consume(restore_tiled_iter(stack[1], "inpaint", mask=per_plane[1], **tiny)).image).all()
    # Each channel is filled with its own smallest value: its fitted range does not move.
    two = np.stack([np.linspace(10, 20, 256).reshape(16, 16), np.linspace(100, 200, 256).reshape(16, 16)])
    two = two.astype(np.float32)
    own = two.copy()
    two[1, 3, 3] = np.nan
    own[1, 3, 3] = 100
    assert np.array_equal(restore(two, "inpaint", mask=mask, channel_axis=0, seed=0, **tiny),
                          restore(own, "inpaint", mask=mask, channel_axis=0, seed=0, **tiny))
    per_plane[1] = False
    per_plane[0, 2:5, 2:5] = True
    with pytest.raises(ValueError, match=r"^the image contains 1 NaN or infinite value\(s\) outside the inpainting"):
        restore(stack, "inpaint", mask=per_plane, iterations=2)
    # Cut into tiles, the one NaN is counted once and refused before the first tile's fit.
    tiled = np.zeros((96, 96), np.float32)
    tiled[90, 90] = np.nan
    run = restore_iter(tiled, iterations=1, tile_size=48, overlap=8)
    with pytest.raises(ValueError, match=r"^the image contains 1 NaN or infinite value\(s\)"):
        next(run)
    psf = np.ones((3, 3))
    psf[1, 1] = np.inf
    with pytest.raises(ValueError, match=r"^the PSF contains 1 NaN or infinite value\(s\); replace them with numbers$"):
        restore(np.zeros((16, 16), np.float32), "deblur", psf=psf, iterations=1)


def test_cli_fills_nan_under_the_mask_and_refuses_nan_outside_it(tmp_path):
    image = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    image[10, 10] = np.nan
    source = _tiff(tmp_path / "scan.tif", image)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:13, 8:13] = 255
    _png(tmp_path / "m.png", mask)
    before = _files(tmp_path)
    args = [str(source), "--task", "inpaint", "--mask", str(tmp_path / "m.png"), "--iterations", "2"]
    done = _cli([*args, "-o", str(tmp_path / "o.tif")], timeout=300)
    assert done.returncode == 0, done.stderr
    restored = tifffile.imread(tmp_path / "o.tif")
    assert np.isfinite(restored).all() and np.array_equal(restored[mask == 0], image[mask == 0])
    after = _files(tmp_path)
    assert {name: after[name] for name in before} == before  # the inputs are as they were

    image[0, 0] = np.nan
    _tiff(tmp_path / "scan.tif", image)
    done = _cli([*args, "-o", str(tmp_path / "o2.tif")], timeout=300)
    assert done.returncode == 2 and not (tmp_path / "o2.tif").exists()
    assert done.stderr.startswith("napari-dip: error: the image contains 1 NaN or infinite value(s) outside the "
                                  "inpainting mask; paint them into the mask")


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


SWALLOWING_RUN = """
import sys, time, weakref
import napari_dip.core

def swallowing_run(image, options=None, **kwargs):
    # Like a first torch.compile: Ctrl-C lands in a weakref callback, where Python only reports it.
    class Thing:
        pass
    print("started", flush=True)
    while True:
        thing = Thing()
        ref = weakref.ref(thing, lambda ref: time.sleep(0.2))
        del thing
    yield

napari_dip.core.restore_iter = swallowing_run
from napari_dip.cli import run
sys.argv = ["napari-dip", "restore", "--sample", "camera", "--size", "32", "-o", sys.argv[1], "--quiet"]
run()
"""


def test_ctrl_c_swallowed_by_a_callback_still_ends_the_run_at_once(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", SWALLOWING_RUN, str(tmp_path / "o.png")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert time.monotonic() - start < 10
    assert process.returncode == 130
    assert stderr.strip().splitlines() == ["napari-dip: interrupted; no unfinished output was written"]
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


def test_batch_fails_a_corrupt_tiff_alone(tmp_path):
    """A file that is no TIFF is one failed item, in one line naming it; the other input is restored."""
    source, good = _text_tiff(tmp_path), _gray(tmp_path)
    done = _cli(["batch", str(source), str(good), "-o", str(tmp_path / "out"), "--workers", "0"], timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"napari-dip: failed: {source}: ValueError: {source} is not a readable TIFF file (not a TIFF file: "
        "header=b'hell'); check that it was written completely"
    ]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [".napari-dip-job.json", "g.png"]


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


# --- warm starts from another run's network -----------------------------------------------------------

TINY = {"channels": 8, "scales": 2}


def _tiny_options(**changes):
    from napari_dip.core import RestoreOptions

    advanced = {**TINY, **changes.pop("advanced", {})}
    return RestoreOptions(iterations=changes.pop("iterations", 1), threads=1, preview_seconds=None,
                          advanced=advanced, **changes)


@pytest.fixture(scope="module")
def gray_state():
    """The network state of a tiny 16×16 grayscale fit: 8 channels, 2 scales, input depth 32."""
    from napari_dip.core import consume, restore_iter

    image = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    state = consume(restore_iter(image, options=_tiny_options(), keep_state=True)).state
    assert state is not None
    return state


def _linear_state():
    import torch

    return torch.nn.Linear(2, 2).state_dict()


def _nan_state(state):
    broken = {name: value.clone() for name, value in state.items()}
    broken["head.0.bias"].fill_(float("nan"))
    return broken


GRAY = (16, 16)
OTHER_NETWORKS = [
    pytest.param(GRAY, dict(advanced={"channels": 16}),
                 r"^initial_state comes from another network: channels=8, where this run's has channels=16; "
                 r"warm-start from a run with the same settings and image channels \(or give this run those "
                 r"settings\), or leave initial_state out$", id="channels"),
    pytest.param(GRAY, dict(advanced={"scales": 3}), r"network: scales=2, where this run's has scales=3;",
                 id="depth"),
    pytest.param(GRAY, dict(advanced={"input_depth": 4}), r"network: input_depth=32, where this run's has "
                 r"input_depth=4;", id="input-channels"),
    pytest.param(GRAY, dict(advanced={"skip_channels": 0}), r"network: skip_channels=4, where this run's has "
                 r"skip_channels=0;", id="skip-channels"),
    pytest.param(GRAY, dict(advanced={"top_channels": 4}), r"network: top_channels=8, where this run's has "
                 r"top_channels=4;", id="top-channels"),
    pytest.param((16, 16, 3), {}, r"network: 1 image channel, where this run's has 3 image channels;",
                 id="image-channels"),
    pytest.param((8, 16, 16), dict(volume=True), r"network: a 2D network, where this run's has a 3D \(volume\) "
                 r"network;", id="volume"),
    # Another task's preset: another width and depth (the task itself does not change the network).
    pytest.param(GRAY, dict(task="sr", scale=2, advanced={"channels": None, "scales": None}),
                 r"network: scales=2, channels=8, top_channels=8, where this run's has scales=5, channels=64, "
                 r"top_channels=32;", id="other-task-preset"),
]


@pytest.mark.parametrize("shape, changes, message", OTHER_NETWORKS)
def test_initial_state_from_another_network_is_refused_before_any_step(gray_state, shape, changes, message):
    from napari_dip.core import restore_iter

    image = np.random.default_rng(1).random(shape).astype(np.float32)
    # A long run: the refusal must come before its first step.
    run = restore_iter(image, options=_tiny_options(iterations=10**6, **changes), initial_state=gray_state)
    with pytest.raises(ValueError, match=message):
        next(run)


@pytest.mark.parametrize("make_state, message", [
    pytest.param(lambda state: "weights.pt", r"^initial_state must be a network state \(the state of a Restoration "
                 r"from a run with keep_state=True\), got str$", id="a-path"),
    pytest.param(lambda state: {}, r"got an empty mapping$", id="empty"),
    pytest.param(lambda state: {name: value.numpy() for name, value in state.items()},
                 r"got a mapping holding ndarray values, not only tensors$", id="numpy-values"),
    pytest.param(lambda state: _linear_state(), r"^initial_state is not a state of this run's network \(its "
                 r"weights' names or shapes differ\)", id="another-module"),
    pytest.param(_nan_state, r"^initial_state holds NaN or infinite weights \(in 1 of its \d+ tensors, e\.g\. "
                 r"head\.0\.bias\): warm-start from a run that did not diverge", id="nan-weights"),
])
def test_initial_state_that_is_no_network_state_is_refused(gray_state, make_state, message):
    from napari_dip.core import restore_iter

    run = restore_iter(np.zeros(GRAY, np.float32), options=_tiny_options(iterations=10**6),
                       initial_state=make_state(gray_state))
    with pytest.raises(ValueError, match=message):
        next(run)


def test_initial_state_from_the_same_settings_warm_starts(gray_state):
    from napari_dip.core import consume, restore_iter

    image = np.random.default_rng(2).random(GRAY).astype(np.float32)
    result = consume(restore_iter(image, options=_tiny_options(), initial_state=gray_state))
    assert result.image.shape == GRAY and result.iterations == 1


# --- channel_axis, through every interface that takes it ------------------------------------------------

CHANNEL_AXES = [
    pytest.param(1.5, r"^channel_axis must be a whole number \(an axis index such as 0 or -1\), got 1\.5$", id="1.5"),
    pytest.param(True, r"^channel_axis must be a whole number .*got True$", id="bool"),
    pytest.param("1", r"^channel_axis must be a whole number .*got '1'$", id="text"),
    pytest.param(5, r"channel_axis 5 is out of range for an image of shape \(16, 16, 3\)$", id="5"),
    pytest.param(-4, r"channel_axis -4 is out of range for an image of shape \(16, 16, 3\)$", id="-4"),
]


def _rgb_png(d: Path) -> Path:
    return _png(d / "rgb.png", np.full((16, 16, 3), 90, np.uint8))


def _rgb_tiff(d: Path) -> Path:
    return _tiff(d / "rgb.tif", np.full((16, 16, 3), 90, np.uint8), photometric="rgb")


@pytest.mark.parametrize("channel_axis, message", CHANNEL_AXES)
@pytest.mark.parametrize("interface", ["restore", "restore_iter", "from_json", "plan_batch-png", "plan_batch-tiff"])
def test_channel_axis_is_checked_before_any_work(tmp_path, interface, channel_axis, message):
    from napari_dip import batch, restore
    from napari_dip.core import RestoreOptions, restore_iter

    image = np.full((16, 16, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match=message):
        if interface == "restore":
            restore(image, channel_axis=channel_axis, iterations=10**6, threads=1, **TINY)
        elif interface == "restore_iter":
            next(restore_iter(image, channel_axis=channel_axis, iterations=10**6, threads=1, **TINY))
        elif interface == "from_json":
            next(restore_iter(image, options=RestoreOptions.from_json(json.dumps({"channel_axis": channel_axis}))))
        else:
            source = _rgb_png(tmp_path) if interface.endswith("png") else _rgb_tiff(tmp_path)
            batch.plan_batch([source], tmp_path / "out", RestoreOptions.from_kwargs(channel_axis=channel_axis))
    assert not (tmp_path / "out").exists()


def test_batch_names_the_file_whose_axes_do_not_fit(tmp_path):
    from napari_dip import batch
    from napari_dip.core import RestoreOptions

    source = _rgb_png(tmp_path)
    with pytest.raises(ValueError, match=rf"^{source}: channel_axis 5 is out of range for an image of shape"):
        batch.plan_batch([source], tmp_path / "out", RestoreOptions(channel_axis=5))


def test_a_valid_numpy_channel_axis_is_taken():
    from napari_dip import restore

    image = np.full((3, 16, 16), 0.5, np.float32)
    assert restore(image, channel_axis=np.int64(0), iterations=1, threads=1, **TINY).shape == (3, 16, 16)


# --- RestoreOptions from keywords and JSON: wrong types and misplaced names -----------------------------

OPTION_REFUSALS = [
    pytest.param('{"task": "denoise", ', r"^the saved options are not valid JSON \(.*\); save them again with "
                 r"to_json\(\)$", id="json-not-json"),
    pytest.param('{"channel_axis": 0, "axes": "CYX"}', r"^give either axes or channel_axis, not both",
                 id="json-axes-and-channel-axis"),
    pytest.param('{"axes": "T YX"}', r"^axes must be a string of axis letters such as 'TYX', got 'T YX'$",
                 id="json-axes-space"),
    pytest.param('{"axes": ["T", "Y", "X"]}', r"^axes must be a string of axis letters", id="json-axes-list"),
    pytest.param('{"threads": 100000}', r"^threads must be at most 1024, got 100000$", id="json-threads"),
    pytest.param('{"tile_size": "big"}', r"^tile size must be a whole number, got 'big'$", id="json-tile-size"),
    pytest.param('{"memory_limit": 1.5}', r"^memory limit \(bytes\) must be a whole number, got 1\.5$",
                 id="json-memory-limit"),
    pytest.param('{"advanced": {"iterations": 5}}', r"^iterations is an option of its own, not an advanced setting: "
                 r"give iterations=5 directly", id="json-advanced-iterations"),
    pytest.param('{"advanced": {"task": "sr"}}', r"^task is an option of its own, not an advanced setting: "
                 r"give task='sr' directly", id="json-advanced-task"),
    pytest.param('{"advanced": {"seed": 3}}', r"^seed is an option of its own", id="json-advanced-seed"),
    pytest.param('{"advanced": {"channels": "wide"}}', r"^channels must be a whole number, got 'wide'$",
                 id="json-advanced-channels"),
    pytest.param('{"advanced": ["channels", 8]}', r"^advanced must be a dict of Settings fields, got list$",
                 id="json-advanced-list"),
]


@pytest.mark.parametrize("text, message", OPTION_REFUSALS)
def test_saved_options_of_the_wrong_type_are_refused(text, message):
    from napari_dip.core import RestoreOptions

    with pytest.raises(ValueError, match=message):
        RestoreOptions.from_json(text)


def test_restore_keywords_that_are_options_are_not_settings():
    from napari_dip import restore

    with pytest.raises(ValueError, match=r"^seed is an option of its own, not an advanced setting: give seed=3"):
        restore(np.zeros(GRAY, np.float32), advanced={"seed": 3}, iterations=1)


# --- files: empty stacks and outputs, through the Python API of batch and io -----------------------------

@pytest.mark.parametrize("make, message", [
    pytest.param(_empty_zarr, r"the zarr folder .*e\.zarr is empty", id="empty-zarr"),
    pytest.param(_group_zarr, r"the zarr group .*g\.zarr holds no array", id="group-without-array"),
    pytest.param(_zero_zarr, r"z\.zarr holds no pixels \(shape \(0, 16, 16\)\)", id="no-pixels"),
    pytest.param(lambda d: _notes(d).rename(d / "f.zarr") or d / "f.zarr",
                 r"f\.zarr is a file, not a zarr folder", id="zarr-that-is-a-file"),
])
def test_stacks_that_hold_nothing_are_refused_by_every_reader(tmp_path, make, message):
    from napari_dip import batch
    from napari_dip.stack_io import open_stack

    source = make(tmp_path)
    for read in (open_stack, io.read_image, lambda path: batch.plan_batch([path], tmp_path / "out")):
        with pytest.raises(ValueError, match=message):
            read(source)


def test_the_output_folder_is_checked_when_the_batch_is_planned(tmp_path):
    from napari_dip import batch

    source, notes = _gray(tmp_path, "in/g.png"), _notes(tmp_path)
    with pytest.raises(ValueError, match=rf"^the output folder {notes} is a file; give a folder"):
        batch.plan_batch([source], notes)
    with pytest.raises(ValueError, match=rf"^cannot make the output folder {notes / 'a'}: {notes} is a file"):
        batch.plan_batch([source], notes / "a")
    assert batch.plan_batch([source], tmp_path / "new" / "out").items[0].output == tmp_path / "new/out/g.png"


def test_nan_is_named_before_what_the_format_could_hold(tmp_path):
    image = np.full((16, 16), 500.0)  # a range no PNG holds ...
    image[0, 0] = np.nan  # ... but NaN is the real fault
    with pytest.raises(ValueError, match=r"^the image contains 1 NaN or infinite value\(s\)"):
        io.check_output(tmp_path / "o.png", image)
    with pytest.raises(ValueError, match=r"^PNG cannot hold float values in \[500, 500\]"):
        io.check_output(tmp_path / "o.png", np.full((16, 16), 500.0))


def test_a_one_bit_png_is_written_back_as_one(tmp_path):
    bits = np.arange(256).reshape(16, 16) % 3 == 0
    io.check_output(tmp_path / "o.png", bits)
    io.write_image(tmp_path / "o.png", bits)
    assert Image.open(tmp_path / "o.png").mode == "1"
    np.testing.assert_array_equal(io.read_image(tmp_path / "o.png"), bits)


def test_a_failed_atomic_write_names_the_output_not_its_temporary_file(tmp_path):
    from napari_dip.batch import write_atomically

    with pytest.raises(ValueError, match=r"^JPEG cannot hold the alpha channel of an RGBA image; write o\.png or "
                                         r"\.tif$"):
        write_atomically(tmp_path / "o.jpg", np.zeros((16, 16, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_an_initial_state_is_refused_where_a_run_has_tiles_or_planes():
    import torch

    from napari_dip.core import restore_iter

    tiny = dict(initial_state={"x": torch.zeros(1)}, iterations=2, channels=8, scales=2, compile="off", threads=1,
                preview_seconds=None)
    image = np.zeros((3, 16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match=r"initial_state warm-starts one fit, but this image has 3 planes"):
        next(restore_iter(image, **tiny))
    big = np.zeros((64, 64), dtype=np.float32)
    with pytest.raises(ValueError, match=r"is cut into tiles of 32²"):
        next(restore_iter(big, tile_size=32, **tiny))
