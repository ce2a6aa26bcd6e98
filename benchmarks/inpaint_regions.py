"""Inpainting only around the painted pixels: windows against the whole image, and a large image.

    python benchmarks/inpaint_regions.py margins [--size 256] [--images astronaut coffee]
        [--margins 32 64] [--threads 1] [--out benchmarks/results/inpaint_regions]
    python benchmarks/inpaint_regions.py large [--threads 2] [--out benchmarks/results/inpaint_regions]

Inpainting that keeps the known pixels changes only the painted ones, so the plugin fits a
window around each painted region: the region and ``REGION_MARGIN`` pixels around it
(napari_dip/core/tiling.py). ``margins`` measures what that costs in quality: on SIZE² crops
of bundled images with an object-sized ellipse painted over, the default preset with windows
of each margin against the same preset fitted on the whole image: PSNR inside the mask,
seconds, iterations. ``large`` is the megapixel case of issue
#11: scikit-image's 1411² ``retina`` with a few thousand painted pixels, the default preset
(windows) against biharmonic and OpenCV's Telea and Navier-Stokes, and what the whole-image
path would have cost (its tile plan). Writes ``margins.csv``/``large.csv``, a table
(``margins.md``/``large.md``) and pictures of the painted regions into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from inpaint_masks import load, psnr, ssim

from napari_dip.core import consume, restore_iter, tiling


def painted(size: int, seed: int = 0, stroke: bool = True) -> np.ndarray:
    """An ellipse an eighth of the side wide (an object to remove) in the upper left, and a
    3-px stroke a fifth of the side long (a scratch) in the lower right."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    rng = np.random.default_rng(seed)
    cy, cx = (int(v) for v in rng.integers(size // 5, size // 3, 2))
    ry, rx = size // 24, size // 16
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    y0, x0 = (int(v) for v in rng.integers(size * 3 // 5, size * 4 // 5, 2))
    if stroke:
        draw.line((x0, y0, x0 + size // 5, y0 + size // 12), fill=255, width=3)
    return np.asarray(canvas) > 0


def run_dip(image: np.ndarray, fill: np.ndarray, threads: int, margin: int | None) -> tuple[np.ndarray, float, dict]:
    """The default preset with windows of ``margin`` (None: the whole image)."""
    saved = tiling.REGION_MARGIN, tiling.REGION_SHARE, tiling.FILL_TILE_SAVING
    if margin is None:
        tiling.REGION_SHARE = tiling.FILL_TILE_SAVING = 0.0
    else:
        tiling.REGION_MARGIN = margin
    try:
        start = time.perf_counter()
        result = consume(restore_iter(image, "inpaint", mask=fill, threads=threads, preview_seconds=None))
        return result.image, time.perf_counter() - start, {"iterations": result.iterations, "plan": result.plan}
    finally:
        tiling.REGION_MARGIN, tiling.REGION_SHARE, tiling.FILL_TILE_SAVING = saved


def classical(image: np.ndarray, fill: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    import cv2
    from skimage.restoration import inpaint_biharmonic

    out = {}
    start = time.perf_counter()
    filled = inpaint_biharmonic(image / 255.0, fill, channel_axis=-1 if image.ndim == 3 else None)
    out["biharmonic"] = (np.clip(filled * 255, 0, 255).round().astype(np.uint8), time.perf_counter() - start)
    for label, flag in (("OpenCV Telea", cv2.INPAINT_TELEA), ("OpenCV NS", cv2.INPAINT_NS)):
        start = time.perf_counter()
        out[label] = (cv2.inpaint(np.ascontiguousarray(image), fill.astype(np.uint8), 3, flag),
                      time.perf_counter() - start)
    return out


def crops(images: dict[str, np.ndarray], fill: np.ndarray, margin: int = 24) -> np.ndarray:
    """Each painted region of each result, side by side (rows: regions; columns: results)."""
    from scipy import ndimage

    labels, _ = ndimage.label(fill)
    rows = []
    for box in ndimage.find_objects(labels):
        window = tuple(slice(max(0, s.start - margin), s.stop + margin) for s in box)
        panels = [image[window] for image in images.values()]
        height = max(panel.shape[0] for panel in panels)
        panels = [np.pad(p, ((0, height - p.shape[0]), (0, 4)) + ((0, 0),) * (p.ndim - 2)) for p in panels]
        rows.append(np.concatenate(panels, axis=1))
    width = max(row.shape[1] for row in rows)
    return np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1])) + ((0, 0),) * (r.ndim - 2)) for r in rows])


def write(out: Path, name: str, rows: list[dict], command: str) -> None:
    with open(out / f"{name}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    keys = list(rows[0])
    lines = [f"command: {command}", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(row[key]) for key in keys) + " |" for row in rows]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[2:]))


