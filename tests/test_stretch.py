"""The ``stretch`` setting: a fit sees each channel stretched from its own minimum to its maximum.

Super-resolution's and denoising's default presets stretch (a low-contrast uint8 input otherwise uses a fifth of
the network's output range, and the fit is slow to reach it: benchmarks/sr_residual.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_dip import restore
from napari_dip.core import fitting, preset_settings
from napari_dip.core.arrays import Intensity

TINY = dict(channels=8, scales=2, precision="float32", compile="off", iterations=3, seed=1, threads=1)


def _low_contrast_rgb(size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (np.array([170, 40, 20]) + rng.integers(0, 50, (size, size, 3))).astype(np.uint8)


def test_spanned_maps_each_channels_extremes_to_0_and_1_and_back():
    chw = _low_contrast_rgb().transpose(2, 0, 1)
    spanned = Intensity.spanned(chw)
    unit = spanned.to_unit(chw)
    assert np.allclose(unit.reshape(3, -1).min(axis=1), 0) and np.allclose(unit.reshape(3, -1).max(axis=1), 1)
    assert np.array_equal(spanned.from_unit(unit), chw)
    # The nominal uint8 range for comparison: these channels use a fifth of it.
    nominal = Intensity.of(chw).to_unit(chw)
    assert (nominal.max(axis=(1, 2)) - nominal.min(axis=(1, 2))).max() < 0.2


def test_spanned_takes_its_range_from_the_given_pixels_only():
    chw = np.full((1, 8, 8), 100, dtype=np.uint8)
    chw[0, :4] = 120
    chw[0, 0, 0] = 255  # a pixel to inpaint: not part of the range
    where = np.ones((8, 8), dtype=bool)
    where[0, 0] = False
    spanned = Intensity.spanned(chw, where)
    assert float(spanned.low.ravel()[0]) == 100 and float(spanned.high.ravel()[0]) == 120
    # A constant channel gets a span, not a division by zero.
    flat = Intensity.spanned(np.full((1, 4, 4), 7, dtype=np.uint8))
    assert np.isfinite(flat.to_unit(np.full((1, 4, 4), 7, dtype=np.uint8))).all()


def test_super_resolution_and_denoising_stretch_by_default():
    for task in ("sr", "denoise"):
        assert preset_settings(task, "default", 4).stretch
        assert preset_settings(task, "fast", 4).stretch
        assert not preset_settings(task, "paper", 4).stretch  # the official code does not
    for task in ("inpaint", "jpeg", "deblur"):  # not measured yet
        assert not preset_settings(task, "default").stretch


@pytest.fixture
def seen(monkeypatch):
    """What the engine is handed: the observation and the noise level."""
    calls = []
    real = fitting.fit

    def spy(observation, operator, settings, **kwargs):
        calls.append(dict(observation=observation.numpy().copy(), noise_sigma=kwargs.get("noise_sigma"),
                          known=kwargs["known"].numpy().copy()))
        return real(observation, operator, settings, **kwargs)

    monkeypatch.setattr(fitting, "fit", spy)
    return calls


def test_super_resolution_fits_the_stretched_input_and_returns_its_own_range(seen):
    image = _low_contrast_rgb()
    out = restore(image, "sr", scale=2, **TINY)
    observed = seen[-1]["observation"][0]
    assert np.allclose(observed.reshape(3, -1).min(axis=1), 0) and np.allclose(observed.reshape(3, -1).max(axis=1), 1)
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    lows, highs = image.reshape(-1, 3).min(axis=0), image.reshape(-1, 3).max(axis=0)
    assert (out.reshape(-1, 3) >= lows).all() and (out.reshape(-1, 3) <= highs).all()
    # stretch=False: the nominal 0-255 range, as before.
    restore(image, "sr", scale=2, stretch=False, **TINY)
    nominal = seen[-1]["observation"][0].reshape(3, -1)
    assert (nominal.max(axis=1) - nominal.min(axis=1)).max() < 0.2


def test_inpainting_with_stretch_takes_the_range_from_the_known_pixels(seen):
    image = np.full((16, 16), 100, dtype=np.uint8)
    image[:, 8:] = 140
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[2:5, 2:5] = 1
    image[2:5, 2:5] = 255  # under the paint: not part of the range
    out = restore(image, "inpaint", mask=mask, stretch=True, **TINY)
    observed, known = seen[-1]["observation"][0, 0], seen[-1]["known"]
    assert observed[known].min() == 0 and observed[known].max() == 1
    assert np.array_equal(out[mask == 0], image[mask == 0])


def test_a_given_noise_level_is_rescaled_to_the_stretched_range(seen):
    image = np.linspace(0.4, 0.6, 16 * 16, dtype=np.float32).reshape(16, 16)
    options = fitting.RestoreOptions.from_kwargs("denoise", stretch=True, **TINY)
    for _ in fitting.fit_array(image, options, noise_sigma=0.01):
        pass
    assert seen[-1]["noise_sigma"] == pytest.approx(0.05, rel=1e-5)


def test_a_constant_channel_keeps_its_nominal_range():
    """Nothing to stretch by: a [0, 1] float channel at 0.9 stays in [0, 1] (not [0.9, 1.9])."""
    image = np.full((16, 16), 0.9, dtype=np.float32)
    out = restore(image, "denoise", **TINY)
    assert out.min() >= 0 and out.max() <= 1
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 1
    filled = restore(np.full((16, 16), 0.8, np.float32), "inpaint", mask=mask, stretch=True, **TINY)
    assert filled.max() <= 1


def test_tiles_share_one_stretch_and_are_not_stretched_again():
    """An image that spans 0-255 is tiled exactly as without the stretch (one mapping for all
    tiles, not one per tile)."""
    from napari_dip.core import consume
    from napari_dip.core.tiling import restore_tiled_iter

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    image[:, :20] = 60
    image[0, 25], image[1, 25] = 0, 255
    runs = [consume(restore_tiled_iter(image, tile_size=16, overlap=4, preview_seconds=None, stretch=stretch,
                                       **TINY)).image for stretch in (False, True)]
    assert np.array_equal(runs[0], runs[1])
    dim = (100 + image // 8).astype(np.uint8)  # 100-131: the stretch changes the fit
    stretched = consume(restore_tiled_iter(dim, tile_size=16, overlap=4, preview_seconds=None, **TINY)).image
    assert stretched.min() >= dim.min() and stretched.max() <= dim.max()


def test_network_inversion_refuses_stretch():
    from napari_dip.core.inversion import InversionOptions

    with pytest.raises(ValueError, match="stretch is not available for network inversion"):
        InversionOptions(advanced={"stretch": True})


def test_job_records_that_differ_only_by_an_explicit_old_default_are_the_same_settings():
    from napari_dip import batch

    ours = {"task": "jpeg", "settings": {"lr": 0.01}}
    theirs = {"task": "jpeg", "settings": {"lr": 0.01, "stretch": False}}
    assert batch._difference(theirs, ours) == "it was made with other settings"
