"""A run folder's lock: processes that share a work folder never compute the same run twice.

Several processes may execute parts of one experiment at once (one per method,
variant or seed, on a machine with many cores or a GPU). Each resumable run
takes ``<folder>/<name>`` with an exclusive :func:`fcntl.flock` while it
computes; a second process asking for the same run waits, then finds the
finished result and reads it back. The lock is released when the process
exits, also when it is killed, so a stale lock file never blocks a rerun.
Where :mod:`fcntl` does not exist (Windows) the lock is a no-op: one process
per work folder there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(folder: str | Path | None, name: str = LOCK_NAME) -> Iterator[Path | None]:
    """Hold an exclusive lock on ``<folder>/<name>`` (the folder is created); yields the folder.

    ``folder=None`` (a run that writes nothing) locks nothing.
    """
    if folder is None or fcntl is None:  # nothing shared, or Windows
        yield None if folder is None else Path(folder)
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
