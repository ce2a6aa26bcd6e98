"""Forward operators A: what the observation would look like if the network's image were true.

Every task is the same fit of ``A(f(z))`` to the observation; only ``A`` changes. Operators are
``nn.Module`` s so that their buffers (masks, kernels) follow ``.to(device)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ForwardOperator",
    "IdentityOperator",
    "InpaintOperator",
    "DownsampleOperator",
    "BlurOperator",
    "FeatureOperator",
    "InversionOperator",
    "lanczos2_kernel",
]


class ForwardOperator(nn.Module):
    """Maps an image at the network's resolution to the observation's space. Which observed
    pixels count in the loss (padding, pixels to inpaint) is the engine's ``known`` mask."""


class IdentityOperator(ForwardOperator):
    """Denoising and JPEG artifact removal: the observation is the image itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class InpaintOperator(ForwardOperator):
    """Inpainting: only the known pixels are observed.

    Parameters
    ----------
    fill : (H, W) bool array
        True where the pixel is missing and must be filled.
    """

    def __init__(self, fill: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("_known", torch.from_numpy(~np.asarray(fill, dtype=bool)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Missing pixels are excluded from the loss by ``known``; the product keeps A linear
        # and makes the operator meaningful on its own.
        return x * self._known.to(x.dtype)


def lanczos2_kernel(factor: int) -> np.ndarray:
    """The 2D Lanczos2 anti-aliasing kernel used by the DIP paper for ×``factor`` downsampling.

    Taps at ``k / factor`` from the kernel's centre over the Lanczos2 support (±2 low-resolution
    pixels), normalised to sum 1. For an even factor the centre falls between two pixels (size
    ``4 * factor``), for an odd one on a pixel (size ``4 * factor - 1``): either way a
    low-resolution pixel is centred on its block of ``factor`` high-resolution pixels, the
    convention of PIL, OpenCV and scikit-image resizing.
    """
    size = 4 * factor if factor % 2 == 0 else 4 * factor - 1
    taps = (np.arange(size) - (size - 1) / 2) / factor
    weights = np.sinc(taps) * np.sinc(taps / 2)
    kernel = np.outer(weights, weights)
    return kernel / kernel.sum()


class _DepthwiseConv(ForwardOperator):
    """Shared machinery: convolve every channel with one 2D kernel, replicate-padded."""

    def __init__(self, kernel: np.ndarray, stride: int) -> None:
        super().__init__()
        kernel = np.asarray(kernel, dtype=np.float32)
        self.register_buffer("_kernel", torch.from_numpy(kernel.copy())[None, None])
        kh, kw = kernel.shape
        if stride == 1:
            # Odd kernels are centred; even ones are centred to within half a pixel.
            self._pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)
        else:
            # Output pixel j is centred on input pixel stride * j + (stride - 1) / 2 (the
            # middle of its block): (k - stride) / 2 padding on each side does that for a
            # kernel of size k with k - stride even, and keeps exactly size / stride outputs.
            if (kw - stride) % 2 or (kh - stride) % 2:
                raise ValueError(f"a {kh}×{kw} kernel cannot be centred on blocks of {stride} pixels")
            self._pad = ((kw - stride) // 2,) * 2 + ((kh - stride) // 2,) * 2
        self._stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self._kernel.to(x.dtype).expand(channels, 1, -1, -1)
        padded = F.pad(x, self._pad, mode="replicate")
        return F.conv2d(padded, weight, stride=self._stride, groups=channels)


class DownsampleOperator(_DepthwiseConv):
    """Super-resolution: Lanczos2 blur, then keep every ``factor``-th pixel."""

    def __init__(self, factor: int) -> None:
        if factor < 2:
            raise ValueError(f"super-resolution scale must be at least 2, got {factor}")
        super().__init__(lanczos2_kernel(factor), stride=factor)


class BlurOperator(_DepthwiseConv):
    """Deblurring: convolution with a known point-spread function (normalised to sum 1)."""

    def __init__(self, psf: np.ndarray) -> None:
        psf = np.asarray(psf, dtype=np.float64)
        if psf.ndim != 2:
            raise ValueError(f"the PSF must be a 2D array, got shape {psf.shape}")
        if not np.all(np.isfinite(psf)) or np.any(psf < 0) or psf.sum() <= 0:
            raise ValueError("the PSF must be finite, non-negative and not all zero")
        super().__init__(psf / psf.sum(), stride=1)


class FeatureOperator(ForwardOperator):
    """Network inversion: the observation is ``features(image)`` for a user-given torch module.

    The module's parameters are frozen; the result is an image whose features match.
    """

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class InversionOperator(ForwardOperator):
    """Network inversion as one mean-squared data term, the engine's only loss.

    ``features`` maps a (1, C, h, w) image in [0, 1] to a layer's features; ``reference`` is that
    layer's features of the image to invert. The network's image is cropped to ``spatial`` first
    (the DIP network draws a padded canvas). The output is one flat vector whose mean squared
    difference to :attr:`target` is

        mean((φ(x) − φ(x0))²) / s²  +  tv_weight · mean(TV(x))

    with s the root mean square of φ(x0), so that a weight means the same at every layer, and TV
    the isotropic total variation of each pixel. With ``unit`` (activation maximisation: a
    channel, or (channel, row, column) of a feature map) the first part is ``CEILING − a(x)/s``
    instead: linear in the unit's activation a (its mean over the map for a channel), so
    minimising it raises the activation at a constant rate whatever its value.
    """

    CEILING = 1e4

    def __init__(
        self,
        features: nn.Module,
        reference: torch.Tensor,
        spatial: tuple[int, int],
        channels: int,
        *,
        tv_weight: float = 0.0,
        unit: int | tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        reference = reference.detach().float()
        scale = float(reference.square().mean().sqrt())
        self._scale = scale if math.isfinite(scale) and scale > 0 else 1.0
        self._spatial = tuple(spatial)
        self._unit = unit
        self._tv_weight = float(tv_weight)
        data = 1 if unit is not None else reference.numel()
        tv = channels * (spatial[0] - 1) * (spatial[1] - 1) if tv_weight > 0 else 0
        total = data + tv
        # Each part's squares are scaled so that the mean over the whole vector is the sum of
        # the parts' own means.
        self._data_gain = math.sqrt(total / data)
        self._tv_gain = total / tv if tv else 0.0
        target = torch.zeros(1, total)
        if unit is None:
            target[0, :data] = reference.reshape(-1) / self._scale * self._data_gain
        self.register_buffer("target", target)

    def activation(self, features: torch.Tensor) -> torch.Tensor:
        """The chosen unit's activation in a layer's features (one value)."""
        unit = self._unit
        if isinstance(unit, tuple):
            return features[(0, *unit)]
        return features[0, unit].mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[(slice(None), slice(None), *(slice(0, n) for n in self._spatial))]
        phi = self.features(x)
        if self._unit is None:
            parts = [phi.reshape(1, -1) / self._scale * self._data_gain]
        else:
            below = self.CEILING - self.activation(phi) / self._scale
            parts = [below.clamp_min(1e-12).sqrt().reshape(1, 1) * self._data_gain]
        if self._tv_gain:
            dx = x[..., :-1, 1:] - x[..., :-1, :-1]
            dy = x[..., 1:, :-1] - x[..., :-1, :-1]
            variation = (dx.square() + dy.square() + 1e-8).sqrt()
            parts.append((variation.reshape(1, -1) * (self._tv_weight * self._tv_gain)).sqrt())
        return torch.cat(parts, dim=1)


def psf_gaussian(sigma: float, size: int | None = None) -> np.ndarray:
    """A normalised 2D Gaussian PSF, for tests, benchmarks and the command line."""
    size = size or 2 * math.ceil(3 * sigma) + 1
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return k / k.sum()
