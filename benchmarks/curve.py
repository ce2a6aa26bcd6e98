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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import PROBLEMS  # noqa: E402

from napari_dip.core import resolve_settings, restore_iter  # noqa: E402
from napari_dip.core.fitting import fit_intensity, fit_noise_sigma  # noqa: E402
from napari_dip.core.stopping import WindowedVarianceStopper, clipped_noise_sigma  # noqa: E402


def noise_sigma_of(problem, settings=None) -> float | None:
    """What the engine estimates for a denoising problem's stopping rule (None otherwise): with
    ``settings.stretch``, in the stretched range the fit's loss is in, channel by channel."""
    if problem.task != "denoise":
        return None
    observed = np.asarray(problem.observed)
    if settings is None:
        return clipped_noise_sigma(observed if observed.ndim == 2 else observed.transpose(2, 0, 1))
    chw = observed[None] if observed.ndim == 2 else observed.transpose(2, 0, 1)
    return fit_noise_sigma(fit_intensity(chw, settings).to_unit(chw), settings)


def record(problem, preset: str, every: int, out: Path, threads: int | None, **advanced) -> dict:
    """Run once with automatic stopping off, scoring every ``every`` iterations.

    The same stopping rule the engine uses watches every output alongside, so one run gives
    both the whole curve and exactly where (and with what PSNR) auto-stop would have stopped:
    stopping changes nothing in the fit itself, only when it ends.
    """
    settings = resolve_settings(problem.task, preset, problem.kwargs.get("scale"), **advanced)
    run = restore_iter(
        problem.observed, problem.task, preset=preset, seed=0, threads=threads,
        preview_seconds=None, preview_iterations=1, **problem.kwargs, **{**advanced, "auto_stop": False},
    )
    watcher = WindowedVarianceStopper.from_settings(settings, noise_sigma_of(problem, settings))
    auto = {}
    held = None
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    step_start = start
    step_seconds = []
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "seconds", "psnr_raw", "psnr_avg", "ssim_avg", "loss", "variance"])
        try:
            while True:
                event = next(run)
                now = time.perf_counter()
                step_seconds.append(now - step_start)
                watcher.observe_loss(event.iteration - 1, event.loss)
                watcher.observe(event.iteration - 1, torch.from_numpy(np.asarray(event.output, np.float32)))
                if watcher.snapshot_due:
                    held = event.preview
                if watcher.should_stop and not auto:
                    # What the engine returns at an automatic stop.
                    result_now = held if watcher.stop_kind == "noise" else event.preview
                    auto = {"auto_stop_iteration": event.iteration, "auto_best_iteration": watcher.best_iteration + 1,
                            "auto_psnr": problem.score(result_now)[0], "auto_seconds": now - start}
                    print(f"auto-stop would stop at {event.iteration}: {auto}", flush=True)
                scored = event.iteration % every == 0 or event.iteration == event.iterations
                raw = avg = ssim = float("nan")
                if scored:
                    raw, _ = problem.score(event.output)
                    avg, ssim = problem.score(event.preview)
                    print(f"{event.iteration:5d} {now - start:8.1f}s raw {raw:.2f} avg {avg:.2f}", flush=True)
                # Every iteration gets a row (the variance, for evaluating stopping rules offline);
                # PSNR/SSIM only every ``every`` iterations.
                writer.writerow([event.iteration, f"{now - start:.2f}", f"{raw:.3f}", f"{avg:.3f}",
                                 f"{ssim:.4f}", f"{event.loss:.6g}", f"{watcher.variance:.6g}"])
                if scored:
                    handle.flush()
                step_start = time.perf_counter()
        except StopIteration as done:
            result = done.value
    psnr, ssim = problem.score(result.image)
    steps = sorted(step_seconds[5:] or step_seconds)
    return {
        "psnr": psnr, "ssim": ssim, "iterations": result.iterations,
        "seconds": time.perf_counter() - start, "seconds_per_iteration": steps[len(steps) // 2], **auto,
    }


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


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
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="advanced settings, e.g. --set channels=64 precision=bfloat16")
    args = parser.parse_args()
    advanced = {key: _value(value) for key, value in (item.split("=", 1) for item in args.set)}
    kwargs = {"sigma": args.sigma} if args.task == "denoise" else {}
    problem = PROBLEMS[args.task](args.image, args.size, **kwargs)
    summary = record(problem, args.preset, args.every, args.out, args.threads, **advanced)
    print(summary)


if __name__ == "__main__":
    main()
