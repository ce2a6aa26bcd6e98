"""Peak memory of a tiled restoration of a big single-channel image.

    /usr/bin/time -v python benchmarks/big_image.py [--size 4096] [--iterations 2] [--memory-limit-gib 3]

A noisy SIZE×SIZE uint16 image (scikit-image's camera, tiled and resized up) is denoised with
the default network and a few iterations per tile on one CPU thread; the tile size follows
from ``--memory-limit-gib`` (omit it to size tiles from the free memory). Prints the tiles, the
time and this process's peak RSS; ``/usr/bin/time -v`` reports the same peak as "Maximum
resident set size".
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from skimage import data
from skimage.transform import resize

from napari_dip.core.tiling import restore_tiled_iter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--memory-limit-gib", type=float, default=None)
    args = parser.parse_args()
    camera = resize(data.camera(), (args.size, args.size), order=1, preserve_range=True)
    noisy = camera * 200 + np.random.default_rng(0).normal(scale=25 * 200, size=camera.shape)
    image = np.clip(noisy, 0, 65535).astype(np.uint16)
    del camera, noisy
    limit = int(args.memory_limit_gib * 2**30) if args.memory_limit_gib else None
    start = time.perf_counter()
    run = restore_tiled_iter(image, iterations=args.iterations, threads=1, preview_seconds=None, memory_limit=limit)
    tile = -1
    try:
        while True:
            event = next(run)
            if event.tile != tile:
                tile = event.tile
                print(f"tile {tile + 1}/{event.tiles} at {time.perf_counter() - start:.0f} s", flush=True)
    except StopIteration as done:
        result = done.value
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{args.size}×{args.size} uint16, {args.iterations} iterations per tile, default network, 1 thread: "
        f"{len(result.windows)} tiles of {result.tile_size}² (overlap {result.overlap}), "
        f"{time.perf_counter() - start:.0f} s, peak RSS {peak_gib:.2f} GiB; "
        f"result {result.image.shape} {result.image.dtype}"
    )


if __name__ == "__main__":
    main()
