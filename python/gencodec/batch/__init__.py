"""gencodec.batch: transcoding-farm batch jobs.

The same preprocessing and encoding over many files, resumable and fault tolerant:

* :mod:`.manifest` -- the job: a CSV or JSONL manifest (input, output, per-item
  overrides) or a directory + glob with one set of settings -> :class:`Item` list;
* :mod:`.item` -- the item function (:class:`Worker`): load, preprocess, encode at a
  quality or a bpp, write output and sidecar atomically; skip what is up to date;
* :mod:`.local` -- worker processes on this machine (default), one per core or GPU;
* :mod:`.ray_farm` -- Ray actors on a cluster (``pip install 'gencodec[farm]'``);
* :mod:`.job` -- :func:`run_batch`: progress bar, clean-up, summary JSON.

``gencodec batch`` (:mod:`gencodec.cli.batch_cmd`) is the command line.
"""

from gencodec.batch.item import ItemResult, Worker, run_item
from gencodec.batch.job import run_batch
from gencodec.batch.local import LocalExecutor
from gencodec.batch.manifest import Item, Settings, check_items, read_manifest, scan_directory
from gencodec.batch.ray_farm import RayExecutor

__all__ = ["Item", "ItemResult", "LocalExecutor", "RayExecutor", "Settings", "Worker",
           "check_items", "read_manifest", "run_batch", "run_item", "scan_directory"]
