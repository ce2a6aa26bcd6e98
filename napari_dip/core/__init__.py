"""The Qt-free Deep Image Prior core: one front door (options, planner), the engine, networks,
operators, stopping, layout, memory, arrays and device.

Nothing here imports Qt or napari, so it runs in scripts, tests, the command line and batch
workers alike.
"""

from .api import VOLUME_TASKS, consume, plan_compiles, plan_run, restore, restore_iter
from .device import available_devices, select_device
from .engine import FitResult, Progress, fit
from .fitting import Restoration
from .inversion import Inversion, InversionOptions, invert, invert_iter, load_network
from .layout import Layout
from .operators import (
    BlurOperator,
    DownsampleOperator,
    FeatureOperator,
    ForwardOperator,
    IdentityOperator,
    InpaintOperator,
    InversionOperator,
)
from .options import RestoreOptions
from .presets import PRESETS, TASKS, preset_settings, resolve_settings
from .settings import Settings
from .tasks import TaskSpec, task_spec, widget_choices

__all__ = [
    "restore",
    "restore_iter",
    "consume",
    "invert",
    "invert_iter",
    "InversionOptions",
    "Inversion",
    "load_network",
    "plan_run",
    "plan_compiles",
    "RestoreOptions",
    "Layout",
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
    "TaskSpec",
    "task_spec",
    "widget_choices",
    "available_devices",
    "select_device",
    "ForwardOperator",
    "IdentityOperator",
    "InpaintOperator",
    "DownsampleOperator",
    "BlurOperator",
    "FeatureOperator",
    "InversionOperator",
]
