"""Network inversion: the image whose features in a torch network match those of a given image.

The paper's feature inversion, and activation maximisation: for a network φ and an image x0,
find x = f_θ(z) whose features φ_k(x) at a layer k match φ_k(x0), with the Deep Image Prior as
the only regulariser, or whose chosen unit is as active as it gets. It is the engine's one loop
with one more forward operator (:class:`~napari_dip.core.operators.InversionOperator`). Without
the prior (``prior="tv"`` or ``"none"``) the same loop optimises the pixels themselves, with or
without a total-variation penalty: the comparison the paper draws.

Networks are loaded without unpickling anything: a TorchScript file (``torch.jit.save``), or a
``module:function`` Python entry point that returns a module, optionally with a state dict read
with ``weights_only=True``.
"""

from __future__ import annotations

import importlib
import itertools
import math
import numbers
import os
import re
import time
import warnings
import zipfile
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .arrays import Intensity, check_finite, from_channels_first
from .device import choose_threads, select_device, torch_threads
from .engine import Progress, fit
from .fitting import check_image, relay
from .layout import Layout
from .operators import InversionOperator
from .options import DEVICE_NAMES, MAX_SEED
from .settings import Settings, as_whole_number

__all__ = [
    "PRIORS", "DEFAULT_TV_WEIGHT", "InversionOptions", "Inversion", "LayerFeatures", "PixelImage",
    "load_network", "layer_features", "invert_iter", "invert",
]

PRIORS = ("dip", "tv", "none")
# Weight of the mean per-pixel total variation against the relative feature error (both near 1
# at the start of a fit, the TV of a natural image in [0, 1] near 0.05-0.1).
DEFAULT_TV_WEIGHT = 0.05

# The DIP prior: the default preset's network; the last output (no averaging) is the result, as
# for the pixel priors, so the three are compared on the same footing.
_DIP_SETTINGS = Settings(
    iterations=1000, lr=0.01, reg_noise_std=1 / 30, channels=64, top_channels=32, ema=0.0,
    precision="float32", compile="off", auto_stop=False,
)
# Pixels optimised directly (through a sigmoid, in [0, 1] as the network's output): no code, no
# input noise, a larger step for parameters that are the pixels themselves.
_PIXEL_SETTINGS = replace(_DIP_SETTINGS, lr=0.05, reg_noise_std=0.0, input_depth=1)

_ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_MAX_LISTED = 40


# --- loading a network ---------------------------------------------------------------------------


def load_network(source: str | os.PathLike | nn.Module, *, weights: str | os.PathLike | None = None) -> nn.Module:
    """A torch module from a TorchScript file or a ``module:function`` entry point.

    Parameters
    ----------
    source : str, path or nn.Module
        A TorchScript file (``torch.jit.save(torch.jit.script(net), path)``); a Python entry
        point ``package.module:name`` whose ``name`` is a module or returns one when called with
        no arguments; or a module, used as it is.
    weights : str or path, optional
        A state dict (``torch.save(net.state_dict(), path)``) loaded into the module with
        ``weights_only=True``, so only tensors are read.

    Returns
    -------
    nn.Module
        On the CPU.
    """
    if isinstance(source, nn.Module):
        network = source
    else:
        text = os.fspath(source)
        path = Path(text)
        if path.is_file():
            network = _load_torchscript(path)
        elif _ENTRY_POINT.fullmatch(text):
            network = _load_entry_point(text)
        elif path.suffix or os.sep in text:
            raise FileNotFoundError(f"no such network file: {path}")
        else:
            raise ValueError(f"{text!r} is neither a TorchScript file nor a module:function entry point")
    if weights is not None:
        _load_weights(network, Path(weights))
    return network


def _load_torchscript(path: Path) -> nn.Module:
    try:
        # A TorchScript archive holds compiled code and tensors; its reader runs no Python pickle.
        # torch ≥ 2.10 deprecates the format for torch.export, but it is what users' networks come as.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception:
        raise ValueError(
            f"{path} is not a TorchScript file (write one with torch.jit.save(torch.jit.script(net), path)); "
            "for a state dict give its architecture as a module:function entry point and the file as weights"
        ) from None


