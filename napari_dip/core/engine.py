"""The one optimisation loop: fit f_θ(z) so that A(f_θ(z)) matches the observation.

``fit`` is a generator. It yields a :class:`Progress` after every step and returns a
:class:`FitResult`; a caller cancels by no longer iterating (``close()``), which is all a shell's
Cancel button has to do.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from .device import resolve_compile, resolve_precision
from .networks import build_network
from .operators import ForwardOperator
from .presets import Settings
from .stopping import HoldoutStopper, WindowedVarianceStopper, holdout_pixels

__all__ = ["Progress", "FitResult", "fit", "STOP_REASONS"]

STOP_REASONS = {
    "auto": "stopped automatically: the output stopped improving",
    "iterations": "reached the iteration limit",
    "unchanged": "kept as it was: no pixel to fill",
}


@dataclass
class Progress:
    """One optimisation step. ``preview``/``output`` (unit-range CHW arrays of the averaged and
    the raw output) are only filled on preview steps.

    Through :func:`~napari_dip.core.api.restore_iter` a run cut into tiles or planes yields the
    same events: ``iteration``/``iterations`` and ``loss`` of the fit under way, ``part`` saying
    which ("tile 2/9", "plane 3/40"), ``elapsed``, ``eta`` and ``fraction`` over the whole run,
    and ``preview`` of the whole image. An event with ``message`` is a note (how the image is
    cut, a retry with smaller tiles).
    """

    iteration: int
    iterations: int
    loss: float
    elapsed: float
    eta: float | None
    preview: np.ndarray | None = None
    output: np.ndarray | None = None
    backtracked: bool = False
    fraction: float | None = None
    part: str | None = None
    message: str | None = None
    # The stopping rule's signal at this step (the windowed variance of the outputs, or for
    # inpainting the average's error on held-out pixels) and its best iteration so far.
    signal: float | None = None
    best_iteration: int | None = None
    # With automatic stopping by the variance rule, the most seconds the run may still take
    # from what the rule has seen (``eta`` is its guess): the cap while the variance still falls.
    eta_latest: float | None = None

    @property
    def done_fraction(self) -> float:
        """Share of the whole run done: ``fraction`` when the run has parts, else by iterations."""
        if self.fraction is not None:
            return self.fraction
        return self.iteration / self.iterations if self.iterations else 0.0


@dataclass
class FitResult:
    image: np.ndarray
    iterations: int
    stop_reason: str
    elapsed: float
    best_iteration: int | None = None
    backtracks: int = 0
    precision: str = "float32"
    state: dict | None = None


_PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _autocast_dtype(precision: str) -> torch.dtype | None:
    try:
        return _PRECISIONS[precision]
    except KeyError:
        choices = ", ".join(["auto", *_PRECISIONS])
        raise ValueError(f"unknown precision {precision!r}; choose one of {choices}") from None


def fit(
    observation: torch.Tensor,
    operator: ForwardOperator,
    settings: Settings,
    *,
    out_channels: int,
    out_shape: tuple[int, ...],
    known: torch.Tensor | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    preview_seconds: float | None = 2.0,
    preview_iterations: int | None = None,
    preview_now: Callable[[], bool] | None = None,
    initial_state: dict | None = None,
    keep_state: bool = False,
    depth_scales: int | None = None,
    noise_sigma: float | None = None,
    code: torch.Tensor | None = None,
    network: torch.nn.Module | None = None,
    fill: torch.Tensor | None = None,
) -> Generator[Progress, None, FitResult]:
    """Fit a fresh network to ``observation`` (1, C, h, w) through ``operator``; a volume
    (1, C, d, h, w) with a 3D network when ``out_shape`` has three sizes, the first
    ``depth_scales`` of its levels halving the depth.

    ``known`` (h, w) (or (d, h, w)) bool marks the observed pixels that count in the loss (padding and
    pixels to inpaint are excluded). Previews are produced every ``preview_seconds`` of wall
    time and/or every ``preview_iterations`` steps, and at any step where ``preview_now()`` is true
    (a shell that stops the run and keeps the current average asks for it so).

    ``initial_state`` (a network ``state_dict`` from an earlier fit with the same settings)
    warm-starts the fit, e.g. from the previous plane of a stack; ``keep_state`` returns the
    final weights in ``FitResult.state`` for that purpose. ``noise_sigma`` (unit range) is the
    observation's noise level, for automatic stopping's discrepancy rule (denoising). ``fill``
    (the spatial shape, bool) marks the pixels to inpaint: with ``settings.stop_holdout`` and
    automatic stopping, known pixels near it are held out of the fit to decide when to stop.

    ``code`` (1, input_depth, *out_shape) replaces the random input code (guided restoration: a
    guide image is the code); ``network`` replaces the skip network (network inversion without
    the DIP prior optimises a module that holds the pixels themselves).
    """
    start = time.perf_counter()
    device = device or torch.device("cpu")
    precision = resolve_precision(device, settings.precision)
    autocast_dtype = _autocast_dtype(precision)
    dims = len(out_shape)
    volume = {"dims": 3, "depth_scales": depth_scales} if dims == 3 else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = network if network is not None else build_network(
            "skip", in_channels=settings.input_depth, out_channels=out_channels, **settings.network_kwargs(), **volume)
    if initial_state is not None:
        net.load_state_dict(initial_state)
    channels_last = torch.channels_last if dims == 2 else torch.channels_last_3d
    memory_format = channels_last if settings.channels_last else torch.contiguous_format
    net = net.to(device=device, memory_format=memory_format)
    compile_network = resolve_compile(settings.compile, device, math.prod(out_shape), dims, settings.iterations)
    forward = _compiled(net) if compile_network else net
    operator = operator.to(device)
    observation = observation.to(device=device, dtype=torch.float32)

    generator = torch.Generator(device=device).manual_seed(seed)
    code_shape = (1, settings.input_depth, *out_shape)
    if code is None:
        code = torch.rand(code_shape, generator=generator, device=device) * settings.input_scale
    elif tuple(code.shape) != code_shape:
        raise ValueError(f"the input code has shape {tuple(code.shape)}; this fit needs {code_shape}")
    else:
        code = code.to(device=device, dtype=torch.float32)
    code = code.contiguous(memory_format=memory_format)
    # Contiguous, not channels-last: normal_() has a vectorised path only for contiguous tensors
    # (measured 6 ms against 51 ms for a 32×256×256 code); the sum below is channels-last again.
    jitter = torch.empty(code_shape, device=device)

    weight = None
    if known is not None:
        weight = known.to(device=device, dtype=torch.float32)[None, None]
        known_count = weight.sum() * observation.shape[1]
        if float(known_count) == 0:
            raise ValueError("no pixel of the image is known: nothing to fit")

    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    stopper: WindowedVarianceStopper | HoldoutStopper | None = None
    holdout = None
    if settings.auto_stop and settings.stop_holdout > 0 and fill is not None and weight is not None:
        holdout = holdout_pixels(known.bool().cpu(), fill.bool().cpu(), settings.stop_holdout, settings.stop_band, seed)
    if holdout is not None:
        stopper = HoldoutStopper.from_settings(settings)
        holdout = tuple(index.to(device) for index in holdout)
        weight = weight.clone()  # never the caller's tensor
        weight[(0, 0, *holdout)] = 0
        known_count = weight.sum() * observation.shape[1]
        holdout_truth = observation[0][(slice(None), *holdout)]
    elif settings.auto_stop:
        stopper = WindowedVarianceStopper.from_settings(settings, noise_sigma)

    average: torch.Tensor | None = None
    held: torch.Tensor | None = None
    checkpoint = (copy.deepcopy(net.state_dict()), copy.deepcopy(optimizer.state_dict()))
    checkpoint_loss = math.inf
    backtracks = 0
    last_preview = time.perf_counter()
    stop_reason = "iterations"
    step_times: list[float] = []
    fit_start = time.perf_counter()
    iteration = 0

    for iteration in range(settings.iterations):
        step_start = time.perf_counter()
        net_input = code
        if settings.reg_noise_std > 0:
            net_input = code + jitter.normal_(generator=generator) * settings.reg_noise_std
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext():
            try:
                out = forward(net_input)
            except Exception:
                if forward is net:
                    raise
                # No working compiler toolchain (or an unsupported op): the eager network
                # computes the same thing, only slower.
                forward = net
                out = forward(net_input)
        out = out.float()
        residual = operator(out) - observation
        if weight is None:
            loss = residual.square().mean()
        else:
            loss = (residual.square() * weight).sum() / known_count
        loss.backward()
        loss_value = float(loss.detach())

        backtracked = False
        if not math.isfinite(loss_value) or loss_value > settings.backtrack_ratio * checkpoint_loss:
            # The fit jumped away (Adam occasionally does at high learning rates): go back to
            # the last good weights instead of averaging garbage into the result.
            net.load_state_dict(checkpoint[0])
            optimizer.load_state_dict(checkpoint[1])
            backtracks += 1
            backtracked = True
        else:
            optimizer.step()
            out = out.detach()
            if average is None:
                average = out.clone()
            else:
                average.mul_(settings.ema).add_(out, alpha=1 - settings.ema)
            if (iteration + 1) % settings.checkpoint_every == 0:
                checkpoint = (copy.deepcopy(net.state_dict()), copy.deepcopy(optimizer.state_dict()))
                checkpoint_loss = loss_value
            elif checkpoint_loss == math.inf:
                checkpoint_loss = loss_value

        if holdout is not None and not backtracked:
            error = float((average[0][(slice(None), *holdout)] - holdout_truth).square().mean())
            if stopper.observe(iteration, error):
                held = _keep(held, average)
        elif stopper is not None and not backtracked:
            stopper.observe_loss(iteration, loss_value)
            stopper.observe(iteration, out)
            if stopper.snapshot_due:
                held = _keep(held, average)

        now = time.perf_counter()
        step_times.append(now - step_start)
        done = iteration + 1
        stopping = stopper is not None and stopper.should_stop
        want_preview = (
            (preview_seconds is not None and now - last_preview >= preview_seconds)
            or (preview_iterations is not None and done % preview_iterations == 0)
            or (preview_now is not None and preview_now())
            or stopping
            or done == settings.iterations
        )
        preview = output = None
        if want_preview and average is not None:
            last_preview = now
            preview = _to_numpy(average)
            output = _to_numpy(out)
        eta, eta_latest = _eta(done, settings, stopper, step_times)
        yield Progress(
            iteration=done,
            iterations=settings.iterations,
            loss=loss_value,
            elapsed=now - start,
            eta=eta,
            eta_latest=eta_latest,
            preview=preview,
            output=output,
            backtracked=backtracked,
            signal=_signal(stopper),
            best_iteration=_best(stopper),
        )
        if stopping:
            stop_reason = "auto"
            break

    if average is None:
        raise RuntimeError("the fit produced no valid output: every step diverged")
    # Stopped because noise was being fitted: the average from before that started; inpainting:
    # the average whose error on the held-out pixels was lowest.
    rewind = holdout is not None or (stop_reason == "auto" and stopper.stop_kind == "noise")
    final = held if rewind and held is not None else average
    return FitResult(
        image=_to_numpy(final),
        iterations=iteration + 1,
        stop_reason=stop_reason,
        elapsed=time.perf_counter() - fit_start,
        best_iteration=_best(stopper),
        backtracks=backtracks,
        precision=precision,
        state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()} if keep_state else None,
    )


def _compiled(net: torch.nn.Module):
    """The network compiled by TorchInductor: fuses the normalisation, activation and dtype casts
    that otherwise dominate a step's time (measured: benchmarks/threads.py)."""
    try:
        return torch.compile(net, dynamic=False)
    except Exception:
        return net


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].detach().float().cpu().numpy()


