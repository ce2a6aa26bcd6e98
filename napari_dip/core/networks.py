"""Generator networks f_θ, built by name from a small registry.

The default is the encoder-decoder with skip connections of the Deep Image Prior paper
(Ulyanov et al., CVPR 2018, supplementary material), laid out to match the official defaults:
stride-2 downsampling, reflection padding, BatchNorm + LeakyReLU, a 1×1 convolution after every
upsampling step and a sigmoid output. With 32 input channels, 5 scales of 128 channels, 4-channel
skips and 3 output channels it has 2,217,831 parameters.

The same network is built with 3D convolutions (``dims=3``) for volumes: a z-stack restored as
one object, whose prior then also ties neighbouring slices together. Microscopy stacks have few
slices, so only the first ``depth_scales`` levels halve the depth; the coarser ones halve height
and width alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SkipNet", "build_network", "NETWORKS", "count_parameters", "depth_scales_for"]

Stride = int | tuple[int, ...]

# Convolution, normalisation and reflection padding for 2D images and 3D volumes.
_LAYERS = {
    2: (nn.Conv2d, nn.BatchNorm2d, nn.ReflectionPad2d),
    3: (nn.Conv3d, nn.BatchNorm3d, nn.ReflectionPad3d),
}


def depth_scales_for(depth: int, scales: int, max_padding: float = 0.25) -> int:
    """How many levels of a 3D network halve a volume's ``depth``.

    As many as leave at least two slices at the coarsest of them (a 3×3×3 convolution with
    reflection padding needs two) without padding the depth, to a multiple of ``2 ** halvings``,
    by more than ``max_padding`` of it: padded slices cost as much as real ones.
    """
    best = 0
    for halvings in range(1, scales + 1):
        multiple = 2**halvings
        padded = -(-depth // multiple) * multiple
        if padded // multiple < 2:
            break
        if padded <= depth * (1 + max_padding):
            best = halvings
    return best


def _conv(
    in_ch: int, out_ch: int, kernel: int, stride: Stride = 1, pad: str = "reflection", dims: int = 2
) -> nn.Module:
    """A convolution that keeps the spatial size (divided by ``stride``)."""
    conv, _, reflection = _LAYERS[dims]
    padding = (kernel - 1) // 2
    if padding == 0:
        return conv(in_ch, out_ch, kernel, stride=stride)
    if pad == "reflection":
        return nn.Sequential(reflection(padding), conv(in_ch, out_ch, kernel, stride=stride))
    return conv(in_ch, out_ch, kernel, stride=stride, padding=padding)


def _conv_bn_act(
    in_ch: int, out_ch: int, kernel: int, stride: Stride = 1, pad: str = "reflection", dims: int = 2
) -> nn.Sequential:
    return nn.Sequential(
        _conv(in_ch, out_ch, kernel, stride, pad, dims),
        _LAYERS[dims][1](out_ch),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _Level(nn.Module):
    """One scale of the U: a skip branch and a deeper branch, joined and decoded.

    ``inner`` is the next (coarser) level, or ``None`` at the bottom. ``stride`` is how the
    deeper branch downsamples (2, or per axis, e.g. (1, 2, 2) to keep a volume's depth).
    """

    def __init__(
        self,
        in_ch: int,
        down_ch: int,
        up_ch: int,
        skip_ch: int,
        inner: _Level | None,
        inner_out_ch: int,
        upsample_mode: str,
        pad: str,
        kernel_down: int = 3,
        kernel_up: int = 3,
        dims: int = 2,
        stride: Stride = 2,
    ) -> None:
        super().__init__()
        self.skip = _conv_bn_act(in_ch, skip_ch, 1, pad=pad, dims=dims) if skip_ch else None
        deeper = [
            _conv_bn_act(in_ch, down_ch, kernel_down, stride=stride, pad=pad, dims=dims),
            _conv_bn_act(down_ch, down_ch, kernel_down, pad=pad, dims=dims),
        ]
        if inner is not None:
            deeper.append(inner)
        strides = (stride,) * dims if isinstance(stride, int) else tuple(stride)
        deeper.append(Upsample2x(upsample_mode, axes=tuple(axis for axis, s in enumerate(strides) if s == 2)))
        self.deeper = nn.Sequential(*deeper)
        joined = skip_ch + inner_out_ch
        self.join_norm = _LAYERS[dims][1](joined)
        self.decode = nn.Sequential(
            _conv_bn_act(joined, up_ch, kernel_up, pad=pad, dims=dims),
            _conv_bn_act(up_ch, up_ch, 1, pad=pad, dims=dims),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.deeper(x)
        if self.skip is not None:
            deep = torch.cat([self.skip(x), deep], dim=1)
        return self.decode(self.join_norm(deep))


class Upsample2x(nn.Module):
    """×2 upsampling, ``"bilinear"`` (align_corners=False; trilinear for volumes) or ``"nearest"``,
    along every spatial axis or only along ``axes`` (indices among the spatial axes).

    Under ``torch.compile`` bilinear upsampling is written as shifted sums (each new pixel is
    3/4 of its source pixel plus 1/4 of the neighbour on its side, edges clamped): the same
    values as ``F.interpolate``, but the compiler fuses it and its gradient with the
    surrounding normalisation, where its own gradient kernel is a slow scatter. Eager mode keeps
    ``F.interpolate``, which is faster there.
    """

    def __init__(self, mode: str = "bilinear", axes: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"unknown upsampling mode {mode!r}; choose bilinear or nearest")
        self.mode = mode
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.dim() - 2
        axes = range(spatial) if self.axes is None else self.axes
        factors = tuple(2 if axis in axes else 1 for axis in range(spatial))
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=factors, mode="nearest")
        if torch.compiler.is_compiling():
            for axis in axes:
                x = _bilinear_2x_along(x, axis + 2)
            return x
        mode = "bilinear" if spatial == 2 else "trilinear"
        return F.interpolate(x, scale_factor=factors, mode=mode, align_corners=False)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}" + (f", axes={self.axes}" if self.axes is not None else "")


def _bilinear_2x_along(x: torch.Tensor, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    shape = list(x.shape)
    shape[dim] = 2 * n
    centre = 0.75 * x
    return torch.stack([centre + 0.25 * before, centre + 0.25 * after], dim + 1).reshape(shape)


class SkipNet(nn.Module):
    """Encoder-decoder with skip connections (the DIP paper's "skip" architecture).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input code z and of the produced image.
    channels : int
        Width of every encoder and decoder level.
    scales : int
        Number of levels; the input's height and width must be divisible by ``2 ** scales``.
    skip_channels : int
        Channels of the 1×1 skip branch at each level (0 disables skips).
    upsample_mode : str
        ``"bilinear"`` (paper denoising/super-resolution) or ``"nearest"`` (paper inpainting).
    pad : str
        ``"reflection"`` (paper) or ``"zero"``.
    top_channels : int, optional
        Width of the finest level only (default: ``channels``). The finest level runs at full
        resolution and costs more than all coarser levels together, so narrowing it alone is the
        cheapest way to cut a step's work.
    dims : int
        2 for images (N, C, H, W), 3 for volumes (N, C, D, H, W).
    depth_scales : int, optional
        For volumes: how many of the finest levels also halve the depth (default: all); the
        depth must be divisible by ``2 ** depth_scales`` (:func:`depth_scales_for` picks it).
    """

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        *,
        channels: int = 128,
        scales: int = 5,
        skip_channels: int = 4,
        upsample_mode: str = "bilinear",
        pad: str = "reflection",
        top_channels: int | None = None,
        dims: int = 2,
        depth_scales: int | None = None,
    ) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be at least 1, got {scales}")
        if dims not in _LAYERS:
            raise ValueError(f"dims must be 2 (images) or 3 (volumes), got {dims}")
        self.scales = scales
        self.dims = dims
        self.depth_scales = scales if depth_scales is None or dims == 2 else min(depth_scales, scales)
        widths = [top_channels or channels] + [channels] * (scales - 1)
        inner: _Level | None = None
        # Build from the coarsest level outwards so each level can wrap the next one.
        for level in reversed(range(scales)):
            level_in = in_channels if level == 0 else widths[level - 1]
            inner = _Level(
                level_in,
                widths[level],
                widths[level],
                skip_channels,
                inner,
                widths[level + 1] if level + 1 < scales else widths[level],
                upsample_mode,
                pad,
                dims=dims,
                stride=2 if dims == 2 or level < self.depth_scales else (1, 2, 2),
            )
        self.body = inner
        self.head = nn.Sequential(_LAYERS[dims][0](widths[0], out_channels, 1), nn.Sigmoid())

    @property
    def size_multiples(self) -> tuple[int, ...]:
        """What each spatial size must be divisible by: (H, W) or (D, H, W)."""
        if self.dims == 2:
            return (2**self.scales,) * 2
        return (2**self.depth_scales, 2**self.scales, 2**self.scales)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


NETWORKS: dict[str, Callable[..., nn.Module]] = {"skip": SkipNet}


def build_network(name: str, **kwargs) -> nn.Module:
    """Build a registered network by name; ``kwargs`` are the constructor's arguments."""
    try:
        factory = NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}") from None
    return factory(**kwargs)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
