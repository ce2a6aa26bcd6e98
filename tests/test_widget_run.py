"""The worker's driver and the remembered settings, without Qt."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_dip._run import Kept, RestorationFailed, describe_error, drive, ends_a_plane
from napari_dip._widget_settings import SETTINGS_ENV, load_settings, save_settings
from napari_dip.core import Progress, restore_iter
from napari_dip.core.stacks import PlaneProgress


def fake_run(steps: int, previews_at=(), fail_at: int | None = None, closed: list | None = None):
    """A stand-in for the core's generator: ``steps`` events, returns "done"."""
    try:
        for i in range(1, steps + 1):
            if i == fail_at:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            preview = np.zeros((2, 2)) if i in previews_at else None
            yield Progress(i, steps, 1.0 / i, 0.0, None, preview, preview)
        return "done"
    finally:
        if closed is not None:
            closed.append(True)


def test_drive_passes_previews_and_throttles_the_rest():
    events = []
    run = drive(fake_run(1000, previews_at=(500,)), threading.Event(), report_seconds=60)
    with pytest.raises(StopIteration) as done:
        while True:
            events.append(next(run))
    assert done.value.value == "done"
    # The first event, and every preview; nothing else within the minute.
    assert [event.iteration for event in events] == [1, 500]


def fake_stack_run(planes: int, steps: int):
    """A stand-in for the core's stack generator: ``steps`` events per plane, then the plane."""
    for plane in range(planes):
        for _ in range(steps):
            yield PlaneProgress(plane, planes, (plane,), plane / planes, 0.0, None)
        yield PlaneProgress(plane, planes, (plane,), (plane + 1) / planes, 0.0, None, restored=np.zeros((2, 2)))
    return "stack done"


def test_drive_passes_every_finished_plane_of_a_stack():
    events = []
    run = drive(fake_stack_run(3, 100), threading.Event(), report_seconds=60, always=ends_a_plane)
    with pytest.raises(StopIteration) as done:
        while True:
            events.append(next(run))
    assert done.value.value == "stack done"
    # The first event, and every plane's end however fast they come.
    assert [(event.plane, event.restored is not None) for event in events] == [
        (0, False), (0, True), (1, True), (2, True)
    ]


def test_drive_cancels_before_the_next_step_and_closes_the_run():
    cancel = threading.Event()
    closed: list[bool] = []
    run = drive(fake_run(10**9, closed=closed), cancel, report_seconds=0)
    assert next(run).iteration == 1
    cancel.set()
    with pytest.raises(StopIteration) as done:
        next(run)
    assert done.value.value is None and closed == [True]


def test_drive_keeps_the_first_preview_once_asked():
    keep = threading.Event()
    closed: list[bool] = []
    run = drive(fake_run(10**9, previews_at=(7,), closed=closed), threading.Event(), report_seconds=0, keep=keep)
    assert next(run).iteration == 1
    keep.set()  # the core, asked by preview_now, would preview at the next step; this one at 7
    with pytest.raises(StopIteration) as done:
        while True:
            next(run)
    assert isinstance(done.value.value, Kept) and done.value.value.event.iteration == 7 and closed == [True]


def test_drive_over_the_core_keeps_the_average_at_the_next_step():
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    keep = threading.Event()
    core = restore_iter(image, iterations=10**6, channels=8, scales=2, threads=1, preview_seconds=None,
                        preview_now=keep.is_set)
    run = drive(core, threading.Event(), report_seconds=0, keep=keep)
    assert next(run).preview is None
    keep.set()
    with pytest.raises(StopIteration) as done:
        next(run)
    kept = done.value.value
    assert kept.event.iteration == 2 and kept.event.preview.shape == (32, 32)


def test_drive_turns_errors_into_one_sentence():
    run = drive(fake_run(10, fail_at=3), threading.Event(), report_seconds=0)
    with pytest.raises(RestorationFailed, match="ran out of memory") as failure:
        list(run)
    # Not a RuntimeError, which superqt's worker would swallow without emitting `finished`.
    assert not isinstance(failure.value, RuntimeError)


def test_describe_error():
    assert describe_error(ValueError("mask shape (4, 4) does not match")) == "mask shape (4, 4) does not match"
    assert "ran out of memory" in describe_error(MemoryError())
    assert describe_error(KeyError("x")) == "the restoration failed with KeyError: 'x'"


def test_drive_over_the_core_cancels_within_a_step():
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    cancel = threading.Event()
    run = drive(restore_iter(image, iterations=10**6, channels=8, scales=2, threads=1), cancel, report_seconds=0)
    next(run)
    cancel.set()
    start = time.perf_counter()
    with pytest.raises(StopIteration) as done:
        next(run)
    assert done.value.value is None and time.perf_counter() - start < 1.0


def test_core_value_errors_come_out_as_they_are():
    run = drive(restore_iter(np.zeros((8, 8)), "inpaint", mask=np.zeros((4, 4))), threading.Event())
    with pytest.raises(RestorationFailed, match=r"mask shape \(4, 4\) does not match"):
        next(run)