def _load_entry_point(text: str) -> nn.Module:
    module_name, _, attribute = text.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module's own code raises on import
        raise ValueError(
            f"cannot import {module_name!r} for the network entry point {text!r}: {_first_line(error)}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"the network entry point {text!r} names {part!r}, which {module_name!r} does not have")
        target = getattr(target, part)
    if not isinstance(target, nn.Module) and callable(target):
        try:
            target = target()
        except Exception as error:
            raise ValueError(
                f"the network entry point {text!r} failed when called with no arguments ({_first_line(error)}); "
                "give a function that takes none and returns a torch module"
            ) from None
    if not isinstance(target, nn.Module):
        raise ValueError(f"the network entry point {text!r} gave a {type(target).__name__}, not a torch module")
    return target


def _load_weights(network: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    if _is_torchscript(path):
        raise ValueError(
            f"{path} is a TorchScript file, a whole network, not a state dict: give it as the network, without weights"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise ValueError(
            f"{path} is not a state dict that loads with weights_only=True (tensors only, no pickled Python objects)"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict (a mapping of names to tensors)")
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ValueError(f"the weights in {path} do not fit the network: {_state_dict_problem(error)}") from None


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with compiled code under ``*/code/``),
    told from its listing without reading any of it."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _state_dict_problem(error: BaseException) -> str:
    """The first problem ``load_state_dict`` lists (its first line is only a heading), and how
    many more there are."""
    lines = [line.strip().rstrip(".").strip() for line in str(error).splitlines() if line.strip()]
    if lines and lines[0].startswith("Error(s) in loading state_dict") and len(lines) > 1:
        lines = lines[1:]
    if not lines:
        return type(error).__name__
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return lines[0][:300] + more


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


def _last_line(error: BaseException) -> str:
    """The message of a (TorchScript) error without its traceback: its last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = lines[-1] if lines else type(error).__name__
    return re.sub(r"^\w*Error: ", "", line)[:300]


# --- a layer's features -----------------------------------------------------------------------------


class _LayerReached(BaseException):
    """Raised by the forward hook once the chosen layer has run: the rest of the network is not
    needed. A BaseException, so a network's own ``except Exception`` does not swallow it."""


def _is_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) or getattr(module, "original_name", None) == "Sequential"


def _chain_names(module: nn.Module, prefix: str = "") -> list[str]:
    """Names of the layers reached through Sequential containers from ``module``: the layers whose
    features can be computed by running the chain up to them (all a TorchScript network allows)."""
    names: list[str] = []
    if _is_sequential(module):
        for name, child in module.named_children():
            names.append(prefix + name)
            names += _chain_names(child, prefix + name + ".")
    return names


def _run_chain(module: nn.Module, parts: list[str], x: torch.Tensor) -> torch.Tensor:
    for name, child in module.named_children():
        if name == parts[0]:
            return child(x) if len(parts) == 1 else _run_chain(child, parts[1:], x)
        x = child(x)
    raise RuntimeError(f"layer {'.'.join(parts)!r} was not reached")


def _pick_output(output: Any, key: str | None) -> Any:
    if key is None:
        return output
    if isinstance(output, Mapping):
        return output[key]
    return output[int(key)]


def _output_keys(output: Any) -> list[str]:
    if isinstance(output, Mapping):
        return [str(key) for key in output]
    if isinstance(output, (tuple, list)):
        return [str(index) for index in range(len(output))]
    return []


class LayerFeatures(nn.Module):
    """A network cut at one layer: ``forward(x)`` is that layer's output. Made by
    :func:`layer_features`, which checks the layer exists."""

    def __init__(self, network: nn.Module, how: str, layer: str | None) -> None:
        super().__init__()
        self.network = network
        self._how = how
        self._layer = layer
        # In a tuple, so the layer is not registered a second time as a child of this module.
        self._hooked = (dict(network.named_modules())[layer],) if how == "hook" else ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._how == "hook":
            captured: list[Any] = []

            def capture(module, inputs, output):
                captured.append(output)
                raise _LayerReached

            handle = self._hooked[0].register_forward_hook(capture)
            try:
                self.network(x)
            except _LayerReached:
                pass
            finally:
                handle.remove()
            if not captured:
                raise ValueError(f"the network's forward never runs layer {self._layer!r}; choose another layer")
            return captured[0]
        if self._how == "chain":
            return _run_chain(self.network, self._layer.split("."), x)
        return _pick_output(self.network(x), self._layer)


def _names(network: nn.Module, output: Any) -> list[str]:
    scripted = isinstance(network, torch.jit.ScriptModule)
    modules = _chain_names(network) if scripted else [name for name, _ in network.named_modules() if name]
    return modules + [key for key in _output_keys(output) if key not in modules]


def _listing(names: list[str]) -> str:
    if not names:
        return "it has no named layers (give no layer to use its output)"
    shown = ", ".join(names[:_MAX_LISTED])
    return f"its layers: {shown}" + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def layer_features(network: nn.Module, layer: str | None, probe: torch.Tensor) -> tuple[LayerFeatures, torch.Tensor]:
    """The network cut at ``layer`` (``None``: its output) and that layer's features of ``probe``.

    A layer is a submodule's name (``"features.3"``; for TorchScript networks one reached
    through Sequential containers, as compiled code cannot be cut elsewhere) or a key of the
    network's output when it returns a dict or a tuple (``"0"``). An unknown name is answered with
    the names there are; a network that refuses ``probe`` with the reason.
    """
    channels, height, width = probe.shape[1:]

    def run(module: nn.Module) -> Any:
        try:
            with torch.no_grad():
                return module(probe)
        except RuntimeError as error:
            raise ValueError(
                f"the network refuses a {channels}-channel {width}×{height} image ({_last_line(error)}); "
                "give it an image with the channels and size it was made for"
            ) from None

    scripted = isinstance(network, torch.jit.ScriptModule)
    if layer is not None and not isinstance(layer, str):
        raise ValueError(f"the layer must be given by its name (a string), got {layer!r}")
    if layer is None:
        how = "output"
    elif not scripted and layer in dict(network.named_modules()) and layer:
        how = "hook"
    elif scripted and layer in _chain_names(network):
        how = "chain"
    else:
        output = run(network)
        if layer not in _output_keys(output):
            owner = _compiled_owner(network, layer) if scripted else None
            if owner is not None:
                raise ValueError(
                    f"layer {layer!r} is called from {owner}, compiled TorchScript code that cannot be cut there; "
                    f"{_listing(_names(network, output))}; or return the features from forward as a dict, or give "
                    "the network as a module:function entry point"
                )
            raise ValueError(f"the network has no layer {layer!r}; {_listing(_names(network, output))}")
        how = "output"
    features = LayerFeatures(network, how, layer)
    reference = run(features)
    if not isinstance(reference, torch.Tensor):
        keys = _output_keys(reference)
        what = f"several outputs ({', '.join(keys)}): choose one as the layer" if keys else (
            f"a {type(reference).__name__}, not a tensor: choose another layer")
        raise ValueError(f"{'the network' if layer is None else f'layer {layer!r}'} gives {what}")
    if reference.dim() < 1 or reference.shape[0] != 1:
        raise ValueError(f"layer {layer!r} gives features of shape {tuple(reference.shape)}, not one per image")
    return features, reference


def _compiled_owner(network: nn.Module, layer: str) -> str | None:
    """Which compiled forward (of a module that is not a Sequential) calls ``layer`` of a
    TorchScript network; ``None`` if it has no such layer."""
    if layer not in dict(network.named_modules()):
        return None
    parts = layer.split(".")
    module = network
    for depth, part in enumerate(parts):
        if not _is_sequential(module):
            return f"the forward of {'.'.join(parts[:depth])!r}" if depth else "the network's forward"
        module = getattr(module, part)
    return None


# --- the options ------------------------------------------------------------------------------------


def _check_unit(unit: Any) -> int | tuple[int, int, int] | None:
    if unit is None:
        return None
    if isinstance(unit, str):
        try:
            unit = [int(part) for part in unit.split(",")]
        except ValueError:
            raise ValueError(
                f"the unit must be a channel or channel,row,column of whole numbers, got {unit!r}"
            ) from None
        unit = unit[0] if len(unit) == 1 else tuple(unit)
    if isinstance(unit, numbers.Integral) and not isinstance(unit, bool):
        return as_whole_number(unit, "the unit's channel", 0)
    if isinstance(unit, (tuple, list)) and len(unit) == 3:
        return tuple(as_whole_number(v, "the unit's channel, row and column", 0) for v in unit)
    raise ValueError(f"the unit must be a channel (a whole number) or (channel, row, column), got {unit!r}")


@dataclass(frozen=True)
class InversionOptions:
    """How to invert a network: every choice, checked when it is made (one sentence per bad value).

    Parameters
    ----------
    layer : str, optional
        The layer whose features are matched (a submodule's name, or a key of the network's
        output); ``None``: the network's output.
    unit : int or (int, int, int), optional
        Activation maximisation instead of inversion: the channel of ``layer`` whose mean
        activation is raised, or (channel, row, column) of one unit of a feature map.
    prior : {"dip", "tv", "none"}
        ``"dip"``: x = f_θ(z), the Deep Image Prior; ``"tv"``: the pixels themselves with a
        total-variation penalty; ``"none"``: the pixels themselves.
    tv_weight : float, optional
        Weight of the mean total variation against the relative feature error (default
        :data:`DEFAULT_TV_WEIGHT` for ``"tv"``, 0 otherwise; ``"dip"`` may add one too).
    iterations, seed, device, threads, channel_axis, preview_seconds, preview_iterations
        As for :class:`~napari_dip.core.options.RestoreOptions`.
    advanced : dict
        Fields of :class:`~napari_dip.core.settings.Settings` (``lr``, ``channels``, ...).

    Examples
    --------
    >>> InversionOptions(layer="features.3", prior="tv").tv_weight
    0.05
    >>> InversionOptions(prior="none", tv_weight=0.1)
    Traceback (most recent call last):
    ...
    ValueError: prior 'none' has no penalty: use prior 'tv' for a total-variation weight
    """

    layer: str | None = None
    unit: Any = None
    prior: str = "dip"
    tv_weight: float | None = None
    iterations: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    channel_axis: int | None = None
    preview_seconds: float | None = 2.0
    preview_iterations: int | None = None
    advanced: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.layer is not None and (not isinstance(self.layer, str) or not self.layer):
            raise ValueError(f"the layer must be given by its name, got {self.layer!r}")
        set_(self, "unit", _check_unit(self.unit))
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; choose one of {', '.join(PRIORS)}")
        if self.tv_weight is None:
            set_(self, "tv_weight", DEFAULT_TV_WEIGHT if self.prior == "tv" else 0.0)
        if isinstance(self.tv_weight, bool) or not isinstance(self.tv_weight, numbers.Real) or not (
                math.isfinite(self.tv_weight) and self.tv_weight >= 0):
            raise ValueError(f"tv_weight must be a finite number ≥ 0, got {self.tv_weight!r}")
        set_(self, "tv_weight", float(self.tv_weight))
        if self.prior == "tv" and self.tv_weight == 0:
            raise ValueError("prior 'tv' needs a tv_weight above 0 (or use prior 'none')")
        if self.prior == "none" and self.tv_weight > 0:
            raise ValueError("prior 'none' has no penalty: use prior 'tv' for a total-variation weight")
        if self.iterations is not None:
            set_(self, "iterations", as_whole_number(self.iterations, "iterations", 1))
        set_(self, "seed", as_whole_number(self.seed, "seed", 0, MAX_SEED))
        if not isinstance(self.device, str) or self.device.lower().split(":")[0] not in DEVICE_NAMES:
            raise ValueError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICE_NAMES)}")
        if self.threads is not None:
            set_(self, "threads", as_whole_number(self.threads, "threads", 1))
        if self.preview_seconds is not None and (
            isinstance(self.preview_seconds, bool) or not isinstance(self.preview_seconds, numbers.Real)
            or not math.isfinite(self.preview_seconds) or self.preview_seconds < 0
        ):
            raise ValueError(f"preview_seconds must be a number of seconds ≥ 0 or None, got {self.preview_seconds!r}")
        if self.preview_iterations is not None:
            set_(self, "preview_iterations", as_whole_number(self.preview_iterations, "preview_iterations", 1))
        if not isinstance(self.advanced, dict):
            raise ValueError(f"advanced must be a dict of Settings fields, got {type(self.advanced).__name__}")
        base = _DIP_SETTINGS if self.prior == "dip" else _PIXEL_SETTINGS
        changes = {name: value for name, value in self.advanced.items() if value is not None}
        if self.iterations is not None:
            changes["iterations"] = self.iterations
        if changes.get("stretch"):
            raise ValueError("stretch is not available for network inversion (the image is compared "
                             "with the network's own input range): leave it out")
        set_(self, "_settings", base.updated(**changes))

    @property
    def settings(self) -> Settings:
        """The prior's settings with ``iterations`` and ``advanced`` applied."""
        return self._settings

    @classmethod
    def from_kwargs(cls, **kwargs) -> InversionOptions:
        """From :func:`invert`'s keywords: Settings fields go to ``advanced``."""
        names = {f.name for f in fields(cls)}
        advanced = dict(kwargs.pop("advanced", None) or {})
        advanced.update({name: kwargs.pop(name) for name in list(kwargs) if name not in names})
        return cls(advanced=advanced, **kwargs)


