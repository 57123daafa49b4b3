"""Sharing runs between studies: ``nnunet_losses_study adopt STUDY --from OTHER`` copies the runs of OTHER
that STUDY would train again, so that STUDY skips them (done) or continues them (paused)::

    nnunet_losses_study adopt /data/studies/cw_widths --from /data/studies/all_trainers --dry-run
    nnunet_losses_study adopt /data/studies/cw_widths --from /data/studies/all_trainers --arm CWCD=CWCD_auto

The rules (docs/study.md, "Sharing runs between studies"):

* both folders hold a study (``study.json``; ``--definition FILE`` prepares STUDY first, training nothing)
  and no other study command works on either (both locks are taken);
* the studies have the same dataset, configuration, plans identifier and schedule (epochs, iterations,
  validation iterations), else no run can match (ValueError);
* an arm of OTHER matches an arm of STUDY when both have the same trainer and the same effective options:
  the trainer's defaults (``tunable_options()``) updated with the arm's options, so ``CWCD`` ``{}`` matches
  ``CWCD_auto`` ``{"contour_width": "auto"}``. An option nnU-Net's plans decide (``batch_dice``) matches
  only when both leave it to the plans or both set it. ``--arm OTHER=THIS`` restricts the pairing to the
  pairs given (still checked);
* an arm of OTHER is also paired with an arm of STUDY of the same trainer whose effective options differ
  only in options OTHER leaves ``"auto"`` (the trainer resolves them per dataset when training,
  ``auto_options``) and STUDY sets explicitly: ``CWCD`` ``{}`` with ``CWCD_i1`` ``{"contour_width": 1}``.
  Such a pair is checked per run: OTHER's run is adoptable only when its saved ``loss_options.json`` says
  the option resolved to STUDY's value (``resolved``), and never without that file. The reverse (``"auto"``
  here, explicit there) is never paired: what ``"auto"`` resolves to here is known only when STUDY trains;
* a run (fold, seed) is adopted when STUDY's run never started here (pending, or paused by ``restore`` with
  its checkpoint lost; no attempt, no files) and OTHER's
  run is done, paused or stopped (by OTHER's successive halving: paused here, so STUDY's ``run`` continues
  it with ``--c``), has its checkpoint, and was trained with the plans STUDY uses (the ``plans.json`` nnU-Net
  saved beside it equals STUDY's, compared as JSON); among several such runs (arms of OTHER), a done one
  is preferred, then a paused one, then a stopped one;
* files are copied, never moved or overwritten (OTHER stays as it was): the fold folder, the model folder's
  ``plans.json``/``dataset.json``/``dataset_fingerprint.json`` when missing, the test predictions when both
  studies predict the same test set the same way (else a done run stays pending here and STUDY's ``run``
  only predicts its test set), and OTHER's log appended to STUDY's. The copied ``loss_options.json`` gets
  STUDY's arm options (the old ones kept as ``options_before_adoption``), so that ``--c`` with STUDY's
  ``NNUNET_LOSSES_OPTIONS`` continues the run. The state records ``adopted_from: {"study", "run",
  "status"}``. Predictions at OTHER's halving stops are not copied;
* a run that OTHER holds only as data (``nnunet_losses_study restore`` on a new machine: done, no checkpoint,
  its test-set per-case rows in ``restored/test.csv``) is adopted as data: its rows go into STUDY's
  ``restored/test.csv`` under STUDY's arm name and the run is done here, scored from them as a restored run.
  This needs the same test set, mirroring and metrics, and an arm that trains alike without ``"auto"`` to
  resolve (a restored run has no ``loss_options.json`` to say what it resolved to).
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from nnunet_losses.nnunet.maps.declaration import AUTO
from nnunet_losses.nnunet.tools.study.csv_files import read_csv, write_csv
from nnunet_losses.nnunet.tools.study.definition import Arm, StudyDefinition
from nnunet_losses.nnunet.tools.study.folder import StudyFolder, run_id
from nnunet_losses.nnunet.tools.study.restore import RESTORED, restored_rows

__all__ = ["adopt", "Adoption", "effective_options", "match_arms", "pair_arms", "study_differences", "ADOPTABLE"]

#: status of an adoptable run in OTHER -> its status in STUDY
ADOPTABLE = {"done": "done", "paused": "paused", "stopped": "paused"}
MODEL_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")
SCHEDULE_KEYS = ("epochs", "iterations", "val_iterations")
#: the default of an option the trainer takes from the plans (``batch_dice``)
FROM_PLANS = "<from the plans>"
_DEFAULTS: Dict[str, Tuple[Dict[str, Any], Dict[str, str], Tuple[str, ...]]] = {}


# ------------------------------------------------------------------------------------------ studies
@dataclass
class _Study:
    """A study folder with its record and definition."""

    folder: StudyFolder
    record: Dict[str, Any]
    definition: StudyDefinition
    _restored: Optional[Dict[tuple, List[dict]]] = None

    @classmethod
    def load(cls, folder: StudyFolder) -> "_Study":
        record = folder.read_study()
        return cls(folder, record, StudyDefinition.from_json(record["definition"]))

    def restored_test_rows(self) -> Dict[tuple, List[dict]]:
        """{(arm, fold, seed): the test-set per-case rows ``restore`` wrote for runs held only as data}."""
        if self._restored is None:
            self._restored = restored_rows(self.folder, "test")
        return self._restored

    def fold_dir(self, arm: str, fold: int, seed: int) -> str:
        return self.folder.fold_dir(self.definition, arm, fold, seed, self.record["dataset"]["name"])

    def model_dir(self, arm: str, seed: int) -> str:
        return self.folder.model_dir(self.definition, arm, seed, self.record["dataset"]["name"])

    def plans(self, arm: str, seed: int) -> Optional[dict]:
        """The plans of ``arm``'s runs: the ``plans.json`` nnU-Net saved in the model folder, else the
        preprocessed ``<plans>.json`` (None when neither exists)."""
        pre = self.record.get("nnunet_paths", {}).get("nnUNet_preprocessed") or ""
        for path in (os.path.join(self.model_dir(arm, seed), "plans.json"),
                     os.path.join(pre, self.record["dataset"]["name"], f"{self.definition.plans}.json")):
            if os.path.isfile(path):
                with open(path) as f:
                    return json.load(f)
        return None


def _missing_study(root: str, source: str) -> ValueError:
    return ValueError(f"{root} holds no study yet (no study.json), so it has no runs to fill: give its definition, "
                      f"nnunet_losses_study adopt {root} --from {source} --definition FILE (this writes study.json as "
                      f"'run' does, training nothing), or run 'nnunet_losses_study run {root} --definition FILE "
                      f"--no-report' once and adopt before its runs start")


def study_differences(this: _Study, other: _Study) -> List[str]:
    """What two studies differ in among dataset, configuration, plans and schedule (no run can match then)."""
    pairs = [("dataset", this.record["dataset"]["name"], other.record["dataset"]["name"]),
             ("configuration", this.definition.configuration, other.definition.configuration),
             ("plans", this.definition.plans, other.definition.plans)]
    pairs += [(k, getattr(this.definition, k), getattr(other.definition, k)) for k in SCHEDULE_KEYS]
    return [f"{what} {b!r} there, {a!r} here" for what, a, b in pairs if a != b]


# ------------------------------------------------------------------------------------------ arms
def _trainer_info(trainer: str) -> Tuple[Dict[str, Any], Dict[str, str], Tuple[str, ...]]:
    """(every option of ``trainer`` with its default, renamed options old -> new, the options it resolves
    per dataset when they are ``"auto"``); cached."""
    if trainer not in _DEFAULTS:
        from nnunet_losses.nnunet.testing.short_schedule import find_base_trainer

        cls = find_base_trainer(trainer)
        if not hasattr(cls, "tunable_options"):  # nnU-Net's own trainers take no loss options
            _DEFAULTS[trainer] = ({}, {}, ())
        else:
            defaults = dict(cls.tunable_options())
            params = inspect.signature(cls.loss_class.__init__).parameters
            if "batch_dice" in params and "batch_dice" not in cls.loss_defaults:
                defaults["batch_dice"] = FROM_PLANS  # the trainer takes it from the plans
            _DEFAULTS[trainer] = (defaults, dict(getattr(cls.loss_class, "renamed_arguments", {}) or {}),
                                  tuple(getattr(cls, "auto_options", {}) or {}))
    return _DEFAULTS[trainer]


def _trainer_defaults(trainer: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """(every option of ``trainer`` with its default, renamed options old -> new)."""
    defaults, renames, _ = _trainer_info(trainer)
    return dict(defaults), dict(renames)


def _given_options(trainer: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """An arm's options as the trainer reads them: renamed options under their new names, booleans coerced."""
    from nnunet_losses.nnunet.training import options as opt

    defaults, renames = _trainer_defaults(trainer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        given = opt.rename_options(options, renames)[0]
    try:
        given = opt.coerce_booleans(given, defaults)
    except ValueError:  # a value the trainer refuses: compared as written
        pass
    return opt.normalise(given)


def effective_options(trainer: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """The options a run of ``trainer`` with the arm's ``options`` trains with: the trainer's defaults updated
    with the options (``FROM_PLANS`` for an option taken from the plans).

    >>> effective_options("nnUNetTrainerCWCD", {}) == effective_options("nnUNetTrainerCWCD", {"contour_width": "auto"})
    True
    """
    from nnunet_losses.nnunet.training import options as opt

    return opt.normalise({**_trainer_defaults(trainer)[0], **_given_options(trainer, options)})


def match_arms(other: Arm, this: Arm) -> Tuple[str, Dict[str, Any]]:
    """(why runs of ``other`` are not runs of ``this``, "" when they may be; {option: ``this``'s value} that a
    run of ``other`` must have resolved its ``"auto"`` to, empty when the arms train alike).

    The arms pair when they have the same trainer and effective options that differ only in options the
    trainer resolves per dataset (``auto_options``), ``"auto"`` in ``other`` and explicit in ``this``; never
    the reverse (what ``"auto"`` resolves to in this study is known only when it trains).
    """
    if other.trainer != this.trainer:
        return f"trainer {other.trainer} there, {this.trainer} here", {}
    a, b = effective_options(other.trainer, other.options), effective_options(this.trainer, this.options)
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    auto = _trainer_info(this.trainer)[2]
    resolve = {k: b[k] for k in diff if k in auto and a.get(k) == AUTO and k in b and b[k] != AUTO}
    if len(resolve) == len(diff):
        return "", resolve
    why = "options differ: " + ", ".join(f"{k} {a.get(k)!r} there, {b.get(k)!r} here" for k in diff)
    reverse = [k for k in diff if k in auto and b.get(k) == AUTO]
    if reverse:
        why += (f" ({', '.join(reverse)} 'auto' here is resolved only when this study trains: an explicit value "
                f"there is never paired with it)")
    return why, {}


def arm_difference(other: Arm, this: Arm) -> str:
    """Why runs of ``other`` are not runs of ``this`` ("" when they may be, see :func:`match_arms`)."""
    return match_arms(other, this)[0]


def _pair_text(other: Arm, this: Arm) -> str:
    """``other``'s name, with the values its runs must have resolved ``"auto"`` to."""
    resolve = match_arms(other, this)[1]
    if not resolve:
        return other.name
    return f"{other.name} (runs whose {', '.join(f'{k} auto resolved to {v!r}' for k, v in resolve.items())})"


def pair_arms(this: StudyDefinition, other: StudyDefinition, pairs: Optional[Sequence[str]] = None
              ) -> Dict[str, List[str]]:
    """{arm of STUDY: the arms of OTHER whose runs it may adopt}: every arm of OTHER that trains alike (or
    whose ``"auto"`` may have resolved to STUDY's value, :func:`match_arms`), or, with ``pairs``
    (``"OTHER_ARM=THIS_ARM"``), only those pairs (ValueError for a pair that does not match)."""
    if not pairs:
        out = {a.name: [b.name for b in other.arms if not arm_difference(b, a)] for a in this.arms}
        return {k: v for k, v in out.items() if v}
    out: Dict[str, List[str]] = {}
    for text in pairs:
        src, sep, dst = (s.strip() for s in text.partition("="))
        if not sep or not src or not dst:
            raise ValueError(f"--arm {text!r}: give OTHER_ARM=THIS_ARM, e.g. --arm CWCD=CWCD_auto")
        for name, d, where in ((src, other, "the other study (--from)"), (dst, this, "this study")):
            if name not in [a.name for a in d.arms]:
                raise ValueError(f"--arm {text!r}: {name!r} is no arm of {where}; its arms: "
                                 f"{[a.name for a in d.arms]}")
        why = arm_difference(other.arm(src), this.arm(dst))
        if why:
            raise ValueError(f"--arm {text!r}: these arms do not train alike ({why}); only runs of the same trainer "
                             f"with the same effective options (or 'auto' there that resolved to the value here) "
                             f"can be shared")
        out.setdefault(dst, []).append(src)
    return out


# ------------------------------------------------------------------------------------------ runs
@dataclass
class Adoption:
    """One run of STUDY filled from a run of OTHER."""

    run: str
    arm: str
    fold: int
    seed: int
    source_run: str
    source_arm: str
    source_status: str
    status: str  # in STUDY: done, paused, or pending (done there, its test set is predicted here)
    epoch: Optional[int]
    predictions: bool  # the test predictions are copied
    restored: bool = False  # OTHER holds the run only as data (restored rows, no checkpoint): the rows are copied


def _empty(path: str) -> bool:
    """No file there: absent, or an empty folder."""
    return not os.path.lexists(path) or (os.path.isdir(path) and not os.listdir(path))


def _untouched(this: _Study, arm: str, fold: int, seed: int) -> bool:
    """STUDY's run never started here: pending (or paused by ``restore``, whose checkpoint is lost, so it would
    train again from the start), no attempt here, no fold folder or test predictions."""
    st = this.folder.read_state(run_id(arm, fold, seed))
    waiting = st.get("status") == "pending" or (st.get("status") == "paused" and bool(st.get("restored")))
    return (waiting and not st.get("attempts") and _empty(this.fold_dir(arm, fold, seed))
            and _empty(this.folder.prediction_dir(arm, fold, seed)))


def _same_test_set(this: _Study, other: _Study) -> bool:
    """Whether OTHER's test predictions are STUDY's: same test images and labels, file ending, mirroring."""
    a, b = this.record["dataset"], other.record["dataset"]
    return (bool(a.get("test_images")) and all(a.get(k) == b.get(k) for k in ("test_images", "test_labels",
                                                                             "file_ending"))
            and this.definition.tta == other.definition.tta)


def _source_problem(this: _Study, other: _Study, arm: str, src_arm: str, fold: int, seed: int) -> str:
    """Why OTHER's run of ``src_arm`` cannot fill STUDY's run of ``arm`` ("" when it can)."""
    from nnunet_losses.nnunet.training import options as opt

    rid = run_id(src_arm, fold, seed)
    st = other.folder.read_state(rid)
    status = st.get("status")
    if status not in ADOPTABLE:
        return f"{rid} is {status} there"
    fold_dir = other.fold_dir(src_arm, fold, seed)
    checkpoint = "checkpoint_final.pth" if status == "done" else "checkpoint_latest.pth"
    if _held_as_data(other, st, src_arm, fold, seed):
        return _data_problem(this, other, st, arm, src_arm, fold, seed)
    if not os.path.isfile(os.path.join(fold_dir, checkpoint)):
        return f"{rid} is {status} there but has no {checkpoint}"
    if other.plans(src_arm, seed) != this.plans(arm, seed):
        return f"{rid} was trained with other plans than this study's (plans.json differs)"
    try:
        saved = opt.load_options(fold_dir)
    except ValueError as e:
        return str(e)
    trainer = other.definition.arm(src_arm).trainer
    if saved is not None and _given_options(trainer, saved["options"]) != \
            _given_options(trainer, other.definition.arm(src_arm).options):
        return f"{rid} trained with options {saved['options']}, not its arm's {other.definition.arm(src_arm).options}"
    resolve = match_arms(other.definition.arm(src_arm), this.definition.arm(arm))[1]
    if resolve and saved is None:
        return (f"{rid} has no {opt.OPTIONS_FILE}: what its {', '.join(resolve)} 'auto' resolved to is not known "
                f"(here {', '.join(f'{k} {v!r}' for k, v in resolve.items())})")
    if resolve:
        resolved = opt.rename_record(saved, _trainer_defaults(trainer)[1]).get("resolved")
        wrong = _resolved_otherwise(resolve, resolved if isinstance(resolved, dict) else {}, opt.OPTIONS_FILE)
        if wrong:
            return f"{rid}: {wrong}"
    return ""


def _resolved_otherwise(resolve: Dict[str, Any], resolved: Dict[str, Any], where: str) -> str:
    """Where what OTHER's ``"auto"`` options resolved to (``resolved``) is not STUDY's explicit ``resolve``
    ("" when it is)."""
    from nnunet_losses.nnunet.training import options as opt

    return ", ".join(f"{k} resolved to {resolved[k]!r} there, {v!r} here" if k in resolved
                     else f"no resolved {k} in its {where}, {v!r} here" for k, v in resolve.items()
                     if k not in resolved or opt.normalise({k: resolved[k]}) != opt.normalise({k: v}))


def _held_as_data(other: _Study, st: Dict[str, Any], src_arm: str, fold: int, seed: int) -> bool:
    """OTHER's run (state ``st``) is done only as restored data: its state written by ``restore``, no
    checkpoint there."""
    return (st.get("status") == "done" and bool(st.get("restored"))
            and not os.path.isfile(os.path.join(other.fold_dir(src_arm, fold, seed), "checkpoint_final.pth")))


def _data_problem(this: _Study, other: _Study, st: Dict[str, Any], arm: str, src_arm: str, fold: int,
                  seed: int) -> str:
    """Why OTHER's run (state ``st``) held only as restored data cannot fill STUDY's run ("" when its rows
    can)."""
    rid = run_id(src_arm, fold, seed)
    what = f"{rid} is done there only as restored data (no checkpoint)"
    if not _same_test_set(this, other):
        return f"{what}, and the studies predict different test sets (or one has none)"
    if sorted(this.definition.metrics) != sorted(other.definition.metrics):
        return f"{what}, scored with metrics {sorted(other.definition.metrics)}, not this study's"
    resolve = match_arms(other.definition.arm(src_arm), this.definition.arm(arm))[1]
    recorded = st["restored"].get("auto_resolved")
    if resolve and recorded is None:
        return f"{what}: what its 'auto' options resolved to is not recorded (data collected before it was)"
    wrong = _resolved_otherwise(resolve, recorded or {}, "per_run.csv")
    if wrong:
        return f"{what}: {wrong}"
    if other.plans(src_arm, seed) != this.plans(arm, seed):
        return f"{what}, with other plans than this study's"
    rows = other.restored_test_rows().get((src_arm, fold, seed))
    if not rows:
        return f"{what} without test-set rows in {RESTORED}/test.csv"
    have = next(iter(this.restored_test_rows().values()), None)  # one csv: every group has its columns
    if have and set(have[0]) != set(rows[0]):
        return f"{what}: its rows have other columns than this study's {RESTORED}/test.csv"
    return ""


def plan_adoptions(this: _Study, other: _Study, arms: Dict[str, List[str]]
                   ) -> Tuple[List[Adoption], Dict[str, str], List[str]]:
    """(the adoptions, {run of STUDY: why none} for never-started runs without one, runs of STUDY that
    started already and are left alone)."""
    adoptions, unmatched, started = [], {}, []
    predictions = _same_test_set(this, other)
    for arm, fold, seed, rid in this.folder.iter_runs(this.definition):
        if not _untouched(this, arm, fold, seed):
            started.append(rid)
            continue
        if arm not in arms:
            unmatched[rid] = "no arm there trains alike"
            continue
        problems = {s: _source_problem(this, other, arm, s, fold, seed) for s in arms[arm]}
        ok = [s for s, why in problems.items() if not why]
        if not ok:
            unmatched[rid] = "; ".join(problems.values())
            continue
        src = min(ok, key=lambda s: list(ADOPTABLE).index(other.folder.read_state(run_id(s, fold, seed))["status"]))
        st = other.folder.read_state(run_id(src, fold, seed))
        as_data = _held_as_data(other, st, src, fold, seed)
        copy_pred = (st["status"] == "done" and predictions and not as_data
                     and not _empty(other.folder.prediction_dir(src, fold, seed)))
        status = ADOPTABLE[st["status"]]
        if status == "done" and this.record["dataset"].get("test_images") and not copy_pred and not as_data:
            status = "pending"  # trained: the next 'run' only predicts the test set
        epoch = st.get("epoch") or st.get("stopped_at")
        adoptions.append(Adoption(rid, arm, fold, seed, run_id(src, fold, seed), src, st["status"], status,
                                  None if epoch is None else int(epoch), copy_pred, as_data))
    return adoptions, unmatched, started


# ------------------------------------------------------------------------------------------ copying
def _copy_tree(src: str, dst: str) -> None:
    """Copy folder ``src`` to ``dst`` (absent or empty) through a temporary name and a rename."""
    if not _empty(dst):
        raise FileExistsError(f"{dst} holds files: adopt never overwrites; nothing of this run was copied")
    if os.path.isdir(dst):
        os.rmdir(dst)
    tmp = dst + ".adopting"
    if os.path.isdir(tmp):  # left by an adopt that was interrupted
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    os.rename(tmp, dst)


def _set_saved_options(fold_dir: str, options: Dict[str, Any], trainer: str) -> None:
    """Write STUDY's arm options into the copied ``loss_options.json`` (the same effective options, or the
    explicit value the run's ``"auto"`` resolved to; the old ones kept as ``options_before_adoption``), so that
    ``--c`` with this arm's ``NNUNET_LOSSES_OPTIONS`` continues the run (an explicit value is used as given,
    the same value its ``resolved`` holds)."""
    from nnunet_losses.nnunet.training import options as opt

    saved = opt.load_options(fold_dir)
    wanted = _given_options(trainer, options)
    if saved is not None and opt.normalise(saved["options"]) != wanted:
        saved["options_before_adoption"] = saved["options"]
        saved["options"] = wanted
        opt.save_options(fold_dir, saved)


def _copy_rows(this: _Study, other: _Study, a: Adoption) -> None:
    """Add OTHER's restored test-set rows of the run to STUDY's ``restored/test.csv``, under STUDY's arm."""
    rows = [{**r, "method_name": a.arm} for r in other.restored_test_rows()[(a.source_arm, a.fold, a.seed)]]
    target = this.folder.path(RESTORED, "test.csv")
    have = read_csv(target, missing_ok=True)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    write_csv(target, have + rows, list(have[0]) if have else list(rows[0]))
    this._restored = None


def copy_run(this: _Study, other: _Study, a: Adoption) -> None:
    """Copy OTHER's run into STUDY (fold folder, model files when missing, test predictions, log; for a run
    held only as data its restored rows), then write STUDY's state of the run (last, so an interrupted copy
    never leaves a run that looks adopted)."""
    if a.restored:
        _copy_rows(this, other, a)
        _append_log(this, other, a)
        st = other.folder.read_state(a.source_run)
        this.folder.write_state(a.run, status="done", epoch=a.epoch, seconds=st.get("seconds") or {},
                                attempts=st.get("attempts", 0), seed=a.seed, log=this.folder.log_path(a.run),
                                error=None, restored={**st["restored"], "evaluations": ["test"]}, at_stop=None,
                                adopted_from={"study": other.folder.root, "run": a.source_run,
                                              "status": a.source_status})
        return
    _copy_tree(other.fold_dir(a.source_arm, a.fold, a.seed), this.fold_dir(a.arm, a.fold, a.seed))
    src_model, dst_model = other.model_dir(a.source_arm, a.seed), this.model_dir(a.arm, a.seed)
    for name in MODEL_FILES:
        if os.path.isfile(os.path.join(src_model, name)) and not os.path.lexists(os.path.join(dst_model, name)):
            shutil.copy2(os.path.join(src_model, name), os.path.join(dst_model, name))
    if a.predictions:
        _copy_tree(other.folder.prediction_dir(a.source_arm, a.fold, a.seed),
                   this.folder.prediction_dir(a.arm, a.fold, a.seed))
    arm = this.definition.arm(a.arm)
    _set_saved_options(this.fold_dir(a.arm, a.fold, a.seed), arm.options, arm.trainer)
    log = _append_log(this, other, a)
    st = other.folder.read_state(a.source_run)
    this.folder.write_state(a.run, status=a.status, epoch=a.epoch, seconds=st.get("seconds") or {},
                            attempts=st.get("attempts", 0), seed=a.seed, finished=st.get("finished"), log=log,
                            error=None, restored=None, at_stop=None,  # what a restore here had said is void
                            adopted_from={"study": other.folder.root, "run": a.source_run,
                                          "status": a.source_status})


def _append_log(this: _Study, other: _Study, a: Adoption) -> str:
    """Append OTHER's log of the run (when it has one) to STUDY's, after a line that says so; STUDY's log."""
    log, src_log = this.folder.log_path(a.run), other.folder.log_path(a.source_run)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "ab") as f:
        held = ", held there as restored data" if a.restored else ""
        f.write(f"\n[{time.strftime('%Y-%m-%d %H:%M:%S')}] adopted from {other.folder.root} run {a.source_run} "
                f"({a.source_status}{held}); its log follows\n".encode())
        if os.path.isfile(src_log):
            with open(src_log, "rb") as s:
                shutil.copyfileobj(s, f)
    return log


def _describe(a: Adoption) -> str:
    what = {"done": "done", "paused": f"paused at epoch {a.epoch}", "pending": "trained; its test set is predicted "
            "by the next 'run'"}[a.status]
    return (f"{a.run} <- {a.source_run} ({a.source_status} there; {what}"
            + ("; with its test predictions" if a.predictions else "")
            + ("; its restored test-set rows, no checkpoint" if a.restored else "") + ")")


# ------------------------------------------------------------------------------------------ the command
def adopt(study: str, source: str, pairs: Optional[Sequence[str]] = None, dry_run: bool = False,
          definition: Optional[StudyDefinition] = None, echo: Optional[Callable[[str], None]] = None
          ) -> List[Adoption]:
    """Copy the matching runs of the study ``source`` into the study ``study`` (see the module docstring);
    the adoptions (with ``dry_run``: what would be adopted, nothing copied)."""
    from tqdm import tqdm

    echo = echo or tqdm.write
    this_folder, other_folder = StudyFolder(study), StudyFolder(source)
    if this_folder.root == other_folder.root:
        raise ValueError(f"--from names the study itself ({this_folder.root}): give the other study's folder")
    if not other_folder.exists():
        raise ValueError(f"{other_folder.root} holds no study (no study.json): --from names the study whose runs "
                         f"are copied")
    if not this_folder.exists() and definition is None:
        raise _missing_study(this_folder.root, other_folder.root)
    with this_folder, other_folder:
        if definition is not None:
            from nnunet_losses.nnunet.tools.study.grid import prepare_study

            prepare_study(this_folder, definition)
        this, other = _Study.load(this_folder), _Study.load(other_folder)
        differ = study_differences(this, other)
        if differ:
            raise ValueError(f"{other.folder.root} and {this.folder.root} differ in {'; '.join(differ)}: runs are "
                             f"shared only between studies of the same dataset, configuration, plans and schedule")
        arms = pair_arms(this.definition, other.definition, pairs)
        echo("arms: " + ", ".join(f"{a} <- " + "/".join(_pair_text(other.definition.arm(x), this.definition.arm(a))
                                                         for x in s) for a, s in arms.items())
             + "".join(f"; no match for {a.name}" for a in this.definition.arms if a.name not in arms))
        adoptions, unmatched, started = plan_adoptions(this, other, arms)
        for rid, why in unmatched.items():
            if why != "no arm there trains alike":
                echo(f"  not adopted: {rid}: {why}")
        verb = "would adopt" if dry_run else "adopted"
        bar = tqdm(adoptions, desc="adopting", unit="run", disable=None if len(adoptions) > 3 and not dry_run
                   else True)
        for a in bar:
            if not dry_run:
                copy_run(this, other, a)
            echo(f"  {verb} {_describe(a)}")
        echo(_summary(adoptions, unmatched, started, this.folder.root, verb))
    return adoptions


def _summary(adoptions: List[Adoption], unmatched: Dict[str, str], started: List[str], root: str, verb: str) -> str:
    count = {s: sum(a.status == s for a in adoptions) for s in ("done", "paused", "pending")}
    text = f"{verb} {len(adoptions)} runs: {count['done']} done, {count['paused']} paused"
    if count["pending"]:
        text += f", {count['pending']} trained (test set predicted by the next 'run')"
    text += f"; {len(unmatched)} runs of {root} have no match"
    if started:
        text += f"; {len(started)} started already (left alone)"
    return text
