"""The widget's pure rules (no Qt, no viewer): what goes in, and the layer that comes out."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dip._layer_data import (
    contrast_limits_for,
    fill_mask,
    mask_score,
    new_mask_name,
    result_layer_data,
    result_name,
    result_placement,
    select_input,
    select_stack,
    stack_mask,
)
from napari_dip._sample_data import damaged_sample, low_resolution_sample, noisy_sample


def test_select_input_copies_a_2d_image():
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    selection = select_input(data, rgb=False)
    assert selection.image.shape == (3, 4) and selection.channel_axis is None and selection.plane == {}
    selection.image[0, 0] = 99
    assert data[0, 0] == 0  # the worker's array never shares memory with the layer


def test_select_input_takes_the_displayed_plane_of_a_stack():
    data = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    selection = select_input(data, rgb=False, step=(1, 7, 0, 0))  # 7 is past the end: clipped
    np.testing.assert_array_equal(selection.image, data[1, 2])
    assert selection.plane == {0: 1, 1: 2}
    assert selection.kept_axes == (2, 3)
    assert selection.output_shape(4) == (16, 20)


def test_select_input_keeps_a_channel_axis_and_rgb():
    data = np.zeros((5, 2, 8, 9))
    selection = select_input(data, rgb=False, step=(3, 0, 0, 0), channel_axis=1)
    assert selection.image.shape == (2, 8, 9) and selection.channel_axis == 0
    assert selection.plane == {0: 3} and selection.kept_axes == (1, 2, 3)
    assert selection.output_shape(2) == (2, 16, 18)

    rgb = np.zeros((4, 8, 9, 3), dtype=np.uint8)
    selection = select_input(rgb, rgb=True, step=(2, 0, 0))
    assert selection.image.shape == (8, 9, 3) and selection.channel_axis is None
    assert selection.kept_axes == (1, 2, 3)
    assert selection.output_shape(2) == (16, 18, 3)


@pytest.mark.parametrize(
    ("shape", "rgb", "channel_axis", "message"),
    [
        ((8, 9, 3), True, 0, "already has its channels last"),
        ((2, 8, 9), False, 2, "not one of the image's leading axes"),
        ((8,), False, None, "at least two spatial dimensions"),
    ],
)
def test_select_input_rejects_impossible_choices(shape, rgb, channel_axis, message):
    with pytest.raises(ValueError, match=message):
        select_input(np.zeros(shape), rgb=rgb, step=(0,) * len(shape), channel_axis=channel_axis)


def test_fill_mask_from_a_2d_labels_layer_for_rgb():
    image = np.zeros((8, 9, 3), dtype=np.uint8)
    labels = np.zeros((8, 9), dtype=np.int32)
    labels[2, 3] = 4
    labels[5, 5] = -1  # not a painted label
    mask = fill_mask(labels, image_shape=image.shape, rgb=True, selection=select_input(image, rgb=True))
    assert mask.dtype == bool and mask.sum() == 1 and mask[2, 3]


def test_fill_mask_from_a_stack_of_labels_takes_the_same_plane():
    image = np.zeros((3, 8, 9))
    labels = np.zeros((3, 8, 9), dtype=np.uint8)
    labels[1, 4, 4] = 1
    labels[2, 0, 0] = 1
    selection = select_input(image, rgb=False, step=(1, 0, 0))
    mask = fill_mask(labels, image_shape=image.shape, rgb=False, selection=selection)
    assert mask.shape == (8, 9) and mask.sum() == 1 and mask[4, 4]


def test_fill_mask_painted_in_any_channel_fills_all_channels():
    image = np.zeros((2, 8, 9))
    labels = np.zeros((2, 8, 9), dtype=np.uint8)
    labels[0, 1, 1] = 1
    labels[1, 2, 2] = 1
    selection = select_input(image, rgb=False, channel_axis=0)
    mask = fill_mask(labels, image_shape=image.shape, rgb=False, selection=selection)
    assert mask.shape == (8, 9) and mask[1, 1] and mask[2, 2] and mask.sum() == 2


def test_fill_mask_names_the_shapes_when_they_do_not_match():
    image = np.zeros((3, 8, 9))
    selection = select_input(image, rgb=False, step=(0, 0, 0))
    with pytest.raises(ValueError, match=r"mask shape \(4, 4\) does not match.*\(8, 9\) or \(3, 8, 9\)"):
        fill_mask(np.ones((4, 4)), image_shape=image.shape, rgb=False, selection=selection)
    with pytest.raises(ValueError, match="the mask is empty"):
        fill_mask(np.zeros((8, 9)), image_shape=image.shape, rgb=False, selection=selection)


def test_select_stack_copies_the_whole_stack_and_names_its_channels_for_the_core():
    data = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    selection = select_stack(data, rgb=False)
    assert selection.channel_axis is None and selection.plane == {} and selection.kept_axes == (0, 1, 2, 3)
    selection.image[0, 0, 0, 0] = 99
    assert data[0, 0, 0, 0] == 0  # the worker's array never shares memory with the layer
    assert select_stack(data, rgb=False, channel_axis=1).channel_axis == 1
    rgb = np.zeros((4, 8, 9, 3), dtype=np.uint8)
    selection = select_stack(rgb, rgb=True)
    assert selection.channel_axis == -1 and selection.kept_axes == (0, 1, 2, 3)


def test_select_stack_needs_planes():
    with pytest.raises(ValueError, match="no planes beyond its channels"):
        select_stack(np.zeros((2, 8, 9)), rgb=False, channel_axis=0)
    with pytest.raises(ValueError, match="no planes"):
        select_stack(np.zeros((8, 9, 3)), rgb=True)


def test_stack_mask_from_a_2d_layer_is_shared_by_all_planes():
    image = np.zeros((3, 8, 9))
    labels = np.zeros((8, 9), dtype=np.uint8)
    labels[2, 3] = 1
    mask = stack_mask(labels, image_shape=image.shape, rgb=False, selection=select_stack(image, rgb=False))
    assert mask.shape == (8, 9) and mask.sum() == 1
    with pytest.raises(ValueError, match="the mask is empty"):
        stack_mask(labels * 0, image_shape=image.shape, rgb=False, selection=select_stack(image, rgb=False))


def test_stack_mask_per_plane_drops_the_channel_axis_and_wants_every_plane_painted():
    image = np.zeros((3, 2, 8, 9))  # (Z, C, Y, X) with channels at axis 1
    labels = np.zeros((3, 2, 8, 9), dtype=np.uint8)
    labels[:, 0, 1, 1] = 1
    labels[0, 1, 2, 2] = 1
    selection = select_stack(image, rgb=False, channel_axis=1)
    mask = stack_mask(labels, image_shape=image.shape, rgb=False, selection=selection)
    assert mask.shape == (3, 8, 9) and mask[:, 1, 1].all() and mask[0, 2, 2] and mask.sum() == 4

    labels[1:] = 0
    with pytest.raises(ValueError, match=r"empty on 2 of 3 planes \(first: plane 0=1\)"):
        stack_mask(labels, image_shape=image.shape, rgb=False, selection=selection)
    with pytest.raises(ValueError, match=r"mask shape \(4, 4\) does not match"):
        stack_mask(np.ones((4, 4)), image_shape=image.shape, rgb=False, selection=selection)


def test_result_name():
    assert result_name("cells", "denoise") == "cells (DIP denoise)"
    assert result_name("cells", "sr", 4) == "cells (DIP sr ×4)"
    assert result_name("stack", "inpaint", plane={0: 5, 1: 2}) == "stack (DIP inpaint, plane 0=5 1=2)"


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_super_resolution_placement_covers_the_same_extent(factor):
    scale, translate = (3.0, 0.5, 2.0), (7.0, 1.0, -4.0)
    out_scale, out_translate = result_placement(scale, translate, factor)
    assert out_scale[0] == 3.0 and out_translate[0] == 7.0  # non-spatial axes untouched
    n = 10
    for axis in (1, 2):
        # Outer pixel edges of n input pixels and of the n * factor output pixels coincide.
        first_edge = translate[axis] - scale[axis] / 2
        last_edge = translate[axis] + (n - 0.5) * scale[axis]
        assert out_scale[axis] == pytest.approx(scale[axis] / factor)
        assert out_translate[axis] - out_scale[axis] / 2 == pytest.approx(first_edge)
        assert out_translate[axis] + (n * factor - 0.5) * out_scale[axis] == pytest.approx(last_edge)
    # The first output pixel's centre moves by (1/s - 1)/2 input pixels.
    assert out_translate[1] == pytest.approx(translate[1] + (1 / factor - 1) / 2 * scale[1])


def test_contrast_limits_follow_the_dtype():
    assert contrast_limits_for(np.array([3, 9], dtype=np.uint8)) == (0, 255)
    assert contrast_limits_for(np.array([0.2, 0.4], dtype=np.float32)) == (0, 1)
    assert contrast_limits_for(np.array([False, True])) == (0, 1)
    assert contrast_limits_for(np.array([100, 4000], dtype=np.uint16)) == (100, 4000)
    assert contrast_limits_for(np.array([100, 4000], dtype=np.uint16), reference=(0, 5000)) == (0, 5000)
    assert contrast_limits_for(np.array([-2.0, 5.0])) == (-2, 5)
    assert contrast_limits_for(np.array([7, 7], dtype=np.int16)) == (7, 8)


def test_result_layer_data_is_a_layer_data_tuple():
    image = np.zeros((16, 18, 3), dtype=np.uint8)
    data, meta, kind = result_layer_data(
        image, name="cat (DIP sr ×2)", scale=(1.0, 1.0), translate=(0.0, 0.0), factor=2, rgb=True,
        colormap="gray", metadata={"task": "sr"},
    )
    assert kind == "image" and data is image
    assert meta["name"] == "cat (DIP sr ×2)" and meta["rgb"] is True
    assert meta["scale"] == (0.5, 0.5) and meta["translate"] == (-0.25, -0.25)
    assert meta["contrast_limits"] == (0, 255) and meta["metadata"] == {"task": "sr"}
    assert "colormap" not in meta  # RGB layers have none

    _, meta, _ = result_layer_data(np.zeros((4, 4), np.float32), name="x", scale=(2, 2), translate=(1, 1),
                                   colormap="magenta")
    assert meta["colormap"] == "magenta" and meta["scale"] == (2, 2)

    with pytest.raises(ValueError, match="one value per non-RGB axis"):
        result_layer_data(np.zeros((4, 4)), name="x", scale=(1, 1, 1), translate=(0, 0, 0))


def test_sample_data():
    (noisy, meta, kind), = noisy_sample(size=32)
    assert noisy.shape == (32, 32, 3) and noisy.dtype == np.uint8 and kind == "image"
    (damaged, _, _), (mask, mask_meta, mask_kind) = damaged_sample(size=48)
    assert mask_kind == "labels" and mask.shape == damaged.shape == (48, 48)
    assert 0.02 < (mask > 0).mean() < 0.4 and (damaged[mask > 0] == 255).all()
    (low, _, _), = low_resolution_sample(size=128)
    assert low.shape == (32, 32, 3)


def test_volume_keeps_the_depth_and_puts_channels_first():
    from napari_dip._layer_data import select_volume, volume_mask

    data = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)  # T, Z, C, Y, X
    selection = select_volume(data, rgb=False, step=[1, 0, 0], channel_axis=2)
    assert selection.image.shape == (4, 3, 5, 6) and selection.channel_axis == 0
    np.testing.assert_array_equal(selection.image, np.moveaxis(data[1], 1, 0))
    assert selection.plane == {0: 1} and selection.kept_axes == (2, 1, 3, 4)
    labels = np.zeros(data.shape, np.uint8)
    labels[1, 2, 3, 1, 1] = 1  # painted on one channel: fills that voxel in all
    mask = volume_mask(labels, image_shape=data.shape, rgb=False, selection=selection)
    assert mask.shape == (3, 5, 6) and np.argwhere(mask).tolist() == [[2, 1, 1]]
    flat = volume_mask(np.eye(5, 6), image_shape=data.shape, rgb=False, selection=selection)
    assert flat.shape == (3, 5, 6) and (flat == np.eye(5, 6, dtype=bool)).all()
    with pytest.raises(ValueError, match="no depth axis"):
        select_volume(np.zeros((4, 5, 6)), rgb=False, channel_axis=0)
    with pytest.raises(ValueError, match="mask is empty"):
        volume_mask(np.zeros((5, 6)), image_shape=data.shape, rgb=False, selection=selection)


def test_new_mask_name_numbers_taken_names():
    assert new_mask_name("cells", ["cells"]) == "cells mask"
    assert new_mask_name("cells", ["cells", "cells mask"]) == "cells mask 2"
    assert new_mask_name("cells", ["cells mask", "cells mask 2"]) == "cells mask 3"


def test_mask_score_prefers_the_images_own_mask_and_never_another_images():
    images = ["damaged camera", "noisy astronaut", "noisy astronaut 2"]

    def score(labels_name, labels_shape, image_name, image_shape=(256, 256), rgb=False):
        return mask_score(labels_name, labels_shape, image_name, image_shape, rgb=rgb, image_names=images)

    assert score("damaged camera mask", (256, 256), "damaged camera") == (True, True)
    # Same size, but named after the camera: never the astronaut's.
    assert score("damaged camera mask", (256, 256), "noisy astronaut", (256, 256, 3), rgb=True) is None
    assert score("holes", (256, 256), "noisy astronaut", (256, 256, 3), rgb=True) == (False, True)
    assert score("holes", (16, 16), "noisy astronaut", (256, 256, 3), rgb=True) == (False, False)
    # The longest image name a mask's name starts with is its image.
    assert score("noisy astronaut 2 mask", (256, 256), "noisy astronaut") is None
    assert score("noisy astronaut 2 mask", (256, 256), "noisy astronaut 2") == (True, True)
    # A stack's mask: its spatial shape, or one per plane.
    assert score("stack mask", (4, 32, 32), "stack", (4, 32, 32)) == (False, True)
    assert score("stack mask", (32, 32), "stack", (4, 32, 32)) == (False, True)


def test_region_takes_the_pixels_whose_centres_the_rectangle_holds():
    from napari_dip._layer_data import Region

    region = Region.around([[2.5, 3.0], [10.0, 12.2]], (40, 30))
    assert region == Region((3, 11), (3, 13)) and region.shape == (8, 10)
    # A rectangle along the pixel edges holds exactly those pixels; beyond the image is clipped.
    assert Region.around([[-0.5, -0.5], [39.5, 29.5]], (40, 30)).covers((40, 30))
    assert Region.around([[-20, 20], [50, 80]], (40, 30)) == Region((0, 40), (20, 30))
    data = np.arange(40 * 30 * 3).reshape(40, 30, 3)
    np.testing.assert_array_equal(region.crop(data, rgb=True), data[3:11, 3:13])
    np.testing.assert_array_equal(region.crop(data[..., 0]), data[3:11, 3:13, 0])
    # Its first pixel's centre sits where the image's pixel (3, 3) is.
    assert region.translate((2.0, 0.5), (10.0, -5.0)) == (16.0, -3.5)
    assert region.translate((1.0, 2.0, 0.5), (7.0, 10.0, -5.0)) == (7.0, 16.0, -3.5)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        Region.around([[0, 0], [3, 20]], (40, 30))
    with pytest.raises(ValueError, match="outside the image"):
        Region.around([[50, 50], [60, 60]], (40, 30))
    assert result_name("cells", "denoise", region=region) == "cells (DIP denoise, rows 3-11, columns 3-13)"
