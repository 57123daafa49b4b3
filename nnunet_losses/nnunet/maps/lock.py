"""The lock of a maps folder: one process builds its maps at a time, the others wait and say so.

The lock is a POSIX record lock (``fcntl.lockf``) on ``<maps folder>/.lock``: the kernel releases it
when its process ends however it ends (SIGKILL included), and worker processes forked by the holder do
not inherit it, so a stale lock of a dead process never blocks anyone. The holder writes its PID into
the file; a process that finds the lock taken logs that it waits for that PID and gives up with a
clear error after ``NNUNET_LOSSES_LOCK_TIMEOUT`` seconds (default 300) without progress of the holder
(a change of the folder's manifest restarts the clock: a long but progressing build is waited for).
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Optional

__all__ = ["maps_lock", "lock_timeout", "MapsLockTimeout", "LOCK_TIMEOUT_ENV", "LOCK_NAME"]

LOCK_TIMEOUT_ENV = "NNUNET_LOSSES_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 300.0
LOCK_NAME = ".lock"
_POLL_S = 0.2


class MapsLockTimeout(RuntimeError):
    """Another process held a maps folder's lock for longer than the timeout without progress."""


def lock_timeout() -> float:
    """Seconds to wait for another process's lock: ``NNUNET_LOSSES_LOCK_TIMEOUT`` (default 300)."""
    text = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise ValueError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds >= 0, got {text!r}")
    return value


def _holder(path: str) -> str:
    """The PID written into the lock file by its holder ("unknown" while it has not written it yet)."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _progress(maps_dir: str) -> Optional[tuple]:
    """What changes while the holder makes progress: the manifest's stat."""
    try:
        st = os.stat(os.path.join(maps_dir, "manifest.json"))
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@contextlib.contextmanager
def maps_lock(maps_dir: str, log: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None):
    """Hold the lock of ``maps_dir`` (created if needed) for the ``with`` block (no lock on Windows).

    Raises :class:`MapsLockTimeout` after ``timeout`` seconds (default :func:`lock_timeout`) of
    waiting for a holder that makes no progress; OSError when the folder is not writable."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    timeout = lock_timeout() if timeout is None else timeout
    path = os.path.join(maps_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        start, seen, announced = time.monotonic(), _progress(maps_dir), None
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (BlockingIOError, PermissionError):
                pass
            holder = _holder(path)
            if holder != announced:
                announced = holder
                if log:
                    log(f"nnunet-losses: waiting for PID {holder}, which holds the lock {path} (it is building "
                        f"these maps); giving up after {timeout:.0f} s without progress ({LOCK_TIMEOUT_ENV})")
            now = _progress(maps_dir)
            if now != seen:
                seen, start = now, time.monotonic()
            if time.monotonic() - start >= timeout:
                raise MapsLockTimeout(
                    f"gave up waiting for the lock {path}: PID {holder} has held it for {timeout:.0f} s without "
                    f"progress. If that process is gone or hung, end it (kill {holder}); the lock is released "
                    f"when its process ends. Set {LOCK_TIMEOUT_ENV} (seconds) to wait longer")
            time.sleep(_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
