import subprocess
import sys

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as psnr

from napari_dip import restore, restore_iter
from napari_dip.core import fit, preset_settings
from napari_dip.core.networks import SkipNet, count_parameters
from napari_dip.core.operators import DownsampleOperator, IdentityOperator, lanczos2_kernel


def noisy_copy(image: np.ndarray, sigma: float = 25 / 255, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + sigma * rng.standard_normal(image.shape), 0, 1).astype(np.float32)


def test_core_imports_no_qt_or_napari():
    code = (
        "import sys, napari_dip.core, napari_dip.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_paper_network_has_official_parameter_count():
    assert count_parameters(SkipNet(32, 3)) == 2_217_831


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_downsampler_is_aligned_with_pil_lanczos(factor):
    # The observation a user brings was shrunk by PIL, OpenCV or scikit-image, which centre each
    # low-resolution pixel on its block. An operator off by 1.5 pixels (as ours was) capped
    # ×4 super-resolution 5 dB below bicubic.
    from PIL import Image
    from skimage import data

    size = (128 // factor) * factor
    hr = data.astronaut()[:size, 128 : 128 + size].astype(np.float32) / 255
    low = Image.fromarray(np.rint(hr * 255).astype(np.uint8)).resize((size // factor,) * 2, Image.LANCZOS)
    low = np.asarray(low, np.float32) / 255
    ours = DownsampleOperator(factor)(torch.from_numpy(hr.transpose(2, 0, 1))[None])[0].numpy().transpose(1, 2, 0)
    assert ours.shape == low.shape
    assert psnr(low, ours, data_range=1) > 38
    assert psnr(low, np.roll(ours, 1, axis=(0, 1)), data_range=1) < 25


def test_shifted_sum_bilinear_upsampling_equals_interpolate():
    # What the compiled network runs in place of F.interpolate must give the same values,
    # edges included, for odd and even sizes, in both directions.
    from napari_dip.core.networks import _bilinear_2x_along

    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, requires_grad=True)
    expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    got = _bilinear_2x_along(_bilinear_2x_along(x, 2), 3)
    torch.testing.assert_close(got, expected)
    weights = torch.randn_like(expected)
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), x)
    (grad_got,) = torch.autograd.grad((got * weights).sum(), x)
    torch.testing.assert_close(grad_got, grad_expected)


def test_narrow_top_level_keeps_shapes_and_cuts_parameters():
    wide = SkipNet(32, 3, channels=64)
    narrow = SkipNet(32, 3, channels=64, top_channels=32)
    assert count_parameters(narrow) < count_parameters(wide)
    z = torch.rand(1, 32, 64, 64)
    assert narrow(z).shape == wide(z).shape == (1, 3, 64, 64)
    assert narrow.body.decode[0][0][1].out_channels == 32  # the full-resolution 3×3 convolution
    assert narrow.body.deeper[2].decode[0][0][1].out_channels == 64


def test_lanczos2_kernel_is_normalised_and_symmetric():
    kernel = lanczos2_kernel(4)
    assert kernel.shape == (16, 16)
    assert lanczos2_kernel(3).shape == (11, 11)
    assert kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel, kernel.T)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1])


def test_downsample_operator_keeps_constant_images_and_divides_size():
    x = torch.full((1, 3, 32, 48), 0.25)
    y = DownsampleOperator(4)(x)
    assert y.shape == (1, 3, 8, 12)
    torch.testing.assert_close(y, torch.full_like(y, 0.25))


def test_denoising_raises_psnr_well_above_noisy_input(camera48, tiny):
    noisy = noisy_copy(camera48)
    restored = restore(noisy, iterations=300, lr=0.02, **tiny)
    assert psnr(camera48, restored) > psnr(camera48, noisy) + 4


def test_inpainting_beats_mean_fill_on_missing_pixels(astronaut48, tiny):
    rng = np.random.default_rng(1)
    mask = rng.random(astronaut48.shape[:2]) < 0.5
    damaged = astronaut48.copy()
    damaged[mask] = 0
    restored = restore(damaged, "inpaint", mask=mask, iterations=300, lr=0.02, **tiny)
    mean_fill = damaged.copy()
    mean_fill[mask] = astronaut48[~mask].mean(axis=0)
    error_dip = np.abs(restored[mask] - astronaut48[mask]).mean()
    error_mean = np.abs(mean_fill[mask] - astronaut48[mask]).mean()
    assert error_dip < 0.6 * error_mean
    # Known pixels stay close to what was observed.
    assert np.abs(restored[~mask] - astronaut48[~mask]).mean() < 0.05