def margins(args) -> None:
    from PIL import Image

    rows = []
    for name in args.images:
        truth = load(name, args.size)
        fill = painted(args.size, stroke=False)
        observed = truth.copy()
        observed[fill] = 0
        results = {"input": observed, "truth": truth}
        for margin in [None, *args.margins]:
            image, seconds, info = run_dip(observed, fill, args.threads, margin)
            label = "whole image" if margin is None else f"margin {margin}"
            results[label] = image
            rows.append(dict(image=name, size=args.size, painted_px=int(fill.sum()), dip=label,
                             psnr_mask=round(psnr(truth, image, fill), 2), ssim=round(ssim(truth, image), 4),
                             seconds=round(seconds, 1), iterations=info["iterations"], plan=info["plan"]))
            print(rows[-1], flush=True)
        for label, (image, seconds) in classical(observed, fill).items():
            rows.append(dict(image=name, size=args.size, painted_px=int(fill.sum()), dip=label,
                             psnr_mask=round(psnr(truth, image, fill), 2), ssim=round(ssim(truth, image), 4),
                             seconds=round(seconds, 2), iterations="", plan=""))
        Image.fromarray(crops(results, fill)).save(args.out / f"margins_{name}.png")
    write(args.out, "margins", rows, args.command)


def large(args) -> None:
    from PIL import Image
    from skimage import data

    from napari_dip.core.api import plan_run
    from napari_dip.core.options import RestoreOptions

    truth = data.retina()
    size = truth.shape[0]
    rng = np.random.default_rng(1)
    fill = np.zeros(truth.shape[:2], dtype=bool)
    for seed in range(3):  # three painted regions spread over the image
        part = painted(size // 3, seed)
        top, left = (int(v) for v in rng.integers(0, size - size // 3, 2))
        fill[top:top + size // 3, left:left + size // 3] |= part
    observed = truth.copy()
    observed[fill] = 0
    whole = RestoreOptions.from_kwargs("inpaint", mask=fill, threads=args.threads)
    saved = tiling.REGION_SHARE, tiling.FILL_TILE_SAVING
    tiling.REGION_SHARE = tiling.FILL_TILE_SAVING = 0.0
    try:
        kind, _, tile = plan_run(observed, whole)
        windows = [w for w in _tile_windows(fill.shape, tile) if fill[w].any()] if tile else [None]
    finally:
        tiling.REGION_SHARE, tiling.FILL_TILE_SAVING = saved
    print(f"without windows: {kind}, tiles of {tile}², {len(windows)} of them with painted pixels", flush=True)
    image, seconds, info = run_dip(observed, fill, args.threads, tiling.REGION_MARGIN)
    results = {"input": observed, "DIP default": image}
    rows = [dict(image="retina", size=size, painted_px=int(fill.sum()), method="DIP default",
                 psnr_mask=round(psnr(truth, image, fill), 2), ssim=round(ssim(truth, image), 4),
                 seconds=round(seconds, 1), iterations=info["iterations"], plan=info["plan"])]
    print(rows[-1], flush=True)
    for label, (other, seconds) in classical(observed, fill).items():
        results[label] = other
        rows.append(dict(image="retina", size=size, painted_px=int(fill.sum()), method=label,
                         psnr_mask=round(psnr(truth, other, fill), 2), ssim=round(ssim(truth, other), 4),
                         seconds=round(seconds, 2), iterations="", plan=""))
    results["truth"] = truth
    rows.append(dict(image="retina", size=size, painted_px=int(fill.sum()), method="(without windows)",
                     psnr_mask="", ssim="", seconds="", iterations="",
                     plan=f"{len(windows)} tiles of {tile}² with painted pixels, each fitted in full"))
    Image.fromarray(crops(results, fill)).save(args.out / "large_retina.png")
    write(args.out, "large", rows, args.command)


def _tile_windows(shape: tuple[int, int], tile: int) -> list[tuple[slice, slice]]:
    rows = tiling.tile_starts(shape[0], tile, min(tiling.DEFAULT_OVERLAP, tile // 4))
    cols = tiling.tile_starts(shape[1], tile, min(tiling.DEFAULT_OVERLAP, tile // 4))
    return [(slice(r, r + tile), slice(c, c + tile)) for r in rows for c in cols]


def main() -> None:
    import sys

    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["margins", "large"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", nargs="+", default=["astronaut", "coffee"])
    parser.add_argument("--margins", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "inpaint_regions")
    args = parser.parse_args()
    args.command = "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    margins(args) if args.mode == "margins" else large(args)


if __name__ == "__main__":
    main()
