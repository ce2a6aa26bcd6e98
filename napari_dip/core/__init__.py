"""The Qt-free Deep Image Prior core: engine, networks, operators, stopping, arrays, device.

Nothing here imports Qt or napari, so it runs in scripts, tests, the command line and batch
workers alike.
"""

from .api import VOLUME_TASKS, Restoration, consume, resolve_settings, restore, restore_iter
from .device import available_devices, select_device
from .engine import FitResult, Progress, fit
from .operators import (
    BlurOperator,
    DownsampleOperator,
    FeatureOperator,
    ForwardOperator,
    IdentityOperator,
    InpaintOperator,
)
from .presets import PRESETS, TASKS, Settings, preset_settings

__all__ = [
    "restore",
    "restore_iter",
    "consume",
    "resolve_settings",
    "Restoration",
    "Progress",
    "FitResult",
    "fit",
    "Settings",
    "preset_settings",
    "TASKS",
    "VOLUME_TASKS",
    "PRESETS",
    "available_devices",
    "select_device",
    "ForwardOperator",
    "IdentityOperator",
    "InpaintOperator",
    "DownsampleOperator",
    "BlurOperator",
    "FeatureOperator",
]