def test_super_resolution_beats_nearest_neighbour(camera48, tiny):
    low = DownsampleOperator(2)(torch.from_numpy(camera48)[None, None])[0, 0].numpy()
    # A shorter average than the paper's 0.99 suits a run of a few hundred steps.
    restored = restore(low, "sr", scale=2, iterations=300, lr=0.02, ema=0.95, **tiny)
    assert restored.shape == camera48.shape
    nearest = np.kron(low, np.ones((2, 2), dtype=np.float32))
    assert psnr(camera48, restored) > psnr(camera48, nearest) + 0.3


def test_deblurring_fits_the_blurred_observation_with_a_sharper_image(camera48, tiny):
    from napari_dip.core.operators import BlurOperator, psf_gaussian

    blur = BlurOperator(psf_gaussian(1.5))
    blurred = blur(torch.from_numpy(camera48)[None, None])[0, 0].numpy()
    restored = restore(blurred, "deblur", psf=psf_gaussian(1.5), iterations=300, lr=0.02, **tiny)
    reblurred = blur(torch.from_numpy(restored)[None, None])[0, 0].numpy()
    assert psnr(blurred, reblurred) > 30

    def detail(image):
        return np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()

    assert detail(restored) > 1.1 * detail(blurred)


def test_same_seed_same_result_and_other_seed_differs(camera48, tiny):
    noisy = noisy_copy(camera48)
    a = restore(noisy, iterations=20, seed=3, **tiny)
    b = restore(noisy, iterations=20, seed=3, **tiny)
    c = restore(noisy, iterations=20, seed=4, **tiny)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "dtype, low, high",
    [(np.uint8, 0, 255), (np.uint16, 1000, 5000), (np.float32, 0.0, 1.0), (np.float64, -3.0, 7.5)],
)
def test_dtype_and_range_are_kept(camera48, tiny, dtype, low, high):
    image = (low + camera48 * (high - low)).astype(dtype)
    restored = restore(image, iterations=150, lr=0.03, **tiny)
    assert restored.dtype == dtype
    assert restored.shape == image.shape
    assert restored.min() >= low - 1e-6 and restored.max() <= high + 1e-6
    # Same intensity scale: the mean of the restoration is near the input's.
    assert abs(float(restored.mean()) - float(image.mean())) < 0.15 * (high - low)


@pytest.mark.parametrize("shape, channel_axis", [((37, 53), None), ((37, 53, 3), None), ((5, 37, 53), 0),
                                                 ((37, 53, 4), -1)])
def test_odd_sizes_and_channel_layouts_come_back_unchanged(tiny, shape, channel_axis):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    restored = restore(image, iterations=3, channel_axis=channel_axis, **tiny)
    assert restored.shape == shape


def test_images_smaller_than_the_network_are_padded_not_refused():
    image = np.random.default_rng(0).random((9, 20)).astype(np.float32)
    assert restore(image, iterations=2, threads=1).shape == (9, 20)


def test_super_resolution_of_odd_size_is_exactly_scaled(tiny):
    image = np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)
    assert restore(image, "sr", scale=2, iterations=3, **tiny).shape == (74, 106, 3)


def test_input_is_not_modified(camera48, tiny):
    noisy = noisy_copy(camera48)
    before = noisy.copy()
    restore(noisy, iterations=5, **tiny)
    np.testing.assert_array_equal(noisy, before)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "inpaint", "mask": np.ones((10, 10))},
         r"mask shape \(10, 10\) does not match the image's spatial shape \(48, 48\)"),
        ({"task": "inpaint", "mask": np.zeros((48, 48))}, "mask is empty"),
        ({"task": "inpaint"}, "inpainting needs a mask"),
        ({"task": "sr"}, "needs a scale"),
        ({"task": "sr", "scale": 2.5}, "whole number"),
        ({"task": "deblur"}, "needs a PSF"),
        ({"task": "unmix"}, "unknown task 'unmix'"),
        ({"task": "denoise", "scale": 4}, "scale is only used for super-resolution"),
        ({"task": "denoise", "iterations": 0}, "iterations must be at least 1"),
        ({"task": "denoise", "device": "tpu"}, "unknown device 'tpu'"),
        ({"task": "denoise", "learning_rate": 0.1}, "unknown setting"),
    ],
)
def test_bad_input_gives_clear_error(camera48, kwargs, message):
    with pytest.raises(ValueError, match=message):
        restore(camera48, **kwargs)


