"""How close automatic stopping lands to the best PSNR along the run, without ground truth.

    python benchmarks/autostop.py --size 128 --sigmas 15 50 --images camera coffee chelsea

Each run goes on past the stop to a fixed cap with stopping off (stopping changes nothing in the
fit, only when it ends), while the engine's own stopping rule watches alongside, so one run
gives both the whole curve and the stop. Curves go to benchmarks/results/autostop/.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curve import record  # noqa: E402
from problems import denoise_problem  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", nargs="*", default=["camera", "coffee", "chelsea"])
    parser.add_argument("--sigmas", type=float, nargs="*", default=[15, 50])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--cap", type=int, default=2500, help="iterations to run past the stop")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--csv", type=Path, default=RESULTS / "autostop.csv")
    args = parser.parse_args()

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
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
