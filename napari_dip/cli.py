"""The ``napari-dip`` command line: the same core as the napari widget, for files and scripts.

    napari-dip restore INPUT -o OUTPUT --task denoise|inpaint|sr|deblur|jpeg [options]
    napari-dip restore --sample astronaut -o restored.png --task denoise

Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import io

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-dip", description="Deep Image Prior restoration.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("restore", help="restore one image")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("input", nargs="?", type=Path, help="PNG, JPEG or TIFF image")
    source.add_argument("--sample", choices=sorted(io.SAMPLES), help="use an image bundled with scikit-image")
    run.add_argument("-o", "--output", type=Path, required=True, help="where to write the result")
    run.add_argument("--task", default="denoise", choices=["denoise", "inpaint", "sr", "deblur", "jpeg"])
    run.add_argument("--mask", type=Path, help="inpainting: image whose nonzero pixels are filled")
    run.add_argument("--scale", type=int, help="super-resolution factor (2, 4, 8)")
    run.add_argument("--psf", type=Path, help="deblurring: PSF as an image or .npy file")
    run.add_argument("--noise", type=float, default=None,
                     help="with --sample: add Gaussian noise of this σ (0-255 scale) first (default 25 for denoise)")
    run.add_argument("--preset", default="default", choices=["default", "paper"])
    run.add_argument("--iterations", type=int, help="fix the iteration count (turns automatic stopping off)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    run.add_argument("--threads", type=int, help="CPU threads (default: chosen by image size)")
    run.add_argument("--size", type=int, default=None, help="with --sample: crop to SIZE×SIZE first")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _fail(message: str) -> int:
    print(f"napari-dip: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _restore(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        return _fail(str(error))


def _restore(args: argparse.Namespace) -> int:
    from .core import consume, restore_iter

    io.check_format(args.output)
    if args.input is not None:
        if args.output.resolve() == args.input.resolve():
            raise ValueError(f"the output {args.output} is the input file; choose another name")
        image, mask = io.read_image(args.input), None
    else:
        image, mask = io.sample_input(args.sample, args.task, size=args.size, noise=args.noise, scale=args.scale)
    if args.mask is not None:
        mask = io.read_image(args.mask)
        if mask.ndim == 3:
            mask = mask.max(axis=-1)
    psf = io.read_psf(args.psf) if args.psf is not None else None
    if args.sample is not None:
        # Keep the degraded sample beside the result, so the two can be compared.
        io.write_image(args.output.with_name(args.output.stem + "_input" + args.output.suffix), image)

    run = restore_iter(
        image, args.task, mask=mask, scale=args.scale, psf=psf, preset=args.preset,
        iterations=args.iterations, seed=args.seed, device=args.device, threads=args.threads,
        preview_seconds=None,
    )
    result = consume(run, progress=not args.quiet)
    io.write_image(args.output, result.image)
    print(
        f"wrote {args.output} ({result.image.shape[1]}×{result.image.shape[0]}, {result.image.dtype}): "
        f"{result.iterations} iterations in {result.elapsed:.1f} s on {result.device}, {result.stop_message}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
