"""Do tile seams show? PSNR of a tiled and an untiled restoration of the same image.

    python benchmarks/tile_seams.py [--size 512] [--tile 320] [--overlap 64] [--iterations N]
        [--parts untiled tiled] [--save DIR]

scikit-image's whole camera (512², cropped to SIZE² from its top-left corner) with Gaussian noise
σ = 25/255 (the same noisy image as ``curve.py --image camera512 --size 512``) is denoised once
whole and once in overlapping tiles, with the same seed and settings: the default preset, which
stops each fit (each tile) by itself, or a fixed ``--iterations`` per fit. Besides the PSNR of
the whole image, it reports the PSNR in a band of ±8 pixels around the centre of every overlap,
where a seam would be, and elsewhere.

``--parts`` runs only some restorations (the two can then run side by side, one per core) and
``--save DIR`` keeps each result (``DIR/<part>.npy`` and ``.json``); parts not run are read back
from DIR when they are there, so the table can compare runs made separately.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import denoise_problem  # noqa: E402

from napari_dip.core import consume, restore_iter  # noqa: E402
from napari_dip.core.tiling import restore_tiled_iter, tile_starts  # noqa: E402


def seam_band(size: int, tile: int, overlap: int, half_width: int = 8) -> np.ndarray:
    """(size, size) bool: rows or columns within ``half_width`` of an overlap's centre."""
    starts = tile_starts(size, tile, overlap)
    near = np.zeros(size, bool)
    for previous, start in zip(starts, starts[1:], strict=False):
        centre = (start + previous + tile) // 2
        near[max(0, centre - half_width) : centre + half_width] = True
    return near[:, None] | near[None, :]


def run_part(part: str, noisy: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    fit = dict(iterations=args.iterations, channels=args.channels, threads=args.threads, preview_seconds=None)
    start = time.perf_counter()
    if part == "untiled":
        result = consume(restore_iter(noisy, **fit))
        info = {"iterations": [result.iterations]}
    else:
        result = consume(restore_tiled_iter(noisy, tile_size=args.tile, overlap=args.overlap, **fit))
        info = {"iterations": [run["iterations"] for run in result.runs], "tiles": len(result.windows)}
    info["seconds"] = time.perf_counter() - start
    return np.asarray(result.image, np.float32), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=320)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=None, help="default: automatic stopping")
    parser.add_argument("--channels", type=int, default=None, help="default: the preset's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", nargs="+", choices=["untiled", "tiled"], default=["untiled", "tiled"])
    parser.add_argument("--save", type=Path, help="keep results here; read parts not run from here")
    args = parser.parse_args()
    problem = denoise_problem("camera512", args.size, sigma=25)
    clean, noisy = problem.truth, problem.observed
    results: dict[str, tuple[np.ndarray, dict]] = {}
    for part in ("untiled", "tiled"):
        saved = args.save / f"{part}.npy" if args.save else None
        if part in args.parts:
            image, info = run_part(part, noisy, args)
            results[part] = image, info
            if saved is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                np.save(saved, image)
                saved.with_suffix(".json").write_text(json.dumps(info))
            print(f"{part}: {info}", flush=True)
        elif saved is not None and saved.exists():
            results[part] = np.load(saved), json.loads(saved.with_suffix(".json").read_text())
    band = seam_band(args.size, args.tile, args.overlap)

    def psnr(image: np.ndarray, where: np.ndarray | None = None) -> float:
        image = np.clip(image, 0, 1)
        where = np.ones(clean.shape, bool) if where is None else where
        return peak_signal_noise_ratio(clean[where], image[where], data_range=1.0)

    fits = f"{args.iterations} iterations per fit" if args.iterations else "each fit stopped automatically"
    print(f"\ncamera {args.size}×{args.size}, σ=25, {fits}, channels={args.channels or 'default'}, "
          f"tiles of {args.tile}² overlapping by ≥ {args.overlap}")
    print("| restoration | PSNR | PSNR at seams (±8 px) | PSNR elsewhere | iterations | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| noisy | {psnr(noisy):.2f} | {psnr(noisy, band):.2f} | {psnr(noisy, ~band):.2f} | | |")
    for name, (image, info) in results.items():
        its = ", ".join(str(n) for n in info["iterations"])
        print(f"| {name} | {psnr(image):.2f} | {psnr(image, band):.2f} | {psnr(image, ~band):.2f} | {its} "
              f"| {info['seconds']:.0f} |")
    if len(results) == 2:
        print(f"tiled − untiled: {psnr(results['tiled'][0]) - psnr(results['untiled'][0]):+.2f} dB")


if __name__ == "__main__":
    main()
