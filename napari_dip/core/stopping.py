"""Deciding when to stop without ground truth.

DIP fits the image's structure before its noise. While the structure is being fitted the outputs
keep changing; once the fit is good they change least; as noise is fitted back in they start to
drift again. The windowed moving variance of the outputs (ES-WMV, Wang et al. 2021) therefore
is lowest near the best iteration and rises once noise is being fitted.

The first ``window + window // 2`` iterations are ignored when looking for the minimum: while
the network leaves its random start the variance falls steeply, and on some images it dips before
the fine structure is fitted and then rises again (immunohistochemistry crop: a dip at iteration
122, the real minimum at 550). Taking that dip for the minimum cost 1.41 dB.

Three ways to stop:
- noise: the variance has risen ``rise`` (relative) above its minimum. The result is then the
  running average ``lag`` iterations after the minimum: the average lags the raw outputs by
  about 1/(1 - ema) iterations, so at the minimum it is still improving; ``lag`` = 2/(1 - ema).
- discrepancy (denoising, when the noise level is known or estimated): the fit's loss, its mean
  squared difference from the noisy image, smoothed, has fallen below ``discrepancy`` times the
  noise variance (:func:`clipped_noise_sigma`: the difference to expect from the clean image,
  smaller where noise is clipped at black or white). An output as far from the observation as
  the noise is can be the clean image; one much closer must contain noise (Morozov's
  discrepancy principle). On all ten curves below, the loss at the best iteration was
  0.94-1.06 times the estimated noise variance (measured with :func:`estimate_noise_sigma`;
  with the clipping allowed for, every stop on those curves is the same). This is a backstop:
  on small, smooth images (64² slices of a blob volume) the variance never rises while the
  output fits the noise (29.4 dB at iteration 475, 22.9 dB at 2400), and only this rule stops
  them. At 0.85 it fired 25-37 iterations after the best of two such slices (-0.02 and
  -0.03 dB), 215 after on a third whose noise is clipped more (-0.83 dB, against -4.3 at the
  cap), and on the ten curves always after the variance rule had stopped. The result is the
  running average now.
- settled: no new minimum for ``patience`` iterations. The result is the running average now.

Chosen on measured curves (``python benchmarks/autostop.py --from-curves``: ten denoising curves,
seven images, σ = 15, 25 and 50, docs/benchmarks.md): the worst gap to the best PSNR along the run
is 0.15 dB. These are in-sample figures: the rule's numbers were picked on these curves.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

__all__ = ["WindowedVarianceStopper", "HoldoutStopper", "holdout_pixels", "estimate_noise_sigma",
           "clipped_noise_sigma"]


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Standard deviation of white noise in ``image`` (..., H, W), without ground truth.

    The median absolute value of the finest diagonal Haar wavelet coefficients over 0.6745
    (Donoho and Johnstone's estimator): that band holds mostly noise in natural and microscopy
    images. Pooled over all leading axes (channels, slices).
    """
    x = np.asarray(image, dtype=np.float64)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if h == 0 or w == 0:
        return 0.0
    x = x[..., :h, :w]
    return float(np.median(np.abs(_haar_diagonal(x))) / 0.6745)


def _haar_diagonal(x: np.ndarray) -> np.ndarray:
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


# Below this share of usable 2×2 blocks, an estimate falls back to a wider set of blocks.
_FEWEST_BLOCKS = 0.05


