"""Do tile seams show? PSNR of a tiled and an untiled restoration of the same image.

    python benchmarks/tile_seams.py [--size 512] [--tile 320] [--overlap 64] [--iterations N] [--channels C]

scikit-image's camera (SIZE×SIZE from its top-left corner), with Gaussian noise σ = 25/255, is
denoised once whole and once in overlapping tiles, with the same seed and settings: the default
preset, which stops each fit (each tile) by itself, or a fixed ``--iterations`` per fit. Besides
the PSNR of the whole image, it reports the PSNR in a band of ±8 pixels around the centre of
every overlap, where a seam would be, and elsewhere.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from napari_dip.core import consume, restore_iter
from napari_dip.core.tiling import restore_tiled_iter, tile_starts


def seam_band(size: int, tile: int, overlap: int, half_width: int = 8) -> np.ndarray:
    """(size, size) bool: rows or columns within ``half_width`` of an overlap's centre."""
    starts = tile_starts(size, tile, overlap)
    near = np.zeros(size, bool)
    for previous, start in zip(starts, starts[1:], strict=False):
        centre = (start + previous + tile) // 2
        near[max(0, centre - half_width) : centre + half_width] = True
    return near[:, None] | near[None, :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=320)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=None, help="default: automatic stopping")
    parser.add_argument("--channels", type=int, default=None, help="default: the preset's")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    clean = data.camera()[: args.size, : args.size]
    noise = np.random.default_rng(0).normal(scale=25, size=clean.shape)
    noisy = np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)
    fit = dict(iterations=args.iterations, channels=args.channels, threads=args.threads, preview_seconds=None)
    start = time.perf_counter()
    untiled = consume(restore_iter(noisy, **fit))
    untiled_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tiled = consume(restore_tiled_iter(noisy, tile_size=args.tile, overlap=args.overlap, **fit))
    tiled_seconds = time.perf_counter() - start
    band = seam_band(args.size, args.tile, args.overlap)

    def psnr(image: np.ndarray, where: np.ndarray | None = None) -> float:
        if where is None:
            return peak_signal_noise_ratio(clean, image)
        return peak_signal_noise_ratio(clean[where], image[where], data_range=255)

    print(
        f"\ncamera {args.size}×{args.size}, σ=25, {args.iterations or 'automatically stopped'} iterations per fit, "
        f"channels={args.channels or 'default'}, "
        f"{len(tiled.windows)} tiles of {args.tile}² overlapping by ≥ {args.overlap}"
    )
    print("| restoration | PSNR | PSNR at seams (±8 px) | PSNR elsewhere | seconds |")
    print("| --- | --- | --- | --- | --- |")
    rows = [("noisy", noisy, None), ("untiled", untiled.image, untiled_seconds), ("tiled", tiled.image, tiled_seconds)]
    for name, image, seconds in rows:
        took = f"{seconds:.0f}" if seconds is not None else ""
        print(f"| {name} | {psnr(image):.2f} | {psnr(image, band):.2f} | {psnr(image, ~band):.2f} | {took} |")
    print(f"tiled − untiled: {psnr(tiled.image) - psnr(untiled.image):+.2f} dB; "
          f"iterations: untiled {untiled.iterations}, tiles {[run['iterations'] for run in tiled.runs]}")


if __name__ == "__main__":
    main()
