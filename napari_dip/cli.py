"""The ``napari-dip`` command line: the same core as the napari widget, for files and scripts.

    napari-dip restore INPUT -o OUTPUT --task denoise|inpaint|sr|deblur|jpeg [options]
    napari-dip restore --sample astronaut -o restored.png --task denoise
    napari-dip restore stack.tif -o restored.tif --volume      # a z-stack, whole, with a 3D network
    napari-dip batch INPUTS -o OUTDIR --task ... [--scheduler ADDRESS | --workers N]
    napari-dip restore noflash.png -o out.png --guide flash.png    # guided: the flash photo is the code
    napari-dip invert IMAGE --network net.pt --layer NAME -o out.png [--prior dip|tv|none]

Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import sys
import threading
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

from . import io

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-dip", description="Deep Image Prior restoration.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("restore", help="restore one image")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("input", nargs="?", type=Path, help="PNG, JPEG or TIFF image, or a zarr array")
    source.add_argument("--sample", choices=sorted(io.SAMPLES), help="use an image bundled with scikit-image")
    run.add_argument("-o", "--output", type=Path, required=True, help="where to write the result")
    _add_fit_options(run)
    run.add_argument("--noise", type=float, default=None,
                     help="with --sample: add Gaussian noise of this σ (0-255 scale) first (default 25 for denoise)")
    run.add_argument("--size", type=int, default=None, help="with --sample: crop to SIZE×SIZE first")
    run.add_argument("--volume", action="store_true",
                     help="INPUT is a z-stack (a TIFF of depth × height × width, optionally × RGB): restore it "
                          "whole with a 3D network (denoise, inpaint)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    batch = commands.add_parser(
        "batch", help="restore files, folders and the planes of stacks; resumable, optionally on a dask cluster"
    )
    batch.add_argument("inputs", nargs="+", type=Path, metavar="INPUTS",
                       help="image files, folders of them, zarr or TIFF stacks (each plane is one task)")
    batch.add_argument("-o", "--outdir", type=Path, required=True, help="folder for the outputs")
    _add_fit_options(batch)
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on this dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--workers", type=int,
                       help="worker processes of a local dask cluster (default: one per core, one with CUDA); "
                            "0 runs here, one item after another")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_invert(commands)
    return parser


def _add_invert(commands) -> None:
    from .core.inversion import PRIORS

    invert = commands.add_parser(
        "invert", help="network inversion: the image whose features in a torch network match those of IMAGE"
    )
    invert.add_argument("input", type=Path, help="PNG, JPEG or TIFF image whose features are matched")
    invert.add_argument("-o", "--output", type=Path, required=True, help="where to write the inverted image")
    invert.add_argument("--network", required=True,
                        help="a TorchScript file (torch.jit.save) or a Python entry point module:function")
    invert.add_argument("--weights", type=Path,
                        help="a state dict for the entry point's module (read with weights_only=True)")
    invert.add_argument("--layer", help="the layer whose features are matched, by name (e.g. features.3); "
                                        "default: the network's output")
    invert.add_argument("--unit", help="maximise this unit's activation instead: CHANNEL or CHANNEL,ROW,COLUMN")
    invert.add_argument("--prior", default="dip", choices=PRIORS,
                        help="dip: the image is a network's output (default); tv: the pixels with a total-variation "
                             "penalty; none: the pixels alone")
    invert.add_argument("--tv-weight", type=float, help="weight of the total-variation penalty (default 0.05 for tv)")
    invert.add_argument("--iterations", type=int, help="optimisation steps (default 1000)")
    _add_run_options(invert)
    invert.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=_setting,
                        help="an advanced setting of the fit, e.g. --set lr=0.02 (repeatable; see docs/api.md)")
    invert.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_run_options(command: argparse.ArgumentParser) -> None:
    """Where and how reproducibly a fit runs: the options restore, batch and invert share."""
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    command.add_argument("--threads", type=int, help="CPU threads (default: from the image size and the free cores)")


def _add_fit_options(command: argparse.ArgumentParser) -> None:
    from .core.presets import PRESETS
    from .core.tasks import TASK_NAMES

    command.add_argument("--task", default="denoise", choices=TASK_NAMES)
    command.add_argument("--mask", type=Path, help="inpainting: image whose nonzero pixels are filled")
    command.add_argument("--scale", type=int, help="super-resolution factor (2, 4, 8)")
    command.add_argument("--psf", type=Path, help="deblurring: PSF as an image or .npy file")
    command.add_argument("--guide", type=Path,
                         help="guided restoration: an image of the same scene (e.g. the flash photograph) that becomes "
                              "the network's input; the result's height and width, any channels (.npy too)")
    command.add_argument("--preset", default="default", choices=PRESETS)
    command.add_argument("--iterations", type=int, help="fix the iteration count (turns automatic stopping off)")
    _add_run_options(command)
    command.add_argument("--tile-size", type=int,
                         help="tile side (default: tiles only where the image does not fit in memory)")
    command.add_argument("--memory-limit", type=_bytes,
                         help="memory one fit may use, e.g. 3GB (default: a share of the free memory)")
    command.add_argument("--axes", help="the image's axes, e.g. YX, YXC, TYX, ZYXC (default: a last axis of 3 or 4 "
                                        "is RGB, the last two others are height and width, any before them planes)")
    command.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=_setting,
                         help="an advanced setting of the network or the fit, e.g. --set channels=32 --set lr=0.02 "
                              "(repeatable; see docs/api.md)")
    command.add_argument("--keep-raw", action="store_true",
                         help="inpainting: return the network's output everywhere, as the paper does, instead of "
                              "keeping every unpainted pixel exactly")


def _options(args: argparse.Namespace, **inputs):
    """The run's options from the command line's (``inputs``: the mask and PSF arrays read)."""
    from .core import RestoreOptions

    if args.keep_raw and args.task != "inpaint":
        raise ValueError(
            f"--keep-raw is for inpainting (it keeps the network's output everywhere), not --task {args.task}"
        )
    return RestoreOptions(
        task=args.task, scale=args.scale, preset=args.preset, iterations=args.iterations, seed=args.seed,
        device=args.device, threads=args.threads, preview_seconds=None, tile_size=args.tile_size,
        memory_limit=args.memory_limit, keep_known=False if args.keep_raw else None, axes=args.axes,
        volume=getattr(args, "volume", False), advanced=_advanced(args), **inputs,
    )


def _advanced(args: argparse.Namespace) -> dict[str, object]:
    """The ``--set`` settings, each named once and each a setting (not an option of its own)."""
    import difflib
    from dataclasses import fields

    from .core import RestoreOptions
    from .core.settings import Settings

    own = {f.name for f in fields(RestoreOptions)} - {"advanced"}
    known = [f.name for f in fields(Settings) if f.name not in own]
    advanced: dict[str, object] = {}
    for name, value in args.set:
        if name in advanced:
            raise ValueError(f"--set {name} is given twice ({advanced[name]!r}, then {value!r}): give it once")
        if name in own:
            flag = {"keep_known": "keep-raw"}.get(name, name.replace("_", "-"))
            if hasattr(args, name) or name == "keep_known":
                raise ValueError(f"{name} has an option of its own: write --{flag} instead of --set {name}=...")
            raise ValueError(f"--set {name}: {name} is an option of the Python API (RestoreOptions), not a setting; "
                             f"the command line does not take it (settings: {', '.join(known)})")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            guess = f"did you mean {close[0]}? " if close else ""
            raise ValueError(f"--set {name}: unknown setting; {guess}known settings: {', '.join(known)}")
        advanced[name] = value
    return advanced


def _invert_advanced(settings: list[tuple[str, object]]) -> dict[str, object]:
    """``invert``'s ``--set`` settings, each named once and each a setting without an option of its own."""
    import difflib
    from dataclasses import fields

    from .core.settings import Settings

    own = {"iterations", "seed", "device", "threads"}
    known = [f.name for f in fields(Settings) if f.name not in own]
    advanced: dict[str, object] = {}
    for name, value in settings:
        if name in advanced:
            raise ValueError(f"--set {name} is given twice ({advanced[name]!r}, then {value!r}): give it once")
        if name in own:
            raise ValueError(f"{name} has an option of its own: write --{name} instead of --set {name}=...")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            guess = f"did you mean {close[0]}? " if close else ""
            raise ValueError(f"--set {name}: unknown setting; {guess}known settings: {', '.join(known)}")
        advanced[name] = value
    return advanced


