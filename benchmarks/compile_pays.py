"""Where compiling the network pays: eager and compiled seconds per step, and the first
compiled step (the compile) on a cold cache, by image size.

    python benchmarks/compile_pays.py [--sizes 128 256 512] [--threads 1] [--out CSV]

``break_even_work`` is the pixel-iterations at which the compile's cost equals the steps it
saves; ``napari_dip.core.device.COMPILE_MIN_WORK`` is set from it. Each size compiles into a
fresh, empty TorchInductor cache, as a user's first run does. Say whether the machine was idle.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

STEPS = 25


def _steps(size: int, threads: int, compile_mode: str) -> list[float]:
    from napari_dip.core import restore_iter

    image = np.random.default_rng(0).random((size, size)).astype(np.float32)
    stamps = [time.perf_counter()]
    run = restore_iter(image, iterations=STEPS, threads=threads, preview_seconds=None, compile=compile_mode)
    for _ in run:
        stamps.append(time.perf_counter())
    return list(np.diff(stamps))


def _child(size: int, threads: int, compile_mode: str) -> None:
    print(" ".join(f"{t:.5f}" for t in _steps(size, threads, compile_mode)))


def _measure(size: int, threads: int, compile_mode: str) -> list[float]:
    """Steps of a run in a new process (a cold start), with its own empty compile cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, OMP_NUM_THREADS=str(threads))
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(size), str(threads), compile_mode],
            env=env, check=True, capture_output=True, text=True,
        ).stdout
    return [float(t) for t in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 512])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(int(args.child[0]), int(args.child[1]), args.child[2])
        return
    rows = []
    print("| size | eager s/step | compiled s/step | first compiled step s | saving µs/pixel-step | break-even work |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        eager = _measure(size, args.threads, "off")
        compiled = _measure(size, args.threads, "on")
        eager_step = float(np.median(eager[5:]))
        compiled_step = float(np.median(compiled[5:]))
        compile_cost = compiled[0] - eager[0]
        saving = eager_step - compiled_step
        pixels = size * size
        break_even = compile_cost / saving * pixels if saving > 0 else float("inf")
        row = dict(size=size, threads=args.threads, eager_step=round(eager_step, 4),
                   compiled_step=round(compiled_step, 4), first_compiled_step=round(compiled[0], 1),
                   first_eager_step=round(eager[0], 2), saving_us_per_pixel_step=round(saving / pixels * 1e6, 3),
                   break_even_work=f"{break_even:.3g}")
        rows.append(row)
        print(f"| {size}² | {eager_step:.4f} | {compiled_step:.4f} | {compiled[0]:.1f} | "
              f"{saving / pixels * 1e6:.3f} | {break_even:.3g} |", flush=True)
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
