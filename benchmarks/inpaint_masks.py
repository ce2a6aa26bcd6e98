"""Inpainting the masks users paint: DIP against biharmonic and OpenCV, known pixels kept.

    python benchmarks/inpaint_masks.py [--size 128] [--images astronaut coffee chelsea camera rocket]
        [--masks strokes text random50] [--threads 1] [--out benchmarks/results/inpaint_masks]
        [--curves --patience 200 300 400 --tolerance 0.005 0.01 0.02]

Each bundled image is cut to a centred square and resized to SIZE²; the masks are thin strokes
(PIL lines 2 px wide, 4-8 % of the pixels), text (about 7 %) and 50 % random pixels.
DIP runs the default preset (which returns every unpainted pixel exactly); biharmonic is
scikit-image's, Telea and Navier-Stokes are OpenCV's. PSNR inside the mask and over the image,
SSIM over the image, seconds, and DIP's iterations. Writes ``results.csv``, ``table.md`` and one
picture per image and mask (input, DIP, biharmonic, truth) into ``--out``.

``--curves`` measures the inpainting stop: each DIP run goes on to its cap with the held-out
pixels in place but without stopping, logging the held-out error and the PSNR inside the mask
of the running average at every iteration (``curves.csv``). The stopping rule is then replayed
on the logged error for each ``--patience`` × ``--tolerance`` (``stops.csv``, ``stops.md``):
where it stops, the iteration it keeps, the best iteration along the run and the PSNR of each.
The DIP rows of the table are the preset's own rule (its patience and tolerance) replayed.
``--from-curves`` replays the rule on an earlier run's ``curves.csv`` in ``--out`` (no fitting).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

IMAGES = ("astronaut", "coffee", "chelsea", "camera", "rocket")


def load(name: str, size: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    image = getattr(data, name)()
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top:top + side, left:left + side]
    return (resize(square, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)


def mask_for(kind: str, size: int, seed: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    if kind == "random50":
        return rng.random((size, size)) < 0.5
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "strokes":
        for _ in range(4):
            points = [tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(3)]
            draw.line(points, fill=255, width=2)
    elif kind == "text":
        font = ImageFont.load_default(size=max(8, size // 11))
        for row in range(3):
            draw.text((int(rng.integers(0, size // 8)), row * size // 3 + 6), "napari DIP 2018", fill=255, font=font)
    else:
        raise ValueError(f"unknown mask {kind!r}")
    return np.asarray(canvas) > 0


def psnr(truth: np.ndarray, result: np.ndarray, where: np.ndarray | None = None) -> float:
    diff = truth.astype(np.float64) - result.astype(np.float64)
    if where is not None:
        diff = diff[where]
    mse = float(np.mean(diff**2))
    return 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")


def ssim(truth: np.ndarray, result: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(truth, result, channel_axis=-1 if truth.ndim == 3 else None, data_range=255))


def dip_curve(image: np.ndarray, fill: np.ndarray, truth: np.ndarray, threads: int, iterations: int | None) -> dict:
    """One default-preset run to its cap, never stopping: per iteration the held-out error, the
    PSNR inside the mask of the average and the seconds so far, and every average."""
    from napari_dip.core import restore_iter

    log = dict(signal=[], psnr_mask=[], seconds=[], images=[])
    run = restore_iter(image, "inpaint", mask=fill, threads=threads, preview_seconds=None, preview_iterations=1,
                       stop_patience=10**9, auto_stop=True, iterations=iterations)
    start = time.perf_counter()
    for event in run:
        if event.preview is None:
            continue
        log["signal"].append(event.signal if event.signal is not None else float("nan"))
        log["psnr_mask"].append(psnr(truth, event.preview, fill))
        log["seconds"].append(time.perf_counter() - start)
        log["images"].append(event.preview)
    return log


def replay(signal: list[float], patience: int, tolerance: float, min_iterations: int) -> tuple[int, int]:
    """(iterations run, iteration kept) of the held-out rule on a logged error curve (1-based)."""
    from napari_dip.core.stopping import HoldoutStopper

    stopper = HoldoutStopper(patience, min_iterations, tolerance)
    for iteration, value in enumerate(signal):
        stopper.observe(iteration, value)
        if stopper.should_stop:
            return iteration + 1, stopper.best_iteration + 1
    return len(signal), (stopper.best_iteration + 1) if stopper.best_iteration >= 0 else len(signal)


def replay_curves(path: Path, grid: tuple) -> list[dict]:
    """The rule's stops for every setting in ``grid`` on each run logged in ``path``."""
    from napari_dip.core.presets import preset_settings

    runs: dict[tuple[str, str], dict[str, list[float]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            log = runs.setdefault((row["mask"], row["image"]), dict(signal=[], psnr_mask=[], seconds=[]))
            log["signal"].append(float(row["heldout_mse"]))
            log["psnr_mask"].append(float(row["psnr_mask"]))
            log["seconds"].append(float(row["seconds"]))
    stops = []
    for (kind, name), log in runs.items():
        stops += stop_rows(log, grid, preset_settings("inpaint").min_iterations)
        for stop in stops[-len(grid):]:
            stop.update(mask=kind, image=name)
    return stops


def stop_rows(log: dict, grid: tuple, min_iterations: int) -> list[dict]:
    best = int(np.argmax(log["psnr_mask"])) + 1
    cap = len(log["signal"])
    rows = []
    for patience, tolerance in grid:
        ran, kept = replay(log["signal"], patience, tolerance, min_iterations)
        rows.append(dict(patience=patience, tolerance=tolerance, stopped=ran, kept=kept, best=best, cap=cap,
                         psnr_kept=round(log["psnr_mask"][kept - 1], 2), psnr_best=round(log["psnr_mask"][best - 1], 2),
                         psnr_cap=round(log["psnr_mask"][-1], 2), seconds_stop=round(log["seconds"][ran - 1], 1),
                         seconds_cap=round(log["seconds"][-1], 1)))
    return rows


def methods(image: np.ndarray, fill: np.ndarray, threads: int, truth: np.ndarray | None = None,
            stops: list | None = None, grid: tuple = (),
            iterations: int | None = None) -> dict[str, tuple[np.ndarray, float, dict]]:
    from skimage.restoration import inpaint_biharmonic

    from napari_dip.core import consume, restore_iter
    from napari_dip.core.presets import preset_settings

    out = {}
    start = time.perf_counter()
    if stops is None:
        result = consume(restore_iter(image, "inpaint", mask=fill, threads=threads, preview_seconds=None))
        out["DIP default"] = (result.image, time.perf_counter() - start,
                              {"iterations": result.iterations, "stop": result.stop_reason})
    else:
        log = dip_curve(image, fill, truth, threads, iterations)
        settings = preset_settings("inpaint")
        best = int(np.argmax(log["psnr_mask"])) + 1
        stops += stop_rows(log, grid, settings.min_iterations)
        ran, kept = replay(log["signal"], settings.stop_patience, settings.stop_tolerance, settings.min_iterations)
        out["DIP default"] = (log["images"][kept - 1], log["seconds"][ran - 1],
                              {"iterations": ran, "kept": kept, "best": best,
                               "psnr_mask_cap": round(log["psnr_mask"][-1], 2)})
        out["_curve"] = log
    start = time.perf_counter()
    bh = inpaint_biharmonic(image / 255.0, fill, channel_axis=-1 if image.ndim == 3 else None)
    out["biharmonic"] = (np.clip(bh * 255, 0, 255).round().astype(np.uint8), time.perf_counter() - start, {})
    try:
        import cv2
    except ImportError:
        return out
    for label, flag in (("OpenCV Telea", cv2.INPAINT_TELEA), ("OpenCV NS", cv2.INPAINT_NS)):
        start = time.perf_counter()
        filled = cv2.inpaint(np.ascontiguousarray(image), fill.astype(np.uint8), 3, flag)
        out[label] = (filled, time.perf_counter() - start, {})
    return out


def picture(path: Path, panels: list[np.ndarray]) -> None:
    from PIL import Image

    Image.fromarray(np.concatenate(panels, axis=1)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", nargs="*", default=list(IMAGES))
    parser.add_argument("--masks", nargs="*", default=["strokes", "text", "random50"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inpaint_masks"))
    parser.add_argument("--curves", action="store_true", help="log each DIP run to its cap and replay the stop rule")
    parser.add_argument("--patience", type=int, nargs="*", default=[200, 300, 400, 600])
    parser.add_argument("--tolerance", type=float, nargs="*", default=[0.0, 0.005, 0.01, 0.02])
    parser.add_argument("--iterations", type=int, help="the DIP cap (default: the preset's)")
    parser.add_argument("--from-curves", action="store_true", help="replay the rule on OUT/curves.csv only")
    parser.add_argument("--images-first", action="store_true", help="loop over masks inside the image loop")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    stops: list[dict] | None = [] if args.curves else None
    grid = tuple((p, t) for p in args.patience for t in args.tolerance)
    if args.from_curves:
        _write_stops(args.out, replay_curves(args.out / "curves.csv", grid))
        print((args.out / "stops.md").read_text())
        return
    order = ([(kind, index, name) for index, name in enumerate(args.images) for kind in args.masks] if args.images_first
             else [(kind, index, name) for kind in args.masks for index, name in enumerate(args.images)])
    for kind, index, name in order:
            truth = load(name, args.size)
            fill = mask_for(kind, args.size, seed=index)
            damaged = truth.copy()
            damaged[fill] = 255
            first = len(stops) if stops is not None else 0
            results = methods(damaged, fill, args.threads, truth, stops, grid, args.iterations)
            curve = results.pop("_curve", None)
            if curve is not None:
                for stop in stops[first:]:
                    stop.update(mask=kind, image=name)
                _write_curve(args.out / "curves.csv", kind, name, curve)
                _write_stops(args.out, stops)
            for method, (result, seconds, extra) in results.items():
                assert np.array_equal(result[~fill], damaged[~fill]), f"{method} changed known pixels"
                row = dict(mask=kind, image=name, coverage=round(float(fill.mean()), 3), method=method,
                           psnr_mask=round(psnr(truth, result, fill), 2), psnr=round(psnr(truth, result), 2),
                           ssim=round(ssim(truth, result), 4), seconds=round(seconds, 1), **extra)
                rows.append(row)
                print(row, flush=True)
            picture(args.out / f"{name}_{kind}.png",
                    [damaged, results["DIP default"][0], results["biharmonic"][0], truth])
            _write(args.out, rows)


def _write_curve(path: Path, kind: str, name: str, curve: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["mask", "image", "iteration", "heldout_mse", "psnr_mask", "seconds"])
        columns = zip(curve["signal"], curve["psnr_mask"], curve["seconds"], strict=True)
        for i, (signal, value, seconds) in enumerate(columns):
            writer.writerow([kind, name, i + 1, f"{signal:.6g}", f"{value:.3f}", f"{seconds:.2f}"])


def _write_stops(out: Path, stops: list[dict]) -> None:
    from napari_dip.core.presets import preset_settings

    with open(out / "stops.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(stops[0]))
        writer.writeheader()
        writer.writerows(stops)
    settings = preset_settings("inpaint")
    lines = ["Each setting of the rule replayed on every logged run: mean gap of the kept average to the best "
             "PSNR along the run (in the mask), worst gap, mean gap at the cap, mean share of the cap's time saved.",
             "", "| patience | tolerance | mean gap dB | worst gap dB | cap's mean gap dB | time saved | runs |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for patience, tolerance in dict.fromkeys((s["patience"], s["tolerance"]) for s in stops):
        group = [s for s in stops if s["patience"] == patience and s["tolerance"] == tolerance]
        gaps = [s["psnr_best"] - s["psnr_kept"] for s in group]
        saved = np.mean([1 - s["seconds_stop"] / s["seconds_cap"] for s in group])
        cap_gap = np.mean([s["psnr_best"] - s["psnr_cap"] for s in group])
        mark = " (preset)" if (patience, tolerance) == (settings.stop_patience, settings.stop_tolerance) else ""
        lines.append(f"| {patience}{mark} | {tolerance:g} | {np.mean(gaps):.2f} | {max(gaps):.2f} | {cap_gap:.2f} | "
                     f"{saved:.0%} | {len(group)} |")
    chosen = [s for s in stops if (s["patience"], s["tolerance"]) == (settings.stop_patience, settings.stop_tolerance)]
    if chosen:
        rule = f"patience {settings.stop_patience}, tolerance {settings.stop_tolerance:g}"
        lines += ["", f"The preset's rule ({rule}) per run:", "",
                  "| mask | image | stopped at | kept | best | PSNR kept | PSNR best | PSNR at cap | s to stop "
                  "| s to cap |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for s in chosen:
            lines.append(f"| {s['mask']} | {s['image']} | {s['stopped']} | {s['kept']} | {s['best']} | "
                         f"{s['psnr_kept']} | "
                         f"{s['psnr_best']} | {s['psnr_cap']} | {s['seconds_stop']} | {s['seconds_cap']} |")
    (out / "stops.md").write_text("\n".join(lines) + "\n")


def _write(out: Path, rows: list[dict]) -> None:
    names = sorted({key for row in rows for key in row}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| mask | method | mean PSNR in mask | mean PSNR | mean SSIM | mean s | images |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind in dict.fromkeys(row["mask"] for row in rows):
        for method in dict.fromkeys(row["method"] for row in rows):
            group = [row for row in rows if row["mask"] == kind and row["method"] == method]
            if group:
                mean = {key: np.mean([row[key] for row in group]) for key in ("psnr_mask", "psnr", "ssim", "seconds")}
                lines.append(f"| {kind} | {method} | {mean['psnr_mask']:.2f} | {mean['psnr']:.2f} | "
                             f"{mean['ssim']:.4f} | {mean['seconds']:.1f} | {len(group)} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
