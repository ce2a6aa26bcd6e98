"""Experiment: fitting a large image on crops instead of whole (measured worse; not in the package).

    python benchmarks/crop_fit.py --size 256 --iterations 800 --configs 0x0 128x4 64x16 128x1 --threads 1

Compares, on one denoising problem and the same number of steps, the default fit of the whole
image (``0x0``) with fits on ``SIZExBATCH`` windows: PSNR of each result and seconds. Results and
what they say: benchmarks/results/crop_fit/README.md.

The prototype (the network is fully convolutional, so it can be fitted on windows of its code
and of the observation instead of the whole image): each step fits a batch of ``crop_batch`` windows of
``crop_size``² output pixels: one fixed *probe* window (the same every step) and the rest drawn
at random, all on the network's 2^scales grid so that a window's output is the network's output
on the whole code there (up to the padding at the window's border). The result is the whole code
passed, without gradients, through the running (exponential) average of the weights, its
BatchNorm statistics measured again on windows of the code, in windows of the fitted size half a
window apart, blended.

The probe carries what the whole-image fit gets from the whole output: the stopping rule watches
its outputs (and, for inpainting, the error of its running average on held-out known pixels), and
the average kept at the rule's best iteration is a copy of the averaged weights then.

Memory and time per step are those of a ``crop_batch`` × ``crop_size``² fit whatever the image's
size, and a compiled network would serve every image (its input shape is the batch's, fixed).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Generator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import denoise_problem  # noqa: E402

from napari_dip.core.device import resolve_compile, resolve_precision  # noqa: E402
from napari_dip.core.engine import (  # noqa: E402
    FitResult,
    Progress,
    _autocast_dtype,
    _best,
    _compiled,
    _eta,
    _signal,
    _to_numpy,
    fit,
)
from napari_dip.core.networks import build_network  # noqa: E402
from napari_dip.core.operators import IdentityOperator, InpaintOperator  # noqa: E402
from napari_dip.core.presets import Settings, resolve_settings  # noqa: E402
from napari_dip.core.stopping import HoldoutStopper, WindowedVarianceStopper, holdout_pixels  # noqa: E402

# BatchNorm statistics of the averaged weights: measured on this many batches of random windows.
_CALIBRATION_BATCHES = 4
# Previews in crop mode cost a whole-image pass: at most this share of the run's time.
_PREVIEW_SHARE = 0.1


def _grid(settings: Settings, factor: int) -> int:
    """Windows start and end on multiples of this (output pixels): the network's 2^scales, and a
    whole number of observation pixels for super-resolution."""
    multiple = 2**settings.scales
    return multiple * factor // math.gcd(multiple, factor)


def crop_window(settings: Settings, crop_size: int, out_shape: tuple[int, ...], factor: int = 1) -> tuple[int, int]:
    """The (height, width) of the windows: ``crop_size`` rounded up to the grid, at most the image."""
    grid = _grid(settings, factor)
    side = max(grid, -(-crop_size // grid) * grid)
    return (min(side, out_shape[0]), min(side, out_shape[1]))


def _margin(operator) -> int:
    """Observation pixels at a window's inner border whose value the operator computes from
    outside the window (blur, anti-aliasing): they do not count in the loss."""
    pad = getattr(operator, "_pad", None)
    if not pad:
        return 0
    return -(-max(pad) // getattr(operator, "_stride", 1))


def _window_operator(operator):
    # Inpainting's mask is in the loss weights; a window needs no whole-image buffer.
    return IdentityOperator() if isinstance(operator, InpaintOperator) else operator


class _Sampler:
    """Random window corners on the grid; for inpainting half of them over pixels to fill."""

    def __init__(self, out_shape, window, grid, fill_obs, factor, generator):
        self.limits = [(n - w) // grid for n, w in zip(out_shape, window, strict=True)]
        self.grid = grid
        self.window = window
        self.generator = generator
        self.targets = None
        if fill_obs is not None:
            coords = torch.nonzero(fill_obs, as_tuple=False) * factor
            self.targets = coords if len(coords) else None

    def corner(self, towards_fill: bool) -> tuple[int, int]:
        if towards_fill and self.targets is not None:
            pick = self.targets[int(torch.randint(len(self.targets), (1,), generator=self.generator))]
            return tuple(
                int(min(max(round((int(p) - w / 2) / self.grid), 0), limit)) * self.grid
                for p, w, limit in zip(pick, self.window, self.limits, strict=True)
            )
        return tuple(int(torch.randint(limit + 1, (1,), generator=self.generator)) * self.grid for limit in self.limits)


def _probe_corner(out_shape, window, grid, fill_obs, factor) -> tuple[int, int]:
    """The fixed window: the one holding most pixels to fill (inpainting), else the centre."""
    limits = [(n - w) // grid for n, w in zip(out_shape, window, strict=True)]
    if fill_obs is None or not fill_obs.any():
        return tuple(limit // 2 * grid for limit in limits)
    counts = fill_obs.float().cumsum(0).cumsum(1)
    counts = torch.nn.functional.pad(counts, (1, 0, 1, 0))
    best, corner = -1.0, (0, 0)
    step = grid // factor
    hy, hx = window[0] // factor, window[1] // factor
    for iy in range(limits[0] + 1):
        for ix in range(limits[1] + 1):
            y, x = iy * step, ix * step
            total = float(counts[y + hy, x + hx] - counts[y, x + hx] - counts[y + hy, x] + counts[y, x])
            if total > best:
                best, corner = total, (iy * grid, ix * grid)
    return corner


def _average_into(average: list[torch.Tensor], net: torch.nn.Module, ema: float) -> None:
    with torch.no_grad():
        for kept, param in zip(average, net.parameters(), strict=True):
            kept.lerp_(param.detach(), 1 - ema)


def _render(net: torch.nn.Module, weights: list[torch.Tensor], code: torch.Tensor, window, batch: int,
            sampler: _Sampler, autocast, calibration_batches: int = _CALIBRATION_BATCHES) -> torch.Tensor:
    """The whole image from ``weights``: BatchNorm statistics measured on random windows of the
    code, then one pass in tiles (with context that is dropped)."""
    model = copy.deepcopy(net)
    with torch.no_grad():
        for param, value in zip(model.parameters(), weights, strict=True):
            param.copy_(value)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a plain average over the calibration batches
        model.train()
        for _ in range(calibration_batches):
            corners = [sampler.corner(False) for _ in range(batch)]
            with autocast():
                model(_windows(code, corners, window))
        model.eval()
        height, width = code.shape[-2:]
        # Windows of the fitted size, half a window apart, blended with weights that fall
        # towards their borders: the network is asked what it was fitted on (a window's context).
        weights_2d = _taper(window, code.device)
        out = torch.zeros((1, net.head[0].out_channels, height, width), device=code.device)
        total = torch.zeros((1, 1, height, width), device=code.device)
        for y in _starts(height, window[0]):
            for x in _starts(width, window[1]):
                with autocast():
                    tile = model(code[..., y:y + window[0], x:x + window[1]]).float()
                out[..., y:y + window[0], x:x + window[1]] += tile * weights_2d
                total[..., y:y + window[0], x:x + window[1]] += weights_2d
        out /= total
    return out


def _starts(size: int, side: int) -> list[int]:
    """Window starts half a window apart, the last one flush with the end."""
    step = max(side // 2, 1)
    starts = list(range(0, max(size - side, 0) + 1, step))
    if starts[-1] != size - side:
        starts.append(size - side)
    return starts


def _taper(window, device) -> torch.Tensor:
    """Blending weights of a window: a tent, highest at the centre, never zero."""
    ramps = [1 - (torch.arange(n, device=device) + 0.5 - n / 2).abs() / (n / 2) + 1e-3 for n in window]
    return (ramps[0][:, None] * ramps[1][None, :])[None, None]


def _windows(tensor: torch.Tensor, corners, window, scale: int = 1) -> torch.Tensor:
    """The windows at ``corners`` (output pixels) of ``tensor`` (1, C, H/scale, W/scale) as a batch."""
    hy, hx = window[0] // scale, window[1] // scale
    return torch.cat([tensor[..., y // scale:y // scale + hy, x // scale:x // scale + hx] for y, x in corners])


def fit_crops(
    observation: torch.Tensor,
    operator,
    settings: Settings,
    *,
    crop_size: int,
    crop_batch: int,
    out_channels: int,
    out_shape: tuple[int, int],
    known: torch.Tensor | None = None,
    factor: int = 1,
    seed: int = 0,
    device: torch.device | None = None,
    preview_seconds: float | None = 2.0,
    preview_iterations: int | None = None,
    preview_now: Callable[[], bool] | None = None,
    noise_sigma: float | None = None,
    code: torch.Tensor | None = None,
    fill: torch.Tensor | None = None,
    initial_state: dict | None = None,
    keep_state: bool = False,
    average: str = "weights",
) -> Generator[Progress, None, FitResult]:
    """:func:`~napari_dip.core.engine.fit` on ``crop_batch`` windows of ``crop_size``² a step (see
    the module's text); the same arguments, plus ``factor`` (the output's size over the
    observation's, super-resolution). Yields :class:`Progress`, returns a :class:`FitResult`.

    ``average="outputs"``: the result is instead the running average of the windows' own outputs
    (the fitted ones, in training mode), kept per pixel in a whole-image buffer: each pixel's
    average moves towards a window's output by ``1 - ema**k``, ``k`` the steps since that pixel
    was last covered, so it follows the same time constant as the whole-image fit's average. No
    final pass through the network: what is averaged is exactly what was fitted."""
    start = time.perf_counter()
    device = device or torch.device("cpu")
    window = crop_window(settings, crop_size, out_shape, factor)
    grid = _grid(settings, factor)
    batch = crop_batch
    precision = resolve_precision(device, settings.precision)
    autocast_dtype = _autocast_dtype(precision)

    def autocast():
        return torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network("skip", in_channels=settings.input_depth, out_channels=out_channels,
                            **settings.network_kwargs())
    if initial_state is not None:
        net.load_state_dict(initial_state)
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    net = net.to(device=device, memory_format=memory_format)
    # The compiled graph's shape is the batch's, whatever the image: one compile serves all.
    compile_network = resolve_compile(settings.compile, device, batch * math.prod(window), 2, settings.iterations)
    forward = _compiled(net) if compile_network else net
    step_operator = _window_operator(operator).to(device)
    observation = observation.to(device=device, dtype=torch.float32)

    generator = torch.Generator(device=device).manual_seed(seed)
    code_shape = (1, settings.input_depth, *out_shape)
    if code is None:
        code = torch.rand(code_shape, generator=generator, device=device) * settings.input_scale
    elif tuple(code.shape) != code_shape:
        raise ValueError(f"the input code has shape {tuple(code.shape)}; this fit needs {code_shape}")
    else:
        code = code.to(device=device, dtype=torch.float32)
    jitter = torch.empty((batch, settings.input_depth, *window), device=device)

    obs_shape = observation.shape[-2:]
    weight = torch.ones(obs_shape, device=device) if known is None else known.to(device=device, dtype=torch.float32)
    if float(weight.sum()) == 0:
        raise ValueError("no pixel of the image is known: nothing to fit")
    weight = weight.clone()[None, None]  # never the caller's tensor
    margin = _margin(step_operator)
    window_weight = torch.ones((1, 1, window[0] // factor, window[1] // factor), device=device)

    fill_obs = fill.bool().cpu() if fill is not None else None
    sampler_generator = torch.Generator().manual_seed(seed + 1)
    sampler = _Sampler(out_shape, window, grid, fill_obs, factor, sampler_generator)
    probe = _probe_corner(out_shape, window, grid, fill_obs, factor)
    probe_slices = tuple(slice(p // factor, (p + w) // factor) for p, w in zip(probe, window, strict=True))

    stopper: WindowedVarianceStopper | HoldoutStopper | None = None
    holdout = None
    if settings.auto_stop and settings.stop_holdout > 0 and fill_obs is not None and known is not None:
        # Held-out pixels inside the probe, whose running average judges the fill.
        local = holdout_pixels(known.bool().cpu()[probe_slices], fill_obs[probe_slices], settings.stop_holdout,
                               settings.stop_band, seed)
        if local is not None:
            holdout = tuple(index.to(device) for index in local)
            weight[0, 0][tuple(index + s.start for index, s in zip(holdout, probe_slices, strict=True))] = 0
            holdout_truth = observation[0][(slice(None), *probe_slices)][(slice(None), *holdout)]
            stopper = HoldoutStopper.from_settings(settings)
    if stopper is None and settings.auto_stop:
        stopper = WindowedVarianceStopper.from_settings(settings, noise_sigma)

    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    averaged = [param.detach().clone().float() for param in net.parameters()]
    by_outputs = average == "outputs"
    image_average = torch.zeros((1, out_channels, *out_shape), device=device)
    last_seen = torch.full((1, 1, *out_shape), -1, dtype=torch.int64, device=device)
    held: list[torch.Tensor] | None = None
    probe_average: torch.Tensor | None = None
    checkpoint = (copy.deepcopy(net.state_dict()), copy.deepcopy(optimizer.state_dict()))
    checkpoint_loss = math.inf
    backtracks = 0
    last_preview = time.perf_counter()
    preview_cost = 0.0
    stop_reason = "iterations"
    step_times: list[float] = []
    fit_start = time.perf_counter()
    iteration = 0

    for iteration in range(settings.iterations):
        step_start = time.perf_counter()
        corners = [probe] + [sampler.corner(towards_fill=k % 2 == 1) for k in range(1, batch)]
        net_input = _windows(code, corners, window)
        if settings.reg_noise_std > 0:
            net_input = net_input + jitter.normal_(generator=generator) * settings.reg_noise_std
        net_input = net_input.contiguous(memory_format=memory_format)
        target = _windows(observation, corners, window, factor)
        mask = _windows(weight, corners, window, factor)
        if margin:
            mask = mask * _inner(window_weight, corners, window, factor, obs_shape, margin)
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            try:
                out = forward(net_input)
            except Exception:
                if forward is net:
                    raise
                forward = net  # no working compiler toolchain: the eager network, slower
                out = forward(net_input)
        out = out.float()
        residual = step_operator(out) - target
        counted = mask.sum() * observation.shape[1]
        loss = (residual.square() * mask).sum() / counted.clamp_min(1)
        loss.backward()
        loss_value = float(loss.detach())

        backtracked = False
        if not math.isfinite(loss_value) or loss_value > settings.backtrack_ratio * checkpoint_loss:
            net.load_state_dict(checkpoint[0])
            optimizer.load_state_dict(checkpoint[1])
            backtracks += 1
            backtracked = True
        else:
            optimizer.step()
            _average_into(averaged, net, settings.ema)
            if by_outputs:
                _average_windows(image_average, last_seen, out.detach(), corners, window, iteration, settings.ema)
            seen = out[:1].detach()
            if probe_average is None:
                probe_average = seen.clone()
            else:
                probe_average.mul_(settings.ema).add_(seen, alpha=1 - settings.ema)
            if (iteration + 1) % settings.checkpoint_every == 0:
                checkpoint = (copy.deepcopy(net.state_dict()), copy.deepcopy(optimizer.state_dict()))
                checkpoint_loss = loss_value
            elif checkpoint_loss == math.inf:
                checkpoint_loss = loss_value

        if holdout is not None and not backtracked:
            error = float((probe_average[0][(slice(None), *holdout)] - holdout_truth).square().mean())
            if stopper.observe(iteration, error):
                held = _keep(held, [image_average] if by_outputs else averaged)
        elif stopper is not None and not backtracked:
            stopper.observe_loss(iteration, loss_value)
            stopper.observe(iteration, out[:1])
            if stopper.snapshot_due:
                held = _keep(held, [image_average] if by_outputs else averaged)

        now = time.perf_counter()
        step_times.append(now - step_start)
        done = iteration + 1
        stopping = stopper is not None and stopper.should_stop
        # A preview is a whole-image pass: never more than a tenth of the run's time.
        spaced = now - last_preview >= max(preview_cost / _PREVIEW_SHARE, 0.0)
        want_preview = (
            (preview_seconds is not None and now - last_preview >= preview_seconds and spaced)
            or (preview_iterations is not None and done % preview_iterations == 0)
            or (preview_now is not None and preview_now())
        ) and not stopping and done < settings.iterations
        preview = None
        if want_preview:
            render_start = time.perf_counter()
            preview = _to_numpy(image_average.clone() if by_outputs else
                                _render(net, averaged, code, window, batch, sampler, autocast, 1))
            last_preview = time.perf_counter()
            preview_cost = last_preview - render_start
        yield Progress(
            iteration=done,
            iterations=settings.iterations,
            loss=loss_value,
            elapsed=now - start,
            eta=_eta(done, settings, stopper, step_times),
            preview=preview,
            output=preview,
            backtracked=backtracked,
            signal=_signal(stopper),
            best_iteration=_best(stopper),
        )
        if stopping:
            stop_reason = "auto"
            break

    rewind = holdout is not None or (stop_reason == "auto" and stopper.stop_kind == "noise")
    if by_outputs:
        image = _to_numpy(held[0] if rewind and held is not None else image_average)
    else:
        final = held if rewind and held is not None else averaged
        image = _to_numpy(_render(net, final, code, window, batch, sampler, autocast))
    return FitResult(
        image=image,
        iterations=iteration + 1,
        stop_reason=stop_reason,
        elapsed=time.perf_counter() - fit_start,
        best_iteration=_best(stopper),
        backtracks=backtracks,
        precision=precision,
        state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()} if keep_state else None,
    )


def _average_windows(image_average: torch.Tensor, last_seen: torch.Tensor, outputs: torch.Tensor, corners,
                     window, iteration: int, ema: float) -> None:
    """Move each window's pixels of ``image_average`` towards that window's output by
    ``1 - ema**k`` (``k``: steps since the pixel was last covered; all the way when never)."""
    for out, (y, x) in zip(outputs.float(), corners, strict=True):
        region = (Ellipsis, slice(y, y + window[0]), slice(x, x + window[1]))
        seen = last_seen[region]
        gap = (iteration - seen).to(torch.float32)
        rate = torch.where(seen < 0, torch.ones_like(gap), 1 - torch.pow(torch.tensor(ema), gap))
        image_average[region] += rate * (out[None] - image_average[region])
        last_seen[region] = iteration


def _inner(ones: torch.Tensor, corners, window, factor: int, obs_shape, margin: int) -> torch.Tensor:
    """Per window: 0 within ``margin`` observation pixels of a border inside the image."""
    masks = []
    for y, x in corners:
        mask = ones.clone()
        oy, ox = y // factor, x // factor
        hy, hx = window[0] // factor, window[1] // factor
        if oy > 0:
            mask[..., :margin, :] = 0
        if oy + hy < obs_shape[0]:
            mask[..., hy - margin:, :] = 0
        if ox > 0:
            mask[..., :, :margin] = 0
        if ox + hx < obs_shape[1]:
            mask[..., :, hx - margin:] = 0
        masks.append(mask)
    return torch.cat(masks)


def _keep(held: list[torch.Tensor] | None, averaged: list[torch.Tensor]) -> list[torch.Tensor]:
    if held is None:
        return [value.clone() for value in averaged]
    for kept, value in zip(held, averaged, strict=True):
        kept.copy_(value)
    return held


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="astronaut")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--configs", nargs="+", default=["0x0", "128x4"],
                        help="SIZExBATCH; 0x0: the whole image; a trailing o (128x4o): average the outputs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    problem = denoise_problem(args.image, args.size, args.sigma)
    truth = problem.truth if problem.truth.ndim == 3 else problem.truth[..., None]
    observed = np.asarray(problem.observed, np.float32)
    observed = observed.transpose(2, 0, 1) if observed.ndim == 3 else observed[None]
    observation = torch.from_numpy(np.ascontiguousarray(observed))[None]
    settings = resolve_settings("denoise", "default", iterations=args.iterations).updated(compile="off")
    print(f"{problem.name}, default preset, {args.iterations} iterations, eager, {args.threads} thread(s)")
    print("| fit | PSNR | seconds |\n| --- | --- | --- |")
    for config in args.configs:
        by = "outputs" if config.endswith("o") else "weights"
        size, batch = (int(n) for n in config.rstrip("o").split("x"))
        start = time.perf_counter()
        common = dict(out_channels=observed.shape[0], out_shape=observed.shape[1:], preview_seconds=None)
        run = (fit(observation, IdentityOperator(), settings, **common) if size == 0 else
               fit_crops(observation, IdentityOperator(), settings, crop_size=size, crop_batch=batch, average=by,
                         **common))
        try:
            while True:
                next(run)
        except StopIteration as done:
            result = done.value
        what = "whole image" if size == 0 else f"{batch} windows of {size}², average of the {by}"
        print(f"| {what} | {psnr(result.image.transpose(1, 2, 0), truth):.2f} | {time.perf_counter() - start:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
