"""Restore a study on a machine that lost its folder, from the data a report left behind.

A study's report writes everything its statistics need to CSV files (``per_run.csv``, ``per_case.csv``,
``per_case_test_epoch<E>.csv``, ``halving.json``); a project commits them (``python -m benchmarks.studies.quality
collect``). When the study folder itself is gone (a new machine, a wiped scratch disk), :func:`restore` writes
the state of every run those files describe into a new study folder, so that the study continues where its
data ends instead of from the start:

- a run that was **done** stays done: its test-set scores come from the restored rows, not from predictions
  (a done run whose (fold, seed) no other arm had finished has no rows: it trains again, as a paused one);
- a run **stopped** by successive halving stays stopped, and its scores at the stop are the restored rows;
- a run **paused** at a halving checkpoint (or interrupted after some epochs) is paused at that epoch, with
  its halving screen (``val_dice``) kept for the decision there; its checkpoint is lost, so when it goes on
  it trains again from the start, to the same schedule (its training is that of a full run either way),
  and if its arm is stopped at that pause it trains to the stop again to predict the test set there;
- every other run is pending, as in a new study.

The restored per-case rows lie in ``<study>/restored/<evaluation>.csv`` with the run's fold and seed
(``run_fold``, ``run_seed``) in place of the compare tool's index; the report scores the runs that have
predictions here, adds the restored rows of the others, and computes every statistic again on the whole
(:func:`nnunet_losses.nnunet.tools.compare.rescore`). Nothing already in the study folder is overwritten: a
run with a state file keeps it.

    nnunet_losses_study restore STUDY_DIR --from docs/data/studies/NAME --definition DEFINITION.json
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable, Dict, List, Tuple

from nnunet_losses._io import atomic_write_json
from nnunet_losses.nnunet.tools.study.csv_files import read_csv, write_csv
from nnunet_losses.nnunet.tools.study.definition import StudyDefinition
from nnunet_losses.nnunet.tools.study.folder import StudyFolder, run_id

__all__ = ["restore", "restored_rows", "evaluation_runs", "RESTORED"]

#: the folder (inside the study) of the restored per-case rows, one CSV per evaluation
RESTORED = "restored"
TOLERANCE = 1e-4  # per_run.csv keeps 6 significant digits


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _count(value: str, default: int) -> int:
    v = _float(value)
    return int(v) if v > 0 else default  # NaN compares false


def evaluation_runs(definition: StudyDefinition, per_run: List[dict], which: str) -> List[Tuple[int, int]]:
    """The (fold, seed) runs an evaluation of the report scored, in the report's order (seeds, then folds):
    those with a ``<which>_dice`` value in ``per_run.csv``. The compare tool's ``fold`` column in that
    evaluation's ``per_case.csv`` is the index into this list."""
    have = {(int(r["fold"]), int(r["seed"])) for r in per_run if not math.isnan(_float(r.get(f"{which}_dice")))}
    return [(f, s) for s in definition.seeds for f in definition.folds if (f, s) in have]


def _evaluations(data_dir: str, has_test: bool) -> Dict[str, str]:
    """{evaluation: its per-case file in ``data_dir``}: ``per_case.csv`` is the test set's (the
    cross-validation's when the study has no test set), ``per_case_test_epoch<E>.csv`` a halving stop's."""
    out = {}
    if os.path.isfile(os.path.join(data_dir, "per_case.csv")):
        out["test" if has_test else "cv"] = os.path.join(data_dir, "per_case.csv")
    for name in sorted(os.listdir(data_dir)):
        if name.startswith("per_case_test_epoch") and name.endswith(".csv"):
            out[name[len("per_case_"):-len(".csv")]] = os.path.join(data_dir, name)
    return out


