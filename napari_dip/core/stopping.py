"""Deciding when to stop without ground truth.

DIP fits the image's structure before its noise. While the structure is being fitted the outputs
keep changing; once the fit is good they change least; as noise is fitted back in they start to
drift again. The windowed moving variance of the outputs (ES-WMV, Wang et al. 2021) therefore
is lowest near the best iteration and rises once noise is being fitted. We stop when it rises
``rise`` (relative) above its minimum, or when it has not reached a new minimum for
``patience`` iterations (a fit that has settled).

The engine then returns the exponential average of the outputs *at the stop*, not at the
variance minimum: the average lags the raw outputs by about 1/(1 - ema) iterations, and on our
benchmark curves it is still rising at the variance minimum (benchmarks/autostop.py; the rule
and its numbers were chosen on those curves: worst gap to the best PSNR along the run 0.32 dB).
"""

from __future__ import annotations

import torch

__all__ = ["WindowedVarianceStopper"]


class WindowedVarianceStopper:
    """Running variance of the last ``window`` outputs, with patience.

    ``observe`` returns True when the current iteration is a new best (lowest variance so far);
    ``should_stop`` becomes True once at least ``min_iterations`` have run and either the
    variance exceeds ``(1 + rise)`` times its minimum or ``patience`` iterations have passed
    without a new minimum.
    """

    def __init__(
        self, window: int = 100, patience: int = 700, min_iterations: int = 200, rise: float = 0.5
    ) -> None:
        if window < 2:
            raise ValueError(f"stop window must be at least 2 iterations, got {window}")
        self.window = window
        self.patience = patience
        self.min_iterations = min_iterations
        self.rise = rise
        self._ring: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self._sum_sq: torch.Tensor | None = None
        self._count = 0
        self.best_iteration = -1
        self.best_variance = float("inf")
        self.variance = float("inf")
        self._iteration = 0

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
        self._iteration = iteration
        if self._count < self.window:
            return False
        mean = self._sum / self.window
        self.variance = float((self._sum_sq / self.window - mean * mean).clamp_min(0).mean())
        if self.variance < self.best_variance:
            self.best_variance = self.variance
            self.best_iteration = iteration
            return True
        return False

    @property
    def should_stop(self) -> bool:
        if self.best_iteration < 0 or self._iteration + 1 < self.min_iterations:
            return False
        noise_fitted = self.variance > (1 + self.rise) * self.best_variance
        settled = self._iteration - self.best_iteration >= self.patience
        return noise_fitted or settled
