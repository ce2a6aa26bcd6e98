"""Network inversion: the InversionOperator in the one engine, safe network loading, layers by name."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from napari_dip.cli import main
from napari_dip.core import InversionOperator, consume, invert, invert_iter, load_network
from napari_dip.core.inversion import InversionOptions, layer_features

FAST = dict(iterations=3, channels=8, scales=2, threads=1)
# torch 2.13 deprecates TorchScript (in favour of torch.export); users' networks still come as it.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


def _cnn(in_channels: int = 1, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
    )


def _image(shape=(16, 16), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _tensor(image: np.ndarray) -> torch.Tensor:
    chw = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(chw))[None]


# --- the operator ---------------------------------------------------------------------------------


def test_inversion_loss_is_relative_feature_error_plus_weighted_tv_and_gradients_flow():
    net = _cnn()
    x0 = _tensor(_image())
    features, reference = layer_features(net, "3.1", x0)
    operator = InversionOperator(features, reference, (16, 16), 1, tv_weight=0.3)
    x = torch.rand(1, 1, 20, 20, requires_grad=True)  # a padded canvas: cropped to 16²
    loss = (operator(x) - operator.target).square().mean()
    loss.backward()
    crop = x[..., :16, :16]
    with torch.no_grad():
        phi = net(crop)
        scale = reference.square().mean().sqrt()
        dx = crop[..., :-1, 1:] - crop[..., :-1, :-1]
        dy = crop[..., 1:, :-1] - crop[..., :-1, :-1]
        tv = (dx.square() + dy.square() + 1e-8).sqrt().mean()
        expected = (phi - reference).square().mean() / scale**2 + 0.3 * tv
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    grad = x.grad[0, 0]
    assert torch.isfinite(grad).all() and grad[:16, :16].abs().sum() > 0
    # Pixels outside the crop do not count.
    assert grad[16:].abs().sum() == 0 and grad[:, 16:].abs().sum() == 0


def test_activation_maximisation_loss_falls_as_the_unit_rises():
    net = _cnn()
    x0 = _tensor(_image())
    features, reference = layer_features(net, "3.1", x0)
    operator = InversionOperator(features, reference, (16, 16), 1, unit=2)
    x = x0.clone().requires_grad_(True)
    loss = (operator(x) - operator.target).square().mean()
    loss.backward()
    scale = float(reference.square().mean().sqrt())
    activation = float(reference[0, 2].mean())
    assert float(loss.detach()) == pytest.approx(InversionOperator.CEILING - activation / scale, rel=1e-6)
    # Stepping against the loss's gradient raises the unit's activation.
    with torch.no_grad():
        stepped = net(x0 - 0.05 * x.grad / x.grad.abs().max())
    assert float(stepped[0, 2].mean()) > activation


@pytest.mark.parametrize("prior", ["dip", "tv", "none"])
def test_every_prior_lowers_the_loss_in_the_one_engine(prior):
    image = _image()
    run = invert_iter(image, _cnn(), layer="3.1", prior=prior, iterations=5, preview_seconds=None, lr=0.05,
                      channels=8, scales=2, threads=1)
    events = []
    try:
        while True:
            events.append(next(run))
    except StopIteration as done:
        result = done.value
    assert len(events) == 5 and events[-1].loss < events[0].loss
    assert result.image.shape == image.shape and result.image.dtype == image.dtype
    assert result.prior == prior and 0 < result.feature_error < 1
    assert result.settings.iterations == 5


def test_inversion_keeps_the_input_dtype_layout_and_odd_sizes():
    rgb = (np.random.default_rng(1).random((18, 22, 3)) * 255).astype(np.uint8)
    out = invert(rgb, _cnn(3), layer="1", **FAST)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    again = invert(rgb, _cnn(3), layer="1", **FAST)
    np.testing.assert_array_equal(out, again)
    chw = np.moveaxis(rgb, -1, 0)
    assert invert(chw, _cnn(3), layer="1", channel_axis=0, **FAST).shape == chw.shape


def test_maximising_a_unit_reports_its_activation():
    result = consume(invert_iter(_image(), _cnn(), layer="3.1", unit=(1, 2, 3), prior="none", iterations=5,
                                 threads=1, preview_seconds=None))
    assert result.unit == (1, 2, 3) and result.feature_error is None
    assert result.activation > result.reference_activation


def _train_mode_net() -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                        nn.Conv2d(4, 4, 3, padding=1))
    net[4].bias.requires_grad_(False)  # one the caller froze: stays frozen
    return net.train()


@pytest.mark.parametrize("prior, unit", [("dip", None), ("tv", None), ("dip", 1)])
def test_the_callers_network_is_frozen_in_eval_mode_for_the_run_and_given_back_as_it_was(prior, unit):
    net = _train_mode_net()
    before = {name: value.clone() for name, value in net.state_dict().items()}
    flags = [p.requires_grad for p in net.parameters()]
    run = invert_iter(_image(), net, layer="4", prior=prior, unit=unit, preview_seconds=None, **FAST)
    next(run)
    # During the fit: eval mode (no dropout, no batch-statistics updates), nothing to train.
    assert not any(module.training for module in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    consume(run)
    assert all(torch.equal(before[name], value) for name, value in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    assert all(module.training for module in net.modules())
    assert [p.requires_grad for p in net.parameters()] == flags
    # Dropout and batch statistics play no part: a network in train mode inverts as in eval mode.
    np.testing.assert_array_equal(invert(_image(), _train_mode_net(), layer="4", prior=prior, unit=unit, **FAST),
                                  invert(_image(), _train_mode_net().eval(), layer="4", prior=prior, unit=unit,
                                         **FAST))


# --- layers -------------------------------------------------------------------------------------------


def test_a_python_module_is_cut_at_any_named_layer_and_stops_there():
    calls = []

    class Tail(nn.Module):
        def forward(self, x):
            calls.append(1)
            return x

    net = nn.Sequential(_cnn(), Tail())
    x0 = _tensor(_image())
    features, reference = layer_features(net, "0.3.0", x0)
    with torch.no_grad():
        expected = net[0][3][0](net[0][2](net[0][1](net[0][0](x0))))
    torch.testing.assert_close(reference, expected)
    assert calls == []  # the network stops once the layer has run


def test_torchscript_round_trip_scripted_and_traced(tmp_path):
    net = _cnn()
    x0 = _tensor(_image())
    torch.jit.save(torch.jit.script(net), tmp_path / "scripted.pt")
    torch.jit.save(torch.jit.trace(net, x0), tmp_path / "traced.pt")
    with torch.no_grad():
        expected = net[3][0](net[2](net[1](net[0](x0))))
    for name in ("scripted.pt", "traced.pt"):
        loaded = load_network(tmp_path / name)
        assert isinstance(loaded, torch.jit.ScriptModule)
        _, reference = layer_features(loaded, "3.0", x0)
        torch.testing.assert_close(reference, expected)
        out = invert(_image(), str(tmp_path / name), layer="3.0", **FAST)
        assert out.shape == (16, 16)


def test_a_torchscript_network_returning_a_dict_is_cut_by_key(tmp_path):
    class Pyramid(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.deep = nn.Conv2d(4, 4, 3, stride=2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            stem = torch.relu(self.stem(x))
            return {"stem": stem, "deep": self.deep(stem)}

    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(Pyramid()), tmp_path / "pyramid.pt")
    net = load_network(tmp_path / "pyramid.pt")
    x0 = _tensor(_image())
    _, reference = layer_features(net, "deep", x0)
    with torch.no_grad():
        assert torch.equal(reference, net(x0)["deep"]) and reference.shape == (1, 4, 7, 7)
    with pytest.raises(ValueError, match=r"^the network gives several outputs \(stem, deep\): choose one as "
                                         r"the layer$"):
        layer_features(net, None, x0)


def test_a_layer_called_from_compiled_code_is_refused_with_the_choices():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 2, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.stem(x))

    scripted = torch.jit.script(Plain())
    with pytest.raises(ValueError, match=r"^layer 'head\.1' is called from the network's forward, compiled "
                                         r"TorchScript code that cannot be cut there; it has no named layers"):
        layer_features(scripted, "head.1", _tensor(_image()))
    # The same module in Python is cut anywhere.
    _, reference = layer_features(Plain(), "head.1", _tensor(_image()))
    assert reference.shape == (1, 2, 16, 16)


def test_entry_point_with_weights_only_state_dict(tmp_path, monkeypatch):
    (tmp_path / "tiny_inversion_net.py").write_text(textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    trained = load_network("tiny_inversion_net:build")
    with torch.no_grad():
        trained[0].weight.fill_(0.5)
    torch.save(trained.state_dict(), tmp_path / "weights.pt")
    loaded = load_network("tiny_inversion_net:build", weights=tmp_path / "weights.pt")
    assert torch.equal(loaded[0].weight, trained[0].weight)
    fresh = load_network("tiny_inversion_net:build")
    assert not torch.equal(fresh[0].weight, trained[0].weight)
    out = invert(_image(), "tiny_inversion_net:build", weights=tmp_path / "weights.pt", layer="1", **FAST)
    assert out.shape == (16, 16)


# --- bad input ----------------------------------------------------------------------------------------


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch exploited",))


def test_pickles_are_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"x": _Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt is not a TorchScript file"):
        load_network(tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt is not a state dict that loads with weights_only=True"):
        load_network(_cnn(), weights=tmp_path / "evil.pt")
    assert not (tmp_path / "exploited").exists()


def test_bad_networks_layers_and_units_are_one_sentence(tmp_path, monkeypatch):
    net = _cnn()
    (tmp_path / "junk.pt").write_bytes(b"not a network")
    torch.save(net, tmp_path / "module.pt")
    torch.save(net.state_dict(), tmp_path / "state.pt")
    not_torchscript = (r" is not a TorchScript file \(write one with torch\.jit\.save\(torch\.jit\.script\(net\), "
                       r"path\)\); for a state dict give its architecture as a module:function entry point and the "
                       r"file as weights$")
    for name in ("junk.pt", "module.pt", "state.pt"):
        with pytest.raises(ValueError, match=r"^.*" + name.replace(".", r"\.") + not_torchscript):
            load_network(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"^no such network file: .*missing\.pt$"):
        load_network(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"^cannot import 'no_such_module_here' for the network entry point"):
        load_network("no_such_module_here:build")
    with pytest.raises(ValueError, match=r"^the network entry point 'torch\.nn:NoSuchThing' names 'NoSuchThing'"):
        load_network("torch.nn:NoSuchThing")
    with pytest.raises(ValueError, match=r"^the network entry point 'math:pi' gave a float, not a torch module$"):
        load_network("math:pi")
    with pytest.raises(ValueError, match=r"^the weights in .*state\.pt do not fit the network: "):
        load_network(_cnn(3), weights=tmp_path / "state.pt")
    x0 = _tensor(_image())
    with pytest.raises(ValueError, match=r"^the network has no layer 'conv9'; its layers: 0, 1, 2, 3, 3\.0, 3\.1$"):
        layer_features(net, "conv9", x0)
    with pytest.raises(ValueError, match=r"^the network refuses a 1-channel 16×16 image \(Given groups=1, weight of "
                                         r"size \[8, 3, 3, 3\], expected input\[1, 1, 16, 16\] to have 3 channels, "
                                         r"but got 1 channels instead\); give it an image with the channels and "
                                         r"size it was made for$"):
        invert(_image(), _cnn(3), layer="1", **FAST)
    scripted = torch.jit.script(_cnn(3))
    with pytest.raises(ValueError, match=r"^the network refuses a 1-channel 16×16 image \(.*to have 3 channels"):
        invert(_image(), scripted, layer="3.0", **FAST)
    with pytest.raises(ValueError, match=r"^unit 8 is outside layer '3\.1', which has 8 channels \(0 to 7\)$"):
        invert(_image(), net, layer="3.1", unit=8, **FAST)
    with pytest.raises(ValueError, match=r"^unit \(0, 8, 0\) is outside layer '3\.1', whose features have shape "
                                         r"\(8, 8, 8\)$"):
        invert(_image(), net, layer="3.1", unit=(0, 8, 0), **FAST)
    with pytest.raises(ValueError, match=r"^network inversion takes one image"):
        invert(_image((2, 16, 16)), net, **FAST)


def test_entry_points_that_fail_and_weights_that_do_not_fit_are_one_sentence(tmp_path, monkeypatch):
    (tmp_path / "failing_inversion_nets.py").write_text(textwrap.dedent("""
        def broken():
            raise RuntimeError("no GPU here")
    """))
    (tmp_path / "failing_on_import.py").write_text("raise RuntimeError('needs a licence file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"^the network entry point 'failing_inversion_nets:broken' failed when "
                                         r"called with no arguments \(no GPU here\); give a function that takes "
                                         r"none and returns a torch module$"):
        load_network("failing_inversion_nets:broken")
    with pytest.raises(ValueError, match=r"^the network entry point 'torch\.nn:Conv2d' failed when called with no "
                                         r"arguments \(.*missing 3 required positional arguments"):
        load_network("torch.nn:Conv2d")
    with pytest.raises(ValueError, match=r"^cannot import 'failing_on_import' for the network entry point "
                                         r"'failing_on_import:build': needs a licence file$"):
        load_network("failing_on_import:build")
    torch.jit.save(torch.jit.script(_cnn()), tmp_path / "net.pt")
    with pytest.raises(ValueError, match=r"^.*net\.pt is a TorchScript file, a whole network, not a state dict: "
                                         r"give it as the network, without weights$"):
        load_network(_cnn(), weights=tmp_path / "net.pt")
    torch.save({"0.weight": torch.zeros(8, 1, 3, 3)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r'^the weights in .*partial\.pt do not fit the network: Missing key\(s\) '
                                         r'in state_dict: "0\.bias", "3\.0\.weight", "3\.0\.bias"$'):
        load_network(_cnn(), weights=tmp_path / "partial.pt")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prior": "gan"}, r"^unknown prior 'gan'; choose one of dip, tv, none$"),
        ({"prior": "tv", "tv_weight": 0}, r"^prior 'tv' needs a tv_weight above 0 \(or use prior 'none'\)$"),
        ({"prior": "none", "tv_weight": 0.1}, r"^prior 'none' has no penalty: use prior 'tv'"),
        ({"tv_weight": -1.0}, r"^tv_weight must be a finite number ≥ 0, got -1\.0$"),
        ({"unit": "a,b"}, r"^the unit must be a channel or channel,row,column of whole numbers, got 'a,b'$"),
        ({"unit": (1, 2)}, r"^the unit must be a channel \(a whole number\) or \(channel, row, column\)"),
        ({"layer": ""}, r"^the layer must be given by its name, got ''$"),
        ({"iterations": 0}, r"^iterations must be at least 1, got 0$"),
        ({"advanced": {"lr": -1}}, r"^lr must be in \(0, 10\], got -1$"),
    ],
)
def test_bad_options_are_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InversionOptions(**kwargs)


def test_options_defaults_per_prior():
    assert InversionOptions().settings.reg_noise_std > 0
    pixels = InversionOptions(prior="tv")
    assert pixels.tv_weight == 0.05 and pixels.settings.reg_noise_std == 0 and pixels.settings.input_depth == 1
    assert InversionOptions(unit="3").unit == 3 and InversionOptions(unit="3,1,2").unit == (3, 1, 2)


# --- the command line ---------------------------------------------------------------------------------

CLI_FAST = ["--iterations", "3", "--quiet", "--threads", "1", "--set", "channels=8", "--set", "scales=2"]


def _files(tmp_path):
    source = tmp_path / "gray.png"
    Image.fromarray((_image((16, 16)) * 255).astype(np.uint8)).save(source)
    torch.jit.save(torch.jit.script(_cnn()), tmp_path / "net.pt")
    return source, tmp_path / "net.pt"


def test_cli_invert_round_trip(tmp_path, capsys):
    source, net = _files(tmp_path)
    out = tmp_path / "inverted.png"
    assert main(["invert", str(source), "--network", str(net), "--layer", "3.0", "-o", str(out), *CLI_FAST]) == 0
    inverted = np.asarray(Image.open(out))
    assert inverted.shape == (16, 16) and inverted.dtype == np.uint8
    assert "features of layer 3.0 matched to a relative error of" in capsys.readouterr().out
    assert main(["invert", str(source), "--network", str(net), "--layer", "3.0", "--unit", "1", "--prior", "tv",
                 "-o", str(tmp_path / "unit.png"), *CLI_FAST]) == 0
    assert "unit 1 of layer 3.0 raised from" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda s, n, t: ["--network", str(t / "junk.pt"), "-o", str(t / "o.png")],
         "junk.pt is not a TorchScript file"),
        (lambda s, n, t: ["--network", str(n), "--layer", "conv9", "-o", str(t / "o.png")],
         "the network has no layer 'conv9'; its layers: 0, 1, 2, 3, 3.0, 3.1"),
        (lambda s, n, t: ["--network", str(n), "-o", str(n.with_suffix(".png")), "--layer", "1"], None),
        (lambda s, n, t: ["--network", str(n), "-o", str(s), "--layer", "1"],
         "is the input file"),
    ],
    ids=["not-torchscript", "no-layer", "ok", "output-is-input"],
)
def test_cli_invert_bad_input(tmp_path, capsys, make_args, message):
    source, net = _files(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    before = source.read_bytes()
    code = main(["invert", str(source), *make_args(source, net, tmp_path), *CLI_FAST])
    err = capsys.readouterr().err.strip()
    if message is None:
        assert code == 0
        return
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert source.read_bytes() == before and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "settings, message",
    [
        (["--set", "lr=0.1", "--set", "lr=0.2"], "--set lr is given twice (0.1, then 0.2): give it once"),
        (["--set", "iterations=5"], "iterations has an option of its own: write --iterations instead of "
                                    "--set iterations=..."),
        (["--set", "chanels=4"], "--set chanels: unknown setting; did you mean channels? known settings: lr, "),
    ],
    ids=["twice", "own-option", "typo"],
)
def test_cli_invert_bad_settings(tmp_path, capsys, settings, message):
    source, net = _files(tmp_path)
    out = tmp_path / "o.png"
    assert main(["invert", str(source), "--network", str(net), "-o", str(out), *settings, *CLI_FAST]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("napari-dip: error: " + message)
    assert not out.exists()


def test_cli_entry_point_that_fails_is_one_line_without_a_traceback(tmp_path):
    source, _ = _files(tmp_path)
    done = subprocess.run([sys.executable, "-m", "napari_dip.cli", "invert", str(source), "--network",
                           "torch.nn:Conv2d", "-o", str(tmp_path / "out.png"), *CLI_FAST],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("napari-dip: error: the network entry point 'torch.nn:Conv2d' failed when called")
    assert not (tmp_path / "out.png").exists()


def test_cli_invert_refused_channels_is_one_line_without_a_traceback(tmp_path):
    source, _ = _files(tmp_path)
    torch.jit.save(torch.jit.script(_cnn(3)), tmp_path / "rgb_net.pt")
    done = subprocess.run([sys.executable, "-m", "napari_dip.cli", "invert", str(source), "--network",
                           str(tmp_path / "rgb_net.pt"), "--layer", "1", "-o", str(tmp_path / "out.png"), *CLI_FAST],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("napari-dip: error: the network refuses a 1-channel 16×16 image (")
    assert "to have 3 channels, but got 1 channels instead" in line
    assert not (tmp_path / "out.png").exists()