def _setting(text: str) -> tuple[str, object]:
    """``name=value`` with the value read as JSON (numbers, true/false) or else kept as text."""
    import json

    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE; write e.g. --set channels=32")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value.strip()


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def _bytes(text: str) -> int:
    """``3GB``, ``1.5GiB``, ``512MiB`` or a plain number of bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgt]i?)?b?\s*", text.lower())
    size = int(float(match.group(1)) * _UNITS[match.group(2) or ""]) if match else 0
    if size < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 3GB, 512MiB or 3000000000")
    if size < 2**20:
        raise argparse.ArgumentTypeError(
            f"{text!r} is {size} bytes, less than the 1MiB any fit needs; write e.g. 3GB or 512MiB"
        )
    return size


def _fail(message: str) -> int:
    print(f"napari-dip: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    usage_error = StringIO()
    try:
        with redirect_stderr(usage_error):
            args = _parser().parse_args(argv)
    except SystemExit:
        # argparse prints the usage, then the error: keep the error, one line like every other.
        lines = usage_error.getvalue().strip().splitlines()
        if lines:
            print(lines[-1], file=sys.stderr)
        raise
    _INTERRUPTED.clear()
    _HANDLED.clear()
    own = threading.current_thread() is threading.main_thread()
    previous = (signal.signal(signal.SIGINT, _on_interrupt), sys.unraisablehook) if own else None
    if own:
        sys.unraisablehook = _quiet_interrupts
    try:
        return {"restore": _restore, "batch": _batch, "invert": _invert}[args.command](args)
    except (ValueError, FileNotFoundError, OSError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        _HANDLED.set()
        print(INTERRUPTED_LINE, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous[0])
            sys.unraisablehook = previous[1]


# Ctrl-C raises KeyboardInterrupt wherever Python happens to be; inside a weakref callback (torch's
# compiler runs many) Python only reports it as "Exception ignored" and goes on, and the run with
# it, for the minute a first compile takes. So the flag outlives the exception (the run stops at
# its next step), and a run that has not ended a moment after Ctrl-C is left at once: nothing
# unfinished is ever written (outputs are written whole, then renamed).
INTERRUPTED_LINE = "napari-dip: interrupted; no unfinished output was written"
_INTERRUPTED = threading.Event()
_HANDLED = threading.Event()
_GRACE_SECONDS = 2.0


def _on_interrupt(signum, frame) -> None:
    if not _INTERRUPTED.is_set():
        _INTERRUPTED.set()
        watchdog = threading.Timer(_GRACE_SECONDS, _leave_unless_handled)
        watchdog.daemon = True
        watchdog.start()
    raise KeyboardInterrupt


def _leave_unless_handled() -> None:
    if not _HANDLED.is_set():
        print(INTERRUPTED_LINE, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)


def _quiet_interrupts(unraisable) -> None:
    """A KeyboardInterrupt swallowed in a callback is ours to act on, not a traceback to show."""
    if not issubclass(unraisable.exc_type, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def _interruptible(run):
    """``run``'s events and result, ended at the first step after a Ctrl-C that was swallowed."""
    while True:
        try:
            event = next(run)
        except StopIteration as done:
            return done.value
        if _INTERRUPTED.is_set():
            run.close()
            raise KeyboardInterrupt
        yield event


