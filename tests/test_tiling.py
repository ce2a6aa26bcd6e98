import numpy as np
import pytest
import torch

from napari_dip.core import Progress, Restoration, consume, resolve_settings, restore_iter, tiling
from napari_dip.core.memory import available_memory, fit_bytes_per_pixel
from napari_dip.core.tiling import (
    auto_tile_size,
    blend_weights,
    restore_tiled_iter,
    tile_starts,
)

FAST = {"channels": 8, "scales": 2, "threads": 1, "preview_seconds": None}


@pytest.mark.parametrize("length, tile, overlap", [(1000, 512, 64), (512, 320, 64), (97, 32, 0), (100, 40, 10)])
def test_tiles_cover_with_overlap_and_weights_sum_to_one(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    weights = blend_weights(starts, tile, length)
    total = np.zeros(length)
    for start, weight in zip(starts, weights, strict=True):
        assert weight.min() > 0
        total[start : start + tile] += weight
    np.testing.assert_allclose(total, 1, atol=1e-6)
    # Away from overlaps a tile counts alone.
    assert weights[0][0] == 1 and weights[-1][-1] == 1


def _identity_fit(monkeypatch, fail_above: int | None = None):
    """Replace each tile's fit by one step returning the tile (upsampled by ``scale``)."""

    def fake_fit_array(image, options, layout=None, **_):
        if fail_above is not None and max(image.shape[-2:]) > fail_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        result = np.asarray(image, dtype=np.float32)
        if options.factor > 1:
            result = result.repeat(options.factor, axis=-2).repeat(options.factor, axis=-1)
        yield Progress(1, 1, 0.0, 0.0, 0.0)
        return Restoration(result, options.task, 1, "iterations", 0.0, options.settings, 0, "cpu", 1)

    monkeypatch.setattr(tiling, "fit_array", fake_fit_array)


def test_blending_reproduces_the_image_exactly_when_tiles_do(monkeypatch):
    _identity_fit(monkeypatch)
    image = (np.random.default_rng(0).random((100, 77)) * 3000 + 200).astype(np.uint16)
    result = consume(restore_tiled_iter(image, tile_size=32, overlap=8, **FAST))
    assert len(result.windows) == 4 * 3
    assert result.image.dtype == np.uint16
    # One intensity mapping for all tiles: values round-trip exactly.
    np.testing.assert_array_equal(result.image, image)


def test_super_resolution_tiles_blend_on_the_output_grid(monkeypatch):
    _identity_fit(monkeypatch)
    image = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)
    result = consume(restore_tiled_iter(image, "sr", scale=2, tile_size=24, overlap=6, **FAST))
    np.testing.assert_allclose(result.image, image.repeat(2, axis=0).repeat(2, axis=1), atol=1e-6)


def test_reads_only_tile_windows_of_a_lazy_image(monkeypatch):
    _identity_fit(monkeypatch)

    class Recording:
        def __init__(self, array):
            self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

        def __getitem__(self, index):
            self.reads.append(self.array[index].shape)
            return self.array[index]

    lazy = Recording(np.random.default_rng(0).random((96, 96)).astype(np.float32))
    result = consume(restore_tiled_iter(lazy, tile_size=32, overlap=8, **FAST))
    assert max(rows * cols for rows, cols in lazy.reads) == 32 * 32
    np.testing.assert_allclose(result.image, lazy.array, atol=1e-6)


def test_out_of_gpu_memory_retries_with_smaller_tiles(monkeypatch):
    _identity_fit(monkeypatch, fail_above=32)
    image = np.random.default_rng(0).random((100, 100)).astype(np.float32)
    events = []
    run = restore_tiled_iter(image, tile_size=96, overlap=8, **FAST)
    result = consume(run, progress=events.append)
    notes = [event.message for event in events if event.message]
    assert notes == [
        "the GPU ran out of memory with 96-pixel tiles; retrying with 48-pixel tiles",
        "the GPU ran out of memory with 48-pixel tiles; retrying with 24-pixel tiles",
    ]
    assert result.tile_size == 24
    np.testing.assert_allclose(result.image, image, atol=1e-6)


def test_one_tile_is_exactly_an_untiled_restoration(camera48):
    untiled = consume(restore_iter(camera48, iterations=5, seed=2, **FAST))
    tiled = consume(restore_tiled_iter(camera48, iterations=5, seed=2, **FAST))
    assert tiled.tile_size is None and len(tiled.windows) == 1
    np.testing.assert_array_equal(tiled.image, untiled.image)
    timeless = {key: value for key, value in untiled.metadata().items() if key != "elapsed_seconds"}
    assert timeless.items() <= tiled.metadata().items()


