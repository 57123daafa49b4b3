"""The study folder: where everything lies, the per-run state files (written atomically), the lock.

    <study>/study.json                    the definition, resolved, with commit and package versions
    <study>/runs/<arm>__fold<F>__seed<S>.json   one state file per run
    <study>/logs/<run>.log                each run's commands and output (attempt 2 appends)
    <study>/trainers/                     the generated ``<Trainer>_study`` classes (nnUNet_extTrainer)
    <study>/results/<arm>/seed_<S>/       nnUNet_results of one arm and seed (nnUNetv2_predict works on it)
    <study>/predictions/<arm>/seed_<S>/fold_<F>/   test-set predictions of one run
    <study>/predictions_at_stop/epoch_<E>/<arm>/seed_<S>/fold_<F>/   the same at a successive-halving stop
    <study>/evaluation/{test,cv,test_epoch<E>}/   nnunet_losses_compare output
    <study>/report.md, per_case.csv, per_run.csv, paired.csv, ranking.csv, plots/
    <study>/.lock                         held by the one study command working on the folder
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from typing import Any, Dict, Iterator, List, Optional

from nnunet_losses._io import atomic_write_json

__all__ = ["StudyFolder", "StudyLocked", "run_id", "STATES"]

#: a run's status: pending (not started), running, paused (halving checkpoint), done, failed (twice),
#: stopped (halving dropped its arm)
STATES = ("pending", "running", "paused", "done", "failed", "stopped")
SUFFIX = "_study"


class StudyLocked(RuntimeError):
    """Another study command works on this folder."""


def run_id(arm: str, fold: int, seed: int) -> str:
    return f"{arm}__fold{fold}__seed{seed}"


class StudyFolder:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._lock_fd: Optional[int] = None

    # ------------------------------------------------------------------ paths
    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def definition_path(self) -> str:
        return self.path("study.json")

    def state_path(self, rid: str) -> str:
        return self.path("runs", f"{rid}.json")

    def log_path(self, rid: str) -> str:
        return self.path("logs", f"{rid}.log")

    @property
    def trainers_dir(self) -> str:
        return self.path("trainers")

    def results_dir(self, arm: str, seed: int) -> str:
        return self.path("results", arm, f"seed_{seed}")

    def model_dir(self, definition, arm: str, seed: int, dataset_name: str) -> str:
        trainer = definition.arm(arm).trainer + SUFFIX
        return os.path.join(self.results_dir(arm, seed), dataset_name,
                            f"{trainer}__{definition.plans}__{definition.configuration}")

    def fold_dir(self, definition, arm: str, fold: int, seed: int, dataset_name: str) -> str:
        return os.path.join(self.model_dir(definition, arm, seed, dataset_name), f"fold_{fold}")

    def prediction_dir(self, arm: str, fold: int, seed: int) -> str:
        return self.path("predictions", arm, f"seed_{seed}", f"fold_{fold}")

    def stop_prediction_dir(self, arm: str, fold: int, seed: int, epoch: int) -> str:
        """Test-set predictions of a run with its checkpoint at a successive-halving stop (``epoch``)."""
        return self.path("predictions_at_stop", f"epoch_{epoch}", arm, f"seed_{seed}", f"fold_{fold}")

    # ------------------------------------------------------------------ study.json
    def exists(self) -> bool:
        return os.path.isfile(self.definition_path)

    def read_study(self) -> Dict[str, Any]:
        if not self.exists():
            raise ValueError(f"{self.root} holds no study (no study.json): start one with "
                             f"nnunet_losses_study run {self.root} --definition FILE (or -d/-c/--arms)")
        with open(self.definition_path) as f:
            return json.load(f)

    def write_study(self, record: Dict[str, Any]) -> None:
        os.makedirs(self.root, exist_ok=True)
        atomic_write_json(self.definition_path, record, indent=1)

    # ------------------------------------------------------------------ successive halving
    def read_halving(self) -> Dict[int, Dict[str, Any]]:
        """The halving decisions taken so far, ``{epoch: {"scores": {arm: screen}, "stopped": [arm], "screen":
        what the scores are, ...}}`` from ``halving.json`` (``{}`` before the first). A decision recorded
        before the screen was named has no ``"screen"`` (it was nnU-Net's EMA)."""
        try:
            with open(self.path("halving.json")) as f:
                return {int(e): d for e, d in json.load(f).items()}
        except FileNotFoundError:
            return {}

    def write_halving(self, epoch: int, scores: Dict[str, Any], stopped: List[str], screen: Optional[str] = None,
                      superseded: Optional[Dict[str, Any]] = None, went_on: Optional[List[str]] = None) -> None:
        """Record the decision taken at ``epoch`` with ``screen``; ``superseded``: the decision it replaces,
        ``went_on``: arms this decision would stop that had trained past ``epoch`` already."""
        decisions = {str(e): d for e, d in self.read_halving().items()}
        record: Dict[str, Any] = {"scores": scores, "stopped": stopped}
        if screen:
            record["screen"] = screen
        if went_on:
            record["went_on"] = went_on
        if superseded:
            record["superseded"] = superseded
        decisions[str(epoch)] = record
        os.makedirs(self.root, exist_ok=True)
        atomic_write_json(self.path("halving.json"), decisions, indent=1)

    # ------------------------------------------------------------------ run states
    def read_state(self, rid: str) -> Dict[str, Any]:
        try:
            with open(self.state_path(rid)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {"run": rid, "status": "pending", "attempts": 0}

    def write_state(self, rid: str, **changes: Any) -> Dict[str, Any]:
        """Update a run's state file (read, change, atomic replace); returns the new state."""
        state = self.read_state(rid)
        state.update(changes)
        state["updated"] = time.time()
        os.makedirs(self.path("runs"), exist_ok=True)
        atomic_write_json(self.state_path(rid), state, indent=1)
        return state

    def states(self, rids: List[str]) -> Dict[str, Dict[str, Any]]:
        return {r: self.read_state(r) for r in rids}

    # ------------------------------------------------------------------ lock
    def lock(self) -> None:
        """Take the folder's lock or raise :class:`StudyLocked` (never waits)."""
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.path(".lock"), os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                holder = ""
                try:
                    with open(self.path(".lock")) as f:
                        holder = f.read().strip()
                except OSError:
                    pass
                raise StudyLocked(f"another study command works on {self.root} ({holder or 'unknown process'}); "
                                  f"wait for it to end, or stop it, then run this command again") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "StudyFolder":
        self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    def iter_runs(self, definition) -> Iterator[tuple]:
        for arm, fold, seed in definition.runs():
            yield arm, fold, seed, run_id(arm, fold, seed)