def test_settings_round_trip_and_survive_a_corrupt_file(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "widget.json"
    monkeypatch.setenv(SETTINGS_ENV, str(path))
    assert load_settings() == {}
    save_settings({"task": "sr", "factor": 4, "advanced": {"lr": 0.02}})
    assert load_settings() == {"task": "sr", "factor": 4, "advanced": {"lr": 0.02}}
    path.write_text("{not json", encoding="utf-8")
    assert load_settings() == {}
    path.write_text("[1, 2]", encoding="utf-8")
    assert load_settings() == {}


def step(iteration: int, loss: float = 0.5, *, signal=None, best=None, part=None) -> Progress:
    return Progress(iteration, 100, loss, 0.0, None, part=part, signal=signal, best_iteration=best)


def test_curve_history_keeps_every_step_of_the_fit_under_way():
    from napari_dip._run import CurveHistory

    history = CurveHistory()
    events = [step(1, 0.9), step(2, 0.8, signal=0.01), step(3, 0.7, signal=0.005, best=3),
              Progress(0, 0, float("nan"), 0.0, None, message="a note"), step(4, 0.6, signal=0.006)]
    def events_run():
        yield from events

    run = drive(events_run(), threading.Event(), report_seconds=60, record=history.record)
    passed = list(run)
    shot = history.snapshot()
    # Every step reached the curve, though only some were passed on to the GUI thread.
    assert len(passed) < len(events)
    assert shot.iterations.tolist() == [1, 2, 3, 4] and shot.losses.tolist() == [0.9, 0.8, 0.7, 0.6]
    assert np.isnan(shot.signals[0]) and shot.signals[1:].tolist() == [0.01, 0.005, 0.006]
    assert shot.best == 3
    # The next tile's fit starts from its first step: a new curve.
    history.record(step(1, 0.95, part="tile 2/4"))
    shot = history.snapshot()
    assert shot.iterations.tolist() == [1] and shot.best is None and shot.part == "tile 2/4"


def test_fast_preset_is_narrower_and_shorter_everywhere():
    from napari_dip.core import PRESETS, RestoreOptions, preset_settings

    assert set(PRESETS) == {"fast", "default", "paper"}
    for task, scale in (("denoise", 1), ("inpaint", 1), ("sr", 4), ("deblur", 1), ("jpeg", 1)):
        fast, default = preset_settings(task, "fast", scale), preset_settings(task, "default", scale)
        assert fast.channels < default.channels and fast.iterations < default.iterations and fast.auto_stop
    assert RestoreOptions(preset="fast").settings.channels == 32


def test_estimate_is_the_table_times_the_iterations():
    from napari_dip._estimate import STEP_COST, Calibration, estimate_run, format_seconds, network_pixels
    from napari_dip.core import resolve_settings

    settings = resolve_settings("denoise", "default", iterations=1000, precision="float32")
    fixed, per_megapixel = STEP_COST[("default", "float32")]
    assert network_pixels((100, 130), settings) == 128 * 160  # padded to multiples of 32
    estimate = estimate_run("default", settings, (128, 128), device="cpu")
    assert estimate.seconds == pytest.approx(1000 * (fixed + per_megapixel * 128 * 128 / 1e6))
    assert estimate.text() == f"Time: about {format_seconds(estimate.seconds)} for 1000 iterations."
    # Twice the pixels cost more, not twice as much: the fixed part stays.
    larger = estimate_run("default", settings, (128, 256), device="cpu")
    assert estimate.seconds < larger.seconds < 2 * estimate.seconds
    # A narrower network is cheaper; super-resolution fits the larger output.
    narrow = estimate_run("default", settings.updated(channels=16), (128, 128), device="cpu")
    assert narrow.seconds < estimate.seconds
    assert estimate_run("sr", resolve_settings("sr", scale=4, iterations=1000, precision="float32"), (32, 32),
                        factor=4, device="cpu").seconds == pytest.approx(estimate.seconds, rel=0.05)
    # Automatic stopping: the cap is an upper bound. A day-long run suggests a region.
    auto = estimate_run("paper", resolve_settings("denoise", "paper"), (2048, 2048), device="cpu")
    assert not auto.auto and auto.long and "pick a Region" in auto.text() and " h " in auto.text()
    # A run twice as slow as the table corrects the next estimate.
    calibration = Calibration()
    calibration.learn("cpu", estimate.table_step, elapsed=2 * estimate.step * 200, iterations=200)
    again = estimate_run("default", settings, (128, 128), device="cpu", calibration=calibration)
    assert again.seconds == pytest.approx(2 * estimate.seconds) and "corrected by your last run" in again.text()
    planes = estimate_run("default", settings, (128, 128), fits=4, device="cpu")
    assert planes.seconds == pytest.approx(4 * estimate.seconds) and "for each of 4 planes" in planes.text()
