"""How well the time left shown during a run predicts the real end, replayed on saved curves.

    python benchmarks/eta_replay.py

Each saved default-preset denoising curve (`results/autostop/`, `results/denoise_large/`) holds
the stopping rule's variance and the loss at every iteration, so the rule can be replayed
offline (as `autostop.py --from-curves` does) and, at every iteration from the first tracked
one on, its forecast (`WindowedVarianceStopper.forecast`) compared with the iterations the run
really had left. The baseline is the rule shown before: the patience after the latest low.

Error: log2(forecast / iterations really left), so +1 is twice too long and -1 half; the table
gives its median and 10th-90th percentiles over the run's iterations, and the share of them at
which the guess was within a factor of two. Iterations, not seconds: a run's steps cost the same.
While the variance still falls, the forecast's "at most" is the cap, which no run passes.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autostop import RESULTS  # noqa: E402
from curve import noise_sigma_of  # noqa: E402
from problems import denoise_problem  # noqa: E402

from napari_dip.core.presets import preset_settings  # noqa: E402
from napari_dip.core.stopping import WindowedVarianceStopper  # noqa: E402

CURVES = sorted((RESULTS / "autostop").glob("curve_default_*.csv")) + [
    RESULTS / "denoise_large" / "curve_retina256_s25_default.csv",
    RESULTS / "denoise_large" / "curve_retinacorner544_s25_default.csv",
]


def _sigma(path: Path) -> float | None:
    """The noise level the engine estimates for the curve's noisy image (for the discrepancy rule)."""
    match = re.fullmatch(r"curve_default_([a-z]+?)(\d+)_sigma([\d.]+)", path.stem)
    if match is None:
        match = re.fullmatch(r"curve_([a-z]+?)(\d+)_s([\d.]+)_default", path.stem)
    return noise_sigma_of(denoise_problem(match[1], int(match[2]), float(match[3]))) if match else None


def replay(path: Path) -> dict:
    """Replay the default rule on one curve: where it stops, and its forecasts along the way."""
    settings = preset_settings("denoise")
    cap = settings.iterations
    stopper = WindowedVarianceStopper.from_settings(settings, _sigma(path))
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    done_at, old, guess = [], [], []
    stop, kind = int(rows[-1]["iteration"]), "end of curve"
    for row in rows:
        done = int(row["iteration"])
        stopper.observe_loss(done - 1, float(row["loss"]))
        if float(row["variance"]) != float("inf"):
            stopper.observe_variance(done - 1, float(row["variance"]))
        if stopper.should_stop or done >= cap:
            stop, kind = done, stopper.stop_kind or "cap"
            break
        if stopper.best_iteration < 0:
            continue
        by_patience = min(cap, max(stopper.best_iteration + 1 + stopper.patience, settings.min_iterations)) - done
        done_at.append(done)
        old.append(by_patience)
        guess.append(stopper.forecast(done, cap)[0])
    actual = stop - np.array(done_at)
    result = {"curve": path.stem, "stop": stop, "kind": kind}
    for name, values in (("before", old), ("now", guess)):
        error = np.log2(np.maximum(np.array(values), 1) / np.maximum(actual, 1))
        result[name] = (np.median(error), np.percentile(error, 10), np.percentile(error, 90))
        result[name + "_within_2x"] = float(np.mean(np.abs(error) <= 1))
        result[name + "_hits"] = (int(np.sum(np.abs(error) <= 1)), len(error))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", nargs="*", type=Path, default=CURVES)
    parser.add_argument("--csv", type=Path, help="also write the table here")
    args = parser.parse_args()
    rows = [replay(path) for path in args.curves]
    header = ["curve", "stop", "how", "before: median [p10, p90]", "within 2×", "now: median [p10, p90]", "within 2×"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [row["curve"].replace("curve_", ""), str(row["stop"]), row["kind"]]
        for name in ("before", "now"):
            cells += ["{:+.2f} [{:+.2f}, {:+.2f}]".format(*row[name]), f"{row[name + '_within_2x']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    for name in ("before", "now"):
        medians = np.array([row[name][0] for row in rows])
        within = np.mean([row[name + "_within_2x"] for row in rows])
        hits, count = (sum(row[name + "_hits"][i] for row in rows) for i in (0, 1))
        print(f"{name}: median of the runs' median errors {np.median(medians):+.2f}, "
              f"largest {medians[np.argmax(np.abs(medians))]:+.2f}; within 2× at {within:.0%} of a run's "
              f"iterations (mean over runs), at {hits / count:.0%} of all iterations pooled (long runs weigh more)")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["curve", "stop", "how", "before_median", "before_p10", "before_p90",
                             "before_within_2x", "now_median", "now_p10", "now_p90", "now_within_2x"])
            for row in rows:
                writer.writerow([row["curve"], row["stop"], row["kind"],
                                 *(f"{v:.3f}" for v in row["before"]), f"{row['before_within_2x']:.3f}",
                                 *(f"{v:.3f}" for v in row["now"]), f"{row['now_within_2x']:.3f}"])


if __name__ == "__main__":
    main()
