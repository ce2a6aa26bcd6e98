import json
import os
import re
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_dip import batch
from napari_dip.batch import plan_batch, run_batch, write_atomically
from napari_dip.cli import main
from napari_dip.core import RestoreOptions

OPTIONS = RestoreOptions(iterations=20, threads=1, advanced={"channels": 8, "scales": 2})


def _make_inputs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    tifffile.imwrite(folder / "movie.tif", (rng.random((3, 32, 32)) * 4000).astype(np.uint16), photometric="minisblack")
    return folder


def _read(path: Path) -> np.ndarray:
    return tifffile.imread(path) if path.suffix == ".tif" else np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return _make_inputs(tmp_path_factory.mktemp("batch") / "inputs")


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict[str, np.ndarray]:
    """Serial outputs, by path relative to the output folder."""
    outdir = tmp_path_factory.mktemp("reference")
    report = run_batch(plan_batch([inputs], outdir), OPTIONS, progress=False)
    assert not report.failed and len(report.written) == 5
    return {str(path.relative_to(outdir)): _read(path) for path in outdir.rglob("*.*") if path.name != batch.JOB_FILE}


def _assert_outputs_equal(outdir: Path, reference: dict[str, np.ndarray]) -> None:
    found = {str(path.relative_to(outdir)) for path in outdir.rglob("*")
             if path.is_file() and path.name != batch.JOB_FILE}
    assert found == set(reference), "missing, extra or left-over temporary files"
    for name, expected in reference.items():
        np.testing.assert_array_equal(_read(outdir / name), expected, err_msg=name)


def test_plan_names_outputs_per_file_and_per_plane(inputs, tmp_path):
    plan = plan_batch([inputs], tmp_path / "out")
    names = [str(item.output.relative_to(tmp_path / "out")) for item in plan.items]
    assert names == ["a.png", "b.png", *(f"movie_planes/movie_{t}.tif" for t in range(3))]
    assert [item.position for item in plan.items[2:]] == [(0,), (1,), (2,)]
    assert plan.stacks[0].output == tmp_path / "out" / "movie.tif"
    # A file named twice, directly and through its folder, is one item.
    twice = plan_batch([inputs / "a.png", inputs, inputs / "." / "a.png"], tmp_path / "out")
    assert [item.output for item in twice.items] == [item.output for item in plan.items]


