"""Inpainting the masks users paint: DIP against biharmonic and OpenCV, known pixels kept.

    python benchmarks/inpaint_masks.py [--size 128] [--images astronaut coffee chelsea camera rocket]
        [--masks strokes text random50] [--threads 1] [--out benchmarks/results/inpaint_masks]

Each bundled image is cut to a centred square and resized to SIZE²; the masks are thin strokes
(PIL lines 2 px wide, 4-8 % of the pixels), text (about 7 %) and 50 % random pixels.
DIP runs the default preset (which returns every unpainted pixel exactly); biharmonic is
scikit-image's, Telea and Navier-Stokes are OpenCV's. PSNR inside the mask and over the image,
SSIM over the image, seconds, and DIP's iterations. Writes ``results.csv``, ``table.md`` and one
picture per image and mask (input, DIP, biharmonic, truth) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

IMAGES = ("astronaut", "coffee", "chelsea", "camera", "rocket")


def load(name: str, size: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    image = getattr(data, name)()
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top:top + side, left:left + side]
    return (resize(square, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)


def mask_for(kind: str, size: int, seed: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    if kind == "random50":
        return rng.random((size, size)) < 0.5
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "strokes":
        for _ in range(4):
            points = [tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(3)]
            draw.line(points, fill=255, width=2)
    elif kind == "text":
        font = ImageFont.load_default(size=max(8, size // 11))
        for row in range(3):
            draw.text((int(rng.integers(0, size // 8)), row * size // 3 + 6), "napari DIP 2018", fill=255, font=font)
    else:
        raise ValueError(f"unknown mask {kind!r}")
    return np.asarray(canvas) > 0


def psnr(truth: np.ndarray, result: np.ndarray, where: np.ndarray | None = None) -> float:
    diff = truth.astype(np.float64) - result.astype(np.float64)
    if where is not None:
        diff = diff[where]
    mse = float(np.mean(diff**2))
    return 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")


def ssim(truth: np.ndarray, result: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(truth, result, channel_axis=-1 if truth.ndim == 3 else None, data_range=255))


def methods(image: np.ndarray, fill: np.ndarray, threads: int) -> dict[str, tuple[np.ndarray, float, dict]]:
    from skimage.restoration import inpaint_biharmonic

    from napari_dip.core import consume, restore_iter

    out = {}
    start = time.perf_counter()
    result = consume(restore_iter(image, "inpaint", mask=fill, threads=threads, preview_seconds=None))
    out["DIP default"] = (result.image, time.perf_counter() - start,
                          {"iterations": result.iterations, "stop": result.stop_reason})
    start = time.perf_counter()
    bh = inpaint_biharmonic(image / 255.0, fill, channel_axis=-1 if image.ndim == 3 else None)
    out["biharmonic"] = (np.clip(bh * 255, 0, 255).round().astype(np.uint8), time.perf_counter() - start, {})
    try:
        import cv2
    except ImportError:
        return out
    for label, flag in (("OpenCV Telea", cv2.INPAINT_TELEA), ("OpenCV NS", cv2.INPAINT_NS)):
        start = time.perf_counter()
        filled = cv2.inpaint(np.ascontiguousarray(image), fill.astype(np.uint8), 3, flag)
        out[label] = (filled, time.perf_counter() - start, {})
    return out


def picture(path: Path, panels: list[np.ndarray]) -> None:
    from PIL import Image

    Image.fromarray(np.concatenate(panels, axis=1)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", nargs="*", default=list(IMAGES))
    parser.add_argument("--masks", nargs="*", default=["strokes", "text", "random50"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inpaint_masks"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in args.masks:
        for index, name in enumerate(args.images):
            truth = load(name, args.size)
            fill = mask_for(kind, args.size, seed=index)
            damaged = truth.copy()
            damaged[fill] = 255
            results = methods(damaged, fill, args.threads)
            for method, (result, seconds, extra) in results.items():
                assert np.array_equal(result[~fill], damaged[~fill]), f"{method} changed known pixels"
                row = dict(mask=kind, image=name, coverage=round(float(fill.mean()), 3), method=method,
                           psnr_mask=round(psnr(truth, result, fill), 2), psnr=round(psnr(truth, result), 2),
                           ssim=round(ssim(truth, result), 4), seconds=round(seconds, 1), **extra)
                rows.append(row)
                print(row, flush=True)
            picture(args.out / f"{name}_{kind}.png",
                    [damaged, results["DIP default"][0], results["biharmonic"][0], truth])
            _write(args.out, rows)


def _write(out: Path, rows: list[dict]) -> None:
    names = sorted({key for row in rows for key in row}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| mask | method | mean PSNR in mask | mean PSNR | mean SSIM | mean s | images |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind in dict.fromkeys(row["mask"] for row in rows):
        for method in dict.fromkeys(row["method"] for row in rows):
            group = [row for row in rows if row["mask"] == kind and row["method"] == method]
            if group:
                mean = {key: np.mean([row[key] for row in group]) for key in ("psnr_mask", "psnr", "ssim", "seconds")}
                lines.append(f"| {kind} | {method} | {mean['psnr_mask']:.2f} | {mean['psnr']:.2f} | "
                             f"{mean['ssim']:.4f} | {mean['seconds']:.1f} | {len(group)} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
