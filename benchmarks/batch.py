"""Throughput of ``gencodec batch``: the local and Ray executors against a plain
sequential loop on the same manifest, and what loading the preprocessing model once
per worker saves over loading it per item.

    python benchmarks/batch.py                 # local + Ray (when installed)
    python benchmarks/batch.py --items 64 --json results/batch.json
    python benchmarks/batch.py --no-ray

Part 1 (encoding only: N photo crops -> WebP q70):

* ``sequential``: a plain loop in this process (load, encode, write), no sidecars,
  no skip check: the baseline;
* ``local jN`` / ``ray jN``: :func:`gencodec.batch.run_batch` with N workers;
* ``rerun``: the same job again, every item skipped (sidecar + sha256 checks).

Each is run on N/4 and on N items; the difference gives the time per item, and what
is left of the wall time at N the fixed start-up (starting worker processes and their
imports; for Ray, creating the actors -- the Ray instance itself is started before and
timed apart). Per-item overhead = time per item with 1 worker - time per item of the
sequential loop: what the executor adds per item (sidecar, hashing, messaging).

Part 2 (preprocessing with a one-step diffusion model, the tiny SD look-alike of
``gencodec.filters.tiny``, random weights, then WebP): the same sequential loop with
the model loaded once, loaded per item (what a script calling ``load_preprocessor``
for each file pays), and one ``gencodec preprocess`` process per item (a shell loop
over files); then the local executor, which loads the model once per worker: its time
per item is the median of the item times the workers measure (the first item of a
worker includes loading the model), its start-up what is left of the wall time
(starting Python, torch and diffusers in each worker).

Every figure is printed with its ratio to the sequential loop measured in the same
run, since absolute times depend on the machine and its load. The loop and every worker
use one CPU thread (``threads=1``; Ray gives each one-CPU actor one), so each row does
the same work per item: on a loaded machine, several PyTorch threads per process
spin-wait on each other and make the model rows slower and erratic.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gencodec.batch import LocalExecutor, RayExecutor, run_batch
from gencodec.batch.manifest import Settings, check_items, scan_directory
from gencodec.codecs_ext import get_codec
from gencodec.imageio import load_image, write_bytes_atomic


def write_inputs(folder: Path, n: int, size: tuple[int, int]) -> None:
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    folder.mkdir(parents=True)
    h, w = size
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = (23 * i) % (p.shape[0] - h), (31 * i) % (p.shape[1] - w)
        Image.fromarray(np.ascontiguousarray(p[y:y + h, x:x + w])).save(folder / f"{i:03d}.png")


def sequential(inputs: list[Path], out: Path, quality: int, preprocess=None,
               load_per_item: str | None = None) -> float:
    """The plain loop; returns its wall time."""
    from gencodec.filters import load_preprocessor

    out.mkdir()
    codec = get_codec("webp")
    t0 = time.perf_counter()
    for path in inputs:
        image = load_image(path)
        if load_per_item:
            image = load_preprocessor(load_per_item)(image)
        elif preprocess is not None:
            image = preprocess(image)
        write_bytes_atomic(out / f"{path.stem}.webp", codec.payload(codec.encode(image, quality)))
    return time.perf_counter() - t0


def executor_run(executor, folder: Path, out: Path, settings: Settings) -> tuple[float, dict]:
    items = check_items(scan_directory(folder, out, None, settings))
    t0 = time.perf_counter()
    summary = run_batch(items, executor, out / "summary.json", progress=False)
    wall = time.perf_counter() - t0
    assert summary["failed"] == 0, summary["failures"]
    return wall, summary


def row(rows: list, name: str, per_item: float, startup: float, base: float,
        note: str = "") -> None:
    """One line: time per item, items/s at steady state, ratio to the sequential loop."""
    rows.append({"name": name, "per_item_s": per_item, "startup_s": startup,
                 "items_per_s": 1 / per_item, "ratio_to_sequential": base / per_item,
                 "note": note})
    print(f"{name:<40} {per_item * 1e3:8.1f} ms/item {1 / per_item:7.2f} items/s "
          f"x{base / per_item:5.2f}  start-up {startup:5.2f} s  {note}")


def slope(run, n_small: int, n: int, repeats: int) -> tuple[float, float]:
    """(seconds per item, fixed seconds) from the best of ``repeats`` runs on
    ``n_small`` and on ``n`` items (the best: the load of other processes only ever
    adds time)."""
    small = min(run(n_small) for _ in range(repeats))
    full = min(run(n) for _ in range(repeats))
    per_item = (full - small) / (n - n_small)
    return per_item, max(0.0, full - per_item * n)


def part1(args, tmp: Path, rows: list, runs) -> None:
    """Encoding only: sequential loop vs the executors, per item and start-up."""
    n, n_small = args.items, max(1, args.items // 4)
    write_inputs(tmp / "in", n, tuple(map(int, args.size.split("x"))))
    inputs = sorted((tmp / "in").iterdir())
    for k in (n_small, n):  # a job folder per size
        (tmp / f"in{k}").mkdir()
        for p in inputs[:k]:
            (tmp / f"in{k}" / p.name).write_bytes(p.read_bytes())
    print(f"part 1: {n_small} and {n} crops {args.size} -> webp q70, {args.jobs} cores")
    base, start = slope(lambda k: sequential(inputs[:k], tmp / f"seq{next(runs)}", 70),
                        n_small, n, args.repeats)
    row(rows, "sequential loop", base, start, base)
    settings = Settings(codec="webp", quality=70)

    def job(executor_of, name):
        def run(k):
            out = tmp / f"{name}-{next(runs)}"
            return executor_run(executor_of(), tmp / f"in{k}", out, settings)[0]
        return run

    jobs_list = sorted({1, args.jobs})
    for jobs in jobs_list:
        per, start = slope(job(lambda: LocalExecutor(jobs=jobs, threads=1), f"local{jobs}"),
                           n_small, n, args.repeats)
        row(rows, f"local executor j{jobs}", per, start, base,
            f"overhead {(per - base) * 1e3:.1f} ms/item" if jobs == 1 else "")
    rerun_dir = tmp / "rerun"
    executor_run(LocalExecutor(jobs=args.jobs), tmp / f"in{n}", rerun_dir, settings)
    t0 = time.perf_counter()
    summary = executor_run(LocalExecutor(jobs=args.jobs), tmp / f"in{n}", rerun_dir,
                           settings)[1]
    assert summary["skipped"] == n
    row(rows, "rerun, every item up to date", (time.perf_counter() - t0) / n, 0.0, base)
    if args.no_ray:
        return
    try:
        import ray
    except ImportError:
        print("ray: not installed (pip install 'gencodec[farm]'); skipped")
        return
    t0 = time.perf_counter()
    ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False)
    print(f"ray.init (local instance): {time.perf_counter() - t0:.1f} s, not counted below")
    try:
        for jobs in jobs_list:
            per, start = slope(job(lambda: RayExecutor(jobs=jobs), f"ray{jobs}"),
                               n_small, n, args.repeats)
            row(rows, f"ray executor j{jobs}", per, start, base,
                f"overhead {(per - base) * 1e3:.1f} ms/item" if jobs == 1 else "")
    finally:
        ray.shutdown()


def part2(args, tmp: Path, rows: list, runs) -> None:
    """A preprocessing model: loaded once, per item, per process, once per worker."""
    from gencodec.filters import load_preprocessor
    from gencodec.filters.tiny import tiny_onestep

    pre_n = args.pre_items
    write_inputs(tmp / "pre_in", pre_n, tuple(map(int, args.pre_size.split("x"))))
    pre_inputs = sorted((tmp / "pre_in").iterdir())
    model = tmp / "onestep"
    tiny_onestep(seed=0).save_pretrained(model)
    print(f"\npart 2: {pre_n} crops {args.pre_size}, tiny one-step diffusion "
          "preprocessing + webp q70")
    t0 = time.perf_counter()
    pre = load_preprocessor(str(model))
    load_s = time.perf_counter() - t0
    once = (sequential(pre_inputs, tmp / "pre_once", 70, pre) + load_s) / pre_n
    row(rows, "sequential, model loaded once", once, load_s, once,
        "(start-up: the model load, in a process that has imported diffusers)")
    each = sequential(pre_inputs, tmp / "pre_each", 70, load_per_item=str(model)) / pre_n
    row(rows, "sequential, model loaded per item", each, 0.0, once,
        f"+{(each - once) * 1e3:.0f} ms/item")
    cli_n = min(2, pre_n)  # each pays Python, torch and diffusers start-up
    t0 = time.perf_counter()
    for p in pre_inputs[:cli_n]:
        subprocess.run([sys.executable, "-m", "gencodec.cli.main", "preprocess", str(p),
                        "--model", str(model), "--codec", "webp", "-q", "70", "-o",
                        str(tmp / f"cli-{p.stem}.webp")], check=True, capture_output=True)
    cli = (time.perf_counter() - t0) / cli_n
    row(rows, "one gencodec process per item", cli, 0.0, once,
        f"+{(cli - once) * 1e3:.0f} ms/item (from {cli_n} runs)")
    settings = Settings(codec="webp", quality=70, preprocess=str(model))
    for jobs in sorted({1, args.jobs}):
        wall, summary = executor_run(LocalExecutor(jobs=jobs, threads=1), tmp / "pre_in",
                                     tmp / f"pre_local{jobs}", settings)
        seconds = [r["seconds"] for r in summary["results"]]
        per = statistics.median(seconds)  # in the worker; its first item loads the model
        row(rows, f"local executor j{jobs}, model once/worker", per,
            wall - sum(seconds) / jobs, once, "(median of the workers' item times)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--size", default="192x256", help="HxW of each photo crop")
    ap.add_argument("--pre-items", type=int, default=18, help="items of part 2")
    ap.add_argument("--pre-size", default="128x160", help="HxW of the crops of part 2")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--parts", default="1,2", help="parts to run (default: 1,2)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # as each worker: the rows compare the same work
    rows: list[dict] = []
    runs = iter(range(10 ** 6))  # numbers fresh output folders
    with tempfile.TemporaryDirectory() as tmp:
        if "1" in args.parts.split(","):
            part1(args, Path(tmp), rows, runs)
        if "2" in args.parts.split(","):
            part2(args, Path(tmp), rows, runs)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
