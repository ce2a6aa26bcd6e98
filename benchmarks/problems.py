"""The benchmark problems: ground truth from scikit-image's bundled images and its degradation.

Matches ../shared/REFERENCE.md: astronaut rows 0:256, cols 128:384; Gaussian noise drawn with
``np.random.seed(seed)`` in CHW order (as the official ``get_noisy_image``) and clipped; a 50 %
random pixel mask (one for all channels); ×4 downsampling with PIL's Lanczos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

CROPS = {
    "astronaut": lambda: data.astronaut()[0:256, 128:384],
    "camera": lambda: data.camera()[64:320, 160:416],
    "coffee": lambda: data.coffee()[80:336, 120:376],
    "chelsea": lambda: data.chelsea()[0:256, 100:356],
    # The whole 512² camera, for tiled-versus-untiled comparisons (benchmarks/tile_seams.py).
    "camera512": lambda: data.camera(),
    # A slice of benchmarks/volume.py's synthetic blob volume (64², smooth, [0.1, 0.9] × 255):
    # small and smooth, where the output variance never rises while noise is fitted.
    "blobs": lambda: 255 * _blob_slice(),
    # Held out: not used while choosing the stopping rule's constants.
    "ihc": lambda: data.immunohistochemistry()[128:384, 128:384],
    "moon": lambda: data.moon()[128:384, 128:384],
    "rocket": lambda: data.rocket()[100:356, 200:456],
    # The centre of the 1411² fundus photograph: smooth, low-contrast vessels (benchmarks/sr_large.py).
    "retina": lambda: data.retina()[577:833, 577:833],
    # The fundus photograph's rim: 41 % black background, where σ 25 noise is clipped at 0 (as a
    # big image's corner tiles are, benchmarks/denoise_large.py).
    "retinaedge": lambda: data.retina()[100:356, 100:356],
    # The first of the 9 tiles the planner cuts the 1411² retina into (37 % black).
    "retinacorner": lambda: data.retina()[0:544, 0:544],
    # A dim, low-contrast 8-bit image (as many microscopy exports are): the camera crop squeezed
    # into 90-154 of 0-255.
    "dimcamera": lambda: np.rint(90 + data.camera()[64:320, 160:416] * (64 / 255)).astype(np.uint8),
}


def _blob_slice():
    from volume import blob_volume

    return blob_volume(16, 64)[0]


@dataclass
class Problem:
    name: str
    task: str
    truth: np.ndarray  # float32 in [0, 1], (H, W) or (H, W, C)
    observed: np.ndarray
    kwargs: dict = field(default_factory=dict)

    def score(self, restored: np.ndarray) -> tuple[float, float]:
        restored = np.clip(np.asarray(restored, dtype=np.float64), 0, 1)
        truth = self.truth.astype(np.float64)
        channel_axis = -1 if truth.ndim == 3 else None
        return (
            peak_signal_noise_ratio(truth, restored, data_range=1.0),
            structural_similarity(truth, restored, data_range=1.0, channel_axis=channel_axis),
        )


def ground_truth(image: str = "astronaut", size: int = 256) -> np.ndarray:
    crop = CROPS[image]()
    if size != crop.shape[0]:
        crop = crop[:size, :size]
    return crop.astype(np.float32) / 255


def denoise_problem(image: str = "astronaut", size: int = 256, sigma: float = 25, seed: int = 0) -> Problem:
    truth = ground_truth(image, size)
    chw = truth[None] if truth.ndim == 2 else truth.transpose(2, 0, 1)
    np.random.seed(seed)
    noisy = np.clip(chw + np.random.normal(scale=sigma / 255, size=chw.shape), 0, 1).astype(np.float32)
    noisy = noisy[0] if truth.ndim == 2 else noisy.transpose(1, 2, 0)
    return Problem(f"{image}{size} σ={sigma:g}", "denoise", truth, noisy)


def inpaint_problem(image: str = "astronaut", size: int = 128, fraction: float = 0.5, seed: int = 0) -> Problem:
    truth = ground_truth(image, size)
    rng = np.random.default_rng(seed)
    fill = rng.random(truth.shape[:2]) < fraction
    observed = truth.copy()
    observed[fill] = 0
    return Problem(f"{image}{size} {fraction:.0%} pixels", "inpaint", truth, observed, {"mask": fill})


def sr_problem(image: str = "astronaut", size: int = 128, scale: int = 4) -> Problem:
    truth = ground_truth(image, size)
    pil = Image.fromarray(np.rint(truth * 255).astype(np.uint8))
    low = pil.resize((size // scale, size // scale), Image.LANCZOS)
    observed = np.asarray(low, dtype=np.float32) / 255
    return Problem(f"{image}{size} ×{scale}", "sr", truth, observed, {"scale": scale})


PROBLEMS = {"denoise": denoise_problem, "inpaint": inpaint_problem, "sr": sr_problem}
