"""Which stored parameter sets a running training uses, so that ``--prune`` never removes them.

A training that uses stored maps registers its use when its data loaders start
(:func:`register_use`, from :func:`.dataset.ensure_maps`): one small JSON file per parameter set in
``<maps folder>/in_use/`` naming the set, the PID, the host and the command, written atomically
while holding the maps lock (:mod:`.lock`), so a prune (which holds the same lock) either sees it or
has finished before the training checks its maps (and rebuilds what was removed). The file is
removed when the training ends (the trainer's ``on_train_end``, or at interpreter exit).

A use is *live* (:func:`live_uses`):

* on this host: while its PID runs and is the same process (its start time, read from ``/proc``,
  matches); a killed training (SIGKILL included) is seen as gone at once;
* on another host (nodes sharing the folder): while its file was refreshed less than
  :data:`STALE_AFTER_S` (1 hour) ago; a live training refreshes its files every
  :data:`HEARTBEAT_S` (5 minutes), so a crashed node's sets are freed one hour later.

A folder that cannot be written (a read-only ``nnUNet_preprocessed``) registers nothing: nothing
can be pruned there by this user, and the log says so once in case another user can.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import json
import os
import socket
import sys
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional

from nnunet_losses._io import atomic_write_json

from .declaration import ResolvedMap
from .lock import maps_lock

__all__ = ["USE_SUBFOLDER", "HEARTBEAT_S", "STALE_AFTER_S", "MapsUse", "register_use", "live_uses", "describe_use"]

USE_SUBFOLDER = "in_use"
HEARTBEAT_S = 300.0
STALE_AFTER_S = 3600.0
_COUNTER = itertools.count()


def _start_ticks(pid: int) -> Optional[int]:
    """The start time of process ``pid`` (clock ticks since boot, ``/proc``); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])     # a zombie has ended


def _pid_runs(pid: int, ticks: Optional[int]) -> bool:
    """``pid`` runs on this host and is the process that wrote the use (same start time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                                  # another user's process: it exists
        pass
    now = _start_ticks(pid)
    if now is None:
        return not os.path.isdir("/proc/self")               # no /proc: trust the PID alone
    return ticks is None or now == ticks


class MapsUse:
    """The registered use of some parameter sets by this process; :meth:`release` ends it."""

    def __init__(self, paths: List[str]):
        self.paths, self.pid = paths, os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="nnunet_losses_maps_use", daemon=True)
        self._thread.start()
        atexit.register(self.release)

    def _heartbeat(self):
        while not self._stop.wait(HEARTBEAT_S):
            for p in self.paths:
                with contextlib.suppress(OSError):
                    os.utime(p)

    def release(self) -> None:
        """Remove the use files (idempotent; a forked child never removes its parent's)."""
        if os.getpid() != self.pid:
            return
        self._stop.set()
        for p in self.paths:
            with contextlib.suppress(OSError):
                os.remove(p)
        self.paths = []
        atexit.unregister(self.release)


def register_use(maps_dir: str, resolved: Iterable[ResolvedMap], log: Callable[[str], None] = print
                 ) -> Optional[MapsUse]:
    """Record that this process uses the parameter sets ``resolved`` of ``maps_dir`` until
    :meth:`MapsUse.release` (or exit); None (and one log line) where the folder cannot be written."""
    pid, host, ticks = os.getpid(), socket.gethostname(), _start_ticks(os.getpid())
    folder = os.path.join(maps_dir, USE_SUBFOLDER)
    paths = []
    try:
        os.makedirs(folder, exist_ok=True)
        with maps_lock(maps_dir, log=log):
            for rp in resolved:
                path = os.path.join(folder, f"{rp.fingerprint}.{pid}.{next(_COUNTER)}.json")
                atomic_write_json(path, {"kind": rp.kind, "sha": rp.fingerprint, "params": dict(rp.params),
                                         "pid": pid, "host": host, "start_ticks": ticks, "since": time.time(),
                                         "command": " ".join(sys.argv)[:300]})
                paths.append(path)
    except OSError as e:
        for p in paths:
            with contextlib.suppress(OSError):
                os.remove(p)
        log(f"nnunet-losses: {maps_dir} cannot be written ({e.strerror or e}): this training's use of its stored "
            f"maps is not registered there, so an nnunet_losses_precompute --prune run by a user who can write "
            f"there would not see it")
        return None
    return MapsUse(paths)


def live_uses(maps_dir: str, remove_stale: bool = False) -> Dict[str, List[dict]]:
    """``{parameter-set sha: [use records]}`` of the live uses (see the module docstring); stale files
    are ignored, and removed with ``remove_stale`` (only while holding the maps lock)."""
    out: Dict[str, List[dict]] = {}
    here, now = socket.gethostname(), time.time()
    for path in sorted(glob.glob(os.path.join(maps_dir, USE_SUBFOLDER, "*.json"))):
        try:
            with open(path) as f:
                use = json.load(f)
            age = now - os.stat(path).st_mtime
            live = (_pid_runs(int(use["pid"]), use.get("start_ticks")) if use["host"] == here
                    else age < STALE_AFTER_S)
        except (OSError, ValueError, KeyError, TypeError):
            continue                                         # being written or removed, or not ours
        if live:
            out.setdefault(use["sha"], []).append(use)
        elif remove_stale:
            with contextlib.suppress(OSError):
                os.remove(path)
    return out


def describe_use(uses: List[dict]) -> str:
    """``PID 123 on host node1 since 2026-12-05 20:10 UTC (nnUNetv2_train ...)``, one per use."""
    return "; ".join(f"PID {u['pid']} on host {u['host']} since "
                     f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(u.get('since', 0)))} ({u.get('command', '')})"
                     for u in uses)
