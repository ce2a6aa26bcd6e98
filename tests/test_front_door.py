"""The one front door: options checked once, the planner's choices, and the same answer
whichever way a stack or a big image comes in."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from napari_dip import restore
from napari_dip.core import RestoreOptions, consume, plan_run, restore_iter
from napari_dip.core.device import COMPILE_MIN_WORK, resolve_compile
from napari_dip.core.stacks import restore_stack_iter
from napari_dip.core.tasks import TASKS, widget_choices

NETWORK = dict(channels=8, scales=2, precision="float32")
TINY = dict(NETWORK, threads=1)


@pytest.fixture
def movie() -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.random((3, 32, 40)) * 200 + 20).astype(np.uint8)


# --- options ------------------------------------------------------------------------------------


def test_options_round_trip_through_json():
    options = RestoreOptions(task="sr", scale=4, preset="paper", iterations=50, seed=7, threads=2,
                             tile_size=256, axes="TYX", advanced={"channels": 16, "lr": 0.02})
    again = RestoreOptions.from_json(options.to_json())
    assert again == options and again.settings == options.settings
    assert again.settings.channels == 16 and again.factor == 4


def test_options_keep_arrays_out_of_json():
    mask = np.zeros((8, 8), bool)
    mask[2, 3] = True
    options = RestoreOptions(task="inpaint", mask=mask)
    assert "mask" not in options.to_dict()
    assert RestoreOptions.from_json(options.to_json(), mask=mask) == options
    with pytest.raises(ValueError, match="unknown option"):
        RestoreOptions.from_json('{"mask": [1]}')


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"advanced": {"ema": 2.0}}, r"ema must be in \[0, 1\), got 2.0"),
        ({"advanced": {"lr": 0}}, r"lr must be in \(0, 10\], got 0"),
        ({"advanced": {"lr": float("nan")}}, "lr must be a finite number"),
        ({"advanced": {"channels": 0}}, "channels must be at least 1"),
        ({"advanced": {"channels": 2.5}}, "channels must be a whole number"),
        ({"advanced": {"input_depth": 0}}, "input_depth must be at least 1"),
        ({"advanced": {"skip_channels": -1}}, "skip_channels must be at least 0"),
        ({"advanced": {"checkpoint_every": 0}}, "checkpoint_every must be at least 1"),
        ({"advanced": {"reg_noise_std": -1}}, r"reg_noise_std must be in \[0, 10\]"),
        ({"advanced": {"widht": 3}}, "unknown setting"),
        ({"iterations": 2.7}, "iterations must be a whole number, got 2.7"),
        ({"iterations": float("nan")}, "iterations must be a whole number"),
        ({"iterations": 0}, "iterations must be at least 1"),
        ({"seed": 2**64}, "seed must be at most"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"seed": "7"}, "seed must be a whole number"),
        ({"preview_iterations": 0}, "preview_iterations must be at least 1"),
        ({"task": "sr", "scale": "2"}, "scale must be a whole number of at least 2"),
        ({"task": "sr", "scale": float("inf")}, "scale must be a whole number"),
        ({"task": "sr", "scale": 1}, "at least 2"),
        ({"task": "deblur", "psf": [["a"]]}, "PSF must be a 2D array of real numbers"),
        ({"task": "deblur", "psf": np.ones(3)}, "PSF must be a 2D array"),
        ({"task": "deblur", "psf": np.ones((3, 3)) * (1 + 1j)}, "PSF holds complex numbers"),
        ({"tile_size": 4}, "too small"),
        ({"tile_size": 32, "overlap": 16}, "less than half the tile size"),
        ({"task": "blur"}, "unknown task 'blur'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"task": "sr", "scale": 2, "volume": True}, "not available for volumes"),
    ],
)
def test_bad_options_are_refused_in_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RestoreOptions(**kwargs)


def test_numpy_integers_are_good_values():
    options = RestoreOptions(seed=np.int64(3), iterations=np.int32(5), advanced={"channels": np.int64(8)})
    assert (options.seed, options.settings.iterations, options.settings.channels) == (3, 5, 8)
    assert type(options.seed) is int


def test_registry_is_the_task_list():
    assert {task for _, task, _ in widget_choices()} == set(TASKS)
    assert [f for _, task, f in widget_choices() if task == "sr"] == list(TASKS["sr"].scales)


# --- the planner -----------------------------------------------------------------------------


def test_planner_picks_one_fit_tiles_planes_or_a_volume(movie):
    assert plan_run(movie[0], RestoreOptions())[0] == "fit"
    assert plan_run(movie, RestoreOptions())[0] == "planes"
    assert plan_run(movie, RestoreOptions(axes="ZYX", volume=True))[0] == "volume"
    kind, _, tile = plan_run(movie[0], RestoreOptions(memory_limit=2**20, advanced=NETWORK))
    assert kind == "tiles" and tile < 32
    rgb = np.zeros((32, 40, 3), np.uint8)
    assert plan_run(rgb, RestoreOptions())[1].channel_axis == 2
    assert plan_run(rgb, RestoreOptions(axes="TYX"))[0] == "planes"  # the axes say so: not RGB


def test_restore_takes_stacks_with_axes_and_gives_the_planes_of_the_stack_path(movie):
    by_axes = restore(movie, axes="TYX", iterations=3, **TINY)
    guessed = restore(movie, iterations=3, **TINY)
    stack_path = consume(restore_stack_iter(movie, iterations=3, preview_seconds=None, **TINY)).image
    one_plane = restore(movie[1], iterations=3, **TINY)
    np.testing.assert_array_equal(by_axes, stack_path)
    np.testing.assert_array_equal(guessed, stack_path)
    np.testing.assert_array_equal(by_axes[1], one_plane)


def test_channels_last_axes_name_rgb_planes():
    stack = (np.random.default_rng(2).random((2, 32, 32, 3)) * 255).astype(np.uint8)
    result = restore(stack, axes="TYXC", iterations=2, **TINY)
    assert result.shape == stack.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result[0], restore(stack[0], iterations=2, **TINY))


def test_a_plane_too_big_for_the_budget_is_tiled_and_says_so():
    image = (np.random.default_rng(3).random((96, 80)) * 60000).astype(np.uint16)
    events = []
    run = restore_iter(image, iterations=2, memory_limit=2**20, preview_iterations=1, **TINY)
    result = consume(run, events.append)
    notes = [event.message for event in events if event.message]
    assert notes == ["80×96 pixels: restoring in tiles of 20² to stay within 1 MiB"]
    assert len(result.parts) == 35 and result.plan == "35 tiles of 20² (overlap 5)"
    assert result.image.shape == image.shape and result.image.dtype == np.uint16
    steps = [event for event in events if event.message is None]
    assert steps[-1].part == "tile 35/35" and steps[-1].done_fraction > 0.9
    # Previews are of the whole image, whatever tile is being fitted.
    assert all(event.preview.shape == image.shape for event in steps if event.preview is not None)


def test_super_resolution_in_tiles_says_the_result_s_tile_size_too():
    low = (np.random.default_rng(4).random((40, 32)) * 255).astype(np.uint8)
    run = restore_iter(low, "sr", scale=4, iterations=1, memory_limit=8 * 2**20, **TINY)
    note = next(run).message
    run.close()
    assert note.startswith("32×40 pixels: restoring in tiles of ")
    tile = int(note.split("tiles of ")[1].split("²")[0])
    assert f"(of the input; {4 * tile}² of the result at ×4)" in note


def test_compile_only_where_the_work_repays_it():
    cpu = torch.device("cpu")
    assert not resolve_compile("auto", cpu, 512 * 512, 2, 5)  # a quick test run
    assert resolve_compile("auto", cpu, 256 * 256, 2, 2400)  # the default denoising cap
    assert not resolve_compile("auto", cpu, 64 * 64, 2, 2400)
    assert not resolve_compile("auto", cpu, 10**9, 3, 2400)  # volumes stay eager
    assert resolve_compile("auto", cpu, COMPILE_MIN_WORK, 2, 1)
    assert resolve_compile("on", cpu, 1, 2, 1) and not resolve_compile("off", cpu, 10**9, 2, 10**4)


# --- inpainting keeps what nobody painted ------------------------------------------------------


def _mask(shape) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[5:12, 4:30] = 1
    mask[20:22, :] = 1
    return mask


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("rgb", [False, True])
def test_inpainting_returns_every_unpainted_pixel_exactly(dtype, rgb):
    rng = np.random.default_rng(4)
    shape = (32, 36, 3) if rgb else (32, 36)
    scale = {np.uint8: 255, np.uint16: 50000, np.float32: 7.5}[dtype]
    image = (rng.random(shape) * scale).astype(dtype)
    mask = _mask((32, 36))
    result = restore(image, "inpaint", mask=mask, iterations=5, **TINY)
    known = ~(mask != 0)
    assert result.dtype == image.dtype
    assert result[known].tobytes() == image[known].tobytes()
    assert not np.array_equal(result[~known], image[~known])
    raw = restore(image, "inpaint", mask=mask, iterations=5, keep_known=False, **TINY)
    np.testing.assert_array_equal(raw[~known], result[~known])
    assert not np.array_equal(raw[known], image[known])


def test_inpainting_keeps_unpainted_pixels_in_stacks_and_tiles(movie):
    mask = _mask((32, 40))
    stack = restore(movie, "inpaint", mask=mask, iterations=3, **TINY)
    keep = np.broadcast_to(mask == 0, movie.shape)
    np.testing.assert_array_equal(stack[keep], movie[keep])
    big = np.tile(movie[0].astype(np.float32) / 255, (3, 2))
    big_mask = np.tile(mask, (3, 2))
    tiled = restore(big, "inpaint", mask=big_mask, iterations=2, tile_size=32, overlap=8, **TINY)
    assert tiled[big_mask == 0].tobytes() == big[big_mask == 0].tobytes()
    volume = restore(movie, "inpaint", mask=np.broadcast_to(mask, movie.shape), volume=True, iterations=2, **TINY)
    np.testing.assert_array_equal(volume[keep], movie[keep])


def test_paper_preset_returns_the_network_output():
    assert not RestoreOptions(task="inpaint", mask=np.eye(4), preset="paper").keeps_known
    assert RestoreOptions(task="inpaint", mask=np.eye(4)).keeps_known
    assert not RestoreOptions().keeps_known


def test_cli_inpainting_keeps_the_unpainted_pixels(tmp_path):
    image = (np.random.default_rng(5).random((32, 36)) * 60000).astype(np.uint16)
    mask = _mask(image.shape) * 255
    tifffile.imwrite(tmp_path / "in.tif", image)
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    done = subprocess.run(
        [sys.executable, "-m", "napari_dip.cli", "restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"),
         "--task", "inpaint", "--mask", str(tmp_path / "mask.tif"), "--iterations", "3", "--threads", "1"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    out = tifffile.imread(tmp_path / "out.tif")
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])


def test_a_stack_gives_the_same_planes_through_restore_the_cli_and_batch(tmp_path, movie):
    from napari_dip.cli import main

    expected = restore(movie, axes="TYX", iterations=3, seed=2, channels=8, scales=2, threads=1)
    tifffile.imwrite(tmp_path / "movie.tif", movie, photometric="minisblack")
    common = ["--iterations", "3", "--seed", "2", "--threads", "1", "--set", "channels=8", "--set", "scales=2",
              "--quiet"]
    assert main(["restore", str(tmp_path / "movie.tif"), "-o", str(tmp_path / "restored.tif"), "--axes", "TYX",
                 *common]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "restored.tif"), expected)
    assert main(["batch", str(tmp_path / "movie.tif"), "-o", str(tmp_path / "out"), "--workers", "0", *common]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "movie.tif"), expected)


def test_cli_tiles_a_plane_too_big_for_the_memory_limit_and_says_so(tmp_path):
    image = (np.random.default_rng(6).random((96, 80)) * 60000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", image)
    done = subprocess.run(
        [sys.executable, "-m", "napari_dip.cli", "restore", str(tmp_path / "big.tif"), "-o", str(tmp_path / "o.tif"),
         "--iterations", "2", "--threads", "1", "--memory-limit", "1MiB", "--set", "channels=8", "--set", "scales=2"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "80×96 pixels: restoring in tiles of 20² to stay within 1 MiB" in done.stdout + done.stderr
    assert "in 35 tiles of 20² (overlap 5)" in done.stdout
    assert tifffile.imread(tmp_path / "o.tif").shape == image.shape


def test_batch_inpainting_keeps_the_unpainted_pixels(tmp_path):
    from napari_dip.batch import plan_batch, run_batch

    image = (np.random.default_rng(7).random((32, 36)) * 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", image)
    mask = _mask(image.shape)
    options = RestoreOptions(task="inpaint", mask=mask, iterations=3, threads=1, advanced=NETWORK)
    report = run_batch(plan_batch([tmp_path / "in"], tmp_path / "out"), options, progress=False)
    assert not report.failed
    out = tifffile.imread(tmp_path / "out" / "a.tif")
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])


def test_values_beyond_what_float64_can_span_are_refused_and_huge_constants_restored():
    with pytest.raises(ValueError, match="span more than a float64 can hold"):
        restore(np.where(np.eye(32) > 0, 1e308, -1e308), iterations=2, **TINY)
    flat = restore(np.full((32, 32), 1e17), iterations=2, **TINY)
    assert np.isfinite(flat).all() and flat.dtype == np.float64


def test_compile_decision_of_the_planner_is_the_fits_and_takes_stack_masks(movie):
    from napari_dip.core import plan_compiles
    from napari_dip.core.fitting import network_shape

    # 200² pads to 224² for the default network: the fit compiles, so the planner must say so.
    options = RestoreOptions()
    assert network_shape((200, 200), options) == (224, 224)
    assert plan_compiles(np.zeros((200, 200), np.uint8), options)
    # A stack with a mask per plane, or named axes, is planned plane by plane without refusal.
    mask = np.zeros(movie.shape, bool)
    mask[:, 3:6, 4:9] = True
    assert not plan_compiles(movie, RestoreOptions(task="inpaint", mask=mask, iterations=5))
    assert not plan_compiles(movie, RestoreOptions(axes="TYX", iterations=5))


def test_stacks_of_tiny_planes_and_list_masks():
    tiny = np.random.default_rng(8).random((2, 6, 6)).astype(np.float32)
    assert restore(tiny, iterations=1, **TINY).shape == (2, 6, 6)
    image = np.random.default_rng(9).random((40, 40)).astype(np.float32)
    mask = np.zeros((40, 40), int)
    mask[4:8, 4:30] = 1
    result = restore(image, "inpaint", mask=mask.tolist(), iterations=1, tile_size=24, overlap=4, **TINY)
    np.testing.assert_array_equal(result[mask == 0], image[mask == 0])


def test_batch_takes_the_stacks_axes(tmp_path):
    from napari_dip.cli import main

    stack = (np.random.default_rng(10).random((2, 32, 32, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb_movie.tif", stack, photometric="rgb")
    assert main(["batch", str(tmp_path / "rgb_movie.tif"), "-o", str(tmp_path / "out"), "--workers", "0",
                 "--axes", "TYXC", "--iterations", "2", "--threads", "1", "--set", "channels=8", "--set", "scales=2",
                 "--quiet"]) == 0
    expected = restore(stack, axes="TYXC", iterations=2, seed=0, channels=8, scales=2, threads=1)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "rgb_movie.tif"), expected)


def test_a_worker_process_that_dies_is_one_sentence(monkeypatch):
    import threading

    import napari_dip._process as process

    monkeypatch.setattr(process, "_serve", _die)
    run = process.run_in_process("restore_iter", np.zeros((8, 8)), RestoreOptions(), cancel=threading.Event())
    with pytest.raises(process.WorkerProcessDied, match="ended without a result"):
        next(run)


def _die(conn, *args):
    import os

    os._exit(3)


def test_threads_are_chosen_once_for_a_run_of_many_fits(monkeypatch, movie):
    import napari_dip.core.fitting as fitting

    calls = []
    real = fitting.choose_threads
    monkeypatch.setattr(fitting, "choose_threads", lambda pixels, requested=None: calls.append(requested) or real(
        pixels, requested))
    restore(np.tile(movie[0], (3, 2)), iterations=1, tile_size=32, overlap=8, **NETWORK)  # 12 tiles
    restore(movie, iterations=1, **NETWORK)  # 3 planes
    assert calls.count(None) == 2


def test_the_command_line_bar_ends_full_when_the_run_stops_by_itself(capsys):
    from napari_dip.core import Progress
    from napari_dip.core.api import consume

    def stops_early():
        yield Progress(300, 2400, 0.01, 3.0, 20.0, eta_latest=200.0)
        return "result"

    assert consume(stops_early(), progress=True) == "result"
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    assert any("left=20s (200s at the cap)" in line for line in bar)
    assert "100/100%" in bar[-1] and "done" in bar[-1]
