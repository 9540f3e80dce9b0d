"""One process at a time on a folder: an ``flock`` on a lock file, released with the
process (a killed run included). Used by ``gencodec eval`` (a results folder) and
``gencodec batch`` (a job)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from gencodec.errors import InputError


@contextlib.contextmanager
def held(lock: Path, *, busy: str, unwritable: str):
    """Hold ``lock`` (created if missing) for the ``with`` block. Another process
    holding it: ``InputError(busy)``; the file cannot be created: ``InputError`` with
    ``unwritable`` and the system's reason."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise InputError(f"{unwritable}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(busy) from None
        yield
    finally:
        os.close(fd)
