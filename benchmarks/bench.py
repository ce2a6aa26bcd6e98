"""Quality and speed of DIP against the classical methods a user would otherwise pick.

    python benchmarks/bench.py                 # full: denoise 256², inpaint and ×4 SR 128²
    python benchmarks/bench.py --quick         # small sizes, minutes
    python benchmarks/bench.py --tasks denoise --threads 2

For each task it prints one table: classical baselines (PSNR, SSIM, seconds), the ``paper``
preset (best exponential-average PSNR along its curve and where, its PSNR at the paper's fixed
stop, wall time for the fixed iteration count) and the ``default`` preset run for real (PSNR
where it stopped by itself, iterations, wall time), the time ratio, and achieved GFLOP/s against
this machine's measured matmul peak.

A paper-preset run is deterministic for a seed but takes about an hour at 256² on a 2-core CPU,
so its curve is read from ``benchmarks/results/curve_paper_<task>_<image><size>.csv`` (made by
``curve.py``); its time per iteration is measured again here, in the same run as the default, so
that the ratio compares like with like. Results are appended as CSV to ``--csv``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import PROBLEMS, Problem  # noqa: E402

from napari_dip.core import consume, resolve_settings, restore_iter  # noqa: E402
from napari_dip.core.device import choose_threads, resolve_precision, torch_threads  # noqa: E402
from napari_dip.core.networks import build_network  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


# --- classical baselines -------------------------------------------------------------------


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - start


def baselines(problem: Problem) -> list[tuple[str, np.ndarray, float]]:
    channel_axis = -1 if problem.observed.ndim == 3 else None
    found = []
    if problem.task == "denoise":
        from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, estimate_sigma

        sigma = estimate_sigma(problem.observed, channel_axis=channel_axis, average_sigmas=True)
        found.append(("NL-means (σ estimated, h=σ)", *_timed(
            denoise_nl_means, problem.observed, h=sigma, sigma=sigma, patch_size=5, patch_distance=6,
            fast_mode=False, channel_axis=channel_axis)))
        found.append(("TV Chambolle (weight 0.07)", *_timed(
            denoise_tv_chambolle, problem.observed, weight=0.07, channel_axis=channel_axis)))
        try:
            import bm3d
        except ImportError:
            pass
        else:
            sigma_true = float(problem.name.split("σ=")[1]) / 255
            run = bm3d.bm3d_rgb if channel_axis is not None else bm3d.bm3d
            found.append(("BM3D (σ known)", *_timed(run, problem.observed, sigma_true)))
    elif problem.task == "inpaint":
        from skimage.restoration import inpaint_biharmonic

        mask = problem.kwargs["mask"]
        found.append(("biharmonic", *_timed(inpaint_biharmonic, problem.observed, mask, channel_axis=channel_axis)))
        try:
            import cv2
        except ImportError:
            pass
        else:
            image8 = np.rint(problem.observed * 255).astype(np.uint8)
            mask8 = mask.astype(np.uint8)
            for name, flag in (("OpenCV Navier-Stokes r=1", cv2.INPAINT_NS), ("OpenCV Telea r=1", cv2.INPAINT_TELEA)):
                out, seconds = _timed(cv2.inpaint, image8, mask8, 1, flag)
                found.append((name, out.astype(np.float32) / 255, seconds))
    elif problem.task == "sr":
        from PIL import Image

        scale = problem.kwargs["scale"]
        low = Image.fromarray(np.rint(problem.observed * 255).astype(np.uint8))
        size = (low.width * scale, low.height * scale)
        for name, method in (("bicubic", Image.BICUBIC), ("Lanczos", Image.LANCZOS)):
            out, seconds = _timed(low.resize, size, method)
            found.append((name, np.asarray(out, dtype=np.float32) / 255, seconds))
    return found


# --- speed ---------------------------------------------------------------------------------


def matmul_peak_gflops(dtype: torch.dtype, threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Measured peak of this CPU: the best of a few large matrix products."""
    with torch_threads(threads):
        a = torch.randn(size, size, dtype=dtype)
        b = torch.randn(size, size, dtype=dtype)
        torch.mm(a, b)
        best = min(_timed(torch.mm, a, b)[1] for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def flops_per_iteration(problem: Problem, preset: str, **advanced) -> float:
    """Forward + backward FLOPs of one step of the network at this problem's output size."""
    from torch.utils.flop_counter import FlopCounterMode

    settings = resolve_settings(problem.task, preset, problem.kwargs.get("scale"), **advanced)
    channels = problem.truth.shape[2] if problem.truth.ndim == 3 else 1
    net = build_network("skip", in_channels=settings.input_depth, out_channels=channels,
                        **settings.network_kwargs())
    h, w = problem.truth.shape[:2]
    multiple = 2**settings.scales
    z = torch.rand(1, settings.input_depth, -(-h // multiple) * multiple, -(-w // multiple) * multiple)
    with FlopCounterMode(display=False) as counter:
        net(z).square().mean().backward()
    return counter.get_total_flops()


def seconds_per_iteration(problem: Problem, preset: str, threads: int, iterations: int = 12, **advanced) -> float:
    run = restore_iter(problem.observed, problem.task, preset=preset, iterations=iterations, threads=threads,
                       preview_seconds=None, **problem.kwargs, **advanced)
    stamps = []
    for _ in run:
        stamps.append(time.perf_counter())
    steps = np.diff(stamps)[2:]
    return float(np.median(steps))


# --- DIP runs ------------------------------------------------------------------------------


def paper_curve(task: str, problem_key: str) -> tuple[list[dict], str, bool] | None:
    """The paper preset's curve for this problem, and whether it is partial (cut before the
    paper's fixed stop): our own full run if cached, else the official DIP code's curve on the same
    input (../shared/REFERENCE.md), labelled as such; a partial curve only when there is no full one.
    """
    candidates = [
        (f"curve_paper_{problem_key}.csv", "our paper preset", False),
        (f"curve_official_{problem_key}.csv", "the official DIP code", False),
        (f"curve_paper_{problem_key}_partial.csv", "our paper preset", True),
        (f"curve_official_{problem_key}_partial.csv", "the official DIP code", True),
    ]
    for name, source, partial in candidates:
        path = RESULTS / name
        if path.is_file():
            with path.open() as handle:
                rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
            for row in rows:
                row.setdefault("iteration", row.get("iter"))
            return [row for row in rows if not np.isnan(row["psnr_avg"])], source, partial
    return None


def run_default(problem: Problem, threads: int, **advanced) -> dict:
    run = restore_iter(problem.observed, problem.task, preset="default", threads=threads,
                       preview_seconds=None, **problem.kwargs, **advanced)
    start = time.perf_counter()
    result = consume(run)
    seconds = time.perf_counter() - start
    psnr, ssim = problem.score(result.image)
    return {"psnr": psnr, "ssim": ssim, "seconds": seconds, "iterations": result.iterations,
            "stop": result.stop_reason, "best_iteration": result.best_iteration, "image": result.image}


def save_comparison(problem: Problem, restored: np.ndarray, path: Path) -> None:
    """Input | DIP default | ground truth, side by side (the input enlarged for SR)."""
    from PIL import Image

    h, w = problem.truth.shape[:2]
    observed = Image.fromarray(np.rint(np.clip(problem.observed, 0, 1) * 255).astype(np.uint8))
    observed = np.asarray(observed.resize((w, h), Image.NEAREST), dtype=np.float32) / 255
    gap = np.ones((h, 4) + problem.truth.shape[2:], dtype=np.float32)
    strip = np.concatenate([observed, gap, np.clip(restored, 0, 1), gap, problem.truth], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(strip * 255).astype(np.uint8)).save(path)


# --- report --------------------------------------------------------------------------------


def bench_task(task: str, problem: Problem, problem_key: str, threads: int, quick: bool, writer) -> None:
    rows = []
    for name, out, seconds in baselines(problem):
        psnr, ssim = problem.score(out)
        rows.append((name, psnr, ssim, seconds, ""))

    paper = resolve_settings(task, "paper", problem.kwargs.get("scale"))
    paper_step = seconds_per_iteration(problem, "paper", threads)
    paper_seconds = paper_step * paper.iterations
    cached = paper_curve(task, problem_key)
    paper_best = None
    if cached:
        curve, source, partial = cached
        best = max(curve, key=lambda row: row["psnr_avg"])
        paper_best = best["psnr_avg"]
        last = curve[-1]
        cut = f", cut at it {last['iteration']:.0f} of {paper.iterations}" if partial else ""
        rows.append((f"DIP paper, best average (it {best['iteration']:.0f})", best["psnr_avg"], best["ssim_avg"],
                     paper_step * best["iteration"], f"curve from {source}{cut}, time re-measured here"))
        if partial:
            rows.append((f"DIP paper, fixed stop (it {paper.iterations})", float("nan"), float("nan"),
                         paper_seconds, f"{paper_step:.3f} s/it; not on the cached curve"))
        else:
            rows.append((f"DIP paper, fixed stop (it {last['iteration']:.0f})", last["psnr_avg"], last["ssim_avg"],
                         paper_seconds, f"{paper_step:.3f} s/it"))
    else:
        rows.append((f"DIP paper ({paper.iterations} it)", float("nan"), float("nan"), paper_seconds,
                     f"no cached curve; {paper_step:.3f} s/it"))

    advanced = {"iterations": 60, "auto_stop": True, "min_iterations": 20, "stop_patience": 20} if quick else {}
    default = run_default(problem, threads, **advanced)
    save_comparison(problem, default["image"], RESULTS / "images" / f"{problem_key}.png")
    ratio = paper_seconds / default["seconds"]
    against = f", {default['psnr'] - paper_best:+.2f} dB against the paper's best" if paper_best else ""
    rows.append((f"DIP default ({default['iterations']} it, {default['stop']})", default["psnr"], default["ssim"],
                 default["seconds"], f"{ratio:.1f}× faster than paper{against}"))

    flops_paper = flops_per_iteration(problem, "paper")
    flops_default = flops_per_iteration(problem, "default")
    default_settings = resolve_settings(task, "default", problem.kwargs.get("scale"))
    peak32 = matmul_peak_gflops(torch.float32, threads)
    peak16 = matmul_peak_gflops(torch.bfloat16, threads)
    default_precision = resolve_precision(torch.device("cpu"), default_settings.precision)
    default_peak = peak16 if default_precision == "bfloat16" else peak32
    gflops_paper = flops_paper / paper_step / 1e9
    gflops_default = flops_default * default["iterations"] / default["seconds"] / 1e9

    print(f"\n### {problem.name} ({task}), {threads} thread(s), {platform.processor() or platform.machine()}\n")
    print("| method | PSNR dB | SSIM | seconds | note |")
    print("| --- | --- | --- | --- | --- |")
    for name, psnr, ssim, seconds, note in rows:
        print(f"| {name} | {psnr:.2f} | {ssim:.3f} | {seconds:.1f} | {note} |")
        writer.writerow([datetime.date.today().isoformat(), problem.name, task, name, f"{psnr:.3f}", f"{ssim:.4f}",
                         f"{seconds:.2f}", threads, note])
    print(f"\nGFLOP/s: paper {gflops_paper:.0f} ({flops_paper / 1e9:.1f} GFLOP/it) of a {peak32:.0f} GFLOP/s fp32 "
          f"matmul peak; default {gflops_default:.0f} ({flops_default / 1e9:.1f} GFLOP/it) of a "
          f"{default_peak:.0f} GFLOP/s {default_precision} peak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=["denoise", "inpaint", "sr"], choices=sorted(PROBLEMS))
    parser.add_argument("--quick", action="store_true", help="64² images and a few iterations")
    parser.add_argument("--threads", type=int, default=None, help="default: chosen by image size")
    parser.add_argument("--csv", type=Path, default=RESULTS / "bench.csv")
    args = parser.parse_args()

    sizes = {"denoise": 256, "inpaint": 128, "sr": 256}
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    new_file = not args.csv.exists()
    with args.csv.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(["date", "problem", "task", "method", "psnr", "ssim", "seconds", "threads", "note"])
        print(f"command: python {' '.join(sys.argv)}")
        for task in args.tasks:
            size = 64 if args.quick else sizes[task]
            problem = PROBLEMS[task]("astronaut", size)
            key = f"{task}_astronaut{size}"
            threads = choose_threads(size * size, args.threads)
            bench_task(task, problem, key, threads, args.quick, writer)


if __name__ == "__main__":
    main()