# --- the fit ----------------------------------------------------------------------------------------


class PixelImage(nn.Module):
    """The pixels as the parameters (priors ``"tv"`` and ``"none"``): the input code is ignored.

    The image is the sigmoid of the parameters, so it stays in [0, 1] as the DIP network's
    output does; it starts as faint noise around mid-grey.
    """

    def __init__(self, channels: int, shape: tuple[int, ...], seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(0.1 * torch.randn((1, channels, *shape), generator=generator))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits)


@dataclass
class Inversion:
    """A finished inversion: the image (the input's dtype, range and layout) and how it ran.

    ``feature_error`` is ‖φ(x) − φ(x0)‖ / ‖φ(x0)‖ at the layer; for activation maximisation
    ``activation`` is the unit's activation of the result and ``reference_activation`` that of
    the given image.
    """

    image: np.ndarray
    layer: str | None
    unit: int | tuple[int, int, int] | None
    prior: str
    iterations: int
    elapsed: float
    loss: float
    settings: Settings
    seed: int
    device: str
    threads: int
    tv_weight: float = 0.0
    feature_error: float | None = None
    activation: float | None = None
    reference_activation: float | None = None

    def metadata(self) -> dict[str, Any]:
        values = {
            "task": "invert", "layer": self.layer,
            "unit": list(self.unit) if isinstance(self.unit, tuple) else self.unit,
            "prior": self.prior, "tv_weight": self.tv_weight, "iterations": self.iterations,
            "elapsed_seconds": round(self.elapsed, 3), "loss": self.loss, "seed": self.seed, "device": self.device,
            "threads": self.threads, "settings": self.settings.as_dict(),
        }
        for name in ("feature_error", "activation", "reference_activation"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        return values


@contextmanager
def _borrowed(network: nn.Module) -> Iterator[nn.Module]:
    """Lend ``network`` to an inversion, which puts it in eval mode, freezes its parameters and
    moves it to the fit's device; afterwards every module's training flag, every parameter's
    ``requires_grad`` and (where all its tensors were on one device) its device are restored."""
    modes = [(module, module.training) for module in network.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in network.parameters()]
    devices = {tensor.device for tensor in itertools.chain(network.parameters(), network.buffers())}
    try:
        yield network
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode
        now = {tensor.device for tensor in itertools.chain(network.parameters(), network.buffers())}
        if len(devices) == 1 and now != devices:
            network.to(next(iter(devices)))


def invert_iter(
    image: Any,
    network: str | os.PathLike | nn.Module,
    *,
    weights: str | os.PathLike | None = None,
    options: InversionOptions | None = None,
    **kwargs,
) -> Generator[Progress, None, Inversion]:
    """Generator form of :func:`invert`: yields a :class:`~napari_dip.core.engine.Progress` per
    step (previews in the input's dtype, range and layout), returns an :class:`Inversion`."""
    if options is None:
        options = InversionOptions.from_kwargs(**kwargs)
    elif kwargs:
        raise TypeError(f"give either options or keywords, not both: {', '.join(kwargs)}")
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    image = np.asarray(image)
    check_image(image)
    layout = Layout.of(image.shape, options.channel_axis)
    if layout.plane_axes:
        raise ValueError(
            f"network inversion takes one image (a plane, with or without channels), not shape {image.shape}"
        )
    chw = layout.to_channels_first(image)
    check_finite(chw)
    channels, height, width = chw.shape
    if height < 2 or width < 2:
        raise ValueError(f"the image is too small to invert ({width}×{height}): give at least 2×2 pixels")
    intensity = Intensity.of(chw)
    network = load_network(network, weights=weights)
    # The caller's module comes back as it was: its modes, requires_grad flags and device.
    with _borrowed(network):
        device = select_device(options.device)
        network = network.to(device).eval()
        settings = options.settings
        reference_image = torch.from_numpy(intensity.to_unit(chw))[None].to(device)
        features, reference = layer_features(network, options.layer, reference_image)
        unit = options.unit
        if unit is not None:
            _check_unit_fits(unit, reference, options.layer)
        operator = InversionOperator(features, reference, (height, width), channels, tv_weight=options.tv_weight,
                                     unit=unit)
        if options.prior == "dip":
            multiple = 2**settings.scales
            out_shape = tuple(max(-(-n // multiple), 2) * multiple for n in (height, width))
            pixels = None
        else:
            out_shape = (height, width)
            pixels = PixelImage(channels, out_shape, options.seed)

        def to_output(unit_chw: np.ndarray) -> np.ndarray:
            return from_channels_first(intensity.from_unit(unit_chw[:, :height, :width]), layout.channel_axis)

        def convert(event: Progress) -> Progress:
            if event.preview is not None:
                event.preview, event.output = to_output(event.preview), to_output(event.output)
            return event

        threads = choose_threads(math.prod(out_shape), options.threads)
        start = time.perf_counter()
        last_loss = math.nan

        def remember(event: Progress) -> Progress:
            nonlocal last_loss
            last_loss = event.loss
            return convert(event)

        with torch_threads(threads):
            run = fit(operator.target, operator, settings, out_channels=channels, out_shape=out_shape,
                      seed=options.seed, device=device, preview_seconds=options.preview_seconds,
                      preview_iterations=options.preview_iterations, network=pixels)
            result = yield from relay(run, remember)
            found = torch.from_numpy(result.image[:, :height, :width])[None].to(device)
            with torch.no_grad():
                phi = features(found)
                error = float((phi - reference).norm() / reference.norm().clamp_min(1e-12))
                activation = float(operator.activation(phi)) if unit is not None else None
                reference_activation = float(operator.activation(reference)) if unit is not None else None
        return Inversion(
            image=to_output(result.image), layer=options.layer, unit=unit, prior=options.prior,
            iterations=result.iterations, elapsed=time.perf_counter() - start, loss=last_loss, settings=settings,
            seed=options.seed, device=str(device), threads=threads, tv_weight=options.tv_weight,
            feature_error=None if unit is not None else error, activation=activation,
            reference_activation=reference_activation,
        )


def _check_unit_fits(unit: int | tuple[int, int, int], reference: torch.Tensor, layer: str | None) -> None:
    where = "the network's output" if layer is None else f"layer {layer!r}"
    shape = tuple(reference.shape[1:])
    if not shape:
        raise ValueError(f"{where} gives one value per image: it has no units to choose from")
    if isinstance(unit, tuple):
        if len(shape) != 3 or any(u >= n for u, n in zip(unit, shape, strict=True)):
            raise ValueError(f"unit {unit} is outside {where}, whose features have shape {shape}")
    elif unit >= shape[0]:
        raise ValueError(f"unit {unit} is outside {where}, which has {shape[0]} channels (0 to {shape[0] - 1})")


def invert(
    image: Any,
    network: str | os.PathLike | nn.Module,
    *,
    layer: str | None = None,
    progress: bool | Callable[[Progress], Any] | None = None,
    **kwargs,
) -> np.ndarray:
    """The image whose features at ``layer`` of ``network`` match those of ``image``.

    Parameters
    ----------
    image : ndarray
        (H, W) grayscale or (H, W, 3|4) colour (or channels at ``channel_axis``), any dtype and
        range: the network sees it as float32 in [0, 1], channels first, one image per batch.
    network : str, path or nn.Module
        A TorchScript file, a ``module:function`` entry point or a module (see
        :func:`load_network`); put in eval mode, frozen, and moved to ``device``.
    layer : str, optional
        Whose features are matched; ``None``: the network's output.
    progress : bool or callable, optional
        True shows a tqdm bar; a callable receives every event.
    **kwargs
        ``weights`` (a state dict file) and the fields of :class:`InversionOptions`: ``unit``
        (maximise that unit's activation instead), ``prior`` ("dip", "tv", "none"),
        ``tv_weight``, ``iterations``, ``seed``, ``device``, ``threads``, ``channel_axis``, and
        :class:`~napari_dip.core.settings.Settings` fields (``lr``, ``channels``, ...).

    Returns
    -------
    ndarray
        The inverted image, with the input's shape, dtype and range.

    Examples
    --------
    >>> import numpy as np, torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    >>> image = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    >>> invert(image, net, layer="1", iterations=3, channels=8, scales=2, threads=1).shape
    (16, 16)
    """
    from .api import consume

    kwargs.setdefault("preview_seconds", None)
    return consume(invert_iter(image, network, layer=layer, **kwargs), progress).image
