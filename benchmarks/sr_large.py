"""×4 super-resolution to a large image: DIP default against bicubic and Lanczos.

    python benchmarks/sr_large.py [--size 1024] [--image retina] [--threads 1]
        [--out benchmarks/results/sr_large]

The ground truth is the centred SIZE² crop of a bundled scikit-image picture (the 1411² RGB
``retina`` by default); the input is that crop shrunk ×4 with PIL's Lanczos (256² for 1024²), as
``problems.sr_problem`` does at 256². DIP runs the default preset through ``restore_iter`` with no
tiling option, so the planner cuts the output for the memory budget as a user's run would. Prints
progress to stdout while it runs; writes ``results.csv``, ``table.md`` (PSNR and SSIM over the
image, seconds, peak RSS, iterations, the plan) and ``zoom.png`` (a 256² detail: truth, bicubic,
Lanczos, DIP) into ``--out``.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np
from _measure import logged_run, picture, psnr, ssim, write
from PIL import Image


def ground_truth(name: str, size: int) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def resized(image: np.ndarray, size: int, method) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), method))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--image", default="retina")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, help="the DIP cap (default: the preset's)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "sr_large")
    args = parser.parse_args()

    from napari_dip.core import restore_iter

    truth8 = ground_truth(args.image, args.size)
    low = resized(truth8, args.size // 4, Image.LANCZOS)
    truth = truth8.astype(np.float32) / 255
    rows = []
    for name, method in (("bicubic", Image.BICUBIC), ("Lanczos", Image.LANCZOS)):
        up = resized(low, args.size, method).astype(np.float32) / 255
        rows.append({"method": name, "psnr": round(psnr(truth, up), 2), "ssim": round(ssim(truth, up), 4),
                     "seconds": 0.0, "_image": up})
        print(rows[-1]["method"], rows[-1]["psnr"], rows[-1]["ssim"], flush=True)

    extra = {} if args.iterations is None else {"iterations": args.iterations}
    run = restore_iter(low, "sr", scale=4, threads=args.threads, preview_seconds=None, **extra)
    result, seconds = logged_run(run)
    image = np.clip(np.asarray(result.image, dtype=np.float32) / 255, 0, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows.append({"method": "DIP default", "psnr": round(psnr(truth, image), 2), "ssim": round(ssim(truth, image), 4),
                 "seconds": round(seconds, 1), "iterations": result.iterations, "plan": result.plan,
                 "stop": result.stop_message, "peak_rss_gib": round(peak, 2), "threads": args.threads, "_image": image})
    print({k: v for k, v in rows[-1].items() if k != "_image"}, flush=True)

    centre = args.size // 2
    zoom = (slice(centre - 128, centre + 128), slice(centre - 128, centre + 128))
    picture(args.out / "zoom.png", [truth[zoom]] + [row["_image"][zoom] for row in rows])
    table = [f"{args.image}, centre {args.size}² crop, ×4 from {args.size // 4}² (PIL Lanczos), "
             f"{args.threads} thread(s); zoom.png: truth, bicubic, Lanczos, DIP (centre 256²)", "",
             "| method | PSNR dB | SSIM | seconds | iterations | plan | peak RSS GiB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        table.append(f"| {row['method']} | {row['psnr']:.2f} | {row['ssim']:.4f} | {row['seconds']:.0f} | "
                     f"{row.get('iterations', '')} | {row.get('plan', '')} | {row.get('peak_rss_gib', '')} |")
    write(args.out, [{k: v for k, v in row.items() if k != "_image"} for row in rows], table,
          f"×4 super-resolution to {args.size}²")
    print("\n".join(table))


if __name__ == "__main__":
    main()