def test_a_real_tiled_run_reports_every_tile_and_keeps_dtype():
    image = (np.random.default_rng(0).random((48, 40)) * 255).astype(np.uint8)
    events = []
    result = consume(restore_tiled_iter(image, tile_size=32, overlap=8, iterations=3, **FAST), progress=events.append)
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
    assert len(result.windows) == 4 and result.iterations == 4 * 3
    assert [(event.tile, event.step.iteration) for event in events] == [(t, i) for t in range(4) for i in (1, 2, 3)]
    fractions = [event.fraction for event in events]
    assert 0 < fractions[0] and fractions[-1] == pytest.approx(1) and all(0 <= f <= 1 for f in fractions)
    assert result.metadata()["tiles"] == 4 and result.metadata()["tile_size"] == 32


def test_inpainting_tiles_without_holes_are_fitted_as_reconstructions(astronaut48):
    mask = np.zeros(astronaut48.shape[:2], bool)
    mask[4:12, 4:12] = True
    # keep_known=False (the paper's behaviour): by default such tiles are kept as they are,
    # unfitted (tests/test_inpaint_stop.py).
    run = restore_tiled_iter(astronaut48, "inpaint", mask=mask, tile_size=32, overlap=8, iterations=3,
                             keep_known=False, **FAST)
    result = consume(run)
    assert result.image.shape == astronaut48.shape
    assert [run["task"] for run in result.runs] == ["inpaint", "denoise", "denoise", "denoise"]
    assert {run["settings"]["upsample_mode"] for run in result.runs} == {"nearest"}


def test_a_tile_with_nothing_known_is_refused(astronaut48):
    mask = np.zeros(astronaut48.shape[:2], bool)
    mask[:32, :32] = True
    with pytest.raises(ValueError, match="entirely masked"):
        consume(restore_tiled_iter(astronaut48, "inpaint", mask=mask, tile_size=32, overlap=8, iterations=3, **FAST))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mask": np.ones((8, 8)), "task": "inpaint"}, r"mask shape \(8, 8\) does not match"),
        ({"tile_size": 32, "overlap": 16}, "less than half the tile size"),
        ({"tile_size": 4}, "too small"),
    ],
)
def test_bad_tiling_input_names_the_problem(camera48, kwargs, message):
    with pytest.raises(ValueError, match=message):
        consume(restore_tiled_iter(camera48, iterations=2, **FAST, **kwargs))


def test_planned_tiles_are_no_larger_than_the_count_of_tiles_needs():
    """The largest tile the budget allows would overlap far more than needed on an image just
    above it: 1024² in 4 tiles of 768² fitted 2.25 times its pixels (126 s against 54 s for 20
    iterations, benchmarks/results/growth/)."""
    from napari_dip.core.api import plan_run
    from napari_dip.core.options import RestoreOptions

    settings = resolve_settings("denoise")
    limit = fit_bytes_per_pixel(settings, 1) * 768 * 768
    image = np.zeros((1024, 1024), np.uint16)
    kind, _, tile = plan_run(image, RestoreOptions.from_kwargs("denoise", memory_limit=limit))
    assert (kind, tile) == ("tiles", 544)
    assert tiling.tile_starts(1024, tile, 64) == [0, 480]  # two a side, as with 768², overlapping by 64
    options = RestoreOptions.from_kwargs("denoise", memory_limit=limit)
    kind, _, tile = plan_run(np.zeros((2048, 300), np.uint16), options)
    assert tile == 736 and len(tiling.tile_starts(2048, tile, 64)) == 3
    # An explicit tile size is the user's: kept as given.
    _, _, tile = plan_run(image, RestoreOptions.from_kwargs("denoise", tile_size=768))
    assert tile == 768


def test_automatic_tile_size_follows_the_memory_budget():
    settings = resolve_settings("denoise", channels=128)
    per_pixel = fit_bytes_per_pixel(settings, 1)
    assert auto_tile_size((256, 256), settings, memory_limit=per_pixel * 256 * 256) is None
    side = auto_tile_size((4096, 4096), settings, memory_limit=3 * 2**30)
    assert side % 2**settings.scales == 0
    assert per_pixel * side**2 <= 3 * 2**30 < per_pixel * (side + 2**settings.scales) ** 2
    # Super-resolution fits at the output size: tiles are smaller by the factor.
    assert auto_tile_size((4096, 4096), settings, factor=4, memory_limit=3 * 2**30) <= side // 4 + 8
    # The budget was the user's limit, so the sentence names it (not free memory).
    with pytest.raises(ValueError, match="MiB memory_limit allows; raise memory_limit"):
        auto_tile_size((4096, 4096), settings, memory_limit=2**20)
    assert available_memory(torch.device("cpu")) > 0