def _restore(args: argparse.Namespace) -> int:
    from .batch import write_atomically

    io.check_format(args.output)
    if args.volume:
        _check_volume_files(args)
    given = [flag for flag, value in (("--size", args.size), ("--noise", args.noise)) if value is not None]
    if args.input is not None and given:
        verb, them = ("shapes", "it") if len(given) == 1 else ("shape", "them")
        raise ValueError(f"{' and '.join(given)} {verb} the built-in --sample; with an INPUT file, leave {them} out")
    if args.input is not None:
        # A stack without --volume is restored plane by plane, as restore() does.
        image, mask = io.read_image(args.input), None
    else:
        image, mask = io.sample_input(args.sample, args.task, size=args.size, noise=args.noise, scale=args.scale)
    # Every output is checked before any work: it must be writable, hold the result, and be no file read.
    reads = {"input": args.input, "mask": args.mask, "PSF": args.psf, "guide": args.guide}
    # Before torch is imported (the task registry would import it), so a bad output fails at once.
    like = image
    if args.task == "inpaint" and args.mask is not None and image.dtype.kind == "f":
        import numpy as np

        from .core.arrays import finite_copy  # numpy only

        # NaN under the mask is filled (the core refuses any outside it): the result is finite.
        like = image if np.isfinite(image).all() else finite_copy(image)
    io.check_output(args.output, like, scale=(args.scale or 1) if args.task == "sr" else 1, reads=reads)
    if args.mask is not None:
        mask = _read_volume_mask(args.mask, image) if args.volume else _read_mask(args.mask)
    psf = io.read_psf(args.psf) if args.psf is not None else None
    guide = _read_guide(args.guide) if args.guide is not None else None

    from .core import consume, restore_iter

    options = _options(args, mask=mask, psf=psf, guide=guide)
    _check_lossless(args.output, options)
    if args.sample is not None:
        # Keep the degraded sample beside the result, so the two can be compared; written once
        # every option has been checked, so a refused run leaves no file behind.
        sample_copy = args.output.with_name(args.output.stem + "_input" + args.output.suffix)
        io.check_output(sample_copy, image, reads=reads)
        write_atomically(sample_copy, image)
    result = consume(_interruptible(restore_iter(image, options=options)), progress=not args.quiet)
    write_atomically(args.output, result.image)
    shape = result.image.shape
    # Width × height for an image; depth × height × width for a volume, as its axes are stored.
    plane = len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4) and not result.parts and not args.volume)
    size = f"{shape[1]}×{shape[0]}" if plane else "×".join(str(n) for n in shape)
    how = f" in {result.plan}" if result.parts else ""
    print(
        f"wrote {args.output} ({size}, {result.image.dtype}): "
        f"{result.iterations} iterations{how} in {result.elapsed:.1f} s on {result.device}, {result.stop_message}"
    )
    return 0


