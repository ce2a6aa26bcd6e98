"""Feature inversion with the Deep Image Prior against a total-variation prior and no prior.

    python benchmarks/inversion.py [--size 96] [--images astronaut coffee] [--layers relu2 relu4]
        [--iterations 1000] [--tv-weights 0.01 0.1] [--train-seconds 90] [--threads 1]
        [--out benchmarks/results/inversion] [--quick]

Two networks of one small architecture (four 3×3 convolutions with ReLU, two max-pools, a global
average and a linear layer): one trained here for ``--train-seconds`` (at most 600 steps) to tell
which of the five bundled scikit-image pictures (astronaut, coffee, chelsea, camera, rocket) a
random 32² patch comes from, and the same one with its random initial weights, which the
literature also inverts. Both are saved as TorchScript files under ``--out``/networks and loaded
from there, as a user's network would be. Nothing is downloaded.

For each network, layer and image (centre square, SIZE², colour), ``napari_dip.core.invert``
matches the layer's features of the image with the ``dip`` prior, the ``tv`` prior (one run per
``--tv-weights`` value) and no prior, all for ``--iterations`` steps. PSNR/SSIM of the
reconstruction against the original, the relative feature error ‖φ(x) − φ(x0)‖ / ‖φ(x0)‖,
seconds. Pictures: original, DIP, the best TV run, no prior. Writes ``results.csv`` and
``table.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from _measure import IMAGES, load, mean_table, picture, psnr, ssim, write
from torch import nn

TITLE = "Feature inversion: DIP prior against TV and no prior"
PATCH = 32


def small_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 16, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(32, 64, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(64, 64, 3, padding=1)), ("relu4", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(64, len(IMAGES))),
    ]))


def training_images(size: int = 256) -> list[torch.Tensor]:
    images = []
    for name in IMAGES:
        image = load(name, size)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        images.append(torch.from_numpy(np.moveaxis(image, -1, 0).copy()))
    return images


def patches(images: list[torch.Tensor], count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(len(images), (count,), generator=generator)
    batch = []
    for label in labels.tolist():
        image = images[label]
        top, left = (int(torch.randint(n - PATCH + 1, (1,), generator=generator)) for n in image.shape[1:])
        patch = image[:, top:top + PATCH, left:left + PATCH]
        batch.append(patch.flip(-1) if torch.rand(1, generator=generator) < 0.5 else patch)
    return torch.stack(batch), labels


def train(net: nn.Module, seconds: float, steps: int = 600) -> dict:
    """Adam on random patches until ``seconds`` or ``steps``; the accuracy on 500 fresh patches."""
    images = training_images()
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    start, step, loss = time.perf_counter(), 0, float("nan")
    net.train()
    while step < steps and time.perf_counter() - start < seconds:
        batch, labels = patches(images, 64, generator)
        optimizer.zero_grad()
        objective = nn.functional.cross_entropy(net(batch), labels)
        objective.backward()
        optimizer.step()
        loss, step = float(objective), step + 1
    net.eval()
    with torch.no_grad():
        batch, labels = patches(images, 500, torch.Generator().manual_seed(1))
        accuracy = float((net(batch).argmax(1) == labels).float().mean())
    return {"steps": step, "seconds": round(time.perf_counter() - start, 1), "loss": round(loss, 3),
            "accuracy": round(accuracy, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", nargs="*", default=["astronaut", "coffee"])
    parser.add_argument("--layers", nargs="*", default=["relu2", "relu4"])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--tv-weights", type=float, nargs="*", default=[0.01, 0.1])
    parser.add_argument("--train-seconds", type=float, default=90)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inversion"))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 32², 5 iterations, 5 s of training, one image and one weight")
    args = parser.parse_args()
    fit: dict = {"iterations": args.iterations, "threads": args.threads}
    if args.quick:
        args.size, args.images, args.tv_weights, args.train_seconds = 32, args.images[:1], args.tv_weights[:1], 5
        fit.update(iterations=5, channels=8, scales=3)
    torch.set_num_threads(args.threads)

    from napari_dip.core import consume, invert_iter

    folder = args.out / "networks"
    folder.mkdir(parents=True, exist_ok=True)
    trained = small_cnn(seed=0)
    report = train(trained, args.train_seconds)
    print("trained:", report, flush=True)
    networks = {f"trained CNN ({report['steps']} steps, {report['accuracy']:.0%} patch accuracy)": trained,
                "random CNN (same architecture)": small_cnn(seed=0)}
    paths = {}
    for index, (label, net) in enumerate(networks.items()):
        paths[label] = folder / f"cnn_{'trained' if index == 0 else 'random'}.pt"
        torch.jit.save(torch.jit.script(net.eval()), paths[label])

    rows: list[dict] = []
    for label, path in paths.items():
        for layer in args.layers:
            for name in args.images:
                truth = load(name, args.size)
                runs = [("DIP", {"prior": "dip"})]
                runs += [(f"TV (weight {w:g})", {"prior": "tv", "tv_weight": w}) for w in args.tv_weights]
                runs += [("no prior", {"prior": "none"})]
                results = {}
                for method, prior in runs:
                    start = time.perf_counter()
                    result = consume(invert_iter(truth, str(path), layer=layer, preview_seconds=None, **prior, **fit))
                    seconds = time.perf_counter() - start
                    image = np.clip(result.image, 0, 1)
                    results[method] = image
                    row = {"network": label, "layer": layer, "image": name, "method": method,
                           "psnr": round(psnr(truth, image), 2), "ssim": round(ssim(truth, image), 4),
                           "feature_error": round(result.feature_error, 4), "seconds": round(seconds, 1),
                           "iterations": result.iterations}
                    rows.append(row)
                    print(row, flush=True)
                tv = [method for method, _ in runs if method.startswith("TV")]
                best_tv = max(tv, key=lambda m: psnr(truth, results[m]))
                kind = "trained" if "trained" in label else "random"
                picture(args.out / f"{kind}_{layer}_{name}.png",
                        [truth, results["DIP"], results[best_tv], results["no prior"]])
                write(args.out, rows, _tables(rows, report), TITLE)


def _tables(rows: list[dict], report: dict) -> list[str]:
    lines = [f"Training: {report}. Pictures: original, DIP, best TV weight, no prior.", ""]
    lines += mean_table(rows, ("network", "layer", "method"), ("psnr", "ssim", "feature_error", "seconds"))
    return lines


if __name__ == "__main__":
    main()
