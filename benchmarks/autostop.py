"""How close automatic stopping lands to the best PSNR along the run, without ground truth.

    python benchmarks/autostop.py --size 128 --sigmas 15 50 --images camera coffee chelsea

Each run goes on past the stop to a fixed cap with stopping off (stopping changes nothing in the
fit, only when it ends), while the engine's own stopping rule watches alongside, so one run
gives both the whole curve and the stop. Curves go to benchmarks/results/autostop/.

    python benchmarks/autostop.py --from-curves

re-applies the current stopping rule to the saved curves (their per-iteration variance and loss,
and the noise level estimated from the same noisy image) without rerunning anything: the stop
and the PSNR of the running average there (nearest scored row).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curve import noise_sigma_of, record  # noqa: E402
from problems import denoise_problem  # noqa: E402

from napari_dip.core import preset_settings  # noqa: E402
from napari_dip.core.stopping import WindowedVarianceStopper  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def stop_on_curve(path: Path) -> dict:
    """Where the default preset's stopping rule stops on a saved curve, and its PSNR there."""
    settings = preset_settings("denoise")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    match = re.fullmatch(r"curve_default_([a-z]+?)(\d+)_sigma([\d.]+)", path.stem)
    sigma = noise_sigma_of(denoise_problem(match[1], int(match[2]), float(match[3]))) if match else None
    stopper = WindowedVarianceStopper.from_settings(settings, sigma)
    stop = returned = int(rows[-1]["iteration"])
    kind = "cap"
    for row in rows:
        variance = float(row["variance"])
        stopper.observe_loss(int(row["iteration"]) - 1, float(row["loss"]))
        if variance != float("inf"):
            stopper.observe_variance(int(row["iteration"]) - 1, variance)
        if stopper.should_stop:
            stop = returned = int(row["iteration"])
            kind = stopper.stop_kind
            if kind == "noise":
                returned = stopper.best_iteration + 1 + stopper.lag
            break
    scored = [row for row in rows if row["psnr_avg"] != "nan"]
    at_stop = min(scored, key=lambda row: abs(int(row["iteration"]) - returned))
    best = max(scored, key=lambda row: float(row["psnr_avg"]))
    last = scored[-1]
    return {
        "curve": path.stem.replace("curve_default_", ""), "stop": kind, "stop_iteration": stop,
        "result_of_iteration": returned,
        "auto_psnr": float(at_stop["psnr_avg"]), "best_psnr": float(best["psnr_avg"]),
        "best_iteration": int(best["iteration"]),
        "gap_db": round(float(best["psnr_avg"]) - float(at_stop["psnr_avg"]), 2),
        "cap": int(last["iteration"]), "psnr_at_cap": float(last["psnr_avg"]),
    }


def print_table(rows: list[dict]) -> None:
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", nargs="*", default=["camera", "coffee", "chelsea"])
    parser.add_argument("--sigmas", type=float, nargs="*", default=[15, 50])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--cap", type=int, default=2500, help="iterations to run past the stop")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--csv", type=Path, default=RESULTS / "autostop_runs.csv")
    parser.add_argument("--from-curves", nargs="*", type=Path, default=None,
                        help="re-evaluate saved curves (default: all in results/autostop/)")
    args = parser.parse_args()
    if args.from_curves is not None:
        paths = args.from_curves or sorted((RESULTS / "autostop").glob("curve_default_*.csv"))
        print(f"command: python {' '.join(sys.argv)}\n")
        print_table([stop_on_curve(path) for path in paths])
        return

    rows = []
    for image in args.images:
        for sigma in args.sigmas:
            problem = denoise_problem(image, args.size, sigma)
            curve_path = RESULTS / "autostop" / f"curve_default_{image}{args.size}_sigma{sigma:g}.csv"
            summary = record(problem, "default", 25, curve_path, args.threads, iterations=args.cap)
            with curve_path.open() as handle:
                scored = [row for row in csv.DictReader(handle) if row["psnr_avg"] != "nan"]
            best = max(scored, key=lambda row: float(row["psnr_avg"]))
            noisy_psnr = problem.score(problem.observed)[0]
            row = {
                "image": f"{image}{args.size}", "sigma": sigma, "noisy_psnr": round(noisy_psnr, 2),
                "stop_iteration": summary.get("auto_stop_iteration"),
                "auto_psnr": round(summary["auto_psnr"], 2) if "auto_psnr" in summary else None,
                "best_psnr": round(float(best["psnr_avg"]), 2), "best_iteration": int(best["iteration"]),
                f"psnr_at_cap_{args.cap}": round(summary["psnr"], 2),
            }
            row["gap_db"] = round(row["best_psnr"] - row["auto_psnr"], 2) if row["auto_psnr"] else None
            rows.append(row)
            print(row, flush=True)

    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\ncommand: python {' '.join(sys.argv)}\n")
    print_table(rows)


if __name__ == "__main__":
    main()
