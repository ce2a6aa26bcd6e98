"""napari-dip: Deep Image Prior restoration for napari, the command line and batch jobs.

``import napari_dip`` is cheap: torch is only imported when the core is first used, so napari
starts fast with the plugin installed.
"""

from __future__ import annotations

__version__ = "0.1.0"

_CORE_NAMES = {"restore", "restore_iter", "Restoration", "RestoreOptions", "Progress", "Settings", "TASKS", "PRESETS"}

__all__ = sorted(_CORE_NAMES)


def __getattr__(name: str):
    if name in _CORE_NAMES:
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module 'napari_dip' has no attribute {name!r}")
