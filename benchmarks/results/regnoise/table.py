"""The input-noise table from the curves in this folder (run from the repository root):

    python benchmarks/results/regnoise/table.py
"""

import csv
import re
from pathlib import Path

here = Path(__file__).parent
log = (here / "run.log").read_text()
# curve.py prints one summary per run, in the order the runs were made (queue order in README.md)
autos = [eval(line, {"np": __import__("numpy")}) for line in log.splitlines() if line.startswith("{'psnr'")]
order = [line.split("--out ")[1].strip() for line in (here / "queue.log").read_text().splitlines()
         if " done rc=0 " in line and "--out " in line]
auto_of = dict(zip([Path(p).name for p in order], autos, strict=False))


def summary(name):
    rows = [r for r in csv.DictReader((here / name).open()) if r["psnr_avg"] not in ("nan", "")]
    best = max(rows, key=lambda r: float(r["psnr_avg"]))
    last = rows[-1]
    auto = auto_of.get(name, {})
    return (f"{float(best['psnr_avg']):.2f} @{best['iteration']}",
            f"{float(last['psnr_avg']):.2f} @{last['iteration']}",
            f"{auto['auto_psnr']:.2f} @{auto['auto_stop_iteration']}" if "auto_psnr" in auto else "did not fire")


print("| problem | input noise | best average along the run | at the cap | default's stopping rule |")
print("| --- | --- | --- | --- | --- |")
problems = sorted({re.sub(r"_n\d+\.csv$", "", p.name) for p in here.glob("*.csv")})
for problem in problems:
    for tag, label in (("n30", "1/30 (default)"), ("n45", "1/45")):
        name = f"{problem}_{tag}.csv"
        if (here / name).exists():
            print(f"| {problem} | {label} | " + " | ".join(summary(name)) + " |")
