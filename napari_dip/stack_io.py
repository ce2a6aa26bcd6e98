"""Stacks on disk opened lazily: zarr arrays and TIFF files, read one selection at a time.

Both come back as zarr arrays, so ``stack[index]`` reads only the chunks (TIFF pages) it needs,
and ``dask.array.from_zarr`` can wrap them. zarr is an optional dependency (``napari-dip[batch]``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .io import check_pixels, open_tiff

__all__ = ["open_stack", "STACK_SUFFIXES"]

STACK_SUFFIXES = {".zarr", ".tif", ".tiff"}


def open_stack(path: str | Path) -> Any:
    """Open a zarr array (or the first array of a zarr group) or a TIFF file, read-only, lazily.

    Parameters
    ----------
    path : str or Path
        A ``.zarr`` folder, or a ``.tif``/``.tiff`` file (its first series).

    Returns
    -------
    zarr.Array
        Indexing reads only what it selects.

    Raises
    ------
    ValueError
        For other file types, a zarr group without arrays, or chunks (TIFF strips or tiles) so big
        that reading one would exceed :func:`napari_dip.io.max_pixels`.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in STACK_SUFFIXES:
        raise ValueError(f"unsupported stack type {path.suffix!r} for {path}: use a .zarr folder or a TIFF file")
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    try:
        import zarr
    except ImportError:
        raise ValueError("reading stacks lazily needs zarr: pip install 'napari-dip[batch]'") from None
    if suffix == ".zarr":
        node = _open_zarr(zarr, path)
    else:
        import tifffile

        with open_tiff(path):  # one sentence for a file that is no TIFF, or holds no image
            pass
        node = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    if isinstance(node, zarr.Group):
        # OME-Zarr and pyramidal TIFFs keep the full resolution in the first array ("0").
        names = sorted(name for name, _ in node.arrays())
        if not names:
            raise ValueError(f"the zarr group {path} holds no array; give the folder of a zarr array, or of a group "
                             "that holds one")
        node = node[names[0]]
    if 0 in tuple(node.shape):
        raise ValueError(f"{path} holds no pixels (shape {tuple(node.shape)}): give a stack with at least one plane")
    # The header's word: a TIFF claiming one strip of 100000² pixels would allocate it whole.
    check_pixels(path, math.prod(node.chunks), tuple(node.chunks), at_once=" in one piece")
    return node


def _open_zarr(zarr: Any, path: Path) -> Any:
    """The zarr array or group at ``path``, or one sentence saying why there is none."""
    if not path.is_dir():
        raise ValueError(
            f"{path} is a file, not a zarr folder: give the folder zarr wrote, or a PNG, JPEG or TIFF file"
        )
    # zarr 3 names its base error BaseZarrError, zarr 2 _BaseZarrError.
    not_found = tuple(error for error in (getattr(zarr.errors, "BaseZarrError", None),
                                          getattr(zarr.errors, "_BaseZarrError", None)) if error is not None)
    try:
        return zarr.open(str(path), mode="r")
    except (*not_found, FileNotFoundError, KeyError):
        if not any(path.iterdir()):
            raise ValueError(
                f"the zarr folder {path} is empty: it holds no array; give the folder of a zarr array"
            ) from None
        raise ValueError(
            f"the folder {path} holds no zarr array or group (no zarr.json, .zarray or .zgroup); "
            "give the folder of a zarr array"
        ) from None
    except ValueError as error:  # metadata that is not JSON, or names an unknown codec
        raise ValueError(f"the zarr metadata in {path} cannot be read ({error}); rewrite the array with zarr") from None
