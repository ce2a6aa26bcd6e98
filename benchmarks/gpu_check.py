"""The prepared GPU check: one short script for a session that is lent a device.

    python benchmarks/gpu_check.py [--device cuda] [--out DIR] [--budget 480]
    python benchmarks/gpu_check.py --device cpu --quick      # the same code path on tiny images

Answers, on the device it is given, what the large-image issue asks of a GPU, shortest first so
that a run cut by its time limit still leaves the first answers in ``DIR/gpu_check.csv`` (one row
written as soon as it is measured):

1. seconds per step of the default and paper presets at 256², eager and compiled, and the default
   at 1024² and 1411²: how much compiling pays there and how the cost grows;
2. a full default run of the 256² astronaut (σ = 25, seed 0, the same problem as ``bench.py``)
   to its automatic stop: PSNR, SSIM, iterations, seconds, against the paper preset's best
   average on the CPU (30.77 dB, ``results/bench_full.md``) and its step time measured in (1);
3. a full default run of the 1411² ``retina`` (σ = 25) to its stop: PSNR, SSIM, seconds, peak
   device memory, against BM3D's PSNR if ``bm3d`` is installed (computed on the CPU after the
   run, when time is left).

``--budget`` (seconds) skips what would not finish in the time left, judged by the step times
already measured. Peak memory is ``torch.cuda.max_memory_allocated`` (CUDA) or peak RSS (CPU).
"""

from __future__ import annotations

import argparse
import csv
import resource
import time
from pathlib import Path

import numpy as np
import torch
from _measure import psnr, ssim
from problems import denoise_problem

PAPER_BEST_256 = 30.77  # results/bench_full.md: the paper preset's best average, it 2150 of 3000
PAPER_ITERATIONS = 3000


def noisy_retina(side: int | None, sigma: float = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    truth = data.retina().astype(np.float32) / 255
    if side is not None:
        top = (truth.shape[0] - side) // 2
        truth = truth[top:top + side, top:top + side]
    rng = np.random.default_rng(seed)
    noisy = np.clip(truth + rng.normal(scale=sigma / 255, size=truth.shape), 0, 1).astype(np.float32)
    return truth, noisy


def peak_memory_gib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def step_seconds(image: np.ndarray, device: str, preset: str, compile: str, iterations: int) -> tuple[float, float]:
    """Median seconds per step after the first few, and the seconds to the first step (compile)."""
    from napari_dip.core import restore_iter

    run = restore_iter(image, "denoise", preset=preset, iterations=iterations, device=device,
                       preview_seconds=None, compile=compile, auto_stop=False)
    start = time.perf_counter()
    stamps = [time.perf_counter() for event in run if event.message is None]
    first = stamps[0] - start
    steps = np.diff(stamps)[3:]
    return float(np.median(steps)), first


def full_run(image: np.ndarray, truth: np.ndarray, device: str, iterations: int | None = None) -> dict:
    from napari_dip.core import consume, restore_iter

    reset_peak(device)
    start = time.perf_counter()
    extra = {} if iterations is None else {"iterations": iterations}
    result = consume(restore_iter(image, "denoise", device=device, preview_seconds=None, **extra))
    seconds = time.perf_counter() - start
    restored = np.clip(np.asarray(result.image, dtype=np.float32), 0, 1)
    return {"psnr": round(psnr(truth, restored), 2), "ssim": round(ssim(truth, restored), 4),
            "iterations": result.iterations, "seconds": round(seconds, 1), "plan": result.plan,
            "stop": result.stop_message, "peak_gib": round(peak_memory_gib(device), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check"))
    parser.add_argument("--budget", type=float, default=480, help="seconds; what would not fit is skipped")
    parser.add_argument("--quick", action="store_true", help="tiny images and few steps (checks the script)")
    args = parser.parse_args()
    begin = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_check.csv"
    fields = ["what", "size", "preset", "compile", "seconds_per_step", "first_step_s", "psnr", "ssim",
              "iterations", "seconds", "plan", "stop", "peak_gib", "note"]
    handle = open(path, "w", newline="")
    writer = csv.DictWriter(handle, fieldnames=fields)
    writer.writeheader()

    def emit(**row) -> None:
        writer.writerow(row)
        handle.flush()
        print(row, flush=True)

    def left() -> float:
        return args.budget - (time.perf_counter() - begin)

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    emit(what="device", note=f"{name}; torch {torch.__version__}")
    small, sizes, steps = (64, (96, 128), 8) if args.quick else (256, (1024, 1411), 30)
    astronaut = denoise_problem("astronaut", small)
    step = {}
    # --quick leaves compiling out: on a CPU a first compile takes a minute or more.
    compiles = ("off",) if args.quick else ("off", "on")
    for preset, compile in ((preset, compile) for preset in ("default", "paper") for compile in compiles):
        seconds, first = step_seconds(astronaut.observed, args.device, preset, compile, steps)
        step[preset, compile] = seconds
        emit(what="step", size=small, preset=preset, compile=compile, seconds_per_step=round(seconds, 4),
             first_step_s=round(first, 1))
    faster = min(compiles, key=lambda c: step["default", c])
    for side in sizes:
        _, noisy = noisy_retina(None if side == 1411 else side)
        seconds, first = step_seconds(noisy, args.device, "default", faster, steps)
        step["default", side] = seconds
        emit(what="step", size=side, preset="default", compile=faster, seconds_per_step=round(seconds, 4),
             first_step_s=round(first, 1))

    cap = 30 if args.quick else 2400
    if left() > step["default", faster] * cap * 1.2:
        row = full_run(astronaut.observed, astronaut.truth, args.device, cap if args.quick else None)
        paper = min(step["paper", c] for c in compiles) * PAPER_ITERATIONS
        emit(what="full run", size=small, preset="default", **row,
             note=f"paper preset: best {PAPER_BEST_256} dB (CPU curve), {paper:.0f} s for {PAPER_ITERATIONS} "
                  f"iterations here; ratio {paper / row['seconds']:.1f}")
    else:
        emit(what="full run", size=small, note="skipped: not enough time left")
    last = sizes[-1]
    truth, noisy = noisy_retina(None if last == 1411 else last)
    if left() > step["default", last] * cap * 1.2:
        row = full_run(noisy, truth, args.device, cap if args.quick else None)
        emit(what="full run", size=last, preset="default", **row)
        if left() > 120:
            try:
                import bm3d
            except ImportError:
                emit(what="BM3D", size=last, note="bm3d is not installed")
            else:
                start = time.perf_counter()
                restored = np.clip(bm3d.bm3d_rgb(noisy, 25 / 255), 0, 1)
                emit(what="BM3D", size=last, psnr=round(psnr(truth, restored), 2),
                     ssim=round(ssim(truth, restored), 4), seconds=round(time.perf_counter() - start, 1))
    else:
        emit(what="full run", size=last, note="skipped: not enough time left")
    handle.close()


if __name__ == "__main__":
    main()