def _check_lossless(output: Path, options) -> None:
    """Inpainting that keeps the unpainted pixels exactly cannot be written to a lossy JPEG."""
    if options.keeps_known and output.suffix.lower() in (".jpg", ".jpeg"):
        raise ValueError(
            f"JPEG is lossy, so {output} would change the pixels inpainting keeps exactly; "
            f"write {output.stem}.png or .tif (or add --keep-raw for the network's output everywhere)"
        )


def _read_guide(path: Path):
    """A guide image file, or a .npy array (any channel count, channels last)."""
    return io.read_array(path, "guide")


def _read_mask(path: Path):
    """Nonzero colour = fill; the alpha channel of an RGBA mask is ignored. A stack (one mask
    per plane, planes first) is kept as it is."""
    return io.colour_collapsed(io.read_image(path))


def _check_volume_files(args: argparse.Namespace) -> None:
    if args.sample is not None:
        raise ValueError("--volume restores a z-stack: give a TIFF stack as INPUT, not --sample")
    for path in (args.input, args.output):
        if path is args.input and path.suffix.lower() == ".zarr":
            continue
        if io.check_format(path) not in (".tif", ".tiff"):
            raise ValueError(f"--volume reads TIFF stacks or zarr arrays and writes TIFF stacks; {path} is not a .tif")


