"""The Ray executor on a real local Ray instance (started here, 127.0.0.1 only, two
CPUs, a small object store; shut down after): the same outputs as the item run alone,
and a Ray worker killed mid-item is retried."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from gencodec.batch import RayExecutor, run_batch, run_item
from gencodec.batch.manifest import Settings, check_items, scan_directory

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                 reason="the Ray tests need gencodec[farm]")]


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module (starting one takes many seconds), on the
    loopback interface only: Ray resolves 127.0.0.1 to the machine's address unless
    it runs as a single-machine instance (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read
    when ray is imported), which then binds every server to 127.0.0.1."""
    with pytest.MonkeyPatch.context() as mp:
        if "ray" not in sys.modules:
            mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.delenv("RAY_ADDRESS", raising=False)
        import ray

        if ray.is_initialized():
            pytest.skip("Ray is already initialised in this process")
        ray.init(num_cpus=2, object_store_memory=80 << 20, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
        if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
            assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        try:
            yield ray
        finally:
            ray.shutdown()


def _alone(items, folder: Path) -> dict[str, bytes]:
    """Each item run alone in this process, into ``folder``: name -> bytes."""
    folder.mkdir()
    out = {}
    for item in items:
        alone = dataclasses.replace(item, output=str(folder / Path(item.output).name))
        if run_item(alone).status == "done":
            out[Path(alone.output).name] = Path(alone.output).read_bytes()
    return out


def test_ray_gives_the_same_outputs(ray_instance, tmp_path, compact_model, batch_helpers):
    corrupt = (2, 9, 15)
    inputs = batch_helpers.write_photos(tmp_path / "in", 20, corrupt=corrupt)
    items = batch_helpers.varied_items(inputs, tmp_path / "out", compact_model)
    summary = run_batch(items, RayExecutor(retries=1), tmp_path / "summary.json",
                        progress=False)
    assert summary["executor"] == "ray"
    assert (summary["done"], summary["failed"]) == (17, 3)
    assert sorted(f["input"] for f in summary["failures"]) == \
        sorted(items[i].input for i in corrupt)
    assert batch_helpers.outputs(tmp_path / "out") == _alone(items, tmp_path / "alone")
    again = run_batch(items, RayExecutor(retries=1), tmp_path / "summary.json",
                      progress=False)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 17, 3)
    assert ray_instance.is_initialized()  # an instance the executor did not start is left running


def _busy_ray_worker() -> int | None:
    """The pid of a Ray worker process running an item (Ray names the process after
    the method it runs)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::BatchWorker.run"):
                return int(pid)
    return None


def test_ray_worker_killed_mid_item_is_retried(ray_instance, tmp_path, compact_model,
                                                batch_helpers):
    n = 8
    batch_helpers.write_photos(tmp_path / "in", n, size=(96, 160))
    settings = Settings(codec="webp", bpp=0.8, preprocess=str(compact_model))
    items = check_items(scan_directory(tmp_path / "in", tmp_path / "out", None, settings))
    summaries = []
    runner = threading.Thread(target=lambda: summaries.append(run_batch(
        items, RayExecutor(retries=2), tmp_path / "summary.json", progress=False)))
    runner.start()
    victim = batch_helpers.wait_for(_busy_ray_worker, what="a Ray worker running an item")
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=600)
    assert not runner.is_alive() and summaries
    s = summaries[0]
    assert (s["done"] + s["skipped"], s["failed"]) == (n, 0), s  # skipped: see test_faults
    assert batch_helpers.outputs(tmp_path / "out") == _alone(items, tmp_path / "alone")
    assert batch_helpers.temporaries(tmp_path) == []
    assert not Path(f"/proc/{victim}").exists() or \
        b"BatchWorker" not in Path(f"/proc/{victim}/cmdline").read_bytes()
