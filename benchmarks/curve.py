"""Record one DIP run's PSNR/SSIM curve to CSV (raw output and exponential average).

    python benchmarks/curve.py --task denoise --size 256 --preset paper \
        --out benchmarks/results/curve_paper_denoise_astronaut256.csv

Deterministic for a seed, so a long paper-preset curve can be cached and reused by bench.py.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import PROBLEMS  # noqa: E402

from napari_dip.core import restore_iter  # noqa: E402


def record(problem, preset: str, every: int, out: Path, threads: int | None, **advanced) -> dict:
    run = restore_iter(
        problem.observed, problem.task, preset=preset, seed=0, threads=threads,
        preview_seconds=None, preview_iterations=every, **problem.kwargs, **advanced,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    step_start = start
    step_seconds = []
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "seconds", "psnr_raw", "psnr_avg", "ssim_avg", "loss"])
        try:
            while True:
                event = next(run)
                now = time.perf_counter()
                step_seconds.append(now - step_start)
                if event.preview is not None:
                    raw, _ = problem.score(event.output)
                    avg, ssim = problem.score(event.preview)
                    writer.writerow([event.iteration, f"{now - start:.2f}", f"{raw:.3f}", f"{avg:.3f}",
                                     f"{ssim:.4f}", f"{event.loss:.6g}"])
                    handle.flush()
                    print(f"{event.iteration:5d} {now - start:8.1f}s raw {raw:.2f} avg {avg:.2f}", flush=True)
                step_start = time.perf_counter()
        except StopIteration as done:
            result = done.value
    psnr, ssim = problem.score(result.image)
    steps = sorted(step_seconds[5:] or step_seconds)
    return {
        "psnr": psnr, "ssim": ssim, "iterations": result.iterations, "stop_reason": result.stop_reason,
        "seconds": time.perf_counter() - start, "seconds_per_iteration": steps[len(steps) // 2],
        "best_iteration": result.best_iteration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(PROBLEMS), default="denoise")
    parser.add_argument("--image", default="astronaut")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    kwargs = {"sigma": args.sigma} if args.task == "denoise" else {}
    problem = PROBLEMS[args.task](args.image, args.size, **kwargs)
    summary = record(problem, args.preset, args.every, args.out, args.threads)
    print(summary)


if __name__ == "__main__":
    main()
