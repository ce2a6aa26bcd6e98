"""Warm start on a time-lapse: iterations and PSNR per plane, cold versus warm.

    python benchmarks/warm_start.py [--planes 6] [--size 64] [--channels 128] [--threads 1]

The stack is a drifting crop of scikit-image's camera (one pixel per frame down and right), each
frame with its own Gaussian noise (σ = 25/255), restored plane by plane with the default preset
(automatic stopping on), once from fresh weights for every plane and once with warm start:
the first plane as before (plus a refit up to its best iteration, counted here), then each plane
from the previous plane's weights for half the first plane's best iteration count at 0.3 times
the learning rate (``napari_dip.core.stacks.WARM_*``).
"""

from __future__ import annotations

import argparse

import numpy as np
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from napari_dip.core.stacks import restore_stack


def drifting_movie(planes: int, size: int, sigma: float = 25.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clean and noisy (T, size, size) uint8 frames."""
    camera = data.camera()
    clean = np.stack([camera[100 + t : 100 + t + size, 200 + t : 200 + t + size] for t in range(planes)])
    noise = np.random.default_rng(seed).normal(scale=sigma, size=clean.shape)
    return clean, np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planes", type=int, default=6)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    clean, noisy = drifting_movie(args.planes, args.size)
    runs = {
        warm: restore_stack(noisy, warm_start=warm, channels=args.channels, threads=args.threads, progress=True)
        for warm in (False, True)
    }
    print(f"\n{args.planes}×{args.size}×{args.size} camera drift, σ=25, default preset, channels={args.channels}")
    print("| plane | noisy PSNR | cold iterations | cold PSNR | warm iterations | warm PSNR |")
    print("| --- | --- | --- | --- | --- | --- |")
    for t in range(args.planes):
        row = [f"{peak_signal_noise_ratio(clean[t], noisy[t]):.2f}"]
        for warm in (False, True):
            run = runs[warm]
            row += [str(run.iterations[t]), f"{peak_signal_noise_ratio(clean[t], run.image[t]):.2f}"]
        print(f"| {t} | " + " | ".join(row) + " |")
    cold, warm = runs[False], runs[True]
    print(
        f"| total | | {sum(cold.iterations)} ({cold.elapsed:.0f} s) | "
        f"{peak_signal_noise_ratio(clean, cold.image):.2f} | "
        f"{sum(warm.iterations)} + {warm.refit_iterations} refit ({warm.elapsed:.0f} s) | "
        f"{peak_signal_noise_ratio(clean, warm.image):.2f} |"
    )


if __name__ == "__main__":
    main()
