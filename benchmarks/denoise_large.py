"""Denoising a large image end to end: DIP (as a user's run plans it) against BM3D and NL-means.

    python benchmarks/denoise_large.py [--size 1411] [--image retina] [--sigma 25] [--threads 2]
        [--methods bm3d nlm dip] [--preset default] [--set KEY=VALUE ...] [--name dip]
        [--region TOP LEFT SIDE] [--out benchmarks/results/denoise_large]

The ground truth is the centred SIZE² crop of a bundled scikit-image picture (the whole 1411² RGB
``retina`` by default) as 8-bit values scaled to [0, 1]; the noisy input adds Gaussian noise of
σ = SIGMA/255 (``numpy.random.default_rng(0)``), clipped to [0, 1] and handed over as float32, the
way a user's exported image arrives. DIP runs through ``restore_iter`` with no tiling option, so
the planner cuts the image for the memory budget exactly as the widget and the CLI would, and stops
by itself. Each method's row (PSNR and SSIM over the whole image, seconds, peak RSS of this
process so far, DIP's iterations, plan and stop) is appended to ``results.csv`` in ``--out``;
``table.md`` is rewritten from every row there, and ``zoom_<size>.png`` shows a 256² detail of
the truth, the noisy input and each method run in this call.

``--region TOP LEFT SIDE`` scores one square of the noisy image instead (the same noise as the
whole image's run): a tile of the plan a whole-image run makes, restored on its own, to see what
each tile costs when the whole run takes too long to measure.
"""

from __future__ import annotations

import argparse
import csv
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from _measure import logged_run, picture, psnr, ssim
from curve import _value

FIELDS = ("image", "size", "sigma", "method", "psnr", "ssim", "seconds", "peak_rss_gib", "threads",
          "iterations", "plan", "stop", "command")


def ground_truth(name: str, size: int) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    h, w = image.shape[:2]
    size = min(size, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size].astype(np.float32) / 255


def _peak() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def run_dip(noisy: np.ndarray, args) -> tuple[np.ndarray, dict]:
    from napari_dip.core import restore_iter

    advanced = {key: _value(value) for key, value in (item.split("=", 1) for item in args.set)}
    run = restore_iter(noisy, "denoise", preset=args.preset, threads=args.threads, seed=0,
                       preview_seconds=None, **advanced)
    result, seconds = logged_run(run)
    return np.clip(np.asarray(result.image, dtype=np.float32), 0, 1), {
        "seconds": round(seconds, 1), "iterations": result.iterations, "plan": result.plan,
        "stop": result.stop_message}


def run_bm3d(noisy: np.ndarray, args) -> tuple[np.ndarray, dict]:
    import bm3d

    start = time.perf_counter()
    sigma = args.sigma / 255
    out = bm3d.bm3d_rgb(noisy, sigma) if noisy.ndim == 3 else bm3d.bm3d(noisy, sigma)
    return np.clip(out, 0, 1).astype(np.float32), {"seconds": round(time.perf_counter() - start, 1),
                                                   "stop": "σ known"}


def run_nlm(noisy: np.ndarray, args) -> tuple[np.ndarray, dict]:
    from skimage.restoration import denoise_nl_means, estimate_sigma

    start = time.perf_counter()
    axis = -1 if noisy.ndim == 3 else None
    sigma = float(np.mean(estimate_sigma(noisy, channel_axis=axis)))
    out = denoise_nl_means(noisy, h=sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True,
                           channel_axis=axis)
    return np.clip(out, 0, 1).astype(np.float32), {"seconds": round(time.perf_counter() - start, 1),
                                                   "stop": f"σ estimated {sigma * 255:.1f}"}


METHODS = {"bm3d": ("BM3D (σ known)", run_bm3d), "nlm": ("NL-means (σ estimated)", run_nlm),
           "dip": ("DIP", run_dip)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1411)
    parser.add_argument("--image", default="retina")
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["bm3d", "nlm", "dip"])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="DIP advanced settings")
    parser.add_argument("--name", help="the DIP row's name (default: DIP <preset> and the --set items)")
    parser.add_argument("--region", type=int, nargs=3, metavar=("TOP", "LEFT", "SIDE"),
                        help="restore and score only this square of the noisy image")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "denoise_large")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    truth = ground_truth(args.image, args.size)
    size = truth.shape[0]
    rng = np.random.default_rng(0)
    noisy = np.clip(truth + rng.normal(scale=args.sigma / 255, size=truth.shape), 0, 1).astype(np.float32)
    where = f"{size}²"
    if args.region:
        top, left, side = args.region
        truth, noisy = (a[top:top + side, left:left + side] for a in (truth, noisy))
        where = f"{size}², rows {top}:{top + truth.shape[0]}, columns {left}:{left + truth.shape[1]}"
    print(f"{args.image} {where}, σ {args.sigma:g}: noisy input {psnr(truth, noisy):.2f} dB", flush=True)
    command = "python " + shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    rows, panels = [], [truth, noisy]
    for key in args.methods:
        label, method = METHODS[key]
        if key == "dip":
            label = args.name or " ".join([f"DIP {args.preset}", *args.set])
        image, extra = method(noisy, args)
        row = {"image": args.image, "size": where, "sigma": args.sigma, "method": label,
               "psnr": round(psnr(truth, image), 2), "ssim": round(ssim(truth, image), 4),
               "peak_rss_gib": _peak(), "threads": args.threads, "command": command, **extra}
        print({k: v for k, v in row.items() if k != "command"}, flush=True)
        rows.append(row)
        panels.append(image)

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.csv"
    old = list(csv.DictReader(results.open())) if results.exists() else []
    with results.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(old + rows)
    table = ["# Denoising large images end to end", "",
             "Each row's command is in results.csv; peak RSS is of the process that ran the row.", "",
             "| image | σ | method | PSNR dB | SSIM | seconds | threads | iterations | plan | stop | peak RSS GiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in old + rows:
        table.append(f"| {row['image']} {row['size']} | {float(row['sigma']):g} | {row['method']} | {row['psnr']} | "
                     f"{row['ssim']} | {row['seconds']} | {row['threads']} | {row.get('iterations') or ''} | "
                     f"{row.get('plan') or ''} | {row.get('stop') or ''} | {row['peak_rss_gib']} |")
    (args.out / "table.md").write_text("\n".join(table) + "\n")
    centre = truth.shape[0] // 2
    zoom = (slice(max(centre - 128, 0), centre + 128), slice(max(centre - 128, 0), centre + 128))
    name = f"{size}" + (f"_{args.region[0]}_{args.region[1]}" if args.region else "")
    picture(args.out / f"zoom_{name}_{'_'.join(args.methods)}.png", [panel[zoom] for panel in panels])
    print("\n".join(table))


if __name__ == "__main__":
    main()
