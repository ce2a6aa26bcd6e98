"""Batch restoration of files, folders and stacks, serially or on a dask.distributed cluster.

    napari-dip batch INPUTS -o OUTDIR --task ... [--scheduler ADDRESS | --workers N]

Every file, and every plane of a stack, is one task. A finished output is written to a
temporary file in its folder and then renamed over its final name (``os.replace``), so an
output that exists is complete: a rerun skips it, and a batch interrupted halfway (a killed
worker, a killed client, a power cut after the rename) resumes where it stopped. A failing item
is reported with its error and does not stop the others. When all planes of a stack are done
they are assembled, one plane at a time, into one TIFF stack.

A rerun skips only what the same job wrote: OUTDIR's ``.napari-dip-job.json`` records, for every
output once written, what made it (:func:`job_record`: the task and its inputs, the resolved
settings, the seed; not threads, device or the memory budget). An output that another job wrote
is refused before any work, with the setting that differs, instead of being kept as this job's.

Workers read their own inputs and write their own outputs, so on a cluster INPUTS and OUTDIR
must be on a file system every worker sees.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .core.guide import check_guide, guide_for
from .core.options import RestoreOptions
from .stack_io import STACK_SUFFIXES, open_stack

__all__ = [
    "BatchItem",
    "BatchStack",
    "BatchPlan",
    "BatchReport",
    "plan_batch",
    "job_record",
    "restore_item",
    "write_atomically",
    "run_batch",
    "local_cluster",
    "local_options",
    "default_workers",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_PARTIAL = ".partial-"
JOB_FILE = ".napari-dip-job.json"
# Options and settings that change how fast a result comes (or, for the memory budget, in how
# many tiles), not what is restored: left out of a job's record.
_NOT_RESULT = ("threads", "device", "preview_seconds", "preview_iterations", "memory_limit")
_SPEED_ONLY = ("compile", "channels_last")
# Settings added after job files were first written, with the value every earlier version used:
# left out of a record when they have it, so that a job file an earlier version wrote still
# matches a rerun of the same job.
_ADDED_LATER = {"stretch": False}
_WORKERS_PER_CORE = 4


@dataclass(frozen=True)
class BatchItem:
    """One task: a whole image file, or one plane (``position``) of a stack."""

    source: Path
    output: Path
    position: tuple[int, ...] | None = None
    stack_output: Path | None = None

    @property
    def label(self) -> str:
        if self.position is None:
            return str(self.source)
        return f"{self.source} plane {','.join(map(str, self.position))}"

    @property
    def done(self) -> bool:
        """Its output, or its whole stack's, exists (outputs only exist once complete)."""
        return self.output.exists() or (self.stack_output is not None and self.stack_output.exists())


@dataclass(frozen=True)
class BatchStack:
    """A stack's assembled output and the plane outputs it is made from, in C order."""

    source: Path
    output: Path
    planes: tuple[Path, ...]


@dataclass
class BatchPlan:
    items: list[BatchItem]
    stacks: list[BatchStack]
    outdir: Path | None = None
    job: dict | None = None  # job_record of the options it was planned with


