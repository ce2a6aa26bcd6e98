"""One fit of one plane or volume, whole: the array is padded, fitted and cropped back.

The planner (:mod:`napari_dip.core.api`) decides whether an image is fitted whole, in tiles or
plane by plane; every path ends here, with the run's :class:`RestoreOptions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .arrays import Intensity, check_finite, fill_nonfinite, from_channels_first, pad_to_multiple
from .device import choose_threads, select_device, torch_threads
from .engine import STOP_REASONS, Progress, fit
from .guide import guide_code
from .layout import Layout
from .memory import default_budget, fit_bytes_per_pixel
from .networks import build_network, depth_scales_for
from .options import RestoreOptions
from .settings import Settings
from .stopping import clipped_noise_sigma

__all__ = [
    "Restoration", "fit_array", "network_shape", "check_image", "spatial_mask", "check_fit_memory",
    "check_initial_state",
]


@dataclass
class Restoration:
    """What a finished run returns: the image in the input's dtype and range, and how it ran.

    A tiled image or a stack also lists how each tile's or plane's fit ran in ``parts`` (the
    metadata of each), and ``plan`` says how the image was cut.
    """

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
    plan: str = "one fit"
    parts: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def stop_message(self) -> str:
        return STOP_REASONS.get(self.stop_reason, self.stop_reason)

    def metadata(self) -> dict[str, Any]:
        """Plain values describing the run (for a layer's metadata or a log)."""
        values = {
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
        if self.parts:
            values.update(plan=self.plan, parts=self.parts)
        return values


def check_image(image: Any) -> None:
    """Refuse, with one sentence, what is not an image of real numbers (NaN and infinite values:
    :func:`check_unknown_pixels`, once the layout and mask are known)."""
    dtype = np.dtype(image.dtype)
    if 0 in tuple(image.shape):
        raise ValueError(f"the image is empty (shape {tuple(image.shape)})")
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"the image must hold real numbers, got dtype {dtype}")


def check_unknown_pixels(image: Any, options: Any, layout: Layout) -> bool:
    """Refuse NaN or infinite values in ``image``, counted, with the fix; for inpainting with a
    mask only those outside it (those under it are filled like any painted pixel, and nothing
    reads their values). True where there are such pixels to fill. Lazy arrays are not read."""
    if not isinstance(image, np.ndarray):
        return False
    fills = options.mask is not None and options.spec.needs_mask and np.issubdtype(image.dtype, np.floating)
    if not fills:
        check_finite(image)
        return False
    unknown = ~np.isfinite(image)
    if not unknown.any():
        return False
    try:
        layout.check_mask(options.mask)
    except ValueError:
        return False  # the mask's own check says what is wrong with it
    outside = int(np.count_nonzero(unknown & ~layout.mask_covers(options.mask)))
    if outside:
        raise ValueError(
            f"the image contains {outside} NaN or infinite value(s) outside the inpainting mask; paint them "
            "into the mask to have them filled, or replace them with numbers"
        )
    return True


def unknown_pixels_filled(image: Any, options: Any, layout: Layout) -> Any:
    """``image``, or where it has NaN or infinite pixels under an inpainting mask a copy holding
    each channel's smallest finite value there (so no channel's range moves); the caller's array
    keeps its NaN. Refuses the rest as :func:`check_unknown_pixels` does."""
    if not check_unknown_pixels(image, options, layout):
        return image
    filled = image.copy()
    for channel in (filled[None] if layout.channel_axis is None else np.moveaxis(filled, layout.channel_axis, 0)):
        fill_nonfinite(channel)  # a view: it fills ``filled``
    return filled


def spatial_mask(mask: Any, spatial: tuple[int, ...]) -> np.ndarray:
    """The boolean fill mask (True = fill), checked against the image's spatial shape."""
    mask = np.asarray(mask)
    if mask.shape != tuple(spatial):
        raise ValueError(f"mask shape {mask.shape} does not match the image's spatial shape {tuple(spatial)}")
    if not (np.issubdtype(mask.dtype, np.bool_) or np.issubdtype(mask.dtype, np.integer)
            or np.issubdtype(mask.dtype, np.floating)):
        raise ValueError(f"the mask must hold numbers or booleans (nonzero = fill), not {mask.dtype} values")
    check_finite(mask, "mask")
    fill = mask != 0
    if not fill.any():
        raise ValueError("the mask is empty: mark the pixels to fill (nonzero = fill)")
    if fill.all():
        raise ValueError("the mask covers the whole image: leave some pixels known")
    return fill


def check_fit_memory(options: RestoreOptions, channels: int, out_shape: tuple[int, ...], device: torch.device) -> None:
    """Refuse, with the sizes, a fit that would not fit in memory (before allocating it)."""
    need = fit_bytes_per_pixel(options.settings, channels) * math.prod(out_shape)
    budget = default_budget(device, options.memory_limit)
    if need > budget:
        what = "a volume of " + "×".join(str(n) for n in out_shape) + " voxels" if len(out_shape) == 3 else (
            f"an output of {out_shape[1]}×{out_shape[0]} pixels")
        advice = ("crop it, narrow the network (channels), or restore its planes one by one" if len(out_shape) == 3
                  else "tile it (tile_size), narrow the network (channels), or crop it")
        if len(out_shape) == 2 and tuple(out_shape) == network_shape((1, 1), options):
            # The network's smallest size (every plane or tile is padded to it): smaller tiles do not help.
            advice = "narrow the network (channels) or use fewer scales"
        limit = "available"
        if options.memory_limit is not None:
            limit, advice = "that memory_limit allows", f"raise memory_limit, {advice}"
        raise ValueError(
            f"{what} needs about {_bytes_text(need)} to fit whole, more than the {_bytes_text(budget)} {limit}: "
            f"{advice}"
        )


def _bytes_text(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 0.1 * 2**30 else f"{max(size / 2**20, 1):.0f} MiB"


def _network_traits(state) -> dict[str, Any]:
    """What the shape of a skip network's state says about the settings it was built with."""
    head = state.get("head.0.weight")
    first = next((value for name, value in state.items()
                  if name.startswith("body.deeper.0.0.") and name.endswith("weight")), None)
    if head is None or first is None or head.dim() not in (4, 5):
        return {}
    second = next((value for name, value in state.items()
                   if name.startswith("body.deeper.2.deeper.0.0.") and name.endswith("weight")), None)
    skip = state.get("body.skip.0.weight")
    return {
        "network": "a 3D (volume) network" if head.dim() == 5 else "a 2D network",
        "image channels": int(head.shape[0]),
        "input_depth": int(first.shape[1]),
        "scales": sum(name.endswith("join_norm.weight") for name in state),
        "channels": int((second if second is not None else first).shape[0]),
        "top_channels": int(first.shape[0]),
        "skip_channels": 0 if skip is None else int(skip.shape[0]),
    }


def _traits_text(traits: dict[str, Any], names: list[str]) -> str:
    words = []
    for name in names:
        value = traits[name]
        if name == "network":
            words.append(value)
        elif name == "image channels":
            words.append(f"{value} image channel{'s' if value != 1 else ''}")
        else:
            words.append(f"{name}={value}")
    return ", ".join(words)


def check_initial_state(
    state: Any, settings: Settings, channels: int, dims: int = 2, depth_scales: int | None = None
) -> None:
    """Refuse, before any work, a warm-start ``state`` that is not a state of the network this
    fit builds (from ``settings``, ``channels`` image channels, ``dims`` 2 or 3), in one sentence
    naming what differs (channels, scales, image channels, ...) and the fix."""
    if state is None:
        return
    from collections.abc import Mapping

    if not isinstance(state, Mapping):
        got = type(state).__name__
    elif not state:
        got = "an empty mapping"
    else:
        others = sorted({type(value).__name__ for value in state.values() if not isinstance(value, torch.Tensor)})
        got = f"a mapping holding {', '.join(others)} values, not only tensors" if others else None
    if got is not None:
        raise ValueError(
            "initial_state must be a network state (the state of a Restoration from a run with keep_state=True), "
            f"got {got}"
        )
    volume = {"dims": 3, "depth_scales": depth_scales} if dims == 3 else {}
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = build_network("skip", in_channels=settings.input_depth, out_channels=channels,
                                 **settings.network_kwargs(), **volume).state_dict()
    if set(state) == set(expected) and all(state[name].shape == expected[name].shape for name in expected):
        bad = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
        if bad:
            raise ValueError(
                f"initial_state holds NaN or infinite weights (in {len(bad)} of its {len(state)} tensors, "
                f"e.g. {bad[0]}): "
                "warm-start from a run that did not diverge, or leave initial_state out"
            )
        return
    theirs, ours = _network_traits(state), _network_traits(expected)
    differ = [name for name in ours if theirs and theirs[name] != ours[name]]
    if "top_channels" in differ and all(traits["top_channels"] == traits["channels"] for traits in (theirs, ours)):
        differ.remove("top_channels")  # it follows channels where it was not set on its own
    if not differ:
        raise ValueError(
            "initial_state is not a state of this run's network (its weights' names or shapes differ): "
            "warm-start from the state of a run with the same settings and image channels, or leave initial_state out"
        )
    raise ValueError(
        f"initial_state comes from another network: {_traits_text(theirs, differ)}, where this run's has "
        f"{_traits_text(ours, differ)}; warm-start from a run with the same settings and image channels "
        "(or give this run those settings), or leave initial_state out"
    )


def _padding(spatial: tuple[int, ...], settings: Settings, factor: int, volume: bool):
    """(multiples, minimums, depth scales) each spatial size of the observation is padded to.

    Padded so that the network's output (``factor`` × larger) divides by 2^scales; padded
    pixels are excluded from the loss, and the result is cropped back. The coarsest level needs
    at least 2×2 pixels (BatchNorm statistics, reflection padding).
    """
    multiple = 2**settings.scales
    multiples = [multiple // math.gcd(multiple, factor)] * 2
    minimums = [-(-2 * multiple // factor)] * 2
    depth_scales = None
    if volume:
        depth_scales = depth_scales_for(spatial[0], settings.scales)
        multiples.insert(0, 2**depth_scales)
        minimums.insert(0, 2 ** (depth_scales + 1))
    return tuple(multiples), tuple(minimums), depth_scales


def network_shape(spatial: tuple[int, ...], options: RestoreOptions) -> tuple[int, ...]:
    """The spatial shape of the network's output when fitting an observation of ``spatial``
    (padded, and ``factor`` times larger): what the compile policy and memory checks count."""
    multiples, minimums, _ = _padding(tuple(spatial), options.settings, options.factor, options.volume)
    padded = (max(-(-n // m) * m, -(-low // m) * m) for n, m, low in zip(spatial, multiples, minimums, strict=True))
    return tuple(n * options.factor for n in padded)


def with_threads(options: RestoreOptions, spatial: tuple[int, ...]) -> RestoreOptions:
    """``options`` with the CPU threads for fits of ``spatial`` chosen once, for a run of many
    fits (tiles, planes): choosing samples the free cores for 0.1 s."""
    if options.threads is not None:
        return options
    return replace(options, threads=choose_threads(math.prod(network_shape(spatial, options))))


def fit_intensity(chw: np.ndarray, settings: Settings, fill: np.ndarray | None = None,
                  nominal: Intensity | None = None) -> Intensity:
    """How a fit maps ``chw``'s stored values to [0, 1]: the dtype's nominal range, or with
    ``settings.stretch`` each channel's own, set by the pixels the fit sees (not those in ``fill``)."""
    nominal = nominal or Intensity.of(chw)
    if not settings.stretch:
        return nominal
    return Intensity.spanned(chw, None if fill is None else ~fill, fallback=nominal)


def fit_noise_sigma(unit: np.ndarray, settings: Settings) -> float:
    """The noise level the stopping rule is given for ``unit`` (the fit's [0, 1] data): the
    difference to expect between it and the clean image, clipping at 0 and 1 allowed for
    (:func:`~napari_dip.core.stopping.clipped_noise_sigma`). Stretched channels' noise differs, so
    then each channel's own, pooled as the loss pools them (RMS)."""
    if not settings.stretch:
        return clipped_noise_sigma(unit)
    return float(np.sqrt(np.mean([clipped_noise_sigma(channel) ** 2 for channel in unit])))


def fit_array(
    image: np.ndarray,
    options: RestoreOptions,
    layout: Layout | None = None,
    *,
    initial_state: dict | None = None,
    keep_state: bool = False,
    noise_sigma: float | None = None,
    preview_now: Callable[[], bool] | None = None,
) -> Generator[Progress, None, Restoration]:
    """Fit one plane (or, with ``options.volume``, one volume) whole.

    ``layout`` says where its channels are (default: from ``options``). ``noise_sigma`` is the
    noise level (unit range) for the stopping rule, when known from a larger image than this
    one (a tile). ``preview_now``, asked at every step, adds a preview when true (a shell that
    stops the run and keeps the current average sets it). Yields :class:`Progress` (previews in
    the input's dtype), returns a
    :class:`Restoration`.
    """
    image = np.asarray(image)
    check_image(image)
    layout = layout or Layout.of(image.shape, options.channel_axis, axes=options.axes, volume=options.volume)
    if layout.plane_axes:
        raise ValueError(f"an image of shape {image.shape} has planes: restore it through restore()")
    image = unknown_pixels_filled(image, options, layout)
    chw = layout.to_channels_first(image)
    spatial = chw.shape[1:]
    settings = options.settings
    spec = options.spec
    factor = options.factor
    fill = spatial_mask(options.mask, spatial) if spec.needs_mask else None
    nominal = Intensity.of(chw)
    intensity = fit_intensity(chw, settings, fill, nominal)
    if noise_sigma is not None and intensity is not nominal:
        # A noise level given in the input's nominal range, in this fit's: the loss is a mean
        # over channels, so the root mean square of the channels' factors.
        ratios = (nominal.high - nominal.low) / (intensity.high - intensity.low)
        noise_sigma = noise_sigma * float(np.sqrt(np.mean(np.square(ratios))))
    with np.errstate(over="ignore"):
        span = np.asarray(intensity.high, dtype=np.float64) - np.asarray(intensity.low, dtype=np.float64)
    if not np.isfinite(span).all():
        raise ValueError(
            f"the image's values span more than a float64 can hold ({float(np.min(chw)):g} to "
            f"{float(np.max(chw)):g}): rescale it, e.g. divide it by its largest absolute value"
        )
    unit = intensity.to_unit(chw)
    multiples, minimums, depth_scales = _padding(spatial, settings, factor, options.volume)
    padded, _ = pad_to_multiple(unit, multiples, minimum=minimums)
    inside = tuple(slice(0, n) for n in spatial)
    known = np.zeros(padded.shape[1:], dtype=bool)
    known[inside] = True
    fill_padded = np.zeros(padded.shape[1:], dtype=bool)
    if fill is not None:
        known[inside] &= ~fill
        fill_padded[inside] = fill
    operator = spec.build(~known, options.scale, options.psf)
    out_inside = (slice(None),) + tuple(slice(0, n * factor) for n in spatial)
    out_shape = tuple(n * factor for n in padded.shape[1:])
    code = None
    if options.guide is not None:
        # Guided: the guide, padded as the image is, is the network's input code.
        code = guide_code(options.guide, tuple(n * factor for n in spatial), out_shape)
        settings = replace(settings, input_depth=code.shape[0])
    keep = options.keeps_known

    def to_output(unit_chw: np.ndarray) -> np.ndarray:
        out = intensity.from_unit(unit_chw[out_inside])
        if keep:
            # What the user did not paint comes back exactly as it was.
            out = np.where(fill[None], out, chw)
        return from_channels_first(out, layout.channel_axis)

    check_initial_state(initial_state, settings, chw.shape[0], len(spatial), depth_scales)
    device = select_device(options.device)
    check_fit_memory(options, chw.shape[0], out_shape, device)
    threads = choose_threads(math.prod(out_shape), options.threads)
    if noise_sigma is None and spec.noise_from_image and settings.auto_stop:
        # Only the stopping rule uses it: not estimated for runs that do not stop by themselves.
        noise_sigma = fit_noise_sigma(unit, settings)
    with torch_threads(threads):
        run = fit(
            torch.from_numpy(padded)[None],
            operator,
            settings,
            out_channels=chw.shape[0],
            out_shape=out_shape,
            known=torch.from_numpy(known),
            seed=options.seed,
            device=device,
            preview_seconds=options.preview_seconds,
            preview_iterations=options.preview_iterations,
            preview_now=preview_now,
            initial_state=initial_state,
            keep_state=keep_state,
            depth_scales=depth_scales,
            noise_sigma=noise_sigma,
            code=None if code is None else torch.from_numpy(code)[None],
            fill=torch.from_numpy(fill_padded) if fill is not None else None,
        )
        result = yield from relay(run, _with_output_previews(to_output))
    return Restoration(
        image=to_output(result.image),
        task=options.task,
        iterations=result.iterations,
        stop_reason=result.stop_reason,
        elapsed=result.elapsed,
        settings=settings,
        seed=options.seed,
        device=str(device),
        threads=threads,
        best_iteration=result.best_iteration,
        backtracks=result.backtracks,
        precision=result.precision,
        state=result.state,
    )


def _with_output_previews(to_output):
    def convert(event: Progress) -> Progress:
        if event.preview is not None:
            event.preview = to_output(event.preview)
            event.output = to_output(event.output)
        return event

    return convert


def relay(run: Generator, convert=None) -> Generator:
    """Pass on ``run``'s events (through ``convert``, when given) and return its result; the
    inner run is closed however this one ends (a cancel is a ``close()`` from the caller)."""
    try:
        while True:
            try:
                event = next(run)
            except StopIteration as done:
                return done.value
            yield event if convert is None else convert(event)
    finally:
        run.close()
