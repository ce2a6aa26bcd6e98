"""Stacks on disk opened lazily: zarr arrays and TIFF files, read one selection at a time.

Both come back as zarr arrays, so ``stack[index]`` reads only the chunks (TIFF pages) it needs,
and ``dask.array.from_zarr`` can wrap them. zarr is an optional dependency (``napari-dip[batch]``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .io import check_pixels

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
        node = zarr.open(str(path), mode="r")
    else:
        import tifffile

        node = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    if isinstance(node, zarr.Group):
        # OME-Zarr and pyramidal TIFFs keep the full resolution in the first array ("0").
        names = sorted(name for name, _ in node.arrays())
        if not names:
            raise ValueError(f"the zarr group {path} holds no array")
        node = node[names[0]]
    # The header's word: a TIFF claiming one strip of 100000² pixels would allocate it whole.
    check_pixels(path, math.prod(node.chunks), tuple(node.chunks), at_once=" in one piece")
    return node
