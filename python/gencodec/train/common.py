"""Machinery every trainer shares: seeding, checkpoints, logs, plots, DDP, autocast.

* :func:`seed_everything` seeds Python, NumPy and torch and makes CPU runs
  deterministic (``torch.use_deterministic_algorithms``, one intra-op order).
* :func:`save_checkpoint` / :func:`read_checkpoint` + :func:`restore_checkpoint`: model
  (all or only the trainable parameters), optimizer, scheduler, step, every RNG state
  and free-form ``extra``, in one ``torch.save`` file written to a temporary name and
  renamed (a crash never leaves a half checkpoint); read once with
  ``weights_only=True``, checked (:func:`check_resume_identity`), then restored.
  :func:`latest_checkpoint` finds the one to resume from.
* :class:`CsvLog`: one row per logged step; on resume the rows after the resumed step
  are dropped, so the curve continues without a fork.
* :class:`RunFolder`: a run's ``OUT`` (config, log, plot, checkpoints, model) written
  by the main process, the same for every trainer; :func:`due` says when a step logs,
  validates or checkpoints.
* :func:`plot_curves`: a PNG of the CSV's columns against the step (matplotlib).
* :func:`ddp_setup` / :func:`ddp_teardown`: ``torchrun`` processes (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``) joined in a process group, gloo on CPU and nccl on
  CUDA; a plain ``python`` run is rank 0 of 1 without a group.
* :func:`autocast`: bf16 (or fp16) autocast on CUDA, nothing on CPU.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import random
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)\.pt$")


# -- seeding -----------------------------------------------------------------------------
def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed ``random``, NumPy and torch (all devices); with ``deterministic``, ask torch
    for deterministic kernels (CPU runs then repeat bit for bit for the same thread
    count; CUDA needs ``CUBLAS_WORKSPACE_CONFIG``, set here when unset)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def rng_state() -> dict:
    """Every global RNG state, as tensors and plain numbers (``weights_only`` safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(v):
    return tuple(_as_tuple(x) for x in v) if isinstance(v, (list, tuple)) else v


# -- checkpoints -------------------------------------------------------------------------
def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (``requires_grad``), by name: what a fine-tuning
    checkpoint of a large frozen model needs to hold."""
    return {k: p.detach().cpu().clone() for k, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None,
                    step: int = 0, trainable_only: bool = False, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (temporary name, fsync, rename) and return its path.

    ``trainable_only`` stores only :func:`trainable_state` (the frozen rest comes from
    the model the run started from)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = trainable_state(model) if trainable_only else {
        k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"step": int(step), "model": state, "trainable_only": trainable_only,
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "scheduler": scheduler.state_dict() if scheduler is not None else None,
               "rng": rng_state(), "extra": extra or {}}
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The payload :func:`save_checkpoint` wrote (``step``, ``extra``...), read once:
    check it (:func:`check_resume_identity`) before :func:`restore_checkpoint`."""
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_checkpoint(payload: dict, path: str | os.PathLike, *, model: torch.nn.Module,
                       optimizer: torch.optim.Optimizer | None = None, scheduler=None,
                       restore_rng: bool = True) -> dict:
    """Load a payload :func:`read_checkpoint` read from ``path`` (named in errors) into
    ``model`` (and the optimizer, scheduler and RNG states); return the payload."""
    if payload["trainable_only"]:
        params = dict(model.named_parameters())
        unknown = sorted(set(payload["model"]) - set(params))
        if unknown:
            raise ValueError(f"{path}: parameters not in the model: {unknown[:3]}")
        with torch.no_grad():
            for k, v in payload["model"].items():
                params[k].copy_(v)
    else:
        model.load_state_dict(payload["model"])
    if optimizer is not None and payload["optimizer"] is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        set_rng_state(payload["rng"])
    return payload


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The ``step-N.pt`` with the largest N in ``directory``, or None."""
    d = Path(directory)
    found = [(int(m.group(1)), p) for p in d.glob("step-*.pt")
             if (m := CHECKPOINT_PATTERN.match(p.name))] if d.is_dir() else []
    return max(found)[1] if found else None


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> None:
    """Remove all but the ``keep`` newest ``step-N.pt`` files (``keep = 0``: all)."""
    found = sorted((int(m.group(1)), p) for p in Path(directory).glob("step-*.pt")
                   if (m := CHECKPOINT_PATTERN.match(p.name)))
    for _, p in found[:max(len(found) - keep, 0)]:
        p.unlink(missing_ok=True)


# -- logs and plots ----------------------------------------------------------------------
class CsvLog:
    """Append-only CSV of per-step values with a fixed header (``step`` first).

    ``resume_step``: rows with a larger step (written after the checkpoint a run
    resumes from) are dropped, so the resumed curve continues the same one."""

    def __init__(self, path: str | os.PathLike, columns: Iterable[str],
                 resume_step: int | None = None):
        self.path = Path(path)
        self.columns = ["step", *[c for c in columns if c != "step"]]
        rows = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def write(self, step: int, **values) -> None:
        row = {"step": step, **{k: (f"{v:.6g}" if isinstance(v, float) else v)
                                for k, v in values.items()}}
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(row)

    def read(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))


def checkpoint_to_resume(directory: str | os.PathLike, *, resume: bool, force: bool,
                         dist: "DistInfo") -> Path | None:
    """The checkpoint a run continues from: with ``resume`` the newest in ``directory``
    (None if there is none); else None, a new run, which needs ``force`` where
    ``directory`` holds checkpoints (the main process removes them: a later ``--resume``
    must not pick up the old run's)."""
    from gencodec.errors import InputError

    directory = Path(directory)
    found = latest_checkpoint(directory)
    if found is not None and not (resume or force):
        raise InputError(f"{directory}: holds checkpoints; pass --resume to continue the "
                         "run or --force to start again")
    if resume:
        return found
    if dist.is_main and directory.is_dir():
        prune_checkpoints(directory, 0)
    return None


def check_resume_identity(path: str | os.PathLike, identity: dict, extra: dict) -> None:
    """Refuse to resume from checkpoint ``path`` unless the run identity it saved (in
    ``extra["identity"]`` of its payload, :func:`read_checkpoint`) equals ``identity``,
    both compared as JSON (tuples and lists alike, as config.json keeps them)."""
    import json

    from gencodec.errors import InputError

    if json.loads(json.dumps(extra.get("identity"))) != json.loads(json.dumps(identity)):
        raise InputError(f"{path}: was written by a run with other settings or data; start "
                         "a new run (--force) or use its settings")


def per_rank_batch(batch: int, dist: "DistInfo") -> int:
    """Each DDP process's share of the global ``batch``; InputError when it does not
    split evenly."""
    if batch % dist.world_size:
        from gencodec.errors import InputError

        raise InputError(f"batch {batch} does not split over {dist.world_size} processes")
    return batch // dist.world_size


def mean_over_ranks(values: torch.Tensor, dist: "DistInfo") -> torch.Tensor:
    """``values`` averaged over the DDP processes (itself in a single process)."""
    if dist.distributed:
        torch.distributed.all_reduce(values)
        values /= dist.world_size
    return values


def plot_curves(csv_path: str | os.PathLike, png_path: str | os.PathLike,
                columns: Iterable[str], title: str = "", log_y: bool = True) -> Path:
    """Plot ``columns`` of a :class:`CsvLog` file against ``step`` (one panel each,
    empty cells skipped) into ``png_path``, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(columns)
    fig, axes = plt.subplots(len(columns), 1, figsize=(7, 2.2 * len(columns)), sharex=True,
                             squeeze=False)
    for ax, col in zip(axes[:, 0], columns):
        pts = [(int(r["step"]), float(r[col])) for r in rows if r.get(col) not in (None, "")]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="." if len(pts) < 50 else None, lw=1)
            if log_y and min(ys) > 0:
                ax.set_yscale("log")
        ax.set_ylabel(col)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.stem}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path


# -- distributed -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, its device, whether DDP is on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def due(done: int, every: int, last: int) -> bool:
    """Whether step ``done`` (1-based) is one of every ``every`` steps, or the ``last``."""
    return done % every == 0 or done == last


class RunFolder:
    """A training run's ``OUT`` folder: ``config.json``, ``log.csv`` (:class:`CsvLog`),
    ``loss.png`` (:func:`plot_curves`), ``checkpoints/step-N.pt`` and the final model
    folder ``model/``. Every process calls every method (they meet at barriers); only
    the main one writes. :attr:`resume_from` is the checkpoint the run continues from
    (:func:`checkpoint_to_resume`), or None."""

    def __init__(self, out: str | os.PathLike, dist: "DistInfo", *, resume: bool,
                 force: bool):
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"
        self.dist = dist
        self.resume_from = checkpoint_to_resume(self.checkpoints, resume=resume, force=force,
                                                dist=dist)
        self.log: CsvLog | None = None

    def start(self, config: dict, columns: Iterable[str], step: int) -> None:
        """Write ``config.json`` and open ``log.csv`` at ``step``, the step the run
        starts from (a resumed run drops the rows logged after it)."""
        if self.dist.is_main:
            import json

            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
            self.log = CsvLog(self.out / "log.csv", columns,
                              resume_step=step if self.resume_from is not None else -1)

    def write(self, step: int, **values) -> None:
        """One row of ``log.csv`` (the main process's; others write nothing)."""
        if self.log is not None:
            self.log.write(step, **values)

    def checkpoint(self, step: int, save, *, keep: int, plot: Iterable[str], title: str,
                   log_y: bool = True) -> None:
        """``save(path)`` the state at ``step`` as ``checkpoints/step-N.pt``, keep the
        newest ``keep`` checkpoints and redraw ``loss.png`` (columns ``plot``)."""
        if self.dist.is_main:
            save(self.checkpoints / f"step-{step}.pt")
            prune_checkpoints(self.checkpoints, keep)
            plot_curves(self.out / "log.csv", self.out / "loss.png", plot, title=title,
                        log_y=log_y)
        barrier(self.dist)

    def finish(self, save_model) -> Path:
        """``save_model(OUT/model)`` on the main process; returns ``OUT/model``."""
        folder = self.out / "model"
        if self.dist.is_main:
            save_model(folder)
        barrier(self.dist)
        return folder


def ddp_setup(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group (gloo on CPU, nccl on CUDA) when
    ``WORLD_SIZE`` > 1; pick the device (``auto``: this process's GPU when CUDA is
    available, else the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local}" if device == "cuda" else device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def ddp_teardown() -> None:
    """Leave the process group, if one was joined."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(dist: DistInfo) -> None:
    if dist.distributed:
        torch.distributed.barrier()


# -- precision ---------------------------------------------------------------------------
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: None (full fp32) on CPU and
    for ``fp32``; on CUDA ``auto`` is bf16 where supported, else fp16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(dtype: torch.dtype | None):
    """A GradScaler for fp16 autocast (bf16 and fp32 need none): None otherwise."""
    if dtype == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None