def _eta(done: int, settings: Settings, stopper: WindowedVarianceStopper | HoldoutStopper | None,
         step_times: list[float]) -> tuple[float, float | None]:
    """Seconds left (the iteration cap, or sooner where auto-stop will end the run first) and,
    for the variance rule, the most seconds left (see :meth:`WindowedVarianceStopper.forecast`)."""
    recent = step_times[-20:]
    per_step = sorted(recent)[len(recent) // 2]
    if isinstance(stopper, WindowedVarianceStopper):
        guess, latest = stopper.forecast(done, settings.iterations)
        return guess * per_step, latest * per_step
    remaining = settings.iterations - done
    if stopper is not None and stopper.clock_iteration >= 0:
        # The clock resets while the held-out error still falls: the patience alone would
        # promise an end that keeps moving away (measured: "6 s left", then 21 s more).
        by_patience = max(stopper.clock_iteration + 1 + stopper.patience, stopper.expected_stop()) - done
        remaining = min(remaining, max(by_patience, settings.min_iterations - done, 0))
    return remaining * per_step, None


def _keep(held: torch.Tensor | None, average: torch.Tensor) -> torch.Tensor:
    """A copy of ``average`` in ``held``'s memory (no new tensor at every new best)."""
    return average.clone() if held is None else held.copy_(average)


def _best(stopper) -> int | None:
    """The stopping rule's best iteration so far (1-based), where it has one."""
    return stopper.best_iteration + 1 if stopper is not None and stopper.best_iteration >= 0 else None


def _signal(stopper) -> float | None:
    """The stopping rule's current value, where it has one."""
    if stopper is None:
        return None
    value = stopper.signal if isinstance(stopper, HoldoutStopper) else stopper.variance
    return value if math.isfinite(value) else None
