"""The widget's choices, remembered between napari sessions in a small JSON file.

The file lives next to napari's own settings (one per napari environment), or wherever the
``NAPARI_DIP_SETTINGS`` environment variable points (tests and scripts use a temporary file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS_ENV", "load_settings", "save_settings", "settings_path"]

SETTINGS_ENV = "NAPARI_DIP_SETTINGS"


def settings_path() -> Path:
    override = os.environ.get(SETTINGS_ENV)
    if override:
        return Path(override)
    from napari.settings import get_settings

    return Path(get_settings().config_path).parent / "napari-dip" / "widget.json"


def load_settings() -> dict[str, Any]:
    """The saved choices, or {} when there are none or the file is unreadable (a corrupt file
    must not stop the widget from opening)."""
    try:
        values = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def save_settings(values: dict[str, Any]) -> None:
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2, sort_keys=True), encoding="utf-8")
    except OSError:
        # A read-only config directory costs the user their remembered settings, not the run.
        pass
