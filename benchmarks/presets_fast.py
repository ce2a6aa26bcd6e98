"""What the ``fast`` preset costs and gives against ``default``, on one small image.

    python benchmarks/presets_fast.py [--size 128] [--sigma 25] [--presets fast default]

The astronaut resized to ``--size``² (as docs/make_screenshots.py makes it), Gaussian noise of
``--sigma`` (0-255 scale, seed 0), each preset run to its own end (automatic stop or cap) at one
thread, compile off (at this size "auto" would not compile either). Prints a markdown table:
iterations, why it stopped, wall and CPU seconds (the CPU time of one thread is the steadier
figure on a shared machine), PSNR of the result, and PSNR of the running average
every 200 iterations (from previews, which cost a little time).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def noisy_astronaut(size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    from skimage import data
    from skimage.transform import resize

    clean = resize(data.astronaut().astype(np.float64) / 255, (size, size), anti_aliasing=True)
    noisy = np.clip(clean + np.random.default_rng(0).normal(scale=sigma / 255, size=clean.shape), 0, 1)
    return clean.astype(np.float32), noisy.astype(np.float32)


def psnr(clean: np.ndarray, image: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(clean, np.clip(image, 0, 1), data_range=1.0))


def run(preset: str, clean: np.ndarray, noisy: np.ndarray) -> dict:
    from napari_dip.core import restore_iter

    along = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    generator = restore_iter(noisy, preset=preset, threads=1, compile="off", preview_seconds=None,
                             preview_iterations=200)
    try:
        while True:
            event = next(generator)
            if event.preview is not None and event.iteration % 200 == 0:
                along[event.iteration] = psnr(clean, event.preview)
    except StopIteration as done:
        result = done.value
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"preset": preset, "iterations": result.iterations, "stop": result.stop_reason,
            "seconds": seconds, "cpu": cpu, "psnr": psnr(clean, result.image), "along": along}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--presets", nargs="+", default=["fast", "default"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    clean, noisy = noisy_astronaut(args.size, args.sigma)
    print(f"noisy input: {psnr(clean, noisy):.2f} dB")
    print("| preset | iterations | stop | seconds | CPU seconds | PSNR (dB) | PSNR of the average every 200 it. |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for preset in args.presets:
        row = run(preset, clean, noisy)
        along = ", ".join(f"{i}: {value:.2f}" for i, value in row["along"].items())
        print(f"| {preset} | {row['iterations']} | {row['stop']} | {row['seconds']:.1f} | {row['cpu']:.1f} "
              f"| {row['psnr']:.2f} | {along} |", flush=True)


if __name__ == "__main__":
    main()