def test_plan_refuses_writing_over_inputs_and_clashing_outputs(inputs, tmp_path):
    with pytest.raises(ValueError, match="holds the input"):
        plan_batch([inputs], inputs)
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(other / "a.png")
    with pytest.raises(ValueError, match="would both be written to"):
        plan_batch([inputs, other / "a.png"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no such file"):
        plan_batch([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no PNG"):
        plan_batch([tmp_path / "empty"], tmp_path / "out")


def test_options_are_checked_before_any_item_runs():
    with pytest.raises(ValueError, match="needs a mask"):
        RestoreOptions(task="inpaint")
    with pytest.raises(ValueError, match="unknown setting"):
        RestoreOptions(advanced={"widht": 3})
    with pytest.raises(ValueError, match="unknown device"):
        RestoreOptions(device="tpu")
    RestoreOptions(device="cuda:1")  # may exist on the workers only


def test_rerun_skips_finished_outputs_and_stacks_are_assembled(inputs, reference, tmp_path):
    plan = plan_batch([inputs], tmp_path)
    first = run_batch(plan, OPTIONS, progress=False)
    assert first.assembled == [tmp_path / "movie.tif"]
    _assert_outputs_equal(tmp_path, reference)
    np.testing.assert_array_equal(reference["movie.tif"], np.stack([reference[f"movie_planes/movie_{t}.tif"]
                                                                    for t in range(3)]))
    stamps = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.*")}
    again = run_batch(plan, OPTIONS, progress=False)
    assert again.written == [] and len(again.skipped) == 5 and again.assembled == []
    assert stamps == {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.*")}


def test_a_failing_item_is_reported_and_the_others_finish(inputs, tmp_path):
    broken = tmp_path / "in"
    broken.mkdir()
    for name in ("a.png", "b.png"):
        (broken / name).write_bytes((inputs / name).read_bytes())
    (broken / "broken.png").write_bytes(b"not a png")
    report = run_batch(plan_batch([broken], tmp_path / "out"), OPTIONS, progress=False)
    assert [label for label, _ in report.failed] == [str(broken / "broken.png")]
    assert sorted(path.name for path in report.written) == ["a.png", "b.png"]
    assert not (tmp_path / "out" / "broken.png").exists()


def test_interrupted_run_resumes_and_loses_nothing(inputs, reference, tmp_path, monkeypatch):
    plan = plan_batch([inputs], tmp_path)
    # What a run killed while writing leaves behind.
    (tmp_path / ".a.partial-0123.png").write_bytes(b"half a png")
    real_restore_item = batch.restore_item
    calls = []

    def interrupted_on_third_item(item, options):
        calls.append(item)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_restore_item(item, options)

    monkeypatch.setattr(batch, "restore_item", interrupted_on_third_item)
    with pytest.raises(KeyboardInterrupt):
        run_batch(plan, OPTIONS, progress=False)
    finished = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in tmp_path.glob("[!.]*.png")}
    assert len(finished) == 2
    monkeypatch.setattr(batch, "restore_item", real_restore_item)
    resumed = run_batch(plan, OPTIONS, progress=False)
    assert len(resumed.skipped) == 2 and len(resumed.written) == 3
    assert finished == {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in finished}
    _assert_outputs_equal(tmp_path, reference)


def test_atomic_write_never_leaves_a_half_written_output(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_atomically(target, np.full((8, 8), 7, np.uint8))

    def crash_midway(path, image):
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(batch.io, "write_image", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, np.zeros((8, 8), np.uint8))
    assert [path.name for path in tmp_path.iterdir()] == ["out.png"]
    assert (_read(target) == 7).all()


def test_cli_batch_runs_serially_and_reports(inputs, tmp_path, capsys):
    args = ["batch", str(inputs / "a.png"), str(inputs / "movie.tif"), "-o", str(tmp_path), "--workers", "0",
            "--iterations", "2", "--quiet"]
    assert main(args) == 0
    assert "4 written, 0 skipped" in capsys.readouterr().out
    assert tifffile.imread(tmp_path / "movie.tif").shape == (3, 32, 32)
    assert main(args) == 0
    assert "0 written, 4 skipped" in capsys.readouterr().out


def test_a_rerun_refuses_what_another_job_wrote_and_skips_only_its_own(inputs, tmp_path, capsys):
    """Same shape, other settings: an existing output is not taken for this job's result."""
    outdir = tmp_path / "out"
    one = ["batch", str(inputs / "a.png"), "-o", str(outdir), "--workers", "0", "--iterations", "2", "--quiet"]
    assert main(one) == 0
    first = (outdir / "a.png").read_bytes()
    for extra, message in ((["--seed", "1"], r"it was made with seed 0, this job has 1"),
                           (["--task", "jpeg"], r"it was made with task 'denoise', this job has 'jpeg'"),
                           (["--iterations", "3"], r"it was made with iterations 2, this job has 3")):
        assert main([*one, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert re.search(rf"^napari-dip: error: .*out/a\.png is another job's result \({message}\); "
                         r"remove it or choose another output folder$", err), err
        assert (outdir / "a.png").read_bytes() == first
    # What changes only how fast (threads, device, memory budget) is the same job: skipped.
    assert main([*one, "--threads", "2", "--device", "cpu", "--memory-limit", "2GB"]) == 0
    assert "0 written, 1 skipped" in capsys.readouterr().out
    # Another input's output in the same folder is not in the way of a job with other settings.
    assert main(["batch", str(inputs / "b.png"), "-o", str(outdir), "--workers", "0", "--iterations", "2",
                 "--seed", "5", "--quiet"]) == 0
    assert "1 written" in capsys.readouterr().out
    # ... and each keeps its own record: both reruns skip.
    assert main(one) == 0 and "0 written, 1 skipped" in capsys.readouterr().out
    # Values the run resolves to the same settings are the same job: the preset's own learning rate given, a
    # whole number written as a float, settings that only change speed.
    assert main([*one, "--set", "lr=0.01", "--set", "channels=64.0", "--set", "compile=on",
                 "--set", "channels_last=false", "--preset", "default"]) == 0
    assert "0 written, 1 skipped" in capsys.readouterr().out
    assert main([*one, "--set", "channels=16"]) == 2
    assert "it was made with channels 64, this job has 16" in capsys.readouterr().err
    for broken in ("{half", "[]", '{"jobs": {}, "outputs": {"a.png": ["x"]}}',
                   '{"jobs": {"k": 5}, "outputs": {"a.png": "k"}}', '{"jobs": {}, "outputs": {"a.png": "k"}}'):
        (outdir / batch.JOB_FILE).write_text(broken)
        assert main(one) == 2
        err = capsys.readouterr().err
        assert re.search(r"\.napari-dip-job\.json \(which records what made each output in .*\) cannot be read; "
                         "remove it", err), (broken, err)


def test_the_job_record_names_what_the_user_changed_first(tmp_path):
    mask = np.zeros((24, 24), np.uint8)
    mask[4:8, 4:8] = 255
    denoise = batch.job_record(RestoreOptions(iterations=2))
    inpaint = batch.job_record(RestoreOptions(task="inpaint", mask=mask, iterations=2))
    assert batch._difference(denoise, inpaint) == "it was made with task 'denoise', this job has 'inpaint'"
    # A 0/1 mask is the same painted pixels as 0/255; a PSF scaled by 9 is the same PSF once normalised.
    assert batch.job_record(RestoreOptions(task="inpaint", mask=mask // 255, iterations=2)) == inpaint
    psf = np.ones((3, 3))
    assert (batch.job_record(RestoreOptions(task="deblur", psf=psf)) ==
            batch.job_record(RestoreOptions(task="deblur", psf=psf * 9)))
    raw = batch.job_record(RestoreOptions(task="inpaint", mask=mask, iterations=2, keep_known=False))
    assert batch._difference(inpaint, raw) == "it was made with keep_known (--keep-raw) True, this job has False"


def test_a_job_file_written_before_a_setting_existed_still_matches(inputs, tmp_path, capsys):
    """``stretch`` came after job files: a record without it is a job that did not stretch."""
    outdir = tmp_path / "out"
    for task, extra in (("jpeg", []), ("sr", ["--scale", "2"])):
        args = ["batch", str(inputs / "a.png"), "-o", str(outdir / task), "--workers", "0", "--iterations", "2",
                "--task", task, *extra, "--quiet"]
        assert main([*args, "--set", "stretch=false"]) == 0
        path = outdir / task / batch.JOB_FILE
        record = json.loads(path.read_text())
        for job in record["jobs"].values():
            assert "stretch" not in job["settings"]  # the value every earlier version used
        path.write_text(json.dumps(record))
        capsys.readouterr()
        code = main(args)  # the preset's own stretch: off for JPEG artifacts, on for super-resolution
        if task == "jpeg":
            assert code == 0 and "0 written, 1 skipped" in capsys.readouterr().out
        else:
            assert code == 2
            assert "another job's result (it was made with stretch False, this job has True)" in capsys.readouterr().err


def test_nothing_is_left_behind_when_every_item_fails(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(b"not a png")
    assert main(["batch", str(tmp_path / "in"), "-o", str(tmp_path / "n1" / "n2"), "--workers", "0", "--quiet"]) == 1
    assert not (tmp_path / "n1").exists()
    (tmp_path / "kept").mkdir()
    assert main(["batch", str(tmp_path / "in"), "-o", str(tmp_path / "kept"), "--workers", "0", "--quiet"]) == 1
    assert list((tmp_path / "kept").iterdir()) == []
    capsys.readouterr()


def test_run_batch_checks_the_options_it_runs_with(inputs, tmp_path):
    """The API: a plan made without options (or with others) still refuses another job's output."""
    run_batch(plan_batch([inputs / "a.png"], tmp_path), OPTIONS, progress=False)
    with pytest.raises(ValueError, match=r"a\.png is another job's result \(it was made with seed 0, this job has 1\)"):
        run_batch(plan_batch([inputs / "a.png"], tmp_path), replace(OPTIONS, seed=1), progress=False)
    with pytest.raises(ValueError, match=r"this job has 1"):
        run_batch(plan_batch([inputs / "a.png"], tmp_path, OPTIONS), replace(OPTIONS, seed=1), progress=False)


def test_a_rerun_with_another_mask_is_refused(tmp_path):
    image = (np.random.default_rng(1).random((24, 24)) * 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "i.png")
    mask = np.zeros((24, 24), bool)
    mask[8:12, 8:12] = True
    options = RestoreOptions(task="inpaint", mask=mask, iterations=2, threads=1, advanced={"channels": 8, "scales": 2})
    run_batch(plan_batch([tmp_path / "in"], tmp_path / "out", options), options, progress=False)
    plan_batch([tmp_path / "in"], tmp_path / "out", options)  # the same mask: fine
    other = mask.copy()
    other[0, 0] = True
    with pytest.raises(ValueError, match=r"i\.png is another job's result \(it was made with another mask\)"):
        plan_batch([tmp_path / "in"], tmp_path / "out", replace(options, mask=other))


def test_cli_batch_exit_codes(inputs, tmp_path, capsys):
    assert main(["batch", str(inputs), "-o", str(inputs), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds the input" in err
    assert main(["batch", str(inputs), "-o", str(tmp_path), "--task", "sr", "--workers", "0"]) == 2
    assert "needs a scale" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    assert main(["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "0", "--quiet"]) == 1
    assert "failed: " in capsys.readouterr().err


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    with batch.local_cluster(2) as client:
        yield client


def test_two_worker_cluster_gives_the_serial_outputs(cluster, inputs, reference, tmp_path):
    report = run_batch(plan_batch([inputs], tmp_path), OPTIONS, client=cluster, progress=False)
    assert not report.failed and len(report.written) == 5
    _assert_outputs_equal(tmp_path, reference)


def test_killed_worker_then_rerun_completes_without_losing_outputs(cluster, inputs, reference, tmp_path):
    plan = plan_batch([inputs], tmp_path)
    outcome = {}
    first_run = threading.Thread(target=lambda: outcome.update(report=run_batch(plan, OPTIONS, client=cluster,
                                                                                 progress=False)))
    first_run.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [item.output for item in plan.items if item.output.exists()]
        busy = [worker for worker, keys in cluster.processing().items() if keys]
        if done and busy:
            break
        time.sleep(0.02)
    else:
        pytest.fail("no item finished while another was running")
    finished = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in done}
    killed = cluster.run(os.getpid)[busy[0]]
    os.kill(killed, signal.SIGKILL)
    first_run.join(timeout=120)
    assert not first_run.is_alive()
    rerun = run_batch(plan, OPTIONS, client=cluster, progress=False)
    assert not rerun.failed
    assert len(rerun.skipped) + len(rerun.written) == len(plan.items)
    # Outputs finished before the kill are neither lost nor rewritten.
    assert finished == {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in finished}
    _assert_outputs_equal(tmp_path, reference)
    assert killed not in cluster.run(os.getpid).values()
