"""The Ray executor: the same item function on a Ray cluster (``pip install
'gencodec[farm]'``).

Each Ray actor (https://docs.ray.io/en/latest/ray-core/actors.html) holds one
:class:`~gencodec.batch.item.Worker`, so it loads a model once and serves many items;
there is one actor per CPU of the cluster, or per GPU when items run on CUDA
(``num_gpus=1`` per actor). Faults follow Ray's actor fault tolerance
(https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html): actors are
created with ``max_restarts=-1`` (a dead actor is restarted by rerunning its
constructor) and ``max_task_retries=retries`` (a call in flight when its actor died is
run again, at-least-once); after that many retries ``ray.get`` raises
``RayActorError`` and the item is reported failed. Items that fail with an unexpected
exception are retried by us, as in the local executor.

Results are collected with ``ray.wait``
(https://docs.ray.io/en/latest/ray-core/api/doc/ray.wait.html), two calls in flight per
actor so that an actor never waits for the driver. ``ray.init``
(https://docs.ray.io/en/latest/ray-core/api/doc/ray.init.html) connects to ``address``
(or ``RAY_ADDRESS``) or starts a local instance; it replaces the driver's SIGTERM
handler, so ours is put back. At the end, or on Ctrl-C/SIGTERM, the actors are killed
(``ray.kill``, https://docs.ray.io/en/latest/ray-core/api/doc/ray.kill.html) and a
local instance we started is shut down.

Inputs and outputs are paths: on a cluster they must name the same files on every
node (a shared file system), and every node needs gencodec installed.
"""

from __future__ import annotations

import collections
import signal
import threading
from typing import Callable

from gencodec.batch.item import FAILED, ItemResult, Worker
from gencodec.batch.manifest import Item
from gencodec.errors import InputError

#: Calls queued on each actor: one running, one waiting.
IN_FLIGHT_PER_ACTOR = 2


class BatchWorker:
    """The actor class: a :class:`Worker` living in a Ray worker process."""

    def __init__(self):
        self.worker = Worker()

    def run(self, item: Item) -> ItemResult:
        return self.worker.run(item)


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'gencodec[farm]'") from None
    return ray


class RayExecutor:
    """Run items on Ray actors (see the module docstring). ``init`` holds extra
    ``ray.init`` keywords for a local instance (``num_cpus``, ``object_store_memory``);
    an instance already initialised in this process is used as it is."""

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None,
                 retries: int = 2, device: str = "cpu", **init):
        self.address, self.jobs, self.retries = address, jobs, retries
        self.gpu = device == "cuda"
        self.init = init

    def _connect(self, ray) -> bool:
        """Initialise Ray unless it is; True if we did (and so shut it down)."""
        if ray.is_initialized():
            return False
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        kw = dict(self.init)
        if not self.address:
            kw.setdefault("include_dashboard", False)
        try:
            ray.init(address=self.address or None, log_to_driver=False, **kw)
        except ConnectionError as exc:
            raise InputError(f"cannot connect to the Ray cluster at {self.address}: {exc}") \
                from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
        return True

    def run(self, items: list[Item], report: Callable[[ItemResult], None]) -> None:
        ray = import_ray()
        started = self._connect(ray)
        actors = []
        try:
            resource = "GPU" if self.gpu else "CPU"
            n = self.jobs or int(ray.cluster_resources().get(resource, 1))
            if n < 1:
                raise InputError(f"the Ray cluster has no {resource}")
            actor_class = ray.remote(BatchWorker).options(
                num_cpus=1, num_gpus=1 if self.gpu else 0,
                max_restarts=-1, max_task_retries=self.retries)
            actors = [actor_class.remote() for _ in range(min(n, len(items)))]
            self._dispatch(ray, actors, items, report)
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()

    def _dispatch(self, ray, actors, items, report) -> None:
        queue = collections.deque(items)
        attempts: collections.Counter = collections.Counter()
        free = [a for a in actors for _ in range(IN_FLIGHT_PER_ACTOR)]
        pending: dict = {}  # object ref -> (item, actor)
        while queue or pending:
            while queue and free:
                actor, item = free.pop(0), queue.popleft()
                attempts[item.index] += 1
                pending[actor.run.remote(item)] = (item, actor)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                item, actor = pending.pop(ref)
                free.append(actor)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    why = str(exc).strip().splitlines()[0] if str(exc).strip() else "died"
                    report(ItemResult(item.index, item.input, item.output, FAILED,
                                      f"{item.input}: the Ray worker died on each of "
                                      f"{self.retries + 1} attempt(s): {why}",
                                      attempts=self.retries + 1))
                    continue
                result.attempts = attempts[item.index]
                if result.try_again(self.retries):
                    queue.appendleft(item)
                else:
                    report(result)
