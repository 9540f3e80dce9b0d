"""Run a batch job: items through an executor, a progress bar, a summary.

:func:`run_batch` is what ``gencodec batch`` does after reading the manifest. It holds
a lock beside the summary file (a second run of the same job is refused), removes
temporary files a killed earlier run left for these outputs, reports the items whose
output is up to date as skipped (no worker is started for them), runs the others on an
executor (:class:`~gencodec.batch.local.LocalExecutor` or
:class:`~gencodec.batch.ray_farm.RayExecutor`) with a tqdm bar in items/s (shown on a
terminal only), removes temporaries again when the executor stops -- normally,
interrupted by Ctrl-C or SIGTERM, or failing -- and writes the summary JSON: items done,
skipped and failed (with their errors), bytes in and out, mean bpp, wall time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tqdm import tqdm

from gencodec import __version__, locking
from gencodec.batch.item import (DONE, FAILED, SKIPPED, ItemResult, check_made, outcome,
                                 remove_temporaries)
from gencodec.batch.manifest import Item


def job_lock(summary: Path):
    """One run per job at a time (its workers would remove each other's temporary
    files)."""
    return locking.held(summary.with_name(f".{summary.name}.lock"),
                        busy=f"{summary}: another gencodec batch is running this job; "
                             "wait for it to finish",
                        unwritable=f"{summary}: cannot write the summary there")


def summarize(items: list[Item], results: dict[int, ItemResult], *, executor: str,
              seconds: float, interrupted: bool) -> dict:
    """The summary of a run: counts, bytes, mean bpp of the items that have an output,
    the failures with their errors, and one line per item."""
    counts = {s: sum(r.status == s for r in results.values()) for s in (DONE, SKIPPED, FAILED)}
    have = [r for r in results.values() if r.status in (DONE, SKIPPED)]
    return {
        "gencodec_version": __version__, "executor": executor, "items": len(items),
        **counts, "not_run": len(items) - len(results), "interrupted": interrupted,
        "bytes_in": sum(r.bytes_in for r in have), "bytes_out": sum(r.bytes_out for r in have),
        "mean_bpp": (sum(r.bpp for r in have) / len(have)) if have else None,
        "seconds": seconds,
        "items_per_second": (len(results) / seconds) if seconds > 0 else None,
        "failures": [{"input": r.input, "output": r.output, "error": r.error,
                      "attempts": r.attempts}
                     for r in sorted(results.values(), key=lambda r: r.index)
                     if r.status == FAILED],
        "results": [{"input": r.input, "output": r.output, "status": r.status,
                     "bpp": r.bpp, "bytes_out": r.bytes_out, "seconds": r.seconds,
                     "attempts": r.attempts}
                    for r in sorted(results.values(), key=lambda r: r.index)],
    }


def run_batch(items: list[Item], executor, summary_path: str | os.PathLike, *,
              progress: bool | None = None) -> dict:
    """Run ``items`` on ``executor``; write and return the summary. ``progress``: None
    shows the bar only on a terminal. Ctrl-C and SIGTERM propagate after the summary
    (marked ``interrupted``) is written and no temporary file is left."""
    from gencodec.eval.runner import write_json

    summary_path = Path(summary_path)
    results: dict[int, ItemResult] = {}
    with job_lock(summary_path):
        for item in items:
            remove_temporaries(item)
        bar = tqdm(total=len(items), desc="batch", unit="item", dynamic_ncols=True,
                   disable=None if progress is None else not progress)

        def report(result: ItemResult) -> None:
            results[result.index] = result
            failed = sum(r.status == FAILED for r in results.values())
            if failed:
                bar.set_postfix(failed=failed, refresh=False)
            bar.update()

        t0 = time.perf_counter()
        interrupted = True
        try:
            pending = []
            for item in items:  # what is up to date needs no worker
                doc = check_made(item)[0]
                if doc is None:
                    pending.append(item)
                else:
                    report(outcome(item, SKIPPED, doc))
            if pending:
                executor.run(pending, report)
            interrupted = False
        finally:
            bar.close()
            for item in items:  # what workers stopped mid-item left
                remove_temporaries(item)
            summary = summarize(items, results, executor=executor.name,
                                seconds=time.perf_counter() - t0, interrupted=interrupted)
            write_json(summary_path, summary)
    return summary