def test_nan_and_bad_shapes_are_refused(camera48):
    with_nan = camera48.copy()
    with_nan[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        restore(with_nan)
    with pytest.raises(ValueError, match="has no 2D planes"):
        restore(np.zeros(48))


def test_generator_yields_progress_and_can_be_cancelled(camera48, tiny):
    run = restore_iter(camera48, iterations=500, preview_seconds=None, preview_iterations=2, **tiny)
    events = [next(run) for _ in range(4)]
    run.close()
    assert [e.iteration for e in events] == [1, 2, 3, 4]
    assert all(e.iterations == 500 and e.loss > 0 and e.eta is not None for e in events)
    assert events[1].preview.shape == camera48.shape and events[0].preview is None


def test_generator_returns_restoration_with_metadata(camera48, tiny):
    run = restore_iter(camera48, iterations=5, seed=7, **tiny)
    events = list(_drain(run))
    result = events[-1]
    assert result.iterations == 5 and result.stop_reason == "iterations" and result.seed == 7
    assert result.metadata()["settings"]["iterations"] == 5


def _drain(run):
    try:
        while True:
            yield next(run)
    except StopIteration as done:
        yield done.value


class ExplodingOperator(IdentityOperator):
    """Returns NaN once, as a diverging fit would, to exercise backtracking."""

    def __init__(self, explode_at: int) -> None:
        super().__init__()
        self.calls = 0
        self.explode_at = explode_at

    def forward(self, x):
        self.calls += 1
        return x * float("nan") if self.calls == self.explode_at else x


def test_divergence_restores_last_good_weights(camera48):
    settings = preset_settings("denoise", "paper").updated(iterations=30, channels=8, scales=2)
    run = fit(torch.from_numpy(camera48)[None, None], ExplodingOperator(12), settings,
              out_channels=1, out_shape=camera48.shape, preview_seconds=None)
    events = list(_drain(run))
    result = events[-1]
    assert result.backtracks == 1
    assert sum(e.backtracked for e in events[:-1]) == 1
    assert np.isfinite(result.image).all()


def test_paper_presets_match_official_settings():
    denoise = preset_settings("denoise", "paper")
    assert (denoise.iterations, denoise.lr, denoise.reg_noise_std, denoise.auto_stop) == (3000, 0.01, 1 / 30, False)
    sr4, sr8 = preset_settings("sr", "paper", 4), preset_settings("sr", "paper", 8)
    assert (sr4.iterations, sr4.reg_noise_std) == (2000, 0.03)
    assert (sr8.iterations, sr8.reg_noise_std) == (4000, 0.05)


def test_network_inversion_matches_features_of_a_frozen_module(camera48):
    torch.manual_seed(0)
    features = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, stride=2), torch.nn.ReLU())
    target = torch.from_numpy(camera48)[None, None]
    with torch.no_grad():
        observation = features(target)
    from napari_dip.core import FeatureOperator

    settings = preset_settings("denoise", "paper").updated(iterations=150, channels=16, scales=3, lr=0.02)
    run = fit(observation, FeatureOperator(features), settings, out_channels=1, out_shape=camera48.shape,
              preview_seconds=None)
    events = list(_drain(run))
    result = events[-1]
    assert events[-2].loss < 0.2 * events[0].loss
    # The inverted image resembles the one whose features were matched.
    assert np.corrcoef(result.image[0].ravel(), camera48.ravel())[0, 1] > 0.8


def test_auto_stop_stops_before_the_cap_and_says_why(camera48, tiny):
    noisy = noisy_copy(camera48)
    run = restore_iter(noisy, iterations=3000, auto_stop=True, lr=0.02, preview_seconds=None, **tiny)
    events = list(_drain(run))
    result = events[-1]
    assert result.stop_reason == "auto" and "automatically" in result.stop_message
    assert result.iterations < 1500
    assert result.best_iteration is not None and result.best_iteration < result.iterations
    assert psnr(camera48, result.image) > psnr(camera48, noisy) + 4
    # The time-left estimate accounts for the coming stop, not only for the cap.
    assert events[-2].eta < (3000 - events[-2].iteration) * 0.5 * (events[-2].elapsed / events[-2].iteration)


def test_default_preset_stops_by_itself_and_paper_preset_does_not():
    assert preset_settings("denoise").auto_stop and not preset_settings("denoise", "paper").auto_stop


