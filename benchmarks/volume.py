"""A z-stack restored whole with a 3D network against plane by plane, and classical filters.

    python benchmarks/volume.py [--depth 16] [--size 64] [--sigma 25] [--threads 1] [--cap N]

The volume is synthetic, as scikit-image bundles no 3D microscopy: its ``binary_blobs`` in 3D
(blobs about a tenth of the side across, a quarter of the volume), smoothed by a Gaussian of
σ = 1 voxel like an optical point-spread function, scaled to [0.1, 0.9] and cut to DEPTH slices;
then Gaussian noise of σ = SIGMA/255 is added. Restorations:

- DIP 3D: ``restore(volume, volume=True)``, the default preset (stopping by itself);
- DIP 2D: ``restore_stack``, each slice on its own with the default preset;
- 3D Gaussian filter, at the σ that scores best against the truth (an oracle's choice);
- NL-means in 3D (scikit-image, patch 5, distance 6, h = 0.8 σ), and per slice in 2D.

PSNR is over the whole volume, SSIM the mean of the slices'. The DIP 3D run also prints its averaged output's PSNR
every 100 iterations, to show where it peaks against where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.data import binary_blobs
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import denoise_nl_means

from napari_dip.core import resolve_settings, restore_iter
from napari_dip.core.stacks import restore_stack
from napari_dip.core.stopping import WindowedVarianceStopper, clipped_noise_sigma


def blob_volume(depth: int, size: int, seed: int = 0) -> np.ndarray:
    """(depth, size, size) float32 in [0.1, 0.9]: smoothed 3D blobs."""
    blobs = binary_blobs(length=size, n_dim=3, blob_size_fraction=0.1, volume_fraction=0.25, rng=seed)
    smooth = ndimage.gaussian_filter(blobs[:depth].astype(np.float64), 1.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (0.1 + 0.8 * smooth).astype(np.float32)


def score(clean: np.ndarray, restored: np.ndarray) -> tuple[float, float]:
    restored = np.clip(restored, 0, 1)
    ssim = np.mean([structural_similarity(c, r, data_range=1.0) for c, r in zip(clean, restored, strict=True)])
    return peak_signal_noise_ratio(clean, restored, data_range=1.0), float(ssim)


def record_curve(clean: np.ndarray, noisy: np.ndarray, args: argparse.Namespace) -> None:
    """The 3D run with stopping off to the cap, and the engine's stopping rules watching: per
    iteration the loss, smoothed loss / σ̂², and output variance; PSNR of the average every 25."""
    settings = resolve_settings("denoise", iterations=args.cap or None)
    sigma = clipped_noise_sigma(noisy)
    watcher = WindowedVarianceStopper.from_settings(settings, sigma)
    run = restore_iter(noisy, volume=True, threads=args.threads, seed=0, preview_seconds=None,
                       preview_iterations=1, **{"iterations": args.cap} if args.cap else {}, auto_stop=False)
    args.curve.parent.mkdir(parents=True, exist_ok=True)
    stopped = None
    with args.curve.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "loss", "loss_over_sigma2", "variance", "psnr_avg", "stop"])
        for event in run:
            watcher.observe_loss(event.iteration - 1, event.loss)
            watcher.observe(event.iteration - 1, torch.from_numpy(np.asarray(event.output, np.float32)))
            kind = watcher.stop_kind if stopped is None else None
            if kind is not None:
                stopped = (event.iteration, kind)
                print(f"stopping rule: {kind} at {event.iteration}", flush=True)
            psnr = score(clean, event.preview)[0] if event.iteration % 25 == 0 else float("nan")
            writer.writerow([event.iteration, f"{event.loss:.6g}", f"{watcher.smoothed_loss / sigma**2:.4f}",
                             f"{watcher.variance:.6g}", f"{psnr:.3f}", kind or ""])
            if event.iteration % 100 == 0:
                ratio = watcher.smoothed_loss / sigma**2
                print(f"{event.iteration} avg {psnr:.2f} dB, loss/σ̂² {ratio:.3f}", flush=True)
    print(f"σ̂ = {sigma * 255:.2f}/255; first stop: {stopped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cap", type=int, default=None, help="iteration cap of the DIP runs (default: the preset's)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["3d", "2d", "classical"])
    parser.add_argument("--curve", type=Path, help="instead: record the 3D run's curve to this CSV")
    args = parser.parse_args()
    clean = blob_volume(args.depth, args.size)
    sigma = args.sigma / 255
    noisy = np.clip(clean + np.random.default_rng(0).normal(scale=sigma, size=clean.shape), 0, 1).astype(np.float32)
    cap = {"iterations": args.cap, "auto_stop": True} if args.cap else {}
    if args.curve is not None:
        record_curve(clean, noisy, args)
        return
    rows: list[tuple[str, np.ndarray, float, str]] = [("noisy", noisy, 0.0, "")]

    if "classical" not in args.skip:
        start = time.perf_counter()
        best = max((ndimage.gaussian_filter(noisy, s) for s in np.arange(0.5, 2.51, 0.25)),
                   key=lambda image: score(clean, image)[0])
        rows.append(("3D Gaussian filter (oracle σ)", best, time.perf_counter() - start, ""))
        nl = dict(patch_size=5, patch_distance=6, h=0.8 * sigma, sigma=sigma, fast_mode=True)
        start = time.perf_counter()
        rows.append(("NL-means 3D", denoise_nl_means(noisy, **nl), time.perf_counter() - start, ""))
        start = time.perf_counter()
        per_slice = np.stack([denoise_nl_means(plane, **nl) for plane in noisy])
        rows.append(("NL-means per slice", per_slice, time.perf_counter() - start, ""))

    if "2d" not in args.skip:
        start = time.perf_counter()
        stack = restore_stack(noisy, threads=args.threads, seed=0, **cap)
        iterations = f"{min(stack.iterations)}-{max(stack.iterations)} per slice"
        rows.append(("DIP 2D, slice by slice", np.asarray(stack.image), time.perf_counter() - start, iterations))
        print(f"DIP 2D: {iterations}, {score(clean, np.asarray(stack.image))[0]:.2f} dB", flush=True)

    if "3d" not in args.skip:
        start = time.perf_counter()
        run = restore_iter(noisy, volume=True, threads=args.threads, seed=0, preview_seconds=None,
                           preview_iterations=100, **cap)
        try:
            while True:
                event = next(run)
                if event.preview is not None:
                    print(f"DIP 3D {event.iteration:5d} {time.perf_counter() - start:7.1f}s "
                          f"avg {score(clean, event.preview)[0]:.2f} dB", flush=True)
        except StopIteration as done:
            result = done.value
        rows.append(("DIP 3D, whole volume", result.image, time.perf_counter() - start,
                     f"{result.iterations} ({result.stop_reason})"))

    print(f"\nblobs {args.depth}×{args.size}×{args.size}, σ = {args.sigma:g}/255, default preset, "
          f"{args.threads} thread(s)")
    print("| restoration | PSNR | SSIM | seconds | iterations |")
    print("| --- | --- | --- | --- | --- |")
    for name, image, seconds, iterations in rows:
        psnr, ssim = score(clean, image)
        print(f"| {name} | {psnr:.2f} | {ssim:.3f} | {seconds:.0f} | {iterations} |")


if __name__ == "__main__":
    main()
