"""Guided restoration: the flash/no-flash pair of the paper, and a synthetic case with ground truth.

    python benchmarks/guided.py [--pair-dir ../shared/data/flash_no_flash] [--pair-scale 0.4]
        [--pair-iterations 601] [--pair-channels 64] [--size 96] [--images astronaut coffee]
        [--sigmas 25 50] [--cap 1000] [--threads 1] [--out benchmarks/results/guided] [--quick]

Flash/no-flash: the pair (see its README) is resized by ``--pair-scale``; the flash photograph is
the network's input code and the no-flash one the target, with the official notebook's
optimisation (601 iterations, learning rate 0.1, no input noise, 5 scales, 4-channel skips) on a
network of ``--pair-channels`` channels (the notebook's 128 cost 2.6× the time on this CPU) with
bilinear upsampling throughout (the notebook mixes nearest and bilinear). No ground truth exists,
so it is scored by (1) the noise σ (0-255) that ``skimage.restoration.estimate_sigma`` finds in
the flattest 24² window of the scene (flattest in the flash image, which has little noise), in
the no-flash input, the result and the flash image, and (2) the PSNR of the result's low-pass
(Gaussian, σ = 4 px) against the no-flash one's and the flash one's: the result should keep the
no-flash lighting. Picture: flash, no-flash, result, with the flat window outlined.

Synthetic: a bundled image (centre square, SIZE², colour) is the truth; the target is it plus
Gaussian noise of σ (0-255); the guide is a clean image of the same scene taken differently, its
luminance with another tone curve (γ = 0.6) under a smooth illumination ramp, one channel. DIP
with the guide, DIP without it (the denoising default preset, both with automatic stopping and a
cap of ``--cap``), and BM3D at the true σ. PSNR/SSIM against the truth, seconds, and for DIP the
peak of its running average's PSNR (every 50 steps). Writes ``results.csv``, ``table.md`` and the
pictures into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _measure import dip_run, load, mean_table, picture, psnr, ssim, write

TITLE = "Guided restoration: flash/no-flash and a synthetic guided case"
PAIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "flash_no_flash"
WINDOW = 24


def load_pair(folder: Path, scale: float) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    from skimage.transform import rescale

    flash, noflash = (np.asarray(Image.open(folder / name)).astype(np.float32) / 255
                      for name in ("cave01_00_flash.jpg", "cave01_01_noflash.jpg"))
    if scale != 1:
        flash, noflash = (np.clip(rescale(image, scale, channel_axis=-1, anti_aliasing=True), 0, 1).astype(np.float32)
                          for image in (flash, noflash))
    return flash, noflash


def flattest_window(image: np.ndarray, size: int = WINDOW) -> tuple[slice, slice]:
    """The ``size``² window (on a grid of ``size`` / 3) with the lowest standard deviation."""
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    step = max(1, size // 3)
    best, where = np.inf, (0, 0)
    for top in range(0, gray.shape[0] - size + 1, step):
        for left in range(0, gray.shape[1] - size + 1, step):
            spread = float(gray[top:top + size, left:left + size].std())
            if spread < best:
                best, where = spread, (top, left)
    return slice(where[0], where[0] + size), slice(where[1], where[1] + size)


def noise_sigma(image: np.ndarray, window: tuple[slice, slice]) -> float:
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(image[window], channel_axis=-1, average_sigmas=True)) * 255


def low_pass_psnr(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.ndimage import gaussian_filter

    return psnr(gaussian_filter(a, (4, 4, 0)), gaussian_filter(b, (4, 4, 0)))


def outlined(image: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    marked = image.copy()
    rows, cols = window
    marked[rows.start, cols] = marked[rows.stop - 1, cols] = (1, 1, 0)
    marked[rows, cols.start] = marked[rows, cols.stop - 1] = (1, 1, 0)
    return marked


def flash_no_flash(args, rows: list[dict]) -> None:
    flash, noflash = load_pair(args.pair_dir, args.pair_scale)
    settings = dict(iterations=args.pair_iterations, lr=0.1, reg_noise_std=0.0, channels=args.pair_channels,
                    top_channels=args.pair_channels, skip_channels=4, scales=args.pair_scales, threads=args.threads)
    start = time.perf_counter()
    from napari_dip import restore

    result = np.clip(restore(noflash, guide=flash, **settings), 0, 1)
    seconds = time.perf_counter() - start
    window = flattest_window(flash)
    for name, image in (("no-flash input", noflash), ("DIP guided by the flash image", result), ("flash image", flash)):
        row = {"case": "flash/no-flash", "image": f"cave01 ×{args.pair_scale:g} ({noflash.shape[1]}×"
                                                  f"{noflash.shape[0]})",
               "method": name, "flat_noise_sigma": round(noise_sigma(image, window), 2),
               "lowpass_psnr_vs_noflash": round(low_pass_psnr(image, noflash), 2),
               "lowpass_psnr_vs_flash": round(low_pass_psnr(image, flash), 2),
               "seconds": round(seconds, 1) if image is result else 0.0,
               "window": f"rows {window[0].start}-{window[0].stop}, cols {window[1].start}-{window[1].stop}"}
        rows.append(row)
        print(row, flush=True)
    picture(args.out / "flash_no_flash.png", [outlined(image, window) for image in (flash, noflash, result)])


def synthetic_guide(truth: np.ndarray) -> np.ndarray:
    luminance = truth @ np.array([0.299, 0.587, 0.114], np.float32) if truth.ndim == 3 else truth
    ramp = np.linspace(0.55, 1.0, truth.shape[1], dtype=np.float32)[None, :]
    return (luminance**0.6 * ramp).astype(np.float32)


def synthetic(args, rows: list[dict], fit: dict) -> None:
    import bm3d

    for name in args.images:
        truth = load(name, args.size)
        guide = synthetic_guide(truth)
        for sigma in args.sigmas:
            rng = np.random.default_rng(0)
            noisy = np.clip(truth + rng.normal(0, sigma / 255, truth.shape), 0, 1).astype(np.float32)
            results = {
                "DIP with the guide": dip_run(noisy, truth, "denoise", guide=guide, **fit),
                "DIP without a guide": dip_run(noisy, truth, "denoise", **fit),
                "noisy input": (noisy, 0.0, {}),
            }
            start = time.perf_counter()
            denoised = bm3d.bm3d_rgb(noisy, sigma / 255) if noisy.ndim == 3 else bm3d.bm3d(noisy, sigma / 255)
            results["BM3D (true σ)"] = (np.clip(denoised, 0, 1), time.perf_counter() - start, {})
            for method, (result, seconds, extra) in results.items():
                row = {"case": "synthetic", "image": name, "sigma": sigma, "method": method,
                       "psnr": round(psnr(truth, result), 2), "ssim": round(ssim(truth, result), 4),
                       "seconds": round(seconds, 1), **extra}
                rows.append(row)
                print(row, flush=True)
            picture(args.out / f"synthetic_{name}_sigma{sigma:g}.png",
                    [guide, noisy, results["DIP with the guide"][0], results["DIP without a guide"][0],
                     results["BM3D (true σ)"][0], truth])
            write(args.out, rows, _tables(rows), TITLE)


def _tables(rows: list[dict]) -> list[str]:
    pair = [row for row in rows if row["case"] == "flash/no-flash"]
    lines = []
    if pair:
        lines += ["## Flash/no-flash", "",
                  "| image | method | noise σ in the flattest window | low-pass PSNR vs no-flash | "
                  "low-pass PSNR vs flash | s |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['image']} | {r['method']} | {r['flat_noise_sigma']} | {r['lowpass_psnr_vs_noflash']} | "
                  f"{r['lowpass_psnr_vs_flash']} | {r['seconds']} |" for r in pair]
        lines += ["", f"Window: {pair[0]['window']}.", ""]
    synthetic_rows = [row for row in rows if row["case"] == "synthetic"]
    if synthetic_rows:
        lines += ["## Synthetic guide (clean, other tone curve and lighting) and noisy target", ""]
        lines += mean_table(synthetic_rows, ("sigma", "method"), ("psnr", "ssim", "seconds", "best_psnr"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair-dir", type=Path, default=PAIR)
    parser.add_argument("--pair-scale", type=float, default=0.4)
    parser.add_argument("--pair-iterations", type=int, default=601)
    parser.add_argument("--pair-channels", type=int, default=64)
    parser.add_argument("--pair-scales", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", nargs="*", default=["astronaut", "coffee"])
    parser.add_argument("--sigmas", type=float, nargs="*", default=[25, 50])
    parser.add_argument("--cap", type=int, default=1000, help="DIP's iteration cap (automatic stopping stays on)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/guided"))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: the pair at 1/16, 32² synthetic images, a few iterations, narrow networks")
    args = parser.parse_args()
    fit: dict = {"threads": args.threads, "iterations": args.cap, "auto_stop": True}
    if args.quick:
        args.pair_scale, args.pair_iterations, args.pair_channels, args.pair_scales = 0.0625, 5, 8, 3
        args.size, args.images, args.sigmas = 32, args.images[:1], args.sigmas[:1]
        fit.update(iterations=20, channels=8, scales=3, min_iterations=0)
    rows: list[dict] = []
    if args.pair_dir.is_dir():
        flash_no_flash(args, rows)
        write(args.out, rows, _tables(rows), TITLE)
    else:
        print(f"no flash/no-flash pair in {args.pair_dir}: skipping it")
    synthetic(args, rows, fit)


if __name__ == "__main__":
    main()
