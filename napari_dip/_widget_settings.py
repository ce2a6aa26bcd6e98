"""The widget's choices, remembered between napari sessions in a small JSON file.

The file lives next to napari's own settings (one per napari environment), or wherever the
``NAPARI_DIP_SETTINGS`` environment variable points (tests and scripts use a temporary file).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core.presets import PRESETS
from .core.tasks import TASK_NAMES

__all__ = ["SETTINGS_ENV", "load_settings", "save_settings", "settings_path"]

SETTINGS_ENV = "NAPARI_DIP_SETTINGS"


def settings_path() -> Path:
    override = os.environ.get(SETTINGS_ENV)
    if override:
        return Path(override)
    from napari.settings import get_settings

    return Path(get_settings().config_path).parent / "napari-dip" / "widget.json"


_INT32 = 2**31 - 1


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT32 - 1 <= value <= _INT32


def _number(value: Any) -> bool:
    """A finite float, or an int a spin box takes."""
    return math.isfinite(value) if isinstance(value, float) else _whole(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _not_negative(value: Any) -> bool:
    return _number(value) and value >= 0


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in choices


# What the widget saves (RestorationWidget.settings()) and whether a loaded value may be used.
# Ranges the widget's boxes clamp to are left to them; what would make a box raise or silently
# turn into something else (a float in an integer box, an int beyond 32 bits, NaN) is refused.
_FIELDS: dict[str, Callable[[Any], bool]] = {
    "task": lambda value: isinstance(value, str) and value in TASK_NAMES,
    "factor": _whole,
    "iterations": _whole,
    "seed": _whole,
    "device": lambda value: isinstance(value, str),
    "threads": _whole,
    "compile": _one_of("off", "auto", "on"),
    "preset": _one_of(*PRESETS),
    "advanced_open": _flag,
    "all_planes": _flag,
    "volume": _flag,
    "warm_start": _flag,
}
_ADVANCED: dict[str, Callable[[Any], bool]] = {
    "lr": _positive, "reg_noise_std": _not_negative, "channels": _whole, "scales": _whole,
}


def load_settings() -> dict[str, Any]:
    """The saved choices that are valid; a corrupt file must not stop the widget from opening.

    A file that cannot be read as a JSON object, or holds invalid entries, gives the defaults
    for what is lost and one warning naming it.
    """
    path = settings_path()
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        _warn(f"napari-dip: could not read the saved settings {path} ({error}); using the defaults")
        return {}
    if not isinstance(values, dict):
        _warn(f"napari-dip: the saved settings {path} are not a JSON object; using the defaults")
        return {}
    valid = {key: value for key, value in values.items() if key in _FIELDS and _FIELDS[key](value)}
    bad = [f"{key}={value!r}" for key, value in values.items() if key in _FIELDS and key not in valid]
    advanced = values.get("advanced", {})
    if isinstance(advanced, dict):
        valid["advanced"] = {
            key: value for key, value in advanced.items() if key in _ADVANCED and _ADVANCED[key](value)
        }
        bad += [f"advanced.{key}={advanced[key]!r}" for key in advanced if key in _ADVANCED
                and key not in valid["advanced"]]
    else:
        bad.append(f"advanced={advanced!r}")
    if bad:
        _warn(f"napari-dip: ignoring invalid saved settings in {path} ({', '.join(bad)}); using the defaults for them")
    return valid


def _warn(message: str) -> None:
    """One notification in napari, or a Python warning where napari is absent (a script)."""
    try:
        from napari.utils.notifications import show_warning
    except ImportError:
        import warnings

        warnings.warn(message, stacklevel=3)
    else:
        show_warning(message)


def save_settings(values: dict[str, Any]) -> None:
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2, sort_keys=True), encoding="utf-8")
    except OSError:
        # A read-only config directory costs the user their remembered settings, not the run.
        pass
