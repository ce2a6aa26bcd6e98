"""×4 super-resolution of a centred crop: DIP default against bicubic, and what back-projection
onto the input (making the result downsample to it) adds afterwards.

    python benchmarks/sr_consistency.py 256 retina [precision=float32 ...]

The ground truth is the centred SIZE² crop of a bundled scikit-image picture, the input that crop
shrunk ×4 with PIL's Lanczos. Prints PSNR/SSIM of bicubic and DIP, each one's low-resolution
consistency (PSNR of the Lanczos2 operator applied to the result against the input) and the DIP
result after 1, 5, 10 and 30 steps of iterative back-projection (x += bicubic(y - D(x))).
Further arguments NAME=VALUE go to ``restore`` (e.g. precision=float32; ``guide=bicubic`` feeds
the bicubic upscale in as the network's input code). One thread.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from _measure import psnr, ssim
from PIL import Image


def main() -> None:
    from skimage import data

    from napari_dip.core import restore
    from napari_dip.core.operators import DownsampleOperator

    size = int(sys.argv[1])
    name = sys.argv[2] if len(sys.argv) > 2 else "retina"
    extra = {}
    for item in sys.argv[3:]:
        key, value = item.split("=", 1)
        extra[key] = int(value) if value.isdigit() else value
    image = getattr(data, name)()
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    truth8 = image[top:top + size, left:left + size]
    low = np.asarray(Image.fromarray(truth8).resize((size // 4, size // 4), Image.LANCZOS))
    truth = truth8.astype(np.float32) / 255
    bicubic = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC)).astype(np.float32) / 255
    print("bicubic", round(psnr(truth, bicubic), 2), round(ssim(truth, bicubic), 4), flush=True)
    if extra.get("guide") == "bicubic":
        extra["guide"] = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC))
    start = time.time()
    result = restore(low, "sr", scale=4, threads=1, **extra).astype(np.float32) / 255
    print("DIP default", round(psnr(truth, result), 2), round(ssim(truth, result), 4),
          f"{time.time() - start:.1f} s", flush=True)
    down = DownsampleOperator(4)

    def chw(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]

    observed = chw(low.astype(np.float32) / 255)
    for label, x in (("DIP", result), ("bicubic", bicubic)):
        print(f"low-resolution consistency {label}", round(psnr(observed.numpy(), down(chw(x)).numpy()), 2))
    x = chw(result).clone()
    for step in range(1, 31):
        x = x + torch.nn.functional.interpolate(observed - down(x), scale_factor=4, mode="bicubic", align_corners=False)
        if step in (1, 5, 10, 30):
            out = x[0].permute(1, 2, 0).clamp(0, 1).numpy()
            print(f"DIP + back-projection ×{step}", round(psnr(truth, out), 2), round(ssim(truth, out), 4), flush=True)


if __name__ == "__main__":
    main()
