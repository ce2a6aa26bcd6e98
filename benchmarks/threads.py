"""Seconds per iteration by image size, thread count and network settings.

    python benchmarks/threads.py [--sizes 64 128 256] [--threads 1 2]

Measures what ``napari_dip.core.device.choose_threads`` and the default preset's speed settings
are based on. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_dip.core import restore_iter

CONFIGS = {
    "paper (fp32, 128 ch)": {"preset": "paper"},
    "64 ch, fp32": {"preset": "paper", "channels": 64},
    "64 ch, bf16, channels-last, eager": {"preset": "default", "compile": "off", "top_channels": 64},
    "64 ch, bf16, channels-last, compiled": {"preset": "default", "compile": "on", "top_channels": 64},
    "default: 32 ch at full resolution, eager": {"preset": "default", "compile": "off"},
    "default: 32 ch at full resolution, compiled": {"preset": "default", "compile": "on"},
}


def seconds_per_iteration(size: int, threads: int, iterations: int = 15, **kwargs) -> float:
    image = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
    stamps = [time.perf_counter()]
    for _ in restore_iter(image, iterations=iterations, threads=threads, preview_seconds=None, **kwargs):
        stamps.append(time.perf_counter())
    # The first steps include compiling and allocator warm-up.
    return float(np.median(np.diff(stamps)[5:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    print("| network | size | " + " | ".join(f"{t} thread(s) s/it" for t in args.threads) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in args.threads) + " |")
    for name, kwargs in CONFIGS.items():
        for size in args.sizes:
            times = [seconds_per_iteration(size, t, **kwargs) for t in args.threads]
            print(f"| {name} | {size}² RGB | " + " | ".join(f"{s:.3f}" for s in times) + " |", flush=True)


if __name__ == "__main__":
    main()