def _rows_with_runs(rows: List[dict], runs: List[Tuple[int, int]], per_run: Dict[tuple, dict], which: str,
                    path: str) -> List[dict]:
    """``rows`` with ``run_fold`` / ``run_seed`` for the compare tool's index, checked against ``per_run.csv``:
    every run's mean Dice over the cases and classes must be its ``<which>_dice`` there."""
    from nnunet_losses.nnunet.tools.study.statistics import run_values

    indices = sorted({int(r["fold"]) for r in rows})
    if indices != list(range(len(runs))):
        raise ValueError(f"{path} holds runs {indices}, but per_run.csv has {which}_dice for {len(runs)} run(s): "
                         f"the files are not from the same report; collect the study again")
    for arm, by in run_values(rows, runs, "dice").items():
        for (f, s), v in by.items():
            expected = _float(per_run[(arm, f, s)].get(f"{which}_dice"))
            if not abs(v - expected) <= TOLERANCE:
                raise ValueError(f"{path}: run {run_id(arm, f, s)} has mean Dice {v:.6f} here and {expected:.6f} in "
                                 f"per_run.csv: the files are not from the same report; collect the study again")
    out = []
    for r in rows:
        f, s = runs[int(r["fold"])]
        out.append({**{k: v for k, v in r.items() if k != "fold"}, "run_fold": f, "run_seed": s})
    return out


def restored_rows(folder: StudyFolder, which: str) -> Dict[tuple, List[dict]]:
    """{(arm, fold, seed): per-case rows} restored for evaluation ``which`` (``{}`` when none)."""
    out: Dict[tuple, List[dict]] = {}
    for r in read_csv(folder.path(RESTORED, f"{which}.csv"), missing_ok=True):
        out.setdefault((r["method_name"], int(r["run_fold"]), int(r["run_seed"])), []).append(r)
    return out


def _state(row: dict, evaluations: List[str], data_dir: str, main: str = "test") -> dict:
    """The state file of one run of ``per_run.csv``; ``main``: the evaluation of finished runs (``test``, or
    ``cv`` without a test set). A done run without rows there (its (fold, seed) was not finished by every arm
    when the data was collected) has neither predictions nor checkpoint left: like a paused run, it trains
    again from the start, straight to the end.

    >>> _state({"status": "done", "epochs": "20"}, ["test"], "data")["status"]
    'done'
    >>> _state({"status": "done", "epochs": "20"}, [], "data")["status"]
    'paused'
    """
    status, epochs = row["status"], int(_float(row.get("epochs")) if row.get("epochs") else 0)
    if status == "done" and main not in evaluations:
        status = "lost"
    seconds = {k: _float(row.get(f"{k}_s")) for k in ("train", "predict")}
    seconds = {k: v for k, v in seconds.items() if not math.isnan(v)}
    restored = {"from": os.path.abspath(data_dir), "status": status, "epochs": epochs, "evaluations": evaluations,
                "seconds": seconds}
    if not math.isnan(_float(row.get("val_dice"))):
        restored["screen"] = {str(epochs): _float(row["val_dice"])}  # the halving screen at its last epoch
    if not math.isnan(_float(row.get("val_ema_dice"))):
        restored["ema"] = _float(row["val_ema_dice"])
    rerun = {k: _float(row.get(c)) for k, c in (("epoch", "rerun_epoch"), ("lost", "lost_val_dice"),
                                                ("again", "rerun_val_dice"))}
    if not any(math.isnan(v) for v in rerun.values()):  # trained again after an earlier restore: kept
        restored["rerun"] = {**rerun, "epoch": int(rerun["epoch"])}
    if row.get("auto_resolved"):  # what its "auto" options resolved to (adopt compares it)
        try:
            restored["auto_resolved"] = json.loads(row["auto_resolved"])
        except json.JSONDecodeError:
            raise ValueError(f"per_run.csv in {data_dir}: auto_resolved {row['auto_resolved']!r} of run "
                             f"{row.get('arm')} fold {row.get('fold')} seed {row.get('seed')} is not JSON; "
                             f"collect the study again") from None
    state = {"status": "pending", "attempts": 0, "restored": restored}
    stops = {w[len("test_epoch"):]: {"restored": True} for w in evaluations if w.startswith("test_epoch")}
    if stops:
        state["at_stop"] = stops
    if status in ("done", "stopped"):  # a run that trains again counts only its new seconds and attempts
        state.update(seconds=seconds, attempts=_count(row.get("attempts"), 1),
                     **({"device": row["device"]} if row.get("device") else {}))
    if status == "done":
        state.update(status="done", epoch=epochs)
    elif status == "stopped":
        state.update(status="stopped", stopped_at=epochs,
                     reason=f"successive halving after epoch {epochs} (restored from {os.path.basename(data_dir)})")
    elif status in ("paused", "pending", "running") and epochs:  # trained that far: it goes on from there
        state.update(status="paused", epoch=epochs)
    elif status == "lost":
        state.update(status="paused", epoch=epochs)
        state["restored"]["lost"] = f"done, but no {main} rows in the data: trains again"
    elif status == "failed":
        state.update(status="failed", attempts=_count(row.get("attempts"), 2), error="failed (restored)")
    return state


