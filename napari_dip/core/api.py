"""Array-level entry points: numpy in, numpy out, any dtype, any channel layout."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .arrays import Intensity, check_finite, from_channels_first, pad_to_multiple, to_channels_first
from .device import choose_threads, select_device, torch_threads
from .engine import STOP_REASONS, Progress, fit
from .networks import depth_scales_for
from .operators import BlurOperator, DownsampleOperator, ForwardOperator, IdentityOperator, InpaintOperator
from .presets import TASKS, Settings, preset_settings
from .stopping import estimate_noise_sigma

# Tasks whose forward model works the same in 3D: the others act on planes (JPEG blocks, a 2D
# PSF, a 2D resampling kernel).
VOLUME_TASKS = ("denoise", "inpaint")  # the message in restore_iter names them

__all__ = ["restore", "restore_iter", "Restoration", "resolve_settings", "TASKS", "VOLUME_TASKS"]


@dataclass
class Restoration:
    """What a finished run returns: the image in the input's dtype and range, and how it ran."""

    image: np.ndarray
    task: str
    iterations: int
    stop_reason: str
    elapsed: float
    settings: Settings
    seed: int
    device: str
    threads: int
    best_iteration: int | None = None
    backtracks: int = 0
    precision: str = "float32"
    state: dict | None = field(default=None, repr=False)

    @property
    def stop_message(self) -> str:
        return STOP_REASONS.get(self.stop_reason, self.stop_reason)

    def metadata(self) -> dict[str, Any]:
        """Plain values describing the run (for a layer's metadata or a log)."""
        return {
            "task": self.task,
            "iterations": self.iterations,
            "stop_reason": self.stop_reason,
            "best_iteration": self.best_iteration,
            "elapsed_seconds": round(self.elapsed, 3),
            "seed": self.seed,
            "device": self.device,
            "threads": self.threads,
            "backtracks": self.backtracks,
            "precision": self.precision,
            "settings": self.settings.as_dict(),
        }


def resolve_settings(
    task: str, preset: str = "default", scale: int | None = None, iterations: int | None = None, **advanced
) -> Settings:
    settings = preset_settings(task, preset, scale or 1)
    if iterations is not None:
        if int(iterations) < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        # A user who fixes the count wants that count: no automatic stop unless asked for.
        advanced.setdefault("auto_stop", False)
        advanced["iterations"] = int(iterations)
    return settings.updated(**advanced)


