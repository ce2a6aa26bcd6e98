"""A cheaper step: network variants with less work at full resolution, against the default.

    python benchmarks/cheap_step.py steps default join32 join16 no1x1 nobn unshuffle2 --threads 1
    python benchmarks/cheap_step.py curve join32 --iterations 2400 --out benchmarks/results/cheap_step/curve_join32.csv

``steps`` prints the median seconds of a compiled optimisation step (bfloat16 autocast,
channels-last, Adam, the input noise: what a default step does) for each variant at 256².
``curve`` fits one variant to the 256² astronaut at σ = 25 (seed 0, benchmarks/problems.py)
for ``--iterations`` steps with the default's optimisation (lr 0.01, input noise 1/30, an
average of the outputs with 0.99) and logs the average's PSNR every 50 iterations. The
variants are the default network (64 channels, 32 at full resolution) with one change each:

- ``join32``/``join16``: the second level hands 32 (16) channels up to the full-resolution level
  instead of 64, so what is upsampled, normalised and convolved at full resolution is narrower;
- ``no1x1``: ``join32`` without the full-resolution level's 1×1 decoder layer;
- ``nobn``: ``join32`` without BatchNorm at full resolution;
- ``unshuffle2``: the whole network at half resolution (a code of h/2 × w/2), its 12 output
  channels rearranged into the 3 of the full image (pixel shuffle): no full-resolution layer.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import denoise_problem  # noqa: E402

from napari_dip.core.networks import SkipNet, _Level  # noqa: E402

BASE = dict(in_channels=32, channels=64, top_channels=32, scales=5, skip_channels=4)


class Trimmed(nn.Module):
    """The default skip network with the second level decoding to ``join`` channels, and the
    full-resolution level optionally without its 1×1 layer or its BatchNorm."""

    def __init__(self, out_channels: int = 3, join: int | None = None, top_1x1: bool = True, top_bn: bool = True):
        super().__init__()
        scales, top = BASE["scales"], BASE["top_channels"]
        widths = [top] + [BASE["channels"]] * (scales - 1)
        ups = list(widths)
        if join:
            ups[1] = join
        inner = None
        for level in reversed(range(scales)):
            level_in = BASE["in_channels"] if level == 0 else widths[level - 1]
            inner_out = ups[level + 1] if level + 1 < scales else ups[level]
            inner = _Level(level_in, widths[level], ups[level], BASE["skip_channels"], inner, inner_out,
                           "bilinear", "reflection")
        if not top_1x1:
            inner.decode = inner.decode[:1]
        if not top_bn:
            inner.join_norm = nn.Identity()
            for layer in inner.decode:
                layer[1] = nn.Identity()
        self.body = inner
        self.head = nn.Sequential(nn.Conv2d(top, out_channels, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


class Unshuffled(nn.Module):
    """The default network at half resolution; its 4·C outputs pixel-shuffled into C at full size."""

    def __init__(self, out_channels: int = 3, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.net = SkipNet(out_channels=out_channels * factor**2, **BASE)
        self.net.head[1] = nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(F.pixel_shuffle(self.net(z), self.factor))


VARIANTS = {
    "default": lambda: (SkipNet(out_channels=3, **BASE), 1),
    "join32": lambda: (Trimmed(join=32), 1),
    "join16": lambda: (Trimmed(join=16), 1),
    "no1x1": lambda: (Trimmed(join=32, top_1x1=False), 1),
    "nobn": lambda: (Trimmed(join=32, top_bn=False), 1),
    "unshuffle2": lambda: (Unshuffled(), 2),
}


class Fit:
    """One variant's optimisation, step by step, as the engine runs the default."""

    def __init__(self, name: str, target: torch.Tensor, seed: int = 0):
        torch.manual_seed(seed)
        net, self.factor = VARIANTS[name]()
        self.net = net.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.net, dynamic=False)
        side = target.shape[-1] // self.factor
        self.generator = torch.Generator().manual_seed(seed)
        code = torch.rand(1, 32, side, side, generator=self.generator) * 0.1
        self.code = code.contiguous(memory_format=torch.channels_last)
        self.jitter = torch.empty(1, 32, side, side)
        self.target = target
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=0.01)
        self.average = None

    def step(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.forward(self.code + self.jitter.normal_(generator=self.generator) / 30).float()
        loss = (out - self.target).square().mean()
        loss.backward()
        self.optimizer.step()
        out = out.detach()
        self.average = out.clone() if self.average is None else self.average.mul_(0.99).add_(out, alpha=0.01)
        return loss.detach()


def steps(names: list[str], size: int, repeats: int) -> None:
    target = torch.rand(1, 3, size, size)
    print(f"| variant | parameters | first step s | median step ms ({size}², {torch.get_num_threads()} thread(s)) |")
    print("| --- | --- | --- | --- |")
    for name in names:
        fit = Fit(name, target)
        times = []
        for _ in range(repeats + 3):
            start = time.perf_counter()
            fit.step()
            times.append(time.perf_counter() - start)
        middle = sorted(times[3:])[repeats // 2]
        params = sum(p.numel() for p in fit.net.parameters())
        print(f"| {name} | {params} | {times[0]:.1f} | {middle * 1000:.0f} |", flush=True)


def curve(name: str, iterations: int, out: Path | None) -> None:
    problem = denoise_problem("astronaut", 256)
    target = torch.from_numpy(np.ascontiguousarray(problem.observed.transpose(2, 0, 1)))[None]
    fit = Fit(name, target)
    rows, start = [], time.perf_counter()
    for iteration in range(1, iterations + 1):
        loss = fit.step()
        if iteration % 50 == 0:
            psnr, ssim = problem.score(fit.average[0].numpy().transpose(1, 2, 0))
            rows.append((iteration, round(time.perf_counter() - start, 2), round(psnr, 3), round(ssim, 4),
                         round(float(loss), 6)))
            print(*rows[-1], flush=True)
    if out:
        with open(out, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["iteration", "seconds", "psnr_avg", "ssim_avg", "loss"])
            writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["steps", "curve"])
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=2400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "steps":
        steps(args.variants, args.size, args.repeats)
    else:
        for name in args.variants:
            curve(name, args.iterations, args.out)


if __name__ == "__main__":
    main()
