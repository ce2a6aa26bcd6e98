import numpy as np
import pytest

from napari_dip.core import consume, restore_iter
from napari_dip.core.layout import Layout
from napari_dip.core.stacks import WARM_LR_SHARE, restore_stack, restore_stack_iter

FAST = {"channels": 8, "scales": 2, "threads": 1, "preview_seconds": None}


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    """A (T=6, 64, 64) uint8 time-lapse: a drifting crop of camera, with noise."""
    from skimage import data

    camera = data.camera()
    clean = np.stack([camera[100 + t : 164 + t, 200 + t : 264 + t] for t in range(6)]).astype(float)
    noisy = clean + np.random.default_rng(0).normal(scale=20, size=clean.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def test_planes_equal_restoring_each_plane_alone(movie):
    events = []
    result = consume(restore_stack_iter(movie, iterations=4, seed=4, **FAST), progress=events.append)
    assert result.image.shape == movie.shape and result.image.dtype == np.uint8
    for t in range(len(movie)):
        alone = consume(restore_iter(movie[t], iterations=4, seed=4, **FAST)).image
        np.testing.assert_array_equal(result.image[t], alone)
    finished = [event for event in events if event.restored is not None]
    assert [event.index for event in finished] == [(t,) for t in range(6)]
    for event in finished:
        np.testing.assert_array_equal(event.restored, result.image[event.plane])
    fractions = [event.fraction for event in events]
    assert all(0 <= f <= 1 for f in fractions) and fractions[-1] == 1
    steps = [event for event in events if event.tile is not None]
    assert len(steps) == 6 * 4 and {event.planes for event in events} == {6}
    assert result.iterations == [4] * 6 and result.metadata()["planes"] == 6


def test_warm_start_begins_each_plane_from_the_previous_fit(movie):
    first_losses, results = {}, {}
    for warm in (False, True):
        events = []
        results[warm] = restore_stack(movie[:3], iterations=20, lr=0.02, seed=1, warm_start=warm,
                                      progress=events.append, **FAST)
        first_losses[warm] = [e.tile.step.loss for e in events if e.tile is not None and e.tile.step.iteration == 1]
    cold, warm = first_losses[False], first_losses[True]
    assert cold[0] == warm[0]  # the first plane has nothing to start from
    # A network already fitted to the previous frame starts far closer to this one.
    assert warm[1] < cold[1] / 3 and warm[2] < cold[2] / 3
    assert results[True].iterations == [20, 10, 10]
    assert [run["settings"]["lr"] for run in results[True].runs] == pytest.approx([0.02, 0.006, 0.006])
    np.testing.assert_array_equal(results[True].image[0], results[False].image[0])


def test_warm_start_hands_on_the_weights_at_the_first_plane_s_best_iteration(movie):
    stopping = dict(iterations=150, auto_stop=True, stop_window=5, stop_patience=10, min_iterations=5, lr=0.02)
    events = []
    result = restore_stack(movie[:2], warm_start=True, seed=3, progress=events.append, **stopping, **FAST)
    first = result.runs[0]
    assert first["stop_reason"] == "auto" and first["best_iteration"] < first["iterations"]
    best = first["best_iteration"]
    assert [event.message for event in events if event.message] == [
        f"warm start: refitting the first plane for its best {best} iterations to hand on those weights"
    ]
    assert result.iterations == [first["iterations"], round(best / 2)] and result.refit_iterations == best
    # Plane 1 starts from plane 0 fitted exactly up to its best iteration, then runs a short, gentle fit.
    handed_on = consume(restore_iter(movie[0], seed=3, keep_state=True, **dict(stopping, iterations=best,
                                                                               auto_stop=False), **FAST)).state
    warm = dict(stopping, iterations=round(best / 2), lr=0.02 * WARM_LR_SHARE, auto_stop=False)
    expected = consume(restore_iter(movie[1], seed=3, initial_state=handed_on, **warm, **FAST)).image
    np.testing.assert_array_equal(result.image[1], expected)


def test_cancelling_stops_after_the_current_plane_and_keeps_finished_ones(movie):
    out = np.zeros_like(movie)
    run = restore_stack_iter(movie, iterations=3, out=out, **FAST)
    for event in run:
        if event.restored is not None:
            run.close()
            break
    assert out[0].any() and not out[1:].any()


def test_multi_axis_stack_with_channels_and_mask_per_plane():
    rng = np.random.default_rng(0)
    stack = rng.random((2, 3, 2, 32, 32)).astype(np.float32)  # (T, C, Z, Y, X)
    mask = np.zeros((2, 2, 32, 32), bool)  # one per (T, Z) plane
    mask[:, :, 8:12, 8:12] = True
    events = []
    result = restore_stack(stack, "inpaint", channel_axis=1, mask=mask, iterations=2, progress=events.append, **FAST)
    assert result.image.shape == stack.shape
    assert [event.index for event in events if event.restored is not None] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    alone = consume(restore_iter(stack[1, :, 0], "inpaint", channel_axis=0, mask=mask[1, 0], iterations=2, **FAST))
    np.testing.assert_array_equal(result.image[1, :, 0], alone.image)


def test_rgb_stack_super_resolution_shape():
    stack = (np.random.default_rng(0).random((2, 16, 24, 3)) * 255).astype(np.uint8)
    result = restore_stack(stack, "sr", scale=2, iterations=2, **FAST)
    assert result.image.shape == (2, 32, 48, 3) and result.image.dtype == np.uint8


def test_lazy_stack_is_read_plane_by_plane_and_streamed_to_zarr(tmp_path, movie):
    zarr = pytest.importorskip("zarr")

    class Recording:
        def __init__(self, array):
            self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

        def __getitem__(self, index):
            self.reads.append(self.array[index].shape)
            return self.array[index]

    lazy = Recording(movie[:3])
    out = zarr.open_array(tmp_path / "out.zarr", mode="w", shape=lazy.shape, dtype=lazy.dtype, chunks=(1, 64, 64))
    for event in restore_stack_iter(lazy, iterations=2, out=out, **FAST):
        if event.restored is not None and event.plane == 0:
            # The finished plane is on disk before the next one starts.
            on_disk = zarr.open_array(tmp_path / "out.zarr", mode="r")
            np.testing.assert_array_equal(on_disk[0], event.restored)
            assert not on_disk[1].any()
    assert lazy.reads == [(64, 64)] * 3
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], consume(
        restore_stack_iter(movie[:3], iterations=2, **FAST)).image)


def test_layout_finds_planes_channels_and_spatial_axes():
    layout = Layout.of((5, 4, 3, 64, 48), channel_axis=2)
    assert layout.plane_axes == (0, 1) and layout.spatial_axes == (3, 4) and layout.plane_channel_axis == 0
    assert layout.planes == 20 and layout.output_shape(2) == (5, 4, 3, 128, 96)
    rgb = Layout.of((7, 64, 48, 3))
    assert rgb.channel_axis == 3 and rgb.plane_axes == (0,) and rgb.plane_channel_axis == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mask": np.ones((3, 8, 8)), "task": "inpaint"}, "matches neither a plane"),
        ({"out": np.zeros((6, 32, 32), np.uint8)}, "needs"),
        ({"channel_axis": 5}, "out of range"),
    ],
)
def test_bad_stack_input_names_the_problem(movie, kwargs, message):
    with pytest.raises(ValueError, match=message):
        consume(restore_stack_iter(movie, iterations=2, **FAST, **kwargs))