def _spatial_mask(mask: Any, spatial: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != spatial:
        raise ValueError(
            f"mask shape {mask.shape} does not match the image's spatial shape {spatial}"
        )
    check_finite(mask, "mask")
    fill = mask != 0
    if not fill.any():
        raise ValueError("the mask is empty: mark the pixels to fill (nonzero = fill)")
    if fill.all():
        raise ValueError("the mask covers the whole image: leave some pixels known")
    return fill


def _build_operator(task: str, mask, scale, psf) -> ForwardOperator:
    """The task's operator; for inpainting ``mask`` is the (padded) boolean fill mask."""
    if task == "inpaint":
        return InpaintOperator(mask)
    if task == "sr":
        return DownsampleOperator(int(scale))
    if task == "deblur":
        return BlurOperator(psf)
    return IdentityOperator()


def _check_volume_memory(settings: Settings, channels: int, shape: tuple[int, ...], device: torch.device) -> None:
    """A volume is fitted whole (it is not tiled): refuse, with the sizes, one that would not fit."""
    from .tiling import _default_budget, fit_bytes_per_pixel

    need = fit_bytes_per_pixel(settings, channels) * math.prod(shape)
    budget = _default_budget(device)
    if need > budget:
        raise ValueError(
            f"a volume of {'×'.join(str(n) for n in shape)} voxels needs about {need / 2**30:.1f} GiB "
            f"to fit whole, more than the {budget / 2**30:.1f} GiB available: crop it, narrow the "
            "network (channels), or restore its planes one by one"
        )


def _check_task_inputs(task: str, mask, scale, psf) -> None:
    if task == "inpaint" and mask is None:
        raise ValueError("inpainting needs a mask: nonzero where pixels must be filled")
    if task != "inpaint" and mask is not None:
        raise ValueError(f"a mask is only used for inpainting, not for task {task!r}")
    if task == "sr":
        if scale is None:
            raise ValueError("super-resolution needs a scale, e.g. scale=4")
        if int(scale) != scale or scale < 2:
            raise ValueError(f"super-resolution scale must be a whole number of at least 2, got {scale}")
    elif scale not in (None, 1):
        raise ValueError(f"scale is only used for super-resolution, not for task {task!r}")
    if task == "deblur" and psf is None:
        raise ValueError("deblurring needs a PSF (the blur kernel) as a 2D array")
    if task != "deblur" and psf is not None:
        raise ValueError(f"a PSF is only used for deblurring, not for task {task!r}")


def restore_iter(
    image: np.ndarray,
    task: str = "denoise",
    *,
    mask: np.ndarray | None = None,
    scale: int | None = None,
    psf: np.ndarray | None = None,
    channel_axis: int | None = None,
    preset: str = "default",
    iterations: int | None = None,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    preview_seconds: float | None = 2.0,
    preview_iterations: int | None = None,
    preview_now: Callable[[], bool] | None = None,
    initial_state: dict | None = None,
    keep_state: bool = False,
    volume: bool = False,
    **advanced,
) -> Generator[Progress, None, Restoration]:
    """Generator form of :func:`restore`: yields :class:`Progress` events, returns a
    :class:`Restoration`. Previews in the events are already in the input's dtype and range.

    Stop iterating (or call ``close()``) to cancel. Parameters are those of :func:`restore`,
    plus ``threads``, the preview schedule, and ``initial_state``/``keep_state`` to warm-start
    from (and hand on) network weights, as plane-by-plane stack restoration does.
    ``preview_now``, asked at every step, adds a preview when true: a shell that stops the run
    and keeps the current average sets it.
    """
    image = np.asarray(image)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if image.size == 0:
        raise ValueError(f"the image is empty (shape {image.shape})")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool) or np.iscomplexobj(image):
        raise ValueError(f"the image must hold real numbers, got dtype {image.dtype}")
    spatial_dims = 3 if volume else 2
    if channel_axis is None and image.ndim == spatial_dims + 1 and image.shape[-1] in (3, 4):
        channel_axis = -1
    chw = to_channels_first(image, channel_axis, spatial_dims)
    check_finite(chw)
    spatial = chw.shape[1:]
    _check_task_inputs(task, mask, scale, psf)
    if volume and task not in VOLUME_TASKS:
        raise ValueError(
            f"task {task!r} is not available for volumes, only denoising and inpainting: "
            f"restore the planes one by one for {task!r}"
        )
    settings = resolve_settings(task, preset, scale, iterations, **advanced)
    factor = int(scale) if task == "sr" else 1
    fill = _spatial_mask(mask, spatial) if task == "inpaint" else None
    multiple = 2**settings.scales
    intensity = Intensity.of(chw)
    unit = intensity.to_unit(chw)
    # Pad the observation so that the network's output (factor × larger) divides by 2^scales;
    # padded pixels are excluded from the loss, and the result is cropped back.
    # The coarsest level needs at least 2×2 pixels (BatchNorm statistics, reflection padding).
    multiples = [multiple // math.gcd(multiple, factor)] * 2
    minimums = [-(-2 * multiple // factor)] * 2
    depth_scales = None
    if volume:
        depth_scales = depth_scales_for(spatial[0], settings.scales)
        multiples.insert(0, 2**depth_scales)
        minimums.insert(0, 2 ** (depth_scales + 1))
    padded, _ = pad_to_multiple(unit, tuple(multiples), minimum=tuple(minimums))
    inside = tuple(slice(0, n) for n in spatial)
    known = np.zeros(padded.shape[1:], dtype=bool)
    known[inside] = True
    if fill is not None:
        known[inside] &= ~fill
    operator = _build_operator(task, ~known, scale, psf)
    out_inside = (slice(None),) + tuple(slice(0, n * factor) for n in spatial)
    out_shape = tuple(n * factor for n in padded.shape[1:])

    def to_output(unit_chw: np.ndarray) -> np.ndarray:
        return from_channels_first(intensity.from_unit(unit_chw[out_inside]), channel_axis)

    torch_device = select_device(device)
    if volume:
        _check_volume_memory(settings, chw.shape[0], out_shape, torch_device)
    n_threads = choose_threads(math.prod(out_shape), threads)
    with torch_threads(n_threads):
        run = fit(
            torch.from_numpy(padded)[None],
            operator,
            settings,
            out_channels=chw.shape[0],
            out_shape=out_shape,
            known=torch.from_numpy(known),
            seed=seed,
            device=torch_device,
            preview_seconds=preview_seconds,
            preview_iterations=preview_iterations,
            preview_now=preview_now,
            initial_state=initial_state,
            keep_state=keep_state,
            depth_scales=depth_scales,
            # Only the stopping rule uses it: not estimated for runs that do not stop by themselves.
            noise_sigma=estimate_noise_sigma(unit) if task == "denoise" and settings.auto_stop else None,
        )
        try:
            while True:
                event = next(run)
                if event.preview is not None:
                    event.preview = to_output(event.preview)
                    event.output = to_output(event.output)
                yield event
        except StopIteration as done:
            result = done.value
        finally:
            run.close()
    return Restoration(
        image=to_output(result.image),
        task=task,
        iterations=result.iterations,
        stop_reason=result.stop_reason,
        elapsed=result.elapsed,
        settings=settings,
        seed=seed,
        device=str(torch_device),
        threads=n_threads,
        best_iteration=result.best_iteration,
        backtracks=result.backtracks,
        precision=result.precision,
        state=result.state,
    )


def restore(
    image: np.ndarray,
    task: str = "denoise",
    *,
    mask: np.ndarray | None = None,
    scale: int | None = None,
    psf: np.ndarray | None = None,
    channel_axis: int | None = None,
    preset: str = "default",
    iterations: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | Callable[[Progress], Any] | None = None,
    volume: bool = False,
    **advanced,
) -> np.ndarray:
    """Restore an image with a Deep Image Prior.

    A randomly initialised network is fitted, for this image alone, so that the task's forward
    model of its output matches ``image``; its output is the restoration. No training data.

    Parameters
    ----------
    image : ndarray
        (H, W) grayscale, (H, W, 3|4) RGB(A), or any channel count with ``channel_axis``;
        with ``volume=True`` (D, H, W), with or without channels. uint8, uint16,
        float32/float64 in any range.
    task : {"denoise", "inpaint", "sr", "deblur", "jpeg"}
        Denoising, inpainting (needs ``mask``), super-resolution (needs ``scale``), deblurring
        (needs ``psf``), JPEG artifact removal.
    mask : ndarray, optional
        (H, W), or (D, H, W) for a volume; nonzero/True marks the pixels to fill (inpainting
        only).
    scale : int, optional
        Upscaling factor for super-resolution; the result is ``scale`` times larger.
    psf : ndarray, optional
        2D point-spread function for deblurring (normalised to sum 1).
    channel_axis : int, optional
        Axis of channels. ``None`` means grayscale, except (H, W, 3|4) which is taken as RGB(A).
    preset : {"default", "paper"}
        ``"paper"`` uses the official DIP settings and fixed iteration counts; ``"default"``
        stops automatically when the output stops improving.
    iterations : int, optional
        Fix the number of iterations (this turns automatic stopping off unless
        ``auto_stop=True`` is also given).
    seed : int
        Seed of the network's initial weights and input code: same inputs and seed, same result.
    device : str
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"mps"``.
    progress : bool or callable, optional
        True shows a tqdm progress bar; a callable is called with every :class:`Progress`.
    volume : bool
        Restore a z-stack as one volume with a 3D network (denoising and inpainting), so that
        the prior also ties neighbouring slices together, instead of plane by plane.
    **advanced
        Fields of :class:`~napari_dip.core.presets.Settings` (``lr``, ``reg_noise_std``,
        ``channels``, ``scales``, ``auto_stop``, ...) and ``threads``.

    Returns
    -------
    ndarray
        The restored image, with the input's dtype, range and channel layout; ``scale`` times
        larger for super-resolution.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip import restore
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(0.5 + 0.1 * rng.standard_normal((32, 32)), 0, 1).astype(np.float32)
    >>> restored = restore(noisy, iterations=5, channels=8, scales=2)
    >>> restored.shape, restored.dtype
    ((32, 32), dtype('float32'))
    """
    run = restore_iter(
        image, task, mask=mask, scale=scale, psf=psf, channel_axis=channel_axis, preset=preset,
        iterations=iterations, seed=seed, device=device,
        preview_seconds=None, volume=volume, **advanced,
    )
    return consume(run, progress).image


def consume(run: Generator[Progress, None, Restoration], progress=None) -> Restoration:
    """Drive a run to the end, reporting to a tqdm bar (``progress=True``) or a callable."""
    bar = None
    try:
        while True:
            event = next(run)
            if progress is True:
                if bar is None:
                    # Created on the first event, so bad input fails before any bar is drawn.
                    from tqdm.auto import tqdm

                    bar = tqdm(total=event.iterations, unit="it", dynamic_ncols=True)
                bar.total = event.iterations
                bar.n = event.iteration
                left = f"{event.eta:.0f}s" if event.eta is not None else "?"
                bar.set_postfix(loss=f"{event.loss:.2e}", left=left, refresh=False)
                bar.refresh()
            elif callable(progress):
                progress(event)
    except StopIteration as done:
        return done.value
    finally:
        if bar is not None:
            bar.close()
