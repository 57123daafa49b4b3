"""The lock of a maps folder: one process builds its maps at a time."""
from __future__ import annotations

import contextlib
import os

__all__ = ["maps_lock"]


@contextlib.contextmanager
def maps_lock(maps_dir: str):
    """Exclusive lock on a maps folder (one precompute run at a time; no lock on Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(os.path.join(maps_dir, ".lock"), "w") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
