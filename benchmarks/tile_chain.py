"""Tiles fitted from scratch against tiles warm-started from the tile before (denoising).

    python benchmarks/tile_chain.py --threads 1 --out benchmarks/results/tile_chain

A 256×512 strip of the camera image (rows 128-384), σ = 25, cut into three 256² tiles that
overlap by 128 (the planner's grid for tiles of 256 with overlap ≥ 64). Each tile is fitted with
the default preset, which stops by itself; "chained" fits tiles 2 and 3 from the final weights of
the tile before, "fresh" from a new random network (today's tiling). Tile 1 is the same fit in
both. Per tile: iterations, seconds, PSNR against the clean strip; then the blended strips.
The question: does a network that has already fitted one part of an image fit the next part in
fewer iterations to the same quality (a large image's cost would then grow slower than its area)?
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_dip.core.api import consume  # noqa: E402
from napari_dip.core.fitting import fit_array  # noqa: E402
from napari_dip.core.layout import Layout  # noqa: E402
from napari_dip.core.options import RestoreOptions  # noqa: E402
from napari_dip.core.tiling import blend_weights, tile_starts  # noqa: E402


def psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    truth = data.camera()[128:384].astype(np.float32) / 255
    rng = np.random.default_rng(0)
    noisy = np.clip(truth + rng.normal(0, args.sigma / 255, truth.shape), 0, 1).astype(np.float32)
    starts = tile_starts(truth.shape[1], args.tile, args.overlap)
    weights = blend_weights(starts, args.tile, truth.shape[1])
    options = RestoreOptions.from_kwargs("denoise", threads=args.threads, preview_seconds=None, seed=0)
    layout = Layout.of((1, truth.shape[0], args.tile), 0)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, strips, first = [], {}, None
    for mode in ("fresh", "chained"):
        blended = np.zeros_like(truth)
        state = None
        for index, start in enumerate(starts):
            window = (slice(None), slice(start, start + args.tile))
            if index == 0 and first is not None:
                restoration, seconds = first
            else:
                begin = time.perf_counter()
                run = fit_array(noisy[window][None], options, layout, keep_state=True,
                                initial_state=state if mode == "chained" else None)
                restoration = consume(run)
                seconds = time.perf_counter() - begin
                if index == 0:
                    first = (restoration, seconds)
            state = restoration.state
            tile = restoration.image[0]
            blended[window] += tile * weights[index][None, :]
            row = dict(mode=mode, tile=index + 1, iterations=restoration.iterations, stop=restoration.stop_reason,
                       seconds=round(seconds, 1), psnr=round(psnr(tile, truth[window]), 3))
            rows.append(row)
            print(row, flush=True)
        strips[mode] = blended
        np.save(args.out / f"{mode}.npy", blended)
    with (args.out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"noisy strip {psnr(noisy, truth):.2f} dB")
    for mode, strip in strips.items():
        total = sum(r["seconds"] for r in rows if r["mode"] == mode)
        its = sum(r["iterations"] for r in rows if r["mode"] == mode)
        print(f"{mode}: strip {psnr(strip, truth):.2f} dB, {its} iterations, {total:.0f} s")


if __name__ == "__main__":
    main()
