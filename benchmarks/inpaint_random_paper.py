"""50 % random pixels: the paper's inpainting network against the default, along the whole run.

    python benchmarks/inpaint_random_paper.py --images astronaut camera --iterations 3000 --threads 1 \
        --out benchmarks/results/inpaint_random_paper

The same images and masks as ``inpaint_masks.py --masks random50`` (128², mask seed = image
index). Each preset runs with automatic stopping off and the known pixels kept; the PSNR inside
the mask is scored every ``--every`` iterations, so the table's "best along the run" is an
upper bound that no stopping rule can beat (chosen with the ground truth). Biharmonic alongside.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inpaint_masks import load, mask_for, psnr  # noqa: E402


def main(argv=None) -> None:
    from skimage.restoration import inpaint_biharmonic

    from napari_dip.core import consume, restore_iter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", nargs="+", default=["astronaut", "camera"])
    parser.add_argument("--presets", nargs="+", default=["paper"])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, name in enumerate(args.images):
        truth = load(name, args.size)
        fill = mask_for("random50", args.size, seed=index)
        damaged = truth.copy()
        damaged[fill] = 255
        bh = inpaint_biharmonic(damaged / 255.0, fill, channel_axis=-1 if damaged.ndim == 3 else None)
        biharmonic = psnr(truth, np.clip(bh * 255, 0, 255).round().astype(np.uint8), fill)
        for preset in args.presets:
            start = time.perf_counter()
            curve = []

            def score(event, curve=curve, start=start, truth=truth, fill=fill, label=f"{name} {preset}"):
                if getattr(event, "preview", None) is not None and event.iteration % args.every == 0:
                    value = round(psnr(truth, event.preview, fill), 2)
                    curve.append((event.iteration, round(time.perf_counter() - start), value))
                    print(label, *curve[-1], flush=True)

            consume(restore_iter(damaged, "inpaint", mask=fill, preset=preset, iterations=args.iterations,
                                 keep_known=True, threads=args.threads, preview_seconds=None,
                                 preview_iterations=args.every), score)
            best = max(curve, key=lambda point: point[2])
            rows.append(dict(image=name, preset=preset, biharmonic=round(biharmonic, 2), best=best[2],
                             best_iteration=best[0], at_cap=curve[-1][2], seconds=curve[-1][1],
                             curve=" ".join(f"{i}:{p}" for i, _, p in curve)))
            print(rows[-1], flush=True)
            with (args.out / "results.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)


if __name__ == "__main__":
    main()