@dataclass
class BatchReport:
    """What a run did: outputs written and skipped, stacks assembled, and failures."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    assembled: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        line = f"{len(self.written)} written, {len(self.skipped)} skipped (already done), {len(self.failed)} failed"
        if self.assembled:
            line += "; assembled " + ", ".join(str(path) for path in self.assembled)
        return line


def _expand(inputs: list[Path]) -> list[Path]:
    """Files and stacks named directly, or found (not recursively) in a named folder."""
    sources = []
    for path in inputs:
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if path.is_dir() and path.suffix.lower() != ".zarr":
            found = sorted(
                child for child in path.iterdir()
                if not child.name.startswith(".")
                and (child.suffix.lower() in IMAGE_SUFFIXES and child.is_file() or child.suffix.lower() == ".zarr")
            )
            if not found:
                raise ValueError(f"the folder {path} holds no PNG, JPEG, TIFF or zarr input")
            sources += found
        else:
            if path.suffix.lower() != ".zarr":
                io.check_format(path)
            sources.append(path)
    return sources


def _source_shape(path: Path) -> tuple[int, ...] | None:
    """The shape of an input as it will be read, from its header; ``None`` for a file whose
    header cannot be read (it fails as its own item, and the others go on)."""
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return tuple(open_stack(path).shape)
    if suffix in (".tif", ".tiff"):
        try:
            with io.open_tiff(path) as tiff:
                return tuple(tiff.series[0].shape)
        except ValueError:
            return None
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size, mode, bands = (image.height, image.width), image.mode, len(image.getbands())
    except Exception:  # corrupt, or a decompression bomb: read_image says which, for this item
        return None
    # As io.read_image converts them: palette and CMYK to RGB, gray with alpha to RGBA.
    bands = {"P": 3, "CMYK": 3, "YCbCr": 3, "LA": 4, "PA": 4}.get(mode, bands)
    return size if bands == 1 else (*size, bands)


def _check_outdir(outdir: Path) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be written."""
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"the output folder {outdir} is a file; give a folder (it is made if missing)")
    folder = outdir
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot make the output folder {outdir}: {folder} is a file; choose another output folder")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        raise ValueError(
            f"cannot write to the output folder {outdir}: {folder} is not writable; choose another output folder"
        ) from None


def plan_batch(inputs: list[str | Path], outdir: str | Path, options: RestoreOptions | None = None) -> BatchPlan:
    """The items of a batch and where each output goes.

    A 2D image (or RGB(A) image) becomes ``OUTDIR/<its name>`` (JPEG as PNG, zarr as TIFF); a
    stack ``name.tif`` with more axes becomes one item per plane, written to
    ``OUTDIR/name_planes/name_<position>.tif`` and assembled into ``OUTDIR/name.tif``.

    Parameters
    ----------
    inputs : list of str or Path
        Image files, folders of them (not searched recursively), zarr or TIFF stacks.
    outdir : str or Path
        Folder for the outputs; must not be a folder of inputs.
    options : RestoreOptions, optional
        The run's options: their ``axes`` or ``channel_axis`` say which axes of a stack are
        planes (default: every axis before the last two, a last axis of 3 or 4 being RGB).

    Returns
    -------
    BatchPlan

    Raises
    ------
    ValueError
        If there is nothing to do, OUTDIR is an input folder, or two inputs share an output.
    """
    outdir = Path(outdir)
    _check_outdir(outdir)
    # A file named twice (directly and through its folder, say) is restored once.
    unique: dict[Path, Path] = {}
    for source in _expand([Path(path) for path in inputs]):
        unique.setdefault(source.resolve(), source)
    sources = list(unique.values())
    for source in sources:
        if source.parent.resolve() == outdir.resolve():
            raise ValueError(f"the output folder {outdir} holds the input {source}; choose another folder")
    if options is not None and options.mask is not None and options.spec.needs_mask:
        from .core.fitting import spatial_mask

        mask = np.asarray(options.mask)
        spatial_mask(mask, mask.shape)  # an empty or full mask is so for every input
    items: list[BatchItem] = []
    stacks: list[BatchStack] = []
    for source in sources:
        shape = _source_shape(source)
        layout = None
        if shape is not None:
            try:
                # The axes, the mask and the guide are checked against every input before any is restored.
                layout = _layout(shape, options)
                if options is not None:
                    layout.check_mask(options.mask)
                    check_guide(options.guide, layout, options.factor)
            except ValueError as error:
                raise ValueError(f"{source}: {error}") from None
        expected = _result_shape(shape, layout, options)
        if source.suffix.lower() not in STACK_SUFFIXES or layout is None or not layout.plane_axes:
            suffix = {".jpg": ".png", ".jpeg": ".png", ".zarr": ".tif"}.get(source.suffix.lower(), source.suffix)
            items.append(BatchItem(source, outdir / (source.stem + suffix)))
            _check_finished(items[-1].output, expected)
            continue
        stem = source.name.split(".")[0]
        stack_output = outdir / f"{stem}.tif"
        _check_finished(stack_output, expected)
        digits = [len(str(layout.shape[axis] - 1)) for axis in layout.plane_axes]
        planes = []
        for position in layout.positions():
            name = "_".join(f"{at:0{width}d}" for at, width in zip(position, digits, strict=True))
            plane = outdir / f"{stem}_planes" / f"{stem}_{name}.tif"
            planes.append(plane)
            items.append(BatchItem(source, plane, position, stack_output))
        stacks.append(BatchStack(source, stack_output, tuple(planes)))
    for output in [item.output for item in items] + [stack.output for stack in stacks]:
        if output.is_dir():
            raise ValueError(f"the output {output} is a folder; remove it or choose another output folder")
    owners: dict[Path, Path] = {}
    for source, output in [(item.source, item.output) for item in items] + [(s.source, s.output) for s in stacks]:
        other = owners.setdefault(output, source)
        if other != source:
            raise ValueError(f"the inputs {other} and {source} would both be written to {output}; rename one")
    job = job_record(options) if options is not None else None
    _check_same_job(outdir, job, [item.output for item in items] + [stack.output for stack in stacks])
    return BatchPlan(items, stacks, outdir, job)


