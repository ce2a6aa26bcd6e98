"""Volumes restored whole by a 3D network (``volume=True``)."""

import numpy as np
import pytest
import torch

from napari_dip import restore, restore_iter
from napari_dip.core import consume
from napari_dip.core.networks import SkipNet, depth_scales_for

TINY3D = {"channels": 8, "scales": 2, "threads": 1, "compile": "off"}


@pytest.fixture
def stack() -> np.ndarray:
    """Six neighbouring 20×24 crops of the camera, like slices of a z-stack."""
    from skimage import data

    camera = data.camera().astype(np.float32) / 255
    return np.stack([camera[100 + 3 * k : 120 + 3 * k, 200:224] for k in range(6)])


def test_3d_network_ties_slices_together():
    # The point of a volume: a slice's output depends on its neighbours' inputs.
    net = SkipNet(4, 1, channels=8, scales=2, dims=3, depth_scales=1).eval()
    code = torch.rand(1, 4, 4, 16, 16, requires_grad=True)
    net(code)[0, 0, 1].sum().backward()
    per_slice = code.grad.abs().sum(dim=(0, 1, 3, 4))
    assert (per_slice > 0).all(), per_slice


def test_3d_network_keeps_the_volume_shape():
    net = SkipNet(4, 2, channels=8, scales=3, dims=3, depth_scales=depth_scales_for(6, 3))
    assert net.size_multiples == (2, 8, 8)
    assert net(torch.rand(1, 4, 6, 16, 24)).shape == (1, 2, 6, 16, 24)


@pytest.mark.parametrize(
    ("depth", "halvings"), [(1, 0), (2, 0), (3, 0), (4, 1), (6, 1), (8, 2), (10, 2), (16, 3), (33, 3), (64, 5)]
)
def test_depth_is_halved_while_two_slices_remain_and_padding_stays_small(depth, halvings):
    assert depth_scales_for(depth, 5) == halvings


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_volume_keeps_shape_dtype_and_is_reproducible(stack, dtype):
    scale = {np.float32: 1, np.uint8: 255, np.uint16: 4000}[dtype]
    volume = (stack * scale).astype(dtype)
    first = restore(volume, volume=True, iterations=4, **TINY3D)
    assert first.shape == volume.shape and first.dtype == volume.dtype
    np.testing.assert_array_equal(first, restore(volume, volume=True, iterations=4, **TINY3D))


def test_volume_with_channels(stack):
    rgb = np.repeat(stack[..., None], 3, axis=-1)
    assert restore(rgb, volume=True, iterations=2, **TINY3D).shape == rgb.shape
    channels_first = np.stack([stack, 1 - stack])
    out = restore(channels_first, volume=True, channel_axis=0, iterations=2, **TINY3D)
    assert out.shape == channels_first.shape


def test_volume_fit_lowers_the_loss(stack):
    # Not a quality claim (benchmarks/volume.py measures that), only that the 3D fit fits.
    events = []
    run = consume(restore_iter(stack, volume=True, iterations=60, preview_seconds=None, **TINY3D), events.append)
    assert run.iterations == 60 and len(events) == 60
    losses = [event.loss for event in events]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_volume_inpaints_a_whole_missing_slice(stack):
    # Plane by plane this is impossible (the mask would cover the whole plane); in 3D the
    # slice is filled from its neighbours.
    mask = np.zeros(stack.shape, bool)
    mask[2] = True
    observed = np.where(mask, 0, stack).astype(np.float32)
    out = restore(observed, "inpaint", mask=mask, volume=True, iterations=3, **TINY3D)
    assert out.shape == stack.shape
    np.testing.assert_array_equal(observed, np.where(mask, 0, stack))  # the input is untouched
    with pytest.raises(ValueError, match="whole image"):
        restore(observed[2], "inpaint", mask=mask[2], iterations=3, channels=8, scales=2)


@pytest.mark.parametrize(
    ("task", "extra"), [("sr", {"scale": 2}), ("jpeg", {}), ("deblur", {"psf": np.ones((3, 3)) / 9})]
)
def test_volume_refuses_plane_tasks_by_name(stack, task, extra):
    with pytest.raises(ValueError, match=f"task '{task}' is not available for volumes"):
        restore(stack, task, volume=True, iterations=2, **extra, **TINY3D)


def test_volume_input_errors_name_the_problem(stack):
    with pytest.raises(ValueError, match="three spatial axes"):
        restore(stack[0], volume=True, iterations=2, **TINY3D)
    with pytest.raises(ValueError, match="mask shape"):
        restore(stack, "inpaint", mask=np.ones(stack.shape[1:], bool), volume=True, iterations=2, **TINY3D)


def test_volume_too_big_for_memory_is_refused_before_fitting(monkeypatch):
    from napari_dip.core import fitting

    monkeypatch.setattr(fitting, "default_budget", lambda device, limit=None: 2**20)
    with pytest.raises(ValueError, match=r"needs about .* GiB to fit whole.*planes one by one"):
        restore(np.zeros((16, 64, 64), np.float32), volume=True, iterations=2, channels=8, scales=2)


@pytest.mark.parametrize("axes", [None, (1, 2)])
def test_compiled_form_of_3d_upsampling_equals_interpolate(axes, monkeypatch):
    # Under torch.compile the network upsamples by shifted sums along each doubled axis; for a
    # volume that must equal trilinear interpolation, also when the depth is kept (axes 1, 2).
    from napari_dip.core.networks import Upsample2x

    x = torch.randn(1, 2, 3, 5, 4, dtype=torch.float64)
    up = Upsample2x("bilinear", axes=axes)
    eager = up(x)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    torch.testing.assert_close(up(x), eager)
    factors = (2, 2, 2) if axes is None else (1, 2, 2)
    assert eager.shape[2:] == tuple(n * f for n, f in zip(x.shape[2:], factors, strict=True))
