"""×4 super-resolution: the plain fit, the input stretched to its own range, and the fit as a
residual on the bicubic upscale.

    python benchmarks/sr_residual.py --images astronaut retina --variants plain stretch residual \
        [--noise 0 10] [--no-stop] [--threads 1] [--out benchmarks/results/sr_residual]

``plain`` is the default preset's fit of the input as it is (what the default did before it
stretched super-resolution inputs). ``stretch`` fits each channel stretched from its own minimum
to its maximum and maps the result back (the default preset's ``stretch`` setting now): a
low-contrast image then spans the sigmoid's whole range. ``residual`` adds the network's output,
less the sigmoid's middle 0.5, to the bicubic upscale of the input, so the smooth part every
interpolator gets is there from the first step; ``residual0`` also starts the network's last
layer at zero, so the first output is the bicubic image itself.

Ground truth: the benchmark crops (benchmarks/problems.py) at 256², the input that crop shrunk
×4 with PIL's Lanczos, with Gaussian noise of ``--noise`` (0-255 scale) added where asked. Each
run stops by itself or at the default's cap (``--no-stop``: at the cap); its average's PSNR is
logged every 100 iterations, and the result is also scored after five steps of back-projection
onto the input (x += bicubic(y - D(x))). Rows are appended to OUT/runs.csv.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _measure import command, psnr, ssim
from problems import sr_problem


class OnBase(torch.nn.Module):
    """The network's output less the sigmoid's middle, added to a fixed base image."""

    def __init__(self, net: torch.nn.Module, base: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("base", base - 0.5)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code) + self.base


def back_project(x: torch.Tensor, observed: torch.Tensor, down, steps: int) -> torch.Tensor:
    for _ in range(steps):
        x = x + F.interpolate(observed - down(x), scale_factor=4, mode="bicubic", align_corners=False)
    return x


def run(image: str, variant: str, noise: float, threads: int, auto_stop: bool = True, seed: int = 0) -> dict:
    from napari_dip.core.arrays import Intensity
    from napari_dip.core.engine import fit
    from napari_dip.core.networks import build_network
    from napari_dip.core.operators import DownsampleOperator
    from napari_dip.core.presets import preset_settings

    problem = sr_problem(image, 256, 4)
    low = problem.observed
    if noise > 0:
        rng = np.random.default_rng(seed)
        low = np.clip(low + rng.normal(scale=noise / 255, size=low.shape), 0, 1).astype(np.float32)
    observed = torch.from_numpy(np.ascontiguousarray(low.transpose(2, 0, 1)))[None]
    bicubic = F.interpolate(observed, scale_factor=4, mode="bicubic", align_corners=False)
    bic = bicubic[0].numpy().transpose(1, 2, 0).clip(0, 1)
    # "stretch": each channel of the input stretched to [0, 1] for the fit, the result back.
    # The same mapping as the default preset's `stretch` setting (Intensity.spanned).
    low_end, high_end = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    if variant.startswith("stretch"):
        spanned = Intensity.spanned(observed[0].numpy())
        low_end = torch.from_numpy(spanned.low).float()[None]
        high_end = torch.from_numpy(spanned.high).float()[None]
    target = (observed - low_end) / (high_end - low_end)

    def unstretch(unit: np.ndarray) -> np.ndarray:
        return unit * (high_end - low_end)[0].numpy() + low_end[0].numpy()
    truth = problem.truth
    # The fit itself: the default preset's settings (the stretch, where asked, is done here).
    settings = preset_settings("sr", "default", 4).updated(stretch=False)
    if not auto_stop:
        settings = settings.updated(auto_stop=False)
    network = None
    if variant.startswith("residual"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            skip = build_network("skip", in_channels=settings.input_depth, out_channels=3, **settings.network_kwargs())
        if variant == "residual0":
            torch.nn.init.zeros_(skip.head[0].weight)
            torch.nn.init.zeros_(skip.head[0].bias)
        network = OnBase(skip, bicubic)
    down = DownsampleOperator(4)
    torch.set_num_threads(threads)
    rows = []
    start = time.perf_counter()
    generator = fit(target, down, settings, out_channels=3, out_shape=(256, 256), seed=seed,
                    preview_seconds=None, preview_iterations=100, network=network,
                    noise_sigma=noise / 255 if noise > 0 else None)
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            result = stop.value
            break
        if event.preview is not None and event.iteration % 100 == 0:
            rows.append((event.iteration, psnr(truth, np.clip(unstretch(event.preview).transpose(1, 2, 0), 0, 1))))
    seconds = time.perf_counter() - start
    image_chw = unstretch(result.image)
    out = torch.from_numpy(image_chw)[None]
    final = np.clip(image_chw.transpose(1, 2, 0), 0, 1)
    projected = back_project(out, observed, down, 5)[0].numpy().transpose(1, 2, 0).clip(0, 1)
    return dict(
        image=image, noise=noise, variant=variant, iterations=result.iterations, stop=result.stop_reason,
        seconds=round(seconds, 1), psnr=round(psnr(truth, final), 2), ssim=round(ssim(truth, final), 4),
        psnr_bp5=round(psnr(truth, projected), 2), bicubic=round(psnr(truth, bic), 2),
        consistency=round(psnr(observed.numpy(), down(out).numpy()), 2),
        curve=" ".join(f"{i}:{p:.2f}" for i, p in rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", default=["astronaut", "retina"])
    parser.add_argument("--variants", nargs="+", default=["plain", "residual", "residual0"])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-stop", action="store_true", help="run every fit to the default's cap")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sr_residual")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "runs.csv"
    fresh = not path.exists()
    with path.open("a", newline="") as handle:
        writer = None
        for noise in args.noise:
            for image in args.images:
                for variant in args.variants:
                    row = run(image, variant, noise, args.threads, not args.no_stop)
                    print({k: v for k, v in row.items() if k != "curve"}, flush=True)
                    if writer is None:
                        writer = csv.DictWriter(handle, fieldnames=list(row))
                        if fresh:
                            writer.writeheader()
                    writer.writerow(row)
                    handle.flush()
    (args.out / "command.txt").open("a").write(command() + "\n")


if __name__ == "__main__":
    main()
