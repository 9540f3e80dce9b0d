"""Faults: a worker SIGKILLed mid-item, the whole job stopped by SIGTERM or SIGKILL;
reruns complete the job with outputs byte-identical to a clean run and leave no
temporary file."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess

import pytest

from gencodec.batch import LocalExecutor, run_batch
from gencodec.batch.manifest import Settings, check_items, scan_directory

N = 8
SPAWNED = "multiprocessing.spawn"  # in the command line of every worker process


@pytest.fixture(scope="module")
def slow_job(tmp_path_factory, compact_model, batch_helpers):
    """Items that take a while each (preprocessing + a bpp search), and their outputs
    from a clean, undisturbed run."""
    root = tmp_path_factory.mktemp("faults")
    batch_helpers.write_photos(root / "in", N, size=(96, 160))
    args = ["--codec", "webp", "--bpp", "0.8", "--preprocess", str(compact_model)]
    settings = Settings(codec="webp", bpp=0.8, preprocess=str(compact_model))
    items = check_items(scan_directory(root / "in", root / "clean", None, settings))
    summary = run_batch(items, LocalExecutor(jobs=2), root / "clean.json", progress=False)
    assert summary["done"] == N
    return root, args, batch_helpers.outputs(root / "clean")


def _start(h, root, out, args, *extra):
    cmd = h.gencodec_command("batch", str(root / "in"), "--out", str(out), "-j", "2",
                             *args, *extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_a_worker_when_busy(h, proc, out) -> int:
    """SIGKILL one worker once the job is under way (an output exists, so the workers
    have loaded the model and hold items)."""
    h.wait_for(lambda: any(p.suffix == ".webp" for p in out.glob("*.webp")) or proc.poll() is not None,
               what="a first output")
    assert proc.poll() is None, ("the job ended before a worker could be killed",
                                 proc.communicate())
    pids = h.worker_pids(proc.pid, SPAWNED)
    assert len(pids) == 2, pids
    os.kill(pids[0], signal.SIGKILL)
    return pids[0]


@pytest.mark.slow
def test_killed_worker_then_rerun(slow_job, batch_helpers):
    h = batch_helpers
    root, args, clean = slow_job
    out = root / "killed"
    proc = _start(h, root, out, args, "--retries", "0")
    _kill_a_worker_when_busy(h, proc, out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, (stdout, stderr)
    summary = json.loads((out / "batch-summary.json").read_text())
    assert (summary["failed"], summary["done"]) == (1, N - 1), summary
    assert "worker died (signal SIGKILL)" in summary["failures"][0]["error"]
    assert h.temporaries(out) == []

    rerun = _start(h, root, out, args)
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, (stdout, stderr)
    # the killed item is made again (or found complete, had the kill come between its
    # output's rename and its result reaching the driver)
    assert f"1 done, {N - 1} skipped, 0 failed" in stdout or \
        f"0 done, {N} skipped, 0 failed" in stdout, stdout
    assert h.outputs(out) == clean
    assert h.temporaries(out) == []


@pytest.mark.slow
def test_killed_worker_is_retried(slow_job, batch_helpers):
    h = batch_helpers
    root, args, clean = slow_job
    out = root / "retried"
    proc = _start(h, root, out, args, "--retries", "1")
    _kill_a_worker_when_busy(h, proc, out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, (stdout, stderr)
    summary = json.loads((out / "batch-summary.json").read_text())
    assert summary["done"] + summary["skipped"] == N and summary["failed"] == 0, summary
    assert sorted(r["attempts"] for r in summary["results"]) == [1] * (N - 1) + [2], \
        summary["results"]
    assert h.outputs(out) == clean
    assert h.temporaries(out) == []


@pytest.mark.slow
def test_terminated_job_leaves_no_half_output_and_resumes(slow_job, batch_helpers):
    h = batch_helpers
    root, args, clean = slow_job
    out = root / "terminated"
    proc = _start(h, root, out, args)
    h.wait_for(lambda: any(out.glob("*.webp")) or proc.poll() is not None,
               what="a first output")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "terminated" in stderr and "Traceback" not in stderr
    assert h.temporaries(out) == []  # the workers removed theirs on the way out
    assert json.loads((out / "batch-summary.json").read_text())["interrupted"]
    written = h.outputs(out)
    assert 0 < len(written) < N
    for name, data in written.items():  # what is there is complete
        assert data == clean[name]
    rerun = _start(h, root, out, args)
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr
    assert h.outputs(out) == clean
    assert h.temporaries(out) == []
    for name, data in h.outputs(out).items():  # each sidecar describes its output
        doc = json.loads((out / f"{name}.gencodec.json").read_text())
        assert doc["output_sha256"] == hashlib.sha256(data).hexdigest()
