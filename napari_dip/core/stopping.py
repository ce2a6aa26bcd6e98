"""Deciding when to stop without ground truth.

DIP fits the image's structure before its noise. While the structure is being fitted the outputs
keep changing; once the fit is good they change least; as noise is fitted back in they start to
drift again. The windowed moving variance of the outputs (ES-WMV, Wang et al. 2021) therefore
flattens near the best iteration: we track it and stop once it has not improved by more than
``min_delta`` (relative) for ``patience`` iterations.

The engine then returns the exponential average of the outputs *at the stop*, not at the
variance minimum: the average lags the raw outputs by about 1/(1 - ema) iterations, and on our
benchmark curves it is still rising when the variance flattens (benchmarks/autostop.py).
"""

from __future__ import annotations

import torch

__all__ = ["WindowedVarianceStopper"]


class WindowedVarianceStopper:
    """Running variance of the last ``window`` outputs, with patience.

    ``observe`` returns True when the current iteration is a new best (variance lower than the
    best so far by more than ``min_delta``, relative); ``should_stop`` becomes True ``patience``
    iterations after the last best, once at least ``min_iterations`` have run.
    """

    def __init__(
        self, window: int = 100, patience: int = 200, min_iterations: int = 200, min_delta: float = 0.01
    ) -> None:
        if window < 2:
            raise ValueError(f"stop window must be at least 2 iterations, got {window}")
        self.window = window
        self.patience = patience
        self.min_iterations = min_iterations
        self.min_delta = min_delta
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
        if self.variance < self.best_variance * (1 - self.min_delta):
            self.best_variance = self.variance
            self.best_iteration = iteration
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return (
            self.best_iteration >= 0
            and self._iteration + 1 >= self.min_iterations
            and self._iteration - self.best_iteration >= self.patience
        )