def restore(folder: StudyFolder, definition: StudyDefinition, data_dir: str, echo: Callable[[str], None] = print
            ) -> Dict[str, int]:
    """Write the state of every run that ``data_dir``'s ``per_run.csv`` describes into ``folder`` (prepared
    for ``definition``), its halving decisions and its per-case rows (module docstring); {status: runs
    restored}, with ``kept``: runs that already had a state here."""
    from nnunet_losses.nnunet.tools.study.grid import prepare_study

    path = os.path.join(data_dir, "per_run.csv")
    if not os.path.isfile(path):
        raise ValueError(f"{data_dir} has no per_run.csv: give the folder a study's report was collected into "
                         f"(docs/data/studies/NAME)")
    record = prepare_study(folder, definition)
    rows = read_csv(path)
    known = {(a, f, s) for a, f, s in definition.runs()}
    per_run = {(r["arm"], int(r["fold"]), int(r["seed"])): r for r in rows}
    unknown = sorted(set(per_run) - known)
    if unknown:
        raise ValueError(f"{path} has runs the definition does not: {[run_id(*k) for k in unknown[:5]]}: restore "
                         f"with the definition the data was made with")
    evaluations = _evaluations(data_dir, bool(record["dataset"]["test_images"]))
    scored: Dict[tuple, List[str]] = {}
    os.makedirs(folder.path(RESTORED), exist_ok=True)
    for which, source in evaluations.items():
        target = folder.path(RESTORED, f"{which}.csv")
        runs = evaluation_runs(definition, rows, which)
        for arm, f, s in per_run:
            if (f, s) in runs and not math.isnan(_float(per_run[(arm, f, s)].get(f"{which}_dice"))):
                scored.setdefault((arm, f, s), []).append(which)
        if os.path.isfile(target):
            continue
        cases = read_csv(source)
        out = _rows_with_runs(cases, runs, per_run, which, source)
        write_csv(target, out, [k for k in cases[0] if k != "fold"] + ["run_fold", "run_seed"])
    if os.path.isfile(os.path.join(data_dir, "halving.json")) and not folder.read_halving():
        with open(os.path.join(data_dir, "halving.json")) as f:
            atomic_write_json(folder.path("halving.json"), json.load(f), indent=1)
    counts: Dict[str, int] = {}
    for key, row in per_run.items():
        rid = run_id(*key)
        if os.path.isfile(folder.state_path(rid)):
            counts["kept"] = counts.get("kept", 0) + 1
            continue
        state = _state(row, scored.get(key, []), data_dir, "test" if record["dataset"]["test_images"] else "cv")
        folder.write_state(rid, run=rid, **state)
        counts[state["status"]] = counts.get(state["status"], 0) + 1
    echo(f"restored {folder.root} from {data_dir}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
         + f"; per-case rows of {', '.join(evaluations) or 'no evaluation'} in {folder.path(RESTORED)}")
    return counts