def test_noise_level_is_estimated_from_the_image_alone():
    from napari_dip.core.stopping import estimate_noise_sigma

    rng = np.random.default_rng(0)
    smooth = np.add.outer(np.linspace(0, 1, 256), np.linspace(0, 0.5, 256))
    assert estimate_noise_sigma(smooth) < 1e-6
    for sigma in (0.02, 0.1):
        noisy = smooth + sigma * rng.standard_normal(smooth.shape)
        assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.05)
    # Pooled over leading axes (channels, slices); odd sizes are fine.
    stack = 0.05 * rng.standard_normal((3, 65, 33))
    assert estimate_noise_sigma(stack) == pytest.approx(0.05, rel=0.1)


def test_noise_level_for_the_stop_allows_for_clipping_at_black_and_white():
    # What the discrepancy rule needs is the difference between the noisy image and the clean
    # one. Where noise is clipped at a bound (a black background, as in a big image's corner
    # tiles) that difference is smaller than σ, and the wavelet estimate sees less still.
    from napari_dip.core.stopping import clipped_noise_sigma, estimate_noise_sigma

    rng = np.random.default_rng(1)
    ramp = np.tile(np.linspace(0.3, 0.7, 256), (256, 1))
    for sigma in (0.04, 0.1):
        unclipped = ramp + sigma * rng.standard_normal(ramp.shape)
        assert clipped_noise_sigma(unclipped) == estimate_noise_sigma(unclipped)
    clean = ramp.copy()
    clean[:, :96] = 0.0  # 37 % black background
    clean[:16, 96:] = 1.0  # and a saturated strip
    for sigma, tolerance in ((0.06, 0.05), (0.1, 0.05), (0.2, 0.1)):
        noisy = np.clip(clean + sigma * rng.standard_normal(clean.shape), 0, 1)
        true = float(np.sqrt(np.mean((noisy - clean) ** 2)))
        # Strong noise is truncated even in the blocks with no clipped pixel: a little low there.
        assert clipped_noise_sigma(noisy) == pytest.approx(true, rel=tolerance)
        assert estimate_noise_sigma(noisy) < 0.9 * true
    # Fine texture reads as noise at low σ (an old bias of the wavelet estimate); with a black
    # half the estimate must not read more of it than on the same texture unclipped.
    from skimage import data

    camera = data.camera()[128:384, 128:384] / 255.0
    half_black = camera.copy()
    half_black[:, :128] = 0.0
    ratios = []
    for clean_image, estimate in ((camera, estimate_noise_sigma), (half_black, clipped_noise_sigma)):
        noisy = np.clip(clean_image + (5 / 255) * rng.standard_normal(clean_image.shape), 0, 1)
        ratios.append(estimate(noisy) / float(np.sqrt(np.mean((noisy - clean_image) ** 2))))
    assert ratios[1] < 1.05 * ratios[0]
    # Pooled over channels; never below the plain estimate (a tile of background only).
    black = np.clip(0.1 * rng.standard_normal((3, 64, 64)), 0, 1)
    assert clipped_noise_sigma(black) >= estimate_noise_sigma(black) > 0


def test_discrepancy_rule_stops_a_fit_whose_variance_never_rises():
    # Small smooth images: the outputs' variance keeps falling while the fit takes in the
    # noise; only a loss below the noise level shows it (benchmarks/autostop.py, blobs64).
    from napari_dip.core.stopping import WindowedVarianceStopper

    def run(noise_variance):
        stopper = WindowedVarianceStopper(window=10, patience=10_000, min_iterations=50, lag=20,
                                          noise_variance=noise_variance, discrepancy=0.85)
        for iteration in range(1000):
            stopper.observe_loss(iteration, 0.02 * np.exp(-iteration / 100))  # falls through 0.01
            stopper.observe_variance(iteration, 1.0 / (iteration + 1))
            if stopper.should_stop:
                return iteration, stopper.stop_kind
        return None, None

    iteration, kind = run(0.01)
    assert kind == "discrepancy"
    assert 70 < iteration < 110  # smoothed loss 0.0085 near iteration 86, plus the smoothing's lag
    assert run(None) == (None, None)


def test_variance_rule_keeps_precedence_once_the_variance_has_risen():
    # Once the variance has risen, the noise rule returns the average held after its minimum;
    # a loss falling below the noise level meanwhile must not cut that short.
    from napari_dip.core.stopping import WindowedVarianceStopper

    stopper = WindowedVarianceStopper(window=10, patience=10_000, min_iterations=20, lag=30,
                                      noise_variance=1.0, discrepancy=0.85)
    kinds = {}
    for iteration in range(150):
        stopper.observe_loss(iteration, 2.0 if iteration < 95 else 0.0)
        variance = 0.5 if iteration == 80 else 2.0 if iteration >= 90 else 1.0
        stopper.observe_variance(iteration, variance)
        kinds[iteration] = stopper.stop_kind
    assert stopper.best_iteration == 80
    assert all(kinds[i] is None for i in range(95, 110)) and kinds[110] == "noise"


