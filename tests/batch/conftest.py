"""Fixtures for the batch tests: small photo crops as PNG files (some corrupt), a tiny
compact preprocessing model built from its config, and helpers that build jobs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def compact_model(tmp_path_factory) -> Path:
    """A compact preprocessing network with random weights (outputs mean nothing)."""
    from gencodec.filters.tiny import tiny_compact

    d = tmp_path_factory.mktemp("compact")
    tiny_compact(seed=3).save_pretrained(d)
    return d


def write_photos(folder: Path, n: int, corrupt: tuple[int, ...] = (), size=(48, 64)) -> list[Path]:
    """``n`` PNG crops of the scikit-image photos in ``folder`` (img00.png ...); the
    indices in ``corrupt`` get a PNG signature followed by garbage, a truncated PNG or
    an empty file in turn."""
    data = pytest.importorskip("skimage.data")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    paths = []
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        if i in corrupt:
            kind = corrupt.index(i) % 3
            if kind == 0:
                path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
            elif kind == 1:
                Image.fromarray(photos[0][:h, :w]).save(path)
                path.write_bytes(path.read_bytes()[:-40])
            else:
                path.write_bytes(b"")
        else:
            photo = photos[i % len(photos)]
            y, x = (17 * i) % (photo.shape[0] - h), (29 * i) % (photo.shape[1] - w)
            Image.fromarray(np.ascontiguousarray(photo[y:y + h, x:x + w])).save(path)
        paths.append(path)
    return paths


def varied_items(inputs: list[Path], out: Path, compact: Path):
    """Items with per-item settings that differ: codecs, quality or bpp targets,
    preprocessing with the compact model or a classic filter, container streams."""
    from gencodec.batch.manifest import Item, Settings, check_items

    out.mkdir(parents=True, exist_ok=True)
    kinds = [
        (Settings(codec="webp", quality=70), ".webp"),
        (Settings(codec="jpeg", bpp=1.0, options=(("subsampling", "444"),)), ".jpg"),
        (Settings(codec="webp", quality=50, preprocess=str(compact)), ".webp"),
        (Settings(codec="jpeg", quality=80, container=True), ".gnc"),
        (Settings(codec="avif", quality=60), ".avif"),
    ]
    located = []
    for i, path in enumerate(inputs):
        settings, suffix = kinds[i % len(kinds)]
        located.append((str(path), Item(i, str(path), str(out / f"{path.stem}{suffix}"),
                                        settings)))
    return check_items(located)


def outputs(folder: Path) -> dict[str, bytes]:
    """name -> bytes of every output file (sidecars and summaries left out)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.endswith(".json") and not p.name.startswith(".")}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name)


def gencodec_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gencodec.cli.main", *args]


def worker_pids(parent: int, marker: str) -> list[int]:
    """Child processes of ``parent`` whose command line contains ``marker``."""
    pids = []
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return []
    for pid in map(int, children):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                pids.append(pid)
        except OSError:
            pass
    return pids


def wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")



@pytest.fixture(scope="session")
def batch_helpers():
    """The helpers above, as attributes (fixtures are how tests here share code)."""
    import types

    return types.SimpleNamespace(
        write_photos=write_photos, varied_items=varied_items, outputs=outputs,
        temporaries=temporaries, gencodec_command=gencodec_command,
        worker_pids=worker_pids, wait_for=wait_for)
