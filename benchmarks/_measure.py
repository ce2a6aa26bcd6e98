"""What the guided, inversion and JPEG/deblurring benchmarks share: test images, scores, a DIP
run that records its PSNR curve, pictures, and the CSV + markdown table with the command."""

from __future__ import annotations

import csv
import shlex
import sys
import time
from pathlib import Path

import numpy as np

IMAGES = ("astronaut", "coffee", "chelsea", "camera", "rocket")


def load(name: str, size: int, gray: bool = False) -> np.ndarray:
    """A bundled scikit-image picture, centre square resized to ``size``², float32 in [0, 1]."""
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.transform import resize

    image = getattr(data, name)()
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = resize(image[top:top + side, left:left + side], (size, size), anti_aliasing=True)
    if gray and square.ndim == 3:
        square = rgb2gray(square)
    return np.clip(square, 0, 1).astype(np.float32)


def psnr(truth: np.ndarray, result: np.ndarray, border: int = 0) -> float:
    """PSNR in dB of images in [0, 1], optionally ignoring ``border`` pixels on each side."""
    if border:
        truth, result = truth[border:-border, border:-border], result[border:-border, border:-border]
    mse = float(np.mean((truth.astype(np.float64) - result.astype(np.float64)) ** 2))
    return float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf")


def ssim(truth: np.ndarray, result: np.ndarray, border: int = 0) -> float:
    from skimage.metrics import structural_similarity

    if border:
        truth, result = truth[border:-border, border:-border], result[border:-border, border:-border]
    return float(structural_similarity(truth, result.astype(truth.dtype), data_range=1.0,
                                       channel_axis=-1 if truth.ndim == 3 else None))


def dip_run(observed: np.ndarray, truth: np.ndarray | None, task: str, every: int = 50, border: int = 0,
            **kwargs) -> tuple[np.ndarray, float, dict]:
    """One ``restore_iter`` run: its result, seconds, and where its PSNR curve (of the running
    average, every ``every`` steps) peaked against where the run stopped."""
    from napari_dip.core import restore_iter

    run = restore_iter(observed, task, preview_seconds=None, preview_iterations=every, **kwargs)
    curve: list[tuple[int, float]] = []
    start = time.perf_counter()
    try:
        while True:
            event = next(run)
            if truth is not None and event.preview is not None:
                curve.append((event.iteration, psnr(truth, np.clip(event.preview, 0, 1), border)))
    except StopIteration as done:
        result = done.value
    seconds = time.perf_counter() - start
    extra = {"iterations": result.iterations, "stop": result.stop_reason}
    if curve:
        best_iteration, best = max(curve, key=lambda point: point[1])
        extra.update(best_iteration=best_iteration, best_psnr=round(best, 2))
    return np.clip(result.image, 0, 1), seconds, extra


def logged_run(run) -> tuple[object, float]:
    """Drive a ``restore_iter`` run to its end, printing the planner's notes and a progress line a
    minute; its result and seconds."""
    start = last = time.perf_counter()
    try:
        while True:
            event = next(run)
            now = time.perf_counter()
            if event.message:
                print(f"[{now - start:7.0f} s] {event.message}", flush=True)
            elif now - last > 60:
                last = now
                print(f"[{now - start:7.0f} s] {event.part or 'fit'} iteration {event.iteration}/{event.iterations}"
                      f" eta {event.eta and round(event.eta)} s", flush=True)
    except StopIteration as done:
        return done.value, time.perf_counter() - start


def as_uint8(image: np.ndarray) -> np.ndarray:
    image = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.rint(image * 255).astype(np.uint8)


def picture(path: Path, panels: list[np.ndarray], gap: int = 2) -> None:
    """Panels side by side (gray ones as RGB), separated by white columns."""
    from PIL import Image

    height = max(panel.shape[0] for panel in panels)
    columns = []
    for panel in panels:
        tile = np.full((height, panel.shape[1], 3), 255, np.uint8)
        tile[: panel.shape[0]] = as_uint8(panel)
        columns += [tile, np.full((height, gap, 3), 255, np.uint8)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(columns[:-1], axis=1)).save(path)


def command() -> str:
    return "python " + " ".join(shlex.quote(arg) for arg in sys.argv)


def write(out: Path, rows: list[dict], table: list[str], title: str) -> None:
    """``results.csv`` (every row) and ``table.md`` (the command, then ``table``) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    text = [f"# {title}", "", f"`{command()}`", "", *table]
    (out / "table.md").write_text("\n".join(text) + "\n")


def mean_table(rows: list[dict], groups: tuple[str, ...], values: tuple[str, ...]) -> list[str]:
    """A markdown table of the mean of ``values`` per combination of ``groups`` (in first-seen order)."""
    lines = ["| " + " | ".join(groups + tuple(f"mean {v}" for v in values) + ("n",)) + " |",
             "|" + " --- |" * (len(groups) + len(values) + 1)]
    keys = list(dict.fromkeys(tuple(row[g] for g in groups) for row in rows))
    for key in keys:
        group = [row for row in rows if tuple(row[g] for g in groups) == key]
        means = []
        for value in values:
            numbers = [row[value] for row in group if isinstance(row.get(value), (int, float))]
            digits = 1 if value.startswith("sec") else 3 if value in ("ssim", "feature_error") else 2
            means.append(f"{np.mean(numbers):.{digits}f}" if numbers else "")
        lines.append("| " + " | ".join([*map(str, key), *means, str(len(group))]) + " |")
    return lines
