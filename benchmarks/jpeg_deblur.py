"""JPEG artifact removal and deblurring with a known PSF: DIP against what a user could run instead.

    python benchmarks/jpeg_deblur.py [--size 96] [--cap 1000] [--threads 1]
        [--jpeg-images astronaut coffee chelsea camera] [--qualities 10 20]
        [--blur-images camera astronaut] [--psfs gaussian motion] [--noises 1 3]
        [--out benchmarks/results/jpeg_deblur] [--quick]

JPEG: each image (centre square, SIZE², colour where it has colour) is saved by Pillow at quality
10 and 20 (4:2:0 chroma) and read back. DIP runs the ``jpeg`` task's default preset (automatic
stopping, cap ``--cap``); BM3D and NL-means (scikit-image) run at the noise level
``skimage.restoration.estimate_sigma`` finds in the JPEG image, as a user without the original
would, and BM3D at the best of σ = 5, 10, 15, 20 against the original (an oracle, as an upper
bound); the JPEG itself is the baseline.

Deblurring: grayscale images blurred with a Gaussian PSF (σ = 1.6 px, 11²) or a motion PSF (a
line of 9 px at 30°), symmetric boundaries, plus Gaussian noise of 1 % or 3 % of the range. DIP
runs the ``deblur`` task's default preset with the PSF; Richardson-Lucy (10 and 30 iterations)
and unsupervised Wiener are scikit-image's. Scores leave out a border of the PSF's radius.

For every DIP run the PSNR of its running average is recorded every 50 steps: ``best_psnr`` and
``best_iteration`` say how far the automatic stop (``iterations``, ``stop``) was from the peak.
Writes ``results.csv``, ``table.md`` and pictures (input, DIP, the best classical result,
truth) into ``--out``.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from _measure import dip_run, load, mean_table, picture, psnr, ssim, write

TITLE = "JPEG artifacts and deblurring: DIP against classical methods"
ORACLE_SIGMAS = (5, 10, 15, 20)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer)).astype(np.float32) / 255


def motion_psf(length: int = 9, angle: float = 30.0) -> np.ndarray:
    from skimage.draw import line_aa

    size = length if length % 2 else length + 1
    centre = (size - 1) / 2
    dy, dx = np.sin(np.deg2rad(angle)) * (length - 1) / 2, np.cos(np.deg2rad(angle)) * (length - 1) / 2
    psf = np.zeros((size, size))
    rows, cols, values = line_aa(round(centre - dy), round(centre - dx), round(centre + dy), round(centre + dx))
    psf[rows, cols] = values
    return psf / psf.sum()


def psf_for(kind: str) -> np.ndarray:
    from napari_dip.core.operators import psf_gaussian

    return psf_gaussian(1.6, 11) if kind == "gaussian" else motion_psf()


def _bm3d(observed: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return np.clip(bm3d.bm3d_rgb(observed, sigma) if observed.ndim == 3 else bm3d.bm3d(observed, sigma), 0, 1)


def classical_jpeg(observed: np.ndarray, truth: np.ndarray) -> dict[str, tuple[np.ndarray, float, dict]]:
    from skimage.restoration import denoise_nl_means, estimate_sigma

    channel_axis = -1 if observed.ndim == 3 else None
    sigma = float(np.mean(estimate_sigma(observed, channel_axis=channel_axis)))
    out: dict[str, tuple[np.ndarray, float, dict]] = {"JPEG input": (observed, 0.0, {})}
    start = time.perf_counter()
    nlm = denoise_nl_means(observed, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True,
                           channel_axis=channel_axis)
    out["NL-means"] = (np.clip(nlm, 0, 1), time.perf_counter() - start, {"sigma_est": round(sigma * 255, 2)})
    start = time.perf_counter()
    out["BM3D"] = (_bm3d(observed, sigma), time.perf_counter() - start, {"sigma_est": round(sigma * 255, 2)})
    # An upper bound no user has: BM3D at the σ that scores best against the original.
    start = time.perf_counter()
    tried = {level: _bm3d(observed, level / 255) for level in ORACLE_SIGMAS}
    level = max(tried, key=lambda s: psnr(truth, tried[s]))
    out["BM3D (oracle σ)"] = (tried[level], (time.perf_counter() - start) / len(tried), {"sigma_est": level})
    return out


def classical_deblur(observed: np.ndarray, psf: np.ndarray) -> dict[str, tuple[np.ndarray, float, dict]]:
    from skimage.restoration import richardson_lucy, unsupervised_wiener

    out: dict[str, tuple[np.ndarray, float, dict]] = {"blurred input": (observed, 0.0, {})}
    for iterations in (10, 30):
        start = time.perf_counter()
        result = richardson_lucy(observed, psf, num_iter=iterations, clip=True)
        out[f"Richardson-Lucy {iterations}"] = (result, time.perf_counter() - start, {})
    start = time.perf_counter()
    wiener, _ = unsupervised_wiener(observed, psf, clip=True, rng=0)
    out["Wiener (unsupervised)"] = (np.clip(wiener, 0, 1), time.perf_counter() - start, {})
    return out


def _score(rows: list[dict], case: dict, truth: np.ndarray, results: dict, border: int) -> None:
    for method, (result, seconds, extra) in results.items():
        row = {**case, "method": method, "psnr": round(psnr(truth, result, border), 2),
               "ssim": round(ssim(truth, result, border), 4), "seconds": round(seconds, 1), **extra}
        rows.append(row)
        print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--cap", type=int, default=1000, help="DIP's iteration cap (automatic stopping stays on)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jpeg-images", nargs="*", default=["astronaut", "coffee", "chelsea", "camera"])
    parser.add_argument("--qualities", type=int, nargs="*", default=[10, 20])
    parser.add_argument("--blur-images", nargs="*", default=["camera", "astronaut"])
    parser.add_argument("--psfs", nargs="*", default=["gaussian", "motion"], choices=["gaussian", "motion"])
    parser.add_argument("--noises", type=float, nargs="*", default=[1.0, 3.0], help="noise σ in % of the range")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/jpeg_deblur"))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 32², 20 iterations, a narrow network, one case of each")
    args = parser.parse_args()
    fit: dict = {"threads": args.threads, "iterations": args.cap, "auto_stop": True}
    if args.quick:
        args.size, args.jpeg_images, args.qualities = 32, args.jpeg_images[:1], args.qualities[:1]
        args.blur_images, args.psfs, args.noises = args.blur_images[:1], args.psfs[:1], args.noises[:1]
        fit.update(iterations=20, channels=8, scales=3, min_iterations=0)
    rows: list[dict] = []
    for name in args.jpeg_images:
        truth = load(name, args.size)
        for quality in args.qualities:
            observed = jpeg(truth, quality)
            results = {"DIP (jpeg, default)": dip_run(observed, truth, "jpeg", **fit),
                       **classical_jpeg(observed, truth)}
            _score(rows, {"task": "jpeg", "image": name, "degradation": f"quality {quality}"}, truth, results, 0)
            best = max(("NL-means", "BM3D"), key=lambda m: psnr(truth, results[m][0]))
            picture(args.out / f"jpeg_{name}_q{quality}.png",
                    [observed, results["DIP (jpeg, default)"][0], results[best][0], truth])
            write(args.out, rows, _tables(rows), TITLE)
    for name in args.blur_images:
        truth = load(name, args.size, gray=True)
        for kind in args.psfs:
            psf = psf_for(kind)
            border = psf.shape[0] // 2
            for noise in args.noises:
                from scipy.signal import convolve2d

                rng = np.random.default_rng(0)
                blurred = convolve2d(truth, psf, mode="same", boundary="symm")
                observed = np.clip(blurred + rng.normal(0, noise / 100, truth.shape), 0, 1).astype(np.float32)
                results = {"DIP (deblur, default)": dip_run(observed, truth, "deblur", psf=psf, border=border, **fit),
                           **classical_deblur(observed, psf)}
                case = {"task": "deblur", "image": name, "degradation": f"{kind} PSF, {noise:g} % noise"}
                _score(rows, case, truth, results, border)
                classical = [m for m in results if m.startswith(("Richardson", "Wiener"))]
                best = max(classical, key=lambda m: psnr(truth, results[m][0], border))
                picture(args.out / f"deblur_{name}_{kind}_{noise:g}.png",
                        [observed, results["DIP (deblur, default)"][0], results[best][0], truth])
                write(args.out, rows, _tables(rows), TITLE)


def _tables(rows: list[dict]) -> list[str]:
    lines = ["PSNR/SSIM against the original (deblurring: without a border of the PSF's radius); "
             "DIP's best_psnr is the peak of its running average, recorded every 50 steps.", ""]
    lines += mean_table(rows, ("task", "degradation", "method"), ("psnr", "ssim", "seconds", "best_psnr"))
    return lines


if __name__ == "__main__":
    main()
