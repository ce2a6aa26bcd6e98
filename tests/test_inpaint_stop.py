"""Inpainting's stop: known pixels near the fill, held out of the fit, decide when to stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dip.core import restore_iter
from napari_dip.core.presets import preset_settings
from napari_dip.core.stopping import HoldoutStopper, holdout_pixels

TINY = dict(channels=8, scales=2, precision="float32", compile="off", threads=1, preview_seconds=None)


def _problem(size: int = 40):
    yy, xx = np.mgrid[:size, :size]
    image = (0.5 + 0.3 * np.sin(yy / 5.0) * np.cos(xx / 7.0)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=bool)
    mask[size // 2 - 2:size // 2 + 2, 4:size - 4] = True
    return image, mask


def _run(run):
    events = []
    while True:
        try:
            events.append(next(run))
        except StopIteration as stop:
            return events, stop.value


def test_rule_stops_after_patience_without_a_real_improvement_and_keeps_the_lowest():
    stopper = HoldoutStopper(patience=50, min_iterations=20, tolerance=0.01)
    # Falls to 1.0 at iteration 99, then creeps down by 0.1 % per 10 iterations (below the
    # tolerance), then rises.
    values = list(np.linspace(10, 1, 100)) + [1.0 - 0.001 * (i // 10) for i in range(40)] + [2.0] * 100
    stopped = None
    for i, value in enumerate(values):
        stopper.observe(i, value)
        if stopper.should_stop:
            stopped = i
            break
    assert stopped == 99 + 50  # the clock was last reset at 99: creeping does not reset it
    assert stopper.best_iteration == 130  # but the (first) lowest value is what is kept


def test_rule_never_stops_before_min_iterations():
    stopper = HoldoutStopper(patience=5, min_iterations=100, tolerance=0.0)
    for i in range(99):
        stopper.observe(i, 1.0)
        assert not stopper.should_stop


def test_holdout_pixels_are_known_near_the_fill_and_the_share_asked_for():
    known = torch.ones(64, 64, dtype=torch.bool)
    fill = torch.zeros(64, 64, dtype=torch.bool)
    fill[30:32, 10:50] = True
    known &= ~fill
    known[:, 60:] = False  # padding
    coords = holdout_pixels(known, fill, share=0.1, band=4, seed=0)
    assert coords is not None
    ys, xs = coords
    assert known[ys, xs].all()
    assert ((ys >= 26) & (ys < 36) & (xs >= 6) & (xs < 54)).all()
    band = (10 * 48) - 2 * 40
    assert len(ys) == round(0.1 * band)
    again = holdout_pixels(known, fill, share=0.1, band=4, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(coords, again, strict=True))


def test_holdout_refused_when_too_few_pixels_to_judge_by():
    known = torch.ones(8, 8, dtype=torch.bool)
    fill = torch.zeros(8, 8, dtype=torch.bool)
    fill[4, 4] = True
    known &= ~fill
    assert holdout_pixels(known, fill, share=0.05, band=1, seed=0) is None


def test_default_inpainting_uses_the_holdout_rule():
    settings = preset_settings("inpaint")
    assert settings.auto_stop and settings.stop_holdout > 0
    assert preset_settings("inpaint", "paper").stop_holdout == 0


def test_inpainting_stops_by_itself_and_returns_the_average_with_the_lowest_holdout_error():
    image, mask = _problem()
    run = restore_iter(image, "inpaint", mask=mask, iterations=2000, auto_stop=True, stop_holdout=0.1,
                       stop_patience=40, min_iterations=60, keep_known=False, preview_iterations=1, **TINY)
    events, result = _run(run)
    assert result.stop_reason == "auto" and result.iterations < 2000
    assert result.best_iteration is not None and result.best_iteration < result.iterations
    signals = [e.signal for e in events]
    assert all(s is not None for s in signals[30:])
    # The rule's own signal: lowest at the kept iteration (after its first min_iterations / 2).
    tracked = signals[29:]
    assert int(np.argmin(tracked)) + 30 == result.best_iteration
    kept = events[result.best_iteration - 1].preview
    np.testing.assert_array_equal(result.image, kept)
    assert events[-1].best_iteration == result.best_iteration


def test_kept_known_pixels_stay_exact_with_the_rule():
    image, mask = _problem()
    u8 = (image * 255).astype(np.uint8)
    run = restore_iter(u8, "inpaint", mask=mask, iterations=300, auto_stop=True, stop_patience=20,
                       min_iterations=40, **TINY)
    _, result = _run(run)
    np.testing.assert_array_equal(result.image[~mask], u8[~mask])


@pytest.mark.parametrize("share", [0.0, 0.2])
def test_fixed_count_runs_are_not_changed_by_the_holdout_settings(share):
    # A fixed iteration count turns automatic stopping off, so nothing is held out of the fit.
    image, mask = _problem(24)
    base = _run(restore_iter(image, "inpaint", mask=mask, iterations=5, stop_holdout=0.0, **TINY))[1].image
    other = _run(restore_iter(image, "inpaint", mask=mask, iterations=5, stop_holdout=share, **TINY))[1].image
    np.testing.assert_array_equal(base, other)


def test_tiles_with_nothing_to_fill_are_not_fitted_and_come_back_exactly(monkeypatch):
    from napari_dip.core import tiling

    calls = []
    original = tiling.fit_array

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(tiling, "fit_array", counting)
    rng = np.random.default_rng(1)
    image = (rng.random((96, 96)) * 255).astype(np.uint8)
    mask = np.zeros(image.shape, dtype=bool)
    mask[5:9, 5:20] = True  # inside the first tile only
    run = restore_iter(image, "inpaint", mask=mask, iterations=3, tile_size=48, overlap=8, **TINY)
    events, result = _run(run)
    assert len(calls) == 1
    tiles = len(result.parts)
    assert tiles > 1
    assert any(e.message == f"1 of the {tiles} tiles have pixels to fill; the others are kept as they are"
               for e in events)
    np.testing.assert_array_equal(result.image[~mask], image[~mask])
    assert not np.array_equal(result.image[mask], image[mask])
    stops = [part["stop_reason"] for part in result.parts]
    assert stops.count("unchanged") == tiles - 1 and result.iterations == 3
    # The paper's behaviour (the network output everywhere) still fits every tile.
    calls.clear()
    _run(restore_iter(image, "inpaint", mask=mask, iterations=2, tile_size=48, overlap=8, keep_known=False, **TINY))
    assert len(calls) == tiles


def test_a_stack_plane_with_nothing_to_fill_is_kept_as_it_is():
    rng = np.random.default_rng(2)
    stack = (rng.random((3, 32, 32)) * 255).astype(np.uint8)
    mask = np.zeros(stack.shape, dtype=bool)
    mask[0, 10:14, 4:28] = True
    mask[2, 3:6, 3:20] = True
    run = restore_iter(stack, "inpaint", mask=mask, iterations=3, **TINY)
    _, result = _run(run)
    np.testing.assert_array_equal(result.image[1], stack[1])
    np.testing.assert_array_equal(result.image[~mask], stack[~mask])
    assert [part["stop_reason"] for part in result.parts] == ["iterations", "unchanged", "iterations"]



def test_the_expected_stop_of_a_power_law_decay_is_where_the_rule_stops():
    # An error falling as 1/t: over 200 iterations it falls 200/t, below 2 % from t ≈ 10 000.
    stopper = HoldoutStopper(patience=200, min_iterations=100, tolerance=0.02)
    expected, stopped = None, None
    for i in range(20_000):
        stopper.observe(i, 1.0 / (i + 1))
        if i == 1999:
            expected = stopper.expected_stop()
            assert expected > stopper.clock_iteration + 1 + stopper.patience  # later than the patience says
        if stopper.should_stop:
            stopped = i + 1
            break
    assert stopped is not None and abs(expected - stopped) / stopped < 0.05, (expected, stopped)