def job_record(options: RestoreOptions) -> dict:
    """What decides the outputs a batch writes, as plain JSON values: the task and its inputs
    (mask as painted/unpainted, PSF normalised as the fit uses it, guide: each by a digest), the
    settings the preset resolves to, the seed and how the input is read. Left out: what changes
    only how fast or in how many pieces it runs (threads, device, previews, memory budget,
    compiling, memory layout)."""
    values = {name: value for name, value in options.to_dict().items()
              if name not in _NOT_RESULT + ("preset", "iterations", "advanced", "keep_known")}
    values["settings"] = {
        name: value for name, value in asdict(options.settings).items()
        if name not in _SPEED_ONLY and not (name in _ADDED_LATER and value == _ADDED_LATER[name])
    }
    values["keep_known"] = options.keeps_known
    mask = None if options.mask is None else np.asarray(options.mask) != 0
    psf = None if options.psf is None else np.asarray(options.psf, np.float64) / np.sum(options.psf)
    for name, array in (("mask", mask), ("psf", psf), ("guide", options.guide)):
        values[name] = None if array is None else _digest(np.asarray(array))
    return json.loads(_canonical(values))


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _digest(array: np.ndarray) -> str:
    digest = hashlib.sha256(f"{array.shape} {array.dtype.str}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _job_key(job: dict) -> str:
    return hashlib.sha256(_canonical(job).encode()).hexdigest()[:16]


def _read_jobs(outdir: Path) -> dict:
    path = outdir / JOB_FILE
    if not path.is_file():
        return {"jobs": {}, "outputs": {}}
    try:
        record = json.loads(path.read_text())
        jobs, outputs = record["jobs"], record["outputs"]
        if not (isinstance(jobs, dict) and isinstance(outputs, dict)
                and all(isinstance(job, dict) for job in jobs.values())
                and all(isinstance(key, str) and key in jobs for key in outputs.values())):
            raise ValueError
    except (OSError, ValueError, TypeError, KeyError):
        raise ValueError(
            f"{path} (which records what made each output in {outdir}) cannot be read; "
            "remove it, and the outputs it described, or choose another output folder"
        ) from None
    return record


# The order in which a difference is named: what the user chose first, then the details.
_FIRST = ("task", "scale", "mask", "psf", "guide", "keep_known", "seed", "volume", "axes", "channel_axis")
_NAMES = {"psf": "PSF", "keep_known": "keep_known (--keep-raw)"}


def _difference(theirs: dict, ours: dict) -> str:
    """The first setting in which two job records differ, in words."""
    def differs(a, b) -> bool:
        return _canonical(a) != _canonical(b)

    def order(name: str) -> tuple[int, str]:
        return (_FIRST.index(name) if name in _FIRST else len(_FIRST), name)

    for name in sorted(set(theirs) | set(ours), key=order):
        a, b = theirs.get(name), ours.get(name)
        if not differs(a, b):
            continue
        if name == "settings" and isinstance(a, dict) and isinstance(b, dict):
            a, b = ({key: side.get(key, _ADDED_LATER.get(key)) for key in set(a) | set(b)} for side in (a, b))
            inner = next((key for key in sorted(a) if differs(a[key], b[key])), None)
            if inner is None:
                continue
            return f"it was made with {inner} {a[inner]!r}, this job has {b[inner]!r}"
        if name in ("mask", "psf", "guide"):
            label = _NAMES.get(name, name)
            if a is None:
                return f"it was made without a {label}, this job has one"
            if b is None:
                return f"it was made with a {label}, this job has none"
            return f"it was made with another {label}"
        return f"it was made with {_NAMES.get(name, name)} {a!r}, this job has {b!r}"
    return "it was made with other settings"


def _check_same_job(outdir: Path, job: dict | None, outputs: list[Path]) -> None:
    """Refuse before any work when an existing output here was written by another job."""
    if job is None:
        return
    record = _read_jobs(outdir)
    ours = _job_key(job)
    for output in outputs:
        key = record["outputs"].get(_relative(output, outdir))
        if key is None or key == ours or not output.exists():
            continue
        raise ValueError(
            f"{output} is another job's result ({_difference(record['jobs'][key], job)}); "
            "remove it or choose another output folder"
        )


def _relative(output: Path, outdir: Path) -> str:
    return output.relative_to(outdir).as_posix()


class _JobLog:
    """Records in OUTDIR's job file that this job made each output, once it exists; written at
    most every few seconds and at the end, so a batch of thousands does not rewrite it per item.
    (A client killed in between leaves its last outputs unrecorded: a rerun treats them as made
    before records were kept, checked by their shape only.)"""

    def __init__(self, outdir: Path | None, job: dict, every: float = 5.0) -> None:
        self.outdir, self.job, self.every = outdir, job, every
        self.pending: list[Path] = []
        self.last = time.monotonic()

    def add(self, output: Path) -> None:
        if self.outdir is None:  # a plan made by hand, without its folder
            return
        self.pending.append(output)
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.pending or not self.outdir.is_dir():
            return
        record = _read_jobs(self.outdir)
        key = _job_key(self.job)
        record["jobs"][key] = self.job
        record["outputs"].update({_relative(output, self.outdir): key for output in self.pending})
        used = set(record["outputs"].values())
        record["jobs"] = {k: v for k, v in record["jobs"].items() if k in used}
        with _replacing(self.outdir / JOB_FILE) as partial:
            partial.write_text(json.dumps(record, indent=1, sort_keys=True))
        self.pending.clear()


def _result_shape(shape: tuple[int, ...] | None, layout, options: RestoreOptions | None) -> tuple[int, ...] | None:
    """The shape this job writes for an input of ``shape``: its own, the spatial axes times the
    super-resolution factor."""
    if shape is None or layout is None:
        return None
    factor = options.factor if options is not None else 1
    return tuple(n * factor if axis in layout.spatial_axes else n for axis, n in enumerate(shape))


def _check_finished(output: Path, expected: tuple[int, ...] | None) -> None:
    """An existing output counts as done and is skipped, unless this job could not have written
    it: one of another shape (another task or scale) is refused before any work."""
    if expected is None or not output.is_file():
        return
    found = _source_shape(output)
    if found is not None and found != expected:
        raise ValueError(
            f"{output} exists with shape {found}, but this job writes shape {expected} there (from another "
            "task or scale?); remove it or choose another output folder"
        )


def _layout(shape: tuple[int, ...], options: RestoreOptions | None):
    from .core.layout import Layout

    if options is None:
        return Layout.of(shape)
    return Layout.of(shape, options.channel_axis, axes=options.axes)


def _read(item: BatchItem, options: RestoreOptions) -> tuple[Any, RestoreOptions]:
    """The item's image and its options; TIFF and zarr inputs stay lazy, so big images are read
    tile by tile. A plane of a stack gets the plane's own layout, mask and guide."""
    if item.source.suffix.lower() not in STACK_SUFFIXES:
        return io.read_image(item.source), options
    stack = open_stack(item.source)
    if item.position is None:
        return stack, options
    layout = _layout(tuple(stack.shape), options)
    plane = replace(options, axes=None, channel_axis=layout.plane_channel_axis,
                    mask=layout.mask_for(options.mask, item.position),
                    guide=guide_for(options.guide, layout, item.position, options.factor))
    return stack[layout.index(item.position)], plane


def write_atomically(path: Path, image: np.ndarray) -> None:
    """Write ``image`` to ``path`` so that ``path`` either does not exist or is complete.

    Parameters
    ----------
    path : Path
        PNG, JPEG or TIFF file.
    image : ndarray
    """
    path = Path(path)
    io.check_holds(path, image)  # named by its own name, not the temporary one's
    with _replacing(path) as partial:
        io.write_image(partial, image)


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A hidden temporary file to write, renamed over ``path`` once the block ends without error
    (after ``fsync``); removed otherwise. Same folder, so the rename cannot cross file systems;
    same suffix, so the format is kept."""
    partial = path.with_name(f".{path.stem}{_PARTIAL}{uuid.uuid4().hex}{path.suffix}")
    try:
        yield partial
        _sync(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    """Flush a file to disk, so the rename never exposes a file whose data is still cached."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def restore_item(item: BatchItem, options: RestoreOptions) -> Path:
    """Restore one item and write its output atomically (what each batch task runs).

    Parameters
    ----------
    item : BatchItem
    options : RestoreOptions

    Returns
    -------
    Path
        The output written.
    """
    from .core import consume, restore_iter

    image, options = _read(item, options)
    run = restore_iter(image, options=replace(options, preview_seconds=None))
    write_atomically(item.output, consume(run).image)
    return item.output


def _remove_partials(plan: BatchPlan) -> None:
    """Delete temporary files left by an interrupted run (never a finished output)."""
    folders = {item.output.parent for item in plan.items} | {stack.output.parent for stack in plan.stacks}
    for folder in folders:
        if folder.is_dir():
            for partial in folder.glob(f".*{_PARTIAL}*"):
                partial.unlink(missing_ok=True)


def _error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def run_batch(plan: BatchPlan, options: RestoreOptions, *, client: Any = None, progress: bool = True) -> BatchReport:
    """Restore every item not done yet, then assemble the stacks whose planes are all done.

    Parameters
    ----------
    plan : BatchPlan
        From :func:`plan_batch`.
    options : RestoreOptions
    client : dask.distributed.Client, optional
        Run the items as tasks on this client's cluster; ``None`` runs them here, one by one.
    progress : bool
        Show a tqdm bar over the items.

    Returns
    -------
    BatchReport
        A failed item is listed there (with its error) instead of stopping the batch.
    """
    from tqdm.auto import tqdm

    _remove_partials(plan)
    report = BatchReport()
    todo = []
    for item in plan.items:
        if item.done:
            report.skipped.append(item.output)
        else:
            todo.append(item)
    job = job_record(options)
    if job != plan.job and plan.outdir is not None:  # run with other options than it was planned with
        _check_same_job(plan.outdir, job, [item.output for item in plan.items] + [s.output for s in plan.stacks])
    log = _JobLog(plan.outdir, job)
    try:
        with tqdm(total=len(todo), unit="item", disable=not progress or not todo, dynamic_ncols=True) as bar:
            for item, error in _outcomes(todo, options, client):
                if error is None:
                    report.written.append(item.output)
                    log.add(item.output)
                else:
                    report.failed.append((item.label, _error_line(error)))
                    bar.write(f"failed: {item.label}: {_error_line(error)}")
                bar.update()
        for stack in plan.stacks:
            if not stack.output.exists() and all(plane.exists() for plane in stack.planes):
                _assemble(stack)
                report.assembled.append(stack.output)
                log.add(stack.output)
    finally:
        log.flush()  # also when interrupted: what was written is recorded
    return report


def _outcomes(
    items: list[BatchItem], options: RestoreOptions, client: Any
) -> Iterator[tuple[BatchItem, BaseException | None]]:
    """Each item with its error (``None`` on success), in the order they finish."""
    if client is None:
        for item in items:
            try:
                restore_item(item, options)
            except Exception as error:  # one bad item must not stop the batch
                yield item, error
            else:
                yield item, None
        return
    from dask.distributed import as_completed

    # pure=False: the same item run twice (a rerun) must run again, not reuse a cached result.
    futures = {client.submit(restore_item, item, options, pure=False): item for item in items}
    for future in as_completed(futures):
        item = futures.pop(future)
        error = future.exception() if future.status == "error" else None
        if future.status == "cancelled":
            error = RuntimeError("the task was cancelled (its worker or the scheduler went away)")
        yield item, error


def _assemble(stack: BatchStack) -> None:
    """Write the stack's planes, read one at a time, into one TIFF, atomically."""
    import tifffile

    first = tifffile.imread(stack.planes[0])
    rgb = first.ndim == 3 and first.shape[-1] in (3, 4)
    with _replacing(stack.output) as partial:
        tifffile.imwrite(
            partial, data=(tifffile.imread(plane) for plane in stack.planes),
            shape=(len(stack.planes), *first.shape), dtype=first.dtype, photometric="rgb" if rgb else "minisblack",
        )


@contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """A client on a new cluster of ``workers`` single-threaded worker processes on this machine.

    Parameters
    ----------
    workers : int

    Yields
    ------
    dask.distributed.Client
    """
    from dask.distributed import Client, LocalCluster

    # More processes than cores only compete for them; many more exhaust the machine.
    most = _WORKERS_PER_CORE * _cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= most:
        raise ValueError(
            f"a local cluster runs 1 to {most} worker processes here ({_WORKERS_PER_CORE} per core), not {workers!r}: "
            f"give --workers {_cores()} (one per core), 0 to run here, or --scheduler for a bigger cluster"
        )
    # One thread per worker process: torch runs its own thread pool inside each task.
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(device: str = "auto") -> int:
    """Worker processes for a local cluster: one per core on CPU, one for a GPU.

    Parameters
    ----------
    device : str
        The device the items run on.

    Returns
    -------
    int
    """
    from .core.device import select_device

    return _cores() if select_device(device).type == "cpu" else 1


def local_options(options: RestoreOptions, workers: int) -> RestoreOptions:
    """Split this machine's cores (and, on CPU, its free memory) between ``workers`` processes.

    Parameters
    ----------
    options : RestoreOptions
    workers : int

    Returns
    -------
    RestoreOptions
        ``threads`` and ``memory_limit`` filled in where they were not given.
    """
    from .core.device import select_device
    from .core.memory import available_memory

    threads = options.threads or max(1, _cores() // workers)
    memory_limit = options.memory_limit
    device = select_device(options.device)
    if memory_limit is None and device.type == "cpu":
        memory_limit = available_memory(device) // (2 * workers)
    return replace(options, threads=threads, memory_limit=memory_limit)
