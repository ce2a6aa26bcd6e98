"""The presets that fill in a task's :class:`~napari_dip.core.settings.Settings`.

``paper`` reproduces the official Deep Image Prior notebooks (fixed iteration counts, no automatic
stopping) and is the reference every speed-up is measured against; each task's paper settings
live in its :class:`~napari_dip.core.tasks.TaskSpec`. ``default`` is what users get. ``fast``
is ``default`` on a network half as wide with half the iteration cap: for a first look, or
for trying settings on a large image (benchmarks/results/presets_fast/).
"""

from __future__ import annotations

from dataclasses import replace

from .settings import Settings
from .tasks import TASK_NAMES, task_spec

__all__ = ["Settings", "TASKS", "PRESETS", "preset_settings", "resolve_settings"]

TASKS = TASK_NAMES
PRESETS = ("default", "fast", "paper")

# Iteration caps of the default preset where they differ from the paper's: on every denoising
# curve we measured with the default network (benchmarks/autostop.py and the 256² astronaut),
# the running average had peaked, or was within 0.05 dB of its plateau, by 2400 iterations.
_DEFAULT_CAPS = {"denoise": 2400, "inpaint": 2000, "jpeg": 1000}
# JPEG: the variance rule never fired on eight 96² runs (four images, quality 10 and 20) run to
# 3000 iterations; their best averages came at 600-1900 (median 1000), and the average at 1000 was
# 0.21 dB below the best along the run against 0.46 at 3000 (benchmarks/results/jpeg_deblur*).

# Inpainting fits exact pixels, not noisy ones, and bfloat16 costs it accuracy: on the 128²
# astronaut with half its pixels missing the average reached 31.74 dB at iteration 900 in
# bfloat16 and 32.09 in float32; in bfloat16 it plateaued at 31.90 near 1500 and had fallen to
# 31.15 by the paper's 6001 iterations (hence the cap above; docs/benchmarks.md).
_DEFAULT_PRECISION = {"inpaint": "float32"}

# Inpainting's stop: known pixels near the fill held out of the fit judge it
# (napari_dip/core/stopping.py HoldoutStopper). Replayed on ten logged 128² runs (thin strokes and
# text on five images, benchmarks/results/inpaint_stop/): stopping once the held-out error has
# not fallen 2 % in 200 iterations kept an average 0.07 dB below the best along the run (worst
# 0.17; the cap's average was 0.22 below) and saved 18 % of the cap's time; looser settings
# saved more but lost up to 0.4-1.2 dB on some images (stops.md there).
_DEFAULT_STOPS = {"inpaint": dict(stop_holdout=0.05, stop_patience=200, stop_tolerance=0.02)}


# Super-resolution and denoising fit each channel stretched to its own range (an image that
# already spans it, as most noisy ones do, is fitted as before). Super-resolution: on the centre
# 256² of `retina` (a low-contrast fundus photograph, channel spreads of 0.05, ×4 from 64²) the
# average at the 2000-iteration cap went from 42.65 to 45.34 dB, 36.06 to 37.34 with noise; the
# astronaut crop 27.38 to 27.60 (benchmarks/results/sr_residual/). Denoising, 128², at the stop:
# retina σ 15 and 25 +1.26 and +1.27 dB, a dim camera crop σ 10 +0.74; the best along the run came
# sooner and higher on all four curves measured, but at σ 5 the dim crop now peaks at 1600
# iterations and stops at 2127, 0.22 dB below the unstretched run
# (benchmarks/results/stretch_denoise/).
_STRETCHED = {"sr", "denoise"}


def _default_from_paper(task: str, paper: Settings) -> Settings:
    """The paper's optimisation on a network half as wide (a quarter as wide at full resolution),
    in the device's fastest precision (float32 for inpainting), compiled where it pays, and
    stopped automatically (benchmarks/bench.py and docs/benchmarks.md measure each of these)."""
    return replace(
        paper,
        iterations=_DEFAULT_CAPS.get(task, paper.iterations),
        channels=64,
        # The full-resolution level costs more than all the others together; at 32 channels it
        # ended 0.02 dB below 64 on the 256² astronaut (30.71 against 30.73 at 2400 iterations).
        top_channels=32,
        skip_channels=min(paper.skip_channels, 64),
        precision=_DEFAULT_PRECISION.get(task, "auto"),
        channels_last=True,
        compile="auto",
        auto_stop=True,
        stretch=task in _STRETCHED,
        **_DEFAULT_STOPS.get(task, {}),
    )


def _fast_from_default(default: Settings) -> Settings:
    """The default preset on a network half as wide, stopped at half the iterations at most."""
    return replace(
        default,
        iterations=max(default.iterations // 2, default.min_iterations),
        channels=32,
        top_channels=16,
        skip_channels=min(default.skip_channels, 32),
        stop_patience=min(default.stop_patience, 500),
    )


def preset_settings(task: str, preset: str = "default", scale: int | None = 1) -> Settings:
    """The settings a preset uses for a task (``scale`` only matters for ``"sr"``)."""
    spec = task_spec(task)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    paper = spec.paper_settings(scale)
    if preset == "paper":
        return paper
    default = _default_from_paper(task, paper)
    return _fast_from_default(default) if preset == "fast" else default


def resolve_settings(
    task: str, preset: str = "default", scale: int | None = None, iterations: int | None = None, **advanced
) -> Settings:
    """A preset's settings with the user's changes: a fixed ``iterations`` turns automatic
    stopping off unless ``auto_stop=True`` is also given."""
    settings = preset_settings(task, preset, scale or 1)
    if iterations is not None:
        # A user who fixes the count wants that count: no automatic stop unless asked for.
        advanced.setdefault("auto_stop", False)
        advanced["iterations"] = iterations
    return settings.updated(**advanced)