def _read_volume_mask(path: Path, volume):
    """A mask for every slice (depth × height × width, any channels collapsed), or one 2D mask
    that applies to all slices."""
    import numpy as np

    mask = _read_mask(path)
    if mask.ndim == 2:
        mask = np.broadcast_to(mask, (volume.shape[0], *mask.shape))
    return mask


def _batch(args: argparse.Namespace) -> int:
    from . import batch

    if args.workers != 0 and importlib.util.find_spec("distributed") is None:
        raise ValueError("running a batch on a dask cluster needs dask.distributed: pip install 'napari-dip[batch]'")
    options = _options(
        args, mask=_read_mask(args.mask) if args.mask is not None else None,
        psf=io.read_psf(args.psf) if args.psf is not None else None,
        guide=_read_guide(args.guide) if args.guide is not None else None,
    )
    plan = batch.plan_batch(args.inputs, args.outdir, options)
    outputs = [item.output for item in plan.items] + [stack.output for stack in plan.stacks]
    for what, source in (("mask", args.mask), ("PSF", args.psf), ("guide", args.guide)):
        for output in outputs if source is not None else ():
            # An existing output counts as done: a file the batch reads must not stand in for one.
            if output.exists() and os.path.samefile(output, source):
                raise ValueError(f"the output {output} is the {what} file {source}; choose another output folder")
    progress = not args.quiet
    if args.scheduler is not None:
        from dask.distributed import Client

        with Client(args.scheduler, timeout="20s") as client:
            report = batch.run_batch(plan, options, client=client, progress=progress)
    elif args.workers == 0:
        report = batch.run_batch(plan, options, progress=progress)
    else:
        workers = args.workers or batch.default_workers(options.device)
        if workers < 0:
            raise ValueError(f"--workers must be 0 or more, got {workers}")
        with batch.local_cluster(workers) as client:
            report = batch.run_batch(plan, batch.local_options(options, workers), client=client, progress=progress)
    for label, error in report.failed:
        print(f"napari-dip: failed: {label}: {error}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


def _invert(args: argparse.Namespace) -> int:
    from .batch import write_atomically

    io.check_format(args.output)
    image = io.read_image(args.input)
    reads = {"input": args.input, "weights": args.weights}
    if Path(args.network).exists():
        reads["network"] = args.network
    io.check_output(args.output, image, reads=reads)

    from .core import consume
    from .core.inversion import InversionOptions, invert_iter

    options = InversionOptions(
        layer=args.layer, unit=args.unit, prior=args.prior, tv_weight=args.tv_weight, iterations=args.iterations,
        seed=args.seed, device=args.device, threads=args.threads, preview_seconds=None,
        advanced=_invert_advanced(args.set),
    )
    result = consume(_interruptible(invert_iter(image, args.network, weights=args.weights, options=options)),
                     progress=not args.quiet)
    write_atomically(args.output, result.image)
    where = f"layer {result.layer}" if result.layer is not None else "the network's output"
    if result.unit is not None:
        outcome = (f"unit {result.unit} of {where} raised from {result.reference_activation:.4g} "
                   f"to {result.activation:.4g}")
    else:
        outcome = f"features of {where} matched to a relative error of {result.feature_error:.3f}"
    print(f"wrote {args.output}: {outcome}, {result.prior} prior, {result.iterations} iterations in "
          f"{result.elapsed:.1f} s on {result.device}")
    return 0


def run() -> None:
    """The ``napari-dip`` command: :func:`main`, then exit with its code.

    After Ctrl-C the process leaves at once: exiting normally would wait for torch's compile
    workers (a first compile runs in a pool of them) to finish what they were given, which on a
    busy machine took over a minute. Nothing unfinished was written (outputs are written whole,
    then renamed), so there is nothing left to clean up.
    """
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