def test_the_forecast_of_the_stop_follows_the_rule_that_will_end_the_run():
    from napari_dip.core.stopping import WindowedVarianceStopper

    def stopper_after(variances):
        stopper = WindowedVarianceStopper(window=10, patience=500, min_iterations=50, lag=40)
        for iteration, variance in enumerate(variances):
            stopper.observe_variance(iteration, variance)
        return stopper, len(variances)

    cap = 3000
    # Lowest at iteration 100, then flat: lag after the low (at 141) if it rises, as long again
    # as the lows came (15-100) if they go on; once the rise is seen, the rise's end.
    stopper, done = stopper_after([1.0 / (i + 1) for i in range(101)] + [1.0 / 101] * 19)
    assert stopper.forecast(done, cap) == (100 + 85 + 40 + 1 - done, cap - done)
    stopper, done = stopper_after([1.0] * 100 + [0.5] + [0.7] * 19)
    assert stopper.forecast(done, cap) == (141 - done, cap - done)
    # New lows every iteration from 15 (tracking starts) to 399: the guess is that they go on
    # for as long again (to 783), then the lag; the most is still the cap.
    stopper, done = stopper_after([1.0 / (i + 1) for i in range(400)])
    assert stopper.forecast(done, cap) == (399 + 384 + 40 + 1 - done, cap - done)
    # No new low for more than the lag: the patience after the last low, guess and bound alike.
    stopper, done = stopper_after([1.0 / (i + 1) for i in range(300)] + [1.0] * 100)
    assert stopper.forecast(done, cap) == (300 + 500 - done,) * 2
    # Never past the cap, never below zero; before the first tracked iteration: the soonest end.
    assert stopper.forecast(done, 700) == (300, 300) and stopper.forecast(900, 700) == (0, 0)
    fresh, _ = stopper_after([1.0] * 5)
    assert fresh.forecast(5, cap) == (15 + 40 + 1 - 5, cap - 5)
    # Nothing tracked past the soonest end (every step diverged): only the cap is known.
    untracked = WindowedVarianceStopper(window=10, patience=500, min_iterations=50, lag=40)
    assert untracked.forecast(100, cap) == (cap - 100, cap - 100)
    # A patience shorter than the lag: the settled stop comes before any rise could end the run,
    # so the patience stands in for the lag (lows from 15 to 30, as long again, then 20).
    short = WindowedVarianceStopper(window=10, patience=20, min_iterations=10, lag=40)
    for iteration, variance in enumerate([1.0 / (i + 1) for i in range(31)] + [1.0 / 31] * 10):
        short.observe_variance(iteration, variance)
    assert short.forecast(41, cap) == (30 + 15 + 20 + 1 - 41, cap - 41)
    # The run really ends where the first forecast said.
    stopper, done = stopper_after([1.0] * 100 + [0.5])
    guess, _ = stopper.forecast(done, cap)
    for iteration in range(done, cap):
        stopper.observe_variance(iteration, 0.7)  # 40 % above the low
        if stopper.should_stop:
            break
    assert iteration + 1 == done + guess


def test_denoising_hands_the_estimated_noise_level_to_the_stopper(monkeypatch, camera48, tiny):
    from napari_dip.core import engine
    from napari_dip.core.stopping import WindowedVarianceStopper

    seen = []
    original = WindowedVarianceStopper.from_settings.__func__

    def spy(cls, settings, noise_sigma=None):
        seen.append(noise_sigma)
        return original(cls, settings, noise_sigma)

    monkeypatch.setattr(engine.WindowedVarianceStopper, "from_settings", classmethod(spy))
    noisy = noisy_copy(camera48, sigma=0.1)
    consume_run = restore_iter(noisy, iterations=2, auto_stop=True, preview_seconds=None, **tiny)
    list(_drain(consume_run))
    mask = np.zeros(camera48.shape, bool)
    mask[10:20, 10:20] = True
    # stop_holdout=0: the variance rule (the default inpainting stop holds pixels out instead).
    list(_drain(restore_iter(camera48, "inpaint", mask=mask, iterations=2, auto_stop=True, stop_holdout=0,
                             preview_seconds=None, **tiny)))
    assert seen[0] == pytest.approx(0.1, rel=0.25) and seen[1] is None
