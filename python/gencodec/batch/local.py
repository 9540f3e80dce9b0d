"""The local executor: worker processes on this machine, one item at a time each.

A pool of ``jobs`` processes (default: one per core, or one per GPU when the
preprocessor runs on CUDA) each keep a :class:`~gencodec.batch.item.Worker`, so a
model is loaded once per process and serves many items. The parent hands each worker
one item at a time over a pipe and so always knows which item a worker holds: when a
worker dies (a crash, the OOM killer, SIGKILL) that item -- and only that one -- is
retried on a fresh worker, up to ``retries`` times, then reported failed. Items that
fail with an unexpected exception are retried the same way; a bad input or setting
(:class:`~gencodec.errors.GencodecError`) fails at once.

Workers ignore Ctrl-C (the parent handles it) and turn SIGTERM into an exception, so a
worker stopped mid-item removes its temporary file on the way out. Processes are
started with ``spawn``: torch and ``fork`` do not mix.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from typing import Callable

from gencodec.batch.item import FAILED, ItemResult
from gencodec.batch.manifest import Item


class _Stop(BaseException):
    """SIGTERM inside a worker: unwinds so that ``finally`` clauses run."""


def _stop(signum, frame):
    raise _Stop


def _stop_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the parent dies (a driver killed with SIGKILL), so that
    no orphan keeps working (``prctl(PR_SET_PDEATHSIG)``); elsewhere a worker stops at
    its next item, when the pipe is closed."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the call
            raise _Stop


def _serve(conn, parent: int, gpu: int | None, threads: int | None) -> None:
    """A worker process: receive items, send results, until told to stop (None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    try:
        _stop_with_parent(parent)
        if gpu is not None:  # before torch initialises CUDA
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        if threads:  # one process per core: no oversubscription
            os.environ["OMP_NUM_THREADS"] = str(threads)
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)
        from gencodec.batch.item import Worker

        worker = Worker()
        while True:
            item = conn.recv()
            if item is None:
                return
            conn.send(worker.run(item))
    except (_Stop, EOFError, BrokenPipeError):
        pass  # stopped, or the parent went away: leave quietly


def cuda_devices() -> int:
    """GPUs torch sees here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_jobs(device: str = "cpu") -> int:
    """One worker per GPU when items run on CUDA, else one per usable core."""
    if device == "cuda" and cuda_devices():
        return cuda_devices()
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclasses.dataclass
class _Slot:
    process: multiprocessing.Process
    conn: multiprocessing.connection.Connection
    gpu: int | None
    item: Item | None = None


class LocalExecutor:
    """Run items in ``jobs`` worker processes on this machine (see the module
    docstring). ``run(items, report)`` calls ``report(result)`` once per item, in the
    order items finish."""

    name = "local"

    def __init__(self, jobs: int | None = None, retries: int = 2, device: str = "cpu",
                 threads: int | None = None):
        self.jobs = jobs or default_jobs(device)
        self.retries = retries
        #: CPU threads per worker (torch, OpenMP): default cores / jobs
        self.threads = threads or max(1, default_jobs() // self.jobs)
        self.gpus = cuda_devices() if device == "cuda" else 0  # worker n: GPU n % gpus
        self._context = multiprocessing.get_context("spawn")

    def _start(self, n: int) -> _Slot:
        gpu = n % self.gpus if self.gpus else None
        threads = None if gpu is not None else self.threads
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, os.getpid(), gpu, threads),
                                        name=f"gencodec-batch-{n}", daemon=True)
        process.start()
        child.close()
        return _Slot(process, parent, gpu)

    def run(self, items: list[Item], report: Callable[[ItemResult], None]) -> None:
        queue = collections.deque(items)
        attempts: collections.Counter = collections.Counter()
        slots = [self._start(n) for n in range(min(self.jobs, len(items)))]

        def assign(n: int) -> None:
            """Give worker ``n`` the next item (a fresh worker if it died)."""
            slots[n].item = None
            if not queue:
                return
            if not slots[n].process.is_alive():
                slots[n].conn.close()
                slots[n] = self._start(n)
            item = slots[n].item = queue.popleft()
            attempts[item.index] += 1
            slots[n].conn.send(item)

        def finish(item: Item, result: ItemResult) -> None:
            """Report a result, or put the item back for another try."""
            result.attempts = attempts[item.index]
            if result.try_again(self.retries):
                queue.appendleft(item)
            else:
                report(result)

        try:
            for n in range(len(slots)):
                assign(n)
            while any(slot.item is not None for slot in slots):
                busy = [s for s in slots if s.item is not None]
                multiprocessing.connection.wait(
                    [s.conn for s in busy] + [s.process.sentinel for s in busy])
                for n, slot in enumerate(slots):
                    if slot.item is None:
                        continue
                    result = _receive(slot)
                    if result is not None:
                        finish(slot.item, result)
                        assign(n)
                    elif not slot.process.is_alive():  # died mid-item
                        item = slot.item
                        code = slot.process.exitcode
                        why = (f"signal {signal.Signals(-code).name}" if code and code < 0
                               else f"exit code {code}")
                        finish(item, ItemResult(
                            item.index, item.input, item.output, FAILED,
                            f"{item.input}: the worker died ({why}) on each of "
                            f"{attempts[item.index]} attempt(s)", retryable=True))
                        assign(n)
                # an idle worker takes the items others put back for a retry
                for n, slot in enumerate(slots):
                    if slot.item is None:
                        assign(n)
        finally:
            _shutdown(slots)


def _receive(slot: _Slot) -> ItemResult | None:
    try:
        if slot.conn.poll():
            return slot.conn.recv()
    except (EOFError, OSError):
        pass
    return None


def _shutdown(slots: list[_Slot]) -> None:
    """Idle workers are told to stop; busy ones (interrupted) get SIGTERM, which makes
    them remove their temporary files; stragglers are killed after a few seconds."""
    for slot in slots:
        if not slot.process.is_alive():
            continue
        if slot.item is None:
            try:
                slot.conn.send(None)
            except OSError:
                slot.process.terminate()
        else:
            slot.process.terminate()
    for slot in slots:
        slot.process.join(timeout=10)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()
        slot.conn.close()