def _clipping_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a clean value t noise levels above a lower bound and unit Gaussian noise n: the mean of
    the clipped value max(t + n, 0), and the mean square of its difference from t."""
    t = np.linspace(-4.0, 8.0, 2401)
    cdf = 0.5 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in t]))
    pdf = np.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    mean = t * cdf + pdf
    square = t * t * (1 - cdf) + cdf - t * pdf
    return t, mean, square


_CLIPPING = _clipping_tables()


def clipped_noise_sigma(image: np.ndarray, low: float = 0.0, high: float = 1.0) -> float:
    """Root-mean-square difference to expect between ``image``, noisy and clipped to
    [``low``, ``high``], and its clean original: what the discrepancy rule compares a fit's loss with.

    Clipping matters where the clean image is near a bound (a black background, a saturated
    highlight): the noise there is hidden from the wavelet estimate (blocks of equal values score
    zero), and the noisy image is closer to the clean one (where the clean value is at the bound,
    half the noisy pixels land on it). So the noise level σ comes from the 2×2 blocks with no pixel
    at a bound; each block's clean level from the mean of the 6×6 pixels around it, corrected for
    the clipping (the mean of clipped Gaussian noise inverted); and the expected square difference
    of each block from that level under clipped noise, averaged. Without clipped pixels this is
    :func:`estimate_noise_sigma`, and never below it. Pooled over all leading axes.

    Like :func:`estimate_noise_sigma` it reads fine texture as noise, so at low noise on textured
    images both say more than the true difference (camera, σ 5 of 255: 1.29 times it); it does so
    as on the same image unclipped, not more. Taking σ only from blocks well away from the bounds
    was tried and said more still (1.42 on a half-black camera at σ 5), by losing the smooth
    background that dilutes the texture.

    σ = 25 of 255 over the 1411² retina's top-left 544² tile (37 % black background):
    :func:`estimate_noise_sigma` says 19.6, this 21.1, the true difference 22.2; on noise that is not
    clipped the two agree (tests/test_core.py).
    """
    x = np.asarray(image, dtype=np.float64)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if h == 0 or w == 0:
        return 0.0
    x = x[..., :h, :w]
    at_bound = (x <= low) | (x >= high)
    diagonal = _haar_diagonal(x)
    plain = float(np.median(np.abs(diagonal)) / 0.6745)
    if not at_bound.any():
        return plain
    free = ~(at_bound[..., 0::2, 0::2] | at_bound[..., 0::2, 1::2]
             | at_bound[..., 1::2, 0::2] | at_bound[..., 1::2, 1::2])
    sigma = float(np.median(np.abs(diagonal[free])) / 0.6745) if free.mean() >= _FEWEST_BLOCKS else plain
    if sigma == 0:
        return plain
    t, mean, square = _CLIPPING
    local = _box3((x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 4)
    from_low = np.interp((local - low) / sigma, mean, t).clip(0)
    from_high = np.interp((high - local) / sigma, mean, t).clip(0)
    ratio = np.interp(from_low, t, square) + np.interp(from_high, t, square) - 1
    # Where nearly everything is at or near a bound (a tile of black background) the unclipped
    # blocks hold truncated noise: both estimates then fall short, so the larger.
    return max(sigma * float(np.sqrt(ratio.mean())), plain)


def _box3(a: np.ndarray) -> np.ndarray:
    """Mean over each element's 3×3 neighbourhood in the last two axes (edges repeated)."""
    padded = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    h, w = a.shape[-2:]
    return sum(padded[..., i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9


class WindowedVarianceStopper:
    """Running variance of the last ``window`` outputs, with patience.

    ``observe`` returns True when the current iteration is a new best (lowest variance so far).
    ``snapshot_due`` says that this iteration is ``lag`` after the best (keep the average now);
    ``should_stop`` and ``stop_kind`` (``"noise"`` or ``"settled"``) say when and why to stop.
    """

    def __init__(
        self,
        window: int = 100,
        patience: int = 1000,
        min_iterations: int = 200,
        rise: float = 0.3,
        lag: int = 200,
        noise_variance: float | None = None,
        discrepancy: float = 0.0,
        loss_smoothing: float = 0.95,
    ) -> None:
        if window < 2:
            raise ValueError(f"stop window must be at least 2 iterations, got {window}")
        self.window = window
        self.patience = patience
        self.min_iterations = min_iterations
        self.rise = rise
        self.lag = lag
        self.track_from = window + window // 2
        self._risen_at: int | None = None
        self._ring: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self._sum_sq: torch.Tensor | None = None
        self._count = 0
        self.best_iteration = -1
        self.best_variance = float("inf")
        self.variance = float("inf")
        self._iteration = 0
        self.noise_variance = noise_variance
        self.discrepancy = discrepancy
        self.loss_smoothing = loss_smoothing
        self.smoothed_loss = float("inf")
        # Where the current run of new lows began: each one came less than ``lag`` after the last.
        self.falling_since = -1

    @classmethod
    def from_settings(cls, settings, noise_sigma: float | None = None) -> WindowedVarianceStopper:
        """The stopper a run with these :class:`~napari_dip.core.presets.Settings` uses;
        ``noise_sigma`` (unit range) turns on the discrepancy rule (denoising)."""
        lag = round(2 / (1 - settings.ema)) if settings.ema < 1 else 0
        return cls(
            settings.stop_window, settings.stop_patience, settings.min_iterations, settings.stop_rise, lag=lag,
            noise_variance=noise_sigma**2 if noise_sigma else None, discrepancy=settings.stop_discrepancy,
        )

    def observe_loss(self, iteration: int, loss: float) -> None:
        """The fit's loss at ``iteration`` (for the discrepancy rule)."""
        if self.smoothed_loss == float("inf"):
            self.smoothed_loss = loss
        else:
            self.smoothed_loss = self.loss_smoothing * self.smoothed_loss + (1 - self.loss_smoothing) * loss
        self._iteration = max(self._iteration, iteration)

    @property
    def below_discrepancy(self) -> bool:
        return bool(self.noise_variance and self.discrepancy
                    and self.smoothed_loss < self.discrepancy * self.noise_variance)

    def observe(self, iteration: int, output: torch.Tensor) -> bool:
        x = output.detach().to(torch.float64).flatten()
        if self._ring is None:
            self._ring = torch.zeros((self.window, x.numel()), dtype=torch.float64, device=x.device)
            self._sum = torch.zeros_like(x)
            self._sum_sq = torch.zeros_like(x)
        slot = self._count % self.window
        if self._count >= self.window:
            old = self._ring[slot]
            self._sum -= old
            self._sum_sq -= old * old
        self._ring[slot] = x
        self._sum += x
        self._sum_sq += x * x
        self._count += 1
        if self._count < self.window:
            self._iteration = iteration
            return False
        mean = self._sum / self.window
        variance = float((self._sum_sq / self.window - mean * mean).clamp_min(0).mean())
        return self.observe_variance(iteration, variance)

    def observe_variance(self, iteration: int, variance: float) -> bool:
        """The decision part of :meth:`observe`, for a variance computed elsewhere (e.g. a
        logged curve, to evaluate the rule offline)."""
        self._iteration = iteration
        self.variance = variance
        if iteration < self.track_from:
            return False
        if variance < self.best_variance:
            if self.best_iteration < 0 or iteration - self.best_iteration >= min(self.lag, self.patience):
                self.falling_since = iteration
            self.best_variance = variance
            self.best_iteration = iteration
            self._risen_at = None
            return True
        if self._risen_at is None and variance > (1 + self.rise) * self.best_variance:
            self._risen_at = iteration
        return False

    @property
    def snapshot_due(self) -> bool:
        return self.best_iteration >= 0 and self._iteration == self.best_iteration + self.lag

    @property
    def stop_kind(self) -> str | None:
        if self._iteration + 1 < self.min_iterations:
            return None
        if self.below_discrepancy and not (self._risen_at is not None and self.best_iteration >= 0):
            return "discrepancy"
        if self.best_iteration < 0:
            return None
        if self._risen_at is not None and self._iteration >= self.best_iteration + self.lag:
            return "noise"
        if self._iteration - self.best_iteration >= self.patience:
            return "settled"
        return None

    @property
    def should_stop(self) -> bool:
        return self.stop_kind is not None

    def forecast(self, done: int, cap: int) -> tuple[int, int]:
        """Iterations left after ``done`` (of at most ``cap``): a guess, and the most the rule
        allows from what it has seen so far.

        Once the variance has set no new low for ``lag`` iterations, the end is expected at the
        patience after the last low (sooner if the variance rises by ``rise``; later if a new low
        still comes). While it still sets new lows, the end is at least ``lag`` after the latest
        and at most the cap; the guess is the lag after it once a rise is seen, else that the lows
        go on for as long again as they have come so far, then the lag. Replayed on the 13 saved
        default curves (`python benchmarks/eta_replay.py`), the guess was within a factor of two
        at 64 % of a run's iterations (mean over runs) against 38 % for the patience alone, which
        said 3-9 times too long on six of the seven runs the rise ends early; pooled over all
        iterations, where the long runs weigh most, 58 % against 65 %: it is short early in
        runs that go on to the cap, hence the latest beside it.
        """
        # The settled stop comes first where the patience is shorter than the lag.
        lag = min(self.lag, self.patience)
        soonest = max(self.min_iterations, self.track_from + lag + 1)
        if self.best_iteration < 0:
            # Nothing tracked yet; past the soonest end (every step diverged, say) only the cap.
            guess, latest = (soonest if done < soonest else cap), cap
        elif done - 1 - self.best_iteration >= lag:
            guess = latest = max(self.best_iteration + 1 + self.patience, self.min_iterations)
        elif self._risen_at is not None:
            # The rise is already seen: the run ends lag after the low unless a new one comes.
            guess, latest = max(self.best_iteration + lag + 1, self.min_iterations), cap
        else:
            latest = cap
            falling = self.best_iteration - self.falling_since
            guess = max(self.best_iteration + falling + lag + 1, self.min_iterations)
        return max(min(guess, cap) - done, 0), max(min(latest, cap) - done, 0)


class HoldoutStopper:
    """Inpainting's stop: the running average's error on known pixels held out of the fit.

    The pixels to fill have no observation, so nothing in the fit says how good the fill is.
    Known pixels next to the fill that the fit never sees are filled by the same network in the
    same way, and their error is measurable: it falls while the network fills in structure and
    stops falling (or rises) once it only sharpens what it has. ``observe`` takes that error each
    iteration and returns True at a new lowest value (keep the average now); the run stops once
    ``patience`` iterations pass without the error falling ``tolerance`` (relative) below the
    value that last reset the clock. The result is the average at the lowest error.
    """

    stop_kind = "settled"

    def __init__(self, patience: int = 400, min_iterations: int = 200, tolerance: float = 0.01) -> None:
        self.patience = patience
        self.min_iterations = min_iterations
        self.tolerance = tolerance
        self.best_iteration = -1
        self.best_value = float("inf")
        self.signal = float("inf")
        self._clock_value = float("inf")
        self.clock_iteration = -1
        self._iteration = -1
        self._recent: deque[float] = deque(maxlen=patience + 1)

    @classmethod
    def from_settings(cls, settings) -> HoldoutStopper:
        return cls(settings.stop_patience, settings.min_iterations, settings.stop_tolerance)

    def observe(self, iteration: int, value: float) -> bool:
        self._iteration = iteration
        self.signal = value
        if np.isfinite(value):
            self._recent.append(value)
        if iteration + 1 < self.min_iterations // 2 or not np.isfinite(value):
            return False
        if value < self._clock_value * (1 - self.tolerance):
            self._clock_value = value
            self.clock_iteration = iteration
        if value < self.best_value:
            self.best_value = value
            self.best_iteration = iteration
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return (self._iteration + 1 >= self.min_iterations and self.clock_iteration >= 0
                and self._iteration - self.clock_iteration >= self.patience)

    def expected_stop(self) -> int:
        """The iteration (1-based) the rule can be expected to stop at, for the time left.

        If the held-out error decays as a power of the iteration t, its relative fall over the
        last ``patience`` iterations, r, shrinks as 1/t, and falls below ``tolerance`` near
        t·r/tolerance; never sooner than the patience still to run. On the ten logged 128²
        inpainting runs (benchmarks/results/inpaint_stop/), asked at iteration 800 (1200), it was
        on average 380 (240) iterations late, capped at the cap; the patience alone was 640 (280)
        early, so a bar driven by it ran ahead and the time left ran out before the run did.
        """
        done = self._iteration + 1
        by_patience = self.clock_iteration + 1 + self.patience if self.clock_iteration >= 0 else done + self.patience
        if len(self._recent) <= self.patience or not self.tolerance:
            return max(by_patience, self.min_iterations)
        first, last = self._recent[0], self._recent[-1]
        fall = (first - last) / first if first > 0 else 0.0
        return max(by_patience, self.min_iterations, round(done * fall / self.tolerance))


def holdout_pixels(known: torch.Tensor, fill: torch.Tensor, share: float, band: int, seed: int,
                   minimum: int = 16) -> tuple[torch.Tensor, ...] | None:
    """Coordinates (one index tensor per spatial axis) of ``share`` of the ``known`` pixels
    within ``band`` pixels of ``fill`` (both bool, spatial shape), chosen with ``seed``; None
    when fewer than ``minimum`` such pixels can be held out (too little to judge by)."""
    near = fill[None, None].float()
    pool = torch.nn.functional.max_pool2d if fill.dim() == 2 else torch.nn.functional.max_pool3d
    for axis in range(fill.dim()):
        # Separable dilation: a (2·band+1)-long window along one axis at a time.
        kernel = [1] * fill.dim()
        kernel[axis] = 2 * band + 1
        padding = [0] * fill.dim()
        padding[axis] = band
        near = pool(near, kernel_size=kernel, stride=1, padding=padding)
    candidates = torch.nonzero(near[0, 0].bool() & known, as_tuple=False)
    count = min(max(round(share * len(candidates)), minimum), len(candidates) // 2)
    if count < minimum:
        return None
    generator = torch.Generator().manual_seed(seed + 7919)
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:count]]
    return tuple(chosen[:, axis] for axis in range(fill.dim()))
