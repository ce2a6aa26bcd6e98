"""Guided restoration: a guide image replaces the network's random input code."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from napari_dip import restore
from napari_dip.cli import main
from napari_dip.core import RestoreOptions, consume, restore_iter
from napari_dip.core import engine as engine_module
from napari_dip.core.guide import PreparedGuide, prepare_guide
from napari_dip.core.tiling import tile_starts

FAST = dict(iterations=3, channels=8, scales=2, threads=1, precision="float32", compile="off")


def _image(shape=(32, 32), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.fixture
def codes(monkeypatch):
    """Every input the fitted networks receive, in order (one list per network built)."""
    seen: list[list[torch.Tensor]] = []
    build = engine_module.build_network

    def recording(*args, **kwargs):
        net = build(*args, **kwargs)
        inputs: list[torch.Tensor] = []
        seen.append(inputs)
        net.register_forward_pre_hook(lambda module, given: inputs.append(given[0].detach().clone()))
        return net

    monkeypatch.setattr(engine_module, "build_network", recording)
    return seen


def test_the_code_is_the_normalised_guide_mirror_padded(codes):
    guide = (np.random.default_rng(1).random((30, 30, 3)) * 255).astype(np.uint8)
    restore(_image((30, 30)), guide=guide, reg_noise_std=0.0, **FAST)
    (inputs,) = codes
    assert len(inputs) == FAST["iterations"]
    code = inputs[0][0].numpy()
    # 30 is padded to 32 (a multiple of 2**scales), mirrored as the image is.
    assert code.shape == (3, 32, 32)
    # Stretched as a whole, from its minimum to its maximum.
    expected = (np.moveaxis(guide, -1, 0) - float(guide.min())) / (float(guide.max()) - float(guide.min()))
    np.testing.assert_allclose(code[:, :30, :30], expected, atol=1e-6)
    np.testing.assert_allclose(code[:, 30:, :30], expected[:, ::-1][:, :2], atol=1e-6)
    # No input noise: every step sees the same code.
    assert all(torch.equal(step, inputs[0]) for step in inputs)


def test_input_noise_is_added_to_the_guide(codes):
    guide = _image(seed=2)
    restore(_image(), guide=guide, reg_noise_std=0.05, **FAST)
    first = codes[0][0][0, 0].numpy()
    assert 0 < np.abs(first - guide).mean() < 0.1


def test_the_result_depends_on_the_guide():
    image = _image()
    plain = restore(image, **FAST)
    guided = restore(image, guide=_image(seed=3), **FAST)
    other = restore(image, guide=_image(seed=4), **FAST)
    again = restore(image, guide=_image(seed=3), **FAST)
    assert np.abs(guided - plain).max() > 1e-3
    assert np.abs(guided - other).max() > 1e-3
    np.testing.assert_array_equal(guided, again)


def test_the_guide_channel_count_is_the_input_depth(codes):
    result = consume(restore_iter(_image(), guide=_image((32, 32, 5)), **FAST))
    assert result.settings.input_depth == 5
    assert codes[0][0].shape[1] == 5
    gray = consume(restore_iter(_image((32, 32, 3)), guide=_image(), **FAST))
    assert gray.settings.input_depth == 1 and gray.image.shape == (32, 32, 3)


def test_guides_are_normalised_as_a_whole():
    u16 = np.zeros((4, 4, 2), np.uint16)
    u16[..., 0] = 1000
    u16[..., 1] = 3000
    u16[0, 0, 1] = 5000
    unit = prepare_guide(u16)
    assert unit.dtype == np.float32 and unit.shape == u16.shape
    # One scale for all channels: 1000 -> 0, 5000 -> 1, 3000 -> 0.5.
    assert unit[1, 1, 0] == 0 and unit[0, 0, 1] == 1 and unit[1, 1, 1] == pytest.approx(0.5)
    # Whatever the dtype: floats and uint8 are stretched too (a code, not levels that mean something).
    floats = np.linspace(0.2, 0.4, 16).reshape(4, 4)
    np.testing.assert_allclose(prepare_guide(floats), np.linspace(0, 1, 16).reshape(4, 4), atol=1e-6)
    dark = np.array([[3, 5], [7, 11]], np.uint8)
    np.testing.assert_allclose(prepare_guide(dark), [[0, 0.25], [0.5, 1]])
    assert isinstance(unit, PreparedGuide)
    # Preparing again changes nothing, for the guide or a part of it (options are replaced per
    # tile and plane, and a part keeps the whole guide's scale).
    assert prepare_guide(unit) is unit
    part = unit[1:3, 1:3]
    assert prepare_guide(part) is part and part[..., 0].max() == 0
    assert RestoreOptions(guide=u16).guide.max() == 1


def test_a_dim_guide_guides_as_well_as_a_bright_one():
    # A 12-bit camera's image divided by 65535 spans [0, 0.06]: kept as it was, the input noise
    # (reg_noise_std 1/30) drowned it and guided results were worse than unguided ones.
    image = _image(seed=18)
    guide = _image(seed=19)
    bright = restore(image, guide=guide, **FAST)
    np.testing.assert_allclose(restore(image, guide=guide * (4095 / 65535), **FAST), bright, atol=1e-5)
    np.testing.assert_allclose(restore(image, guide=np.round(guide * 4095).astype(np.uint16), **FAST),
                               restore(image, guide=np.round(guide * 4095) / 4095, **FAST), atol=1e-5)


def test_a_stack_takes_one_guide_per_plane_or_one_for_all():
    plane = _image()
    stack = np.stack([plane, plane])
    guide = _image(seed=5)
    shared = restore(stack, axes="TYX", guide=guide, **FAST)
    np.testing.assert_array_equal(shared[0], shared[1])
    np.testing.assert_array_equal(shared[0], restore(plane, guide=guide, **FAST))
    per_plane = restore(stack, axes="TYX", guide=np.stack([guide, _image(seed=6)]), **FAST)
    np.testing.assert_array_equal(per_plane[0], shared[0])
    assert np.abs(per_plane[1] - per_plane[0]).max() > 1e-3


def test_each_tile_gets_its_part_of_the_guide(codes):
    guide = _image((40, 40, 2), seed=7)
    result = restore(_image((40, 40)), guide=guide, tile_size=24, overlap=4, reg_noise_std=0.0, **FAST)
    assert result.shape == (40, 40)
    starts = tile_starts(40, 24, 4)
    windows = [(r, c) for r in starts for c in starts]
    assert len(codes) == len(windows) == 4
    for inputs, (r, c) in zip(codes, windows, strict=True):
        expected = np.moveaxis(prepare_guide(guide)[r:r + 24, c:c + 24], -1, 0)
        np.testing.assert_allclose(inputs[0][0].numpy(), expected, atol=1e-6)


def test_super_resolution_tiles_get_their_part_of_the_guide_at_the_result_size(codes):
    # The tile windows are in the image's pixels; the guide is cut from the result's, 2× larger.
    guide = prepare_guide(_image((80, 80), seed=12))
    result = restore(_image((40, 40)), "sr", scale=2, guide=guide, tile_size=24, overlap=4, reg_noise_std=0.0,
                     **FAST)
    assert result.shape == (80, 80)
    starts = tile_starts(40, 24, 4)
    windows = [(r, c) for r in starts for c in starts]
    assert len(codes) == len(windows) == 4
    for inputs, (r, c) in zip(codes, windows, strict=True):
        np.testing.assert_allclose(inputs[0][0, 0].numpy(), guide[2 * r:2 * (r + 24), 2 * c:2 * (c + 24)], atol=1e-6)


def test_constant_guides_are_refused_before_any_work(codes):
    # As the network's only input, a constant code gives a flat result whatever the image.
    message = (r"is constant: as the network's input it would make the result flat; give an image of the scene, "
               r"or leave the guide out$")
    with pytest.raises(ValueError, match=r"^the guide " + message):
        restore(_image(), guide=np.full((32, 32), 7, np.uint16), **FAST)
    per_plane = np.stack([_image(seed=13), np.full((32, 32), 0.5, np.float32)])
    with pytest.raises(ValueError, match=r"^the guide of plane 1 " + message):
        restore(np.stack([_image(), _image()]), axes="TYX", guide=per_plane, **FAST)
    assert codes == []
    # A constant channel beside one with structure is fine, and so is a tile where the guide is flat.
    mixed = np.stack([_image(seed=14), np.full((32, 32), 0.5, np.float32)], axis=-1)
    assert restore(_image(), guide=mixed, **FAST).shape == (32, 32)
    flat_corner = _image((40, 40), seed=15)
    flat_corner[:24, :24] = 0.25
    assert restore(_image((40, 40)), guide=flat_corner, tile_size=24, overlap=4, **FAST).shape == (40, 40)


def test_super_resolution_takes_a_guide_at_the_result_size(codes):
    result = restore(_image((16, 16)), "sr", scale=2, guide=_image((32, 32), seed=8), reg_noise_std=0.0, **FAST)
    assert result.shape == (32, 32)
    assert codes[0][0].shape[-2:] == (32, 32)
    with pytest.raises(ValueError, match=r"^guide shape \(16, 16\) does not match the result's spatial shape "
                                         r"\(2 × the image's\) \(32, 32\)"):
        restore(_image((16, 16)), "sr", scale=2, guide=_image((16, 16)), **FAST)


def test_guided_inpainting_and_volumes():
    mask = np.zeros((32, 32), bool)
    mask[10:20, 10:20] = True
    filled = restore(_image(), "inpaint", mask=mask, guide=_image(seed=9), **FAST)
    np.testing.assert_array_equal(filled[~mask], _image()[~mask])
    volume = restore(_image((8, 32, 32)), volume=True, guide=_image((8, 32, 32, 2), seed=10), **FAST)
    assert volume.shape == (8, 32, 32)


def test_json_leaves_the_guide_out():
    guide = _image(seed=11)
    options = RestoreOptions(guide=guide, iterations=3)
    assert "guide" not in options.to_json()
    assert RestoreOptions.from_json(options.to_json(), guide=guide) == options
    assert RestoreOptions.from_json(options.to_json()) != options


@pytest.mark.parametrize(
    "image, guide, extra, message",
    [
        (_image(), _image((31, 32)), {},
         r"^guide shape \(31, 32\) does not match the image's spatial shape \(32, 32\)"),
        (_image(), _image((32, 32, 3)).transpose(2, 0, 1), {},
         r"^guide shape \(3, 32, 32\) does not match the image's spatial shape"),
        (np.stack([_image(), _image()]), _image((3, 32, 32)), {"axes": "TYX"},
         r"^guide shape \(3, 32, 32\) matches neither a plane \(32, 32\) nor the stack's planes \(2, 32, 32\)"),
        (_image(), np.where(np.eye(32, dtype=bool), np.nan, 0.5), {},
         r"^the guide contains 32 NaN or infinite value\(s\); replace them before restoring$"),
        (_image(), np.ones((32, 32), complex), {},
         r"^the guide must be an image of real numbers, got dtype complex128$"),
        (_image(), np.ones(32), {}, r"^the guide must be an image with a height and a width, got shape \(32,\)$"),
        (_image(), _image(), {"input_depth": 8},
         r"^input_depth is the guide's channel count: leave it out when giving a guide$"),
    ],
    ids=["shape", "channels-first", "stack", "nan", "complex", "1d", "input-depth"],
)
def test_bad_guides_are_one_sentence_before_any_work(codes, image, guide, extra, message):
    with pytest.raises(ValueError, match=message):
        restore(image, guide=guide, **FAST, **extra)
    assert codes == []


# --- the command line ---------------------------------------------------------------------------


def _png(path, array):
    Image.fromarray(array).save(path)
    return path


def _u8(shape, seed):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


CLI_FAST = ["--iterations", "3", "--quiet", "--threads", "1", "--set", "channels=8", "--set", "scales=2"]


def test_cli_restore_with_a_guide(tmp_path, capsys):
    source = _png(tmp_path / "noflash.png", _u8((32, 32, 3), 0))
    guide = _png(tmp_path / "flash.png", _u8((32, 32, 3), 1))
    assert main(["restore", str(source), "-o", str(tmp_path / "plain.png"), *CLI_FAST]) == 0
    assert main(["restore", str(source), "-o", str(tmp_path / "guided.png"), "--guide", str(guide), *CLI_FAST]) == 0
    np.save(tmp_path / "flash.npy", np.asarray(Image.open(guide)))
    assert main(["restore", str(source), "-o", str(tmp_path / "npy.png"), "--guide", str(tmp_path / "flash.npy"),
                 *CLI_FAST]) == 0
    plain, guided, npy = (np.asarray(Image.open(tmp_path / name)) for name in ("plain.png", "guided.png", "npy.png"))
    assert guided.shape == (32, 32, 3) and np.abs(guided.astype(int) - plain).max() > 2
    np.testing.assert_array_equal(npy, guided)


def test_cli_bad_guides(tmp_path, capsys):
    source = _png(tmp_path / "noflash.png", _u8((32, 32), 0))
    small = _png(tmp_path / "small.png", _u8((16, 32), 1))
    assert main(["restore", str(source), "-o", str(tmp_path / "out.png"), "--guide", str(small), *CLI_FAST]) == 2
    assert capsys.readouterr().err.strip() == (
        "napari-dip: error: guide shape (16, 32) does not match the image's spatial shape (32, 32): give a guide "
        "of that size, with or without a channel axis last")
    assert not (tmp_path / "out.png").exists()
    guide = _png(tmp_path / "flash.png", _u8((32, 32), 2))
    before = guide.read_bytes()
    assert main(["restore", str(source), "-o", str(guide), "--guide", str(guide), *CLI_FAST]) == 2
    assert capsys.readouterr().err.strip() == (
        f"napari-dip: error: the output {guide} is the guide file {guide}; choose another output name")
    assert guide.read_bytes() == before


def test_cli_batch_with_a_guide_and_one_that_is_an_output(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _png(inputs / "a.png", _u8((32, 32), 0))
    _png(inputs / "b.png", _u8((32, 32), 1))
    guide = _png(tmp_path / "flash.png", _u8((32, 32), 2))
    out = tmp_path / "out"
    assert main(["batch", str(inputs), "-o", str(out), "--workers", "0", "--guide", str(guide), *CLI_FAST]) == 0
    assert sorted(path.name for path in out.iterdir()) == [".napari-dip-job.json", "a.png", "b.png"]
    clash = tmp_path / "clash"
    clash.mkdir()
    taken = _png(clash / "a.png", _u8((32, 32), 3))
    before = taken.read_bytes()
    assert main(["batch", str(inputs), "-o", str(clash), "--workers", "0", "--guide", str(taken), *CLI_FAST]) == 2
    assert "is the guide file" in capsys.readouterr().err
    assert taken.read_bytes() == before


def test_cli_batch_checks_the_guide_against_every_input_before_any_fit(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _png(inputs / "a.png", _u8((32, 32), 0))
    _png(inputs / "b.png", _u8((16, 16), 1))
    guide = _png(tmp_path / "flash.png", _u8((32, 32), 2))
    out = tmp_path / "out"
    assert main(["batch", str(inputs), "-o", str(out), "--workers", "0", "--guide", str(guide), *CLI_FAST]) == 2
    assert capsys.readouterr().err.strip() == (
        f"napari-dip: error: {inputs / 'b.png'}: guide shape (32, 32) does not match the image's spatial shape "
        "(16, 16): give a guide of that size, with or without a channel axis last")
    assert not out.exists() or not any(out.iterdir())


def test_cli_batch_gives_each_plane_of_a_stack_its_own_guide(tmp_path):
    import tifffile

    stack = np.stack([_u8((32, 32), 0), _u8((32, 32), 1)])
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    guides = np.stack([_image(seed=16), _image(seed=17)])
    np.save(tmp_path / "guides.npy", guides)
    out = tmp_path / "out"
    assert main(["batch", str(tmp_path / "stack.tif"), "-o", str(out), "--workers", "0", "--guide",
                 str(tmp_path / "guides.npy"), *CLI_FAST]) == 0
    # As restore() does it: each plane its own guide, all on the whole guide's one scale.
    expected = restore(stack, axes="TYX", guide=guides, iterations=3, channels=8, scales=2, threads=1)
    np.testing.assert_array_equal(tifffile.imread(out / "stack.tif"), expected)
    assert np.abs(expected[1].astype(int) - expected[0]).max() > 2


def test_cli_bad_guide_is_one_line_without_a_traceback(tmp_path):
    source = _png(tmp_path / "noflash.png", _u8((32, 32), 0))
    guide = tmp_path / "nan.npy"
    values = np.full((32, 32), 0.5)
    values[0, 0] = np.nan
    np.save(guide, values)
    done = subprocess.run([sys.executable, "-m", "napari_dip.cli", "restore", str(source), "-o",
                           str(tmp_path / "out.png"), "--guide", str(guide), *CLI_FAST],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "napari-dip: error: the guide contains 1 NaN or infinite value(s); replace them before restoring"]
    assert not (tmp_path / "out.png").exists()
