"""The report of a study, rebuilt from its folder alone: ``nnunet_losses_compare`` on the test predictions
(``evaluation/test``) and on nnU-Net's cross-validation predictions (``evaluation/cv``), then ``report.md``,
``per_case.csv``, ``per_run.csv``, ``paired.csv``, ``ranking.csv``, ``run_level.csv``, ``screen.csv`` and
``plots/``.

The runs scored are the (fold, seed) runs that every arm still in the study finished (arms with a failed run
are listed, not scored), so every comparison is paired. Arms stopped by successive halving are scored in a
section of their own, at their stop, against the baseline's runs at the same epoch (``evaluation/test_epoch<E>``),
when the study has a test set.

Run-level p-values are Holm-corrected over one family per data source: on the test set every arm is compared
with the baseline once (at the end, or at the stop that ended it), and the family is every arm of the study
but the baseline, those not compared yet counted as p = 1; the cross-validation is a family of its own.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from typing import Callable, Dict, List, Optional, Tuple

from nnunet_losses._io import atomic_write_bytes
from nnunet_losses.nnunet.tools.commands import command_path
from nnunet_losses.nnunet.tools.study.definition import StudyDefinition
from nnunet_losses.nnunet.tools.study.csv_files import read_csv, write_csv
from nnunet_losses.nnunet.tools.study.folder import StudyFolder
from nnunet_losses.nnunet.tools.study.grid import progress_in_log, run_specs, screen_in_log, training_log
from nnunet_losses.nnunet.tools.study.run import predictions_complete
from nnunet_losses.nnunet.tools.study.statistics import holm_planned, run_level_tests, run_values, screen

__all__ = ["build_report", "scored_runs", "progress_rows", "PROGRESS_COLUMNS", "read_csv", "write_csv"]

COPIED = ("per_case.csv", "paired.csv", "ranking.csv")


def scored_runs(folder: StudyFolder, definition: StudyDefinition, specs: Dict[str, dict]):
    """(arms scored, [(fold, seed)] every one of them finished, arms left out with the reason)."""
    status = {rid: folder.read_state(rid).get("status") for rid in specs}
    left_out = {}
    for a in definition.arms:
        st = [status[r] for r, s in specs.items() if s["arm"] == a.name]
        if "stopped" in st:
            left_out[a.name] = "stopped by successive halving; scored at its stop, in a section of its own"
        elif "done" not in st:
            left_out[a.name] = "no finished run"
    arms = [a.name for a in definition.arms if a.name not in left_out]
    runs = [(f, s) for s in definition.seeds for f in definition.folds
            if all(status[rid] == "done" for rid, sp in specs.items()
                   if sp["arm"] in arms and sp["fold"] == f and sp["seed"] == s)]
    return arms, runs, left_out


def statistics_flags(arms: List[str], baseline: str) -> List[str]:
    """The compare tool's case-level statistics (paired table vs ``baseline``, ranking): only with two arms or more.

    A one-arm study (a pilot of nnU-Net's own trainer, say) is scored without them: the compare tool refuses
    ``--baseline`` and ``--ranking`` when there is no other method.

    >>> statistics_flags(["nnU-Net"], "nnU-Net")
    []
    >>> statistics_flags(["nnU-Net", "CWCD"], "nnU-Net")
    ['--baseline', 'nnU-Net', '--ranking']
    """
    return ["--baseline", baseline, "--ranking"] if len(arms) >= 2 else []


def stop_scored_runs(folder: StudyFolder, definition: StudyDefinition, specs: Dict[str, dict]):
    """{stop epoch: (arms: the baseline and the arms stopped there, [(fold, seed)] all of them predicted at
    that epoch)} for the halving stops that stopped an arm."""
    decisions = folder.read_halving()
    base = definition.baseline_arm
    states = {rid: folder.read_state(rid) for rid in specs}
    out = {}
    for epoch in sorted(decisions):
        stopped = [a.name for a in definition.arms if a.name in decisions[epoch]["stopped"]]
        if not stopped:
            continue
        arms = [base] + stopped
        runs = [(f, s) for s in definition.seeds for f in definition.folds
                if all({"prediction", "restored"} & set((states[rid].get("at_stop") or {}).get(str(epoch)) or {})
                       for rid, sp in specs.items() if sp["arm"] in arms and sp["fold"] == f and sp["seed"] == s)]
        out[epoch] = (arms, runs)
    return out


def _compare(folder: StudyFolder, record: dict, definition: StudyDefinition, arms, runs, specs, which: str,
             echo: Callable[[str], None], epoch: Optional[int] = None,
             dest: Optional[Callable[..., str]] = None, name: Optional[str] = None) -> Optional[str]:
    """``nnunet_losses_compare`` of ``arms`` over ``runs`` into ``evaluation/<name or which>``: ``test`` (the
    test predictions; at a halving stop with ``epoch``) or ``cv`` (nnU-Net's validation predictions)."""
    ds = record["dataset"]
    by = {(s["arm"], s["fold"], s["seed"]): s for s in specs.values()}
    if which != "cv":
        if not ds["test_images"]:
            return None
        dirs = {a: [folder.stop_prediction_dir(a, f, s, epoch) if epoch is not None else by[(a, f, s)]["prediction"]
                    for f, s in runs] for a in arms}
        ref, images = ds["test_labels"], ds["test_images"]
    else:
        dirs = {a: [os.path.join(by[(a, f, s)]["fold_dir"], "validation") for f, s in runs] for a in arms}
        ref, images = ds["gt"], None  # every training case; each fold predicted its own validation cases
    dest = dest or folder.path
    out = dest("evaluation", name or which)
    cmd = [command_path("nnunet_losses_compare"), "-d", definition.dataset, "-ref", ref, "-o", out, "--overwrite",
           "--no-progress", "--lesions", "--metrics", *definition.metrics,
           *statistics_flags(arms, definition.baseline_arm), "--overlays", "0", "-i", *[f"{a}={','.join(dirs[a])}" for a in arms]]
    if images:
        cmd += ["--images", images]
    if which == "cv":
        cmd.append("--allow-missing")
    env = dict(os.environ, **{k: v for k, v in record["nnunet_paths"].items() if v})
    os.makedirs(dest("logs"), exist_ok=True)
    log = dest("logs", f"compare_{name or which}.log")
    with open(log, "wb") as f:
        f.write(("$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"nnunet_losses_compare failed on the {which} predictions (exit {rc}); see {log}")
    return out


def _predicted_here(folder: StudyFolder, which: str, spec: dict, epoch: Optional[int]) -> bool:
    """Whether a run's predictions that evaluation ``which`` scores are in this study folder: its nnU-Net
    validation predictions (``cv``), its test-set predictions, or those at the halving stop ``epoch``; a test-set
    folder only when it holds every case."""
    if which == "cv":
        return os.path.isdir(os.path.join(spec["fold_dir"], "validation"))
    d = spec["prediction"] if epoch is None else folder.stop_prediction_dir(spec["arm"], spec["fold"], spec["seed"],
                                                                            epoch)
    return predictions_complete(d, spec)


def _evaluate(folder: StudyFolder, record: dict, definition: StudyDefinition, arms, runs, specs, which: str,
              echo: Callable[[str], None], epoch: Optional[int] = None,
              dest: Optional[Callable[..., str]] = None) -> Tuple[Optional[str], List[tuple]]:
    """(``evaluation/<which>``, the runs it scores): :func:`_compare` of the runs whose predictions are here;
    when the study was restored (``restored/<which>.csv``), those merged with the restored rows of the other
    runs and scored again as one evaluation (:func:`~nnunet_losses.nnunet.tools.compare.rescore`). A run with
    neither (a fold whose final validation was skipped, say) is left out, with a message."""
    from nnunet_losses.nnunet.tools.compare import rescore
    from nnunet_losses.nnunet.tools.compare.run import check_metrics
    from nnunet_losses.nnunet.tools.study.restore import restored_rows

    archived = restored_rows(folder, which)
    by = {(s["arm"], s["fold"], s["seed"]): s for s in specs.values()}
    here = {(a, r) for a in arms for r in runs if _predicted_here(folder, which, by[(a, *r)], epoch)}
    scored = [r for r in runs if all((a, r) in here or (a, *r) in archived for a in arms)]
    if len(scored) < len(runs):
        echo(f"  {which}: {len(runs) - len(scored)} of {len(runs)} run(s) have neither predictions here nor "
             f"restored rows of every arm: " + ("scored without them" if scored else "not scored"))
    whole = [r for r in scored if all((a, r) in here for a in arms)]  # every arm predicted here
    if whole == scored:
        return (_compare(folder, record, definition, arms, whole, specs, which, echo, epoch, dest) if whole
                else None), whole
    dest = dest or folder.path
    rows: List[dict] = []
    compared = [(arms, whole, f"{which}_here")] if whole else []
    for a in arms:  # an arm predicted here where the others are restored (a stopped arm trained to its stop again)
        alone = [r for r in scored if r not in whole and (a, r) in here]
        compared += [([a], alone, f"{which}_here_{a}")] if alone else []
    for c_arms, c_runs, name in compared:
        sub = _compare(folder, record, definition, c_arms, c_runs, specs, which, echo, epoch, dest, name=name)
        for r in read_csv(os.path.join(sub, "per_case.csv")):
            rows.append({**r, "fold": scored.index(c_runs[int(r["fold"])])})
    for r in scored:
        for a in arms:
            if (a, r) not in here:
                rows += [{**{k: v for k, v in x.items() if k not in ("run_fold", "run_seed")},
                          "fold": scored.index(r)} for x in archived[(a, *r)]]
    n_here = sum(1 for _, r in here if r in scored)
    # the compare tool's row order: the class rows case by case, then the "mean" rows
    rows.sort(key=lambda r: (r["class"] == "mean", r["case"], arms.index(r["method_name"]), r["fold"],
                             len(r["class"]), r["class"]))
    merged = dest("evaluation", f"{which}_merged.csv")
    os.makedirs(os.path.dirname(merged), exist_ok=True)
    write_csv(merged, rows, list(dict.fromkeys(k for r in rows for k in r)))
    out = dest("evaluation", which)
    two = len(arms) >= 2
    rescore(merged, out, metrics=check_metrics(definition.metrics, lesions=True), methods_order=arms,
            baseline=definition.baseline_arm if two else None, ranking=two,
            source=f"{n_here} of {len(arms) * len(scored)} (arm, run) pairs predicted here "
                   f"(evaluation/{which}_here*), the others restored (restored/{which}.csv)")
    return out, scored


def _fmt(v, d=4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def _plot_runs(path: str, values: Dict[str, Dict[tuple, float]], arms: List[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(arms), 3.2))
    for i, a in enumerate(arms):
        ys = list(values.get(a, {}).values())
        ax.plot([i] * len(ys), ys, "o", alpha=0.7)
        if ys:
            ax.hlines(sum(ys) / len(ys), i - 0.3, i + 0.3, color="k")
    ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right")
    ax.set_ylabel("mean Dice of a run")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _status_table(folder: StudyFolder, specs: Dict[str, dict]) -> List[str]:
    lines = ["| run | status | attempts | train s | predict s | note |", "|---|---|---|---|---|---|"]
    for rid in specs:
        st = folder.read_state(rid)
        sec = st.get("seconds") or {}
        note = st.get("reason") or st.get("error") or ""
        if st.get("status") == "failed":
            note = f"{note}; log {st.get('log')}"
        if st.get("adopted_from"):  # copied from another study by 'adopt'
            src = st["adopted_from"]
            note = "; ".join(n for n in (note, f"adopted from {src['study']}/{src['run']}") if n)
        if st.get("restored"):  # written by 'restore' from a collected report
            note = "; ".join(n for n in (note, f"restored from {os.path.basename(st['restored']['from'])}") if n)
        lines.append(f"| {rid} | {st.get('status')} | {st.get('attempts', 0)} | {_fmt(sec.get('train'), 0)} | "
                     f"{_fmt(sec.get('predict'), 0)} | {note} |")
    return lines


PROGRESS_COLUMNS = ["arm", "fold", "seed", "status", "epochs", "val_dice", "val_ema_dice", "attempts", "train_s",
                    "predict_s", "device", "log", "auto_resolved", "rerun_epoch", "lost_val_dice", "rerun_val_dice"]


def auto_resolved(fold_dir: str) -> Dict[str, object]:
    """What the run's ``"auto"`` options resolved to (``{"contour_width": 1}``), from the ``resolved`` entry of
    its ``loss_options.json``: the options whose ``<name>_source`` starts with ``auto``; ``{}`` when none or
    no file. Kept in ``per_run.csv`` so that runs held only as data still say it (``adopt`` compares it)."""
    from nnunet_losses.nnunet.maps.declaration import AUTO
    from nnunet_losses.nnunet.training import options as opt

    try:
        saved = opt.load_options(fold_dir)
    except ValueError:
        return {}
    resolved = (saved or {}).get("resolved")
    if not isinstance(resolved, dict):
        return {}
    return {k: resolved[k] for k in sorted(resolved) if not k.endswith("_source")
            and str(resolved.get(f"{k}_source", "")).startswith(AUTO)}


def rerun(restored: Dict[str, object], log: Dict[str, list]) -> Dict[str, float]:
    """A run restored without its checkpoint (``restored``: its state's record) that trained here again with
    the same seed and schedule: ``{"epoch": E, "lost": s, "again": t}``, the halving screen at the epoch E the
    lost training had reached, of the lost training (the value a decision there used) and of this one; ``{}``
    when the run has not trained past E here. A record restored from data that had it already keeps it.

    >>> rerun({"epochs": 2, "screen": {"2": 0.5}}, {"mean_fg_dice": [0.1, 0.3, 0.6]})
    {'epoch': 2, 'lost': 0.5, 'again': 0.2}
    """
    if restored.get("rerun"):
        return dict(restored["rerun"])
    epoch = int(restored.get("epochs") or 0)
    lost = (restored.get("screen") or {}).get(str(epoch))
    again = screen_in_log(log, epoch) if epoch and lost is not None else float("nan")
    return {} if math.isnan(again) else {"epoch": epoch, "lost": float(lost), "again": round(again, 6)}


def progress_rows(folder: StudyFolder, specs: Dict[str, dict]) -> Dict[tuple, dict]:
    """{(arm, fold, seed): the run's progress (``PROGRESS_COLUMNS``)}: its state and, from its newest
    checkpoint, the epochs trained, the halving screen at the last epoch (``val_dice``: nnU-Net's validation
    pseudo Dice, mean of the last ``SCREEN_EPOCHS`` epochs) and nnU-Net's EMA of it; for a run restored without
    its checkpoint and trained again here, the screen of both trainings where the lost one stopped
    (:func:`rerun`). Reads only, so it may run while the study trains (no lock)."""
    out: Dict[tuple, dict] = {}
    for rid, sp in specs.items():
        st = folder.read_state(rid)
        log = training_log(sp)
        epochs, ema, screen = progress_in_log(log)
        restored = st.get("restored") or {}
        again = rerun(restored, log)
        resolved = auto_resolved(sp["fold_dir"])
        if epochs < int(restored.get("epochs") or 0):
            # restored, and not trained here (yet) as far as its data went: what the data said, not a partial
            # retraining's earlier epoch (a snapshot of it, restored elsewhere, would lose the later screen)
            epochs, ema = restored["epochs"], restored.get("ema", float("nan"))
            screen = (restored.get("screen") or {}).get(str(epochs), float("nan"))
            resolved = resolved or restored.get("auto_resolved") or {}
        out[(sp["arm"], sp["fold"], sp["seed"])] = {
            "arm": sp["arm"], "fold": sp["fold"], "seed": sp["seed"], "status": st.get("status"),
            "epochs": epochs, "val_dice": screen, "val_ema_dice": ema,
            "attempts": st.get("attempts", 0), "train_s": (st.get("seconds") or {}).get("train"),
            "predict_s": (st.get("seconds") or {}).get("predict"),
            "log": _in_folder(folder, st.get("log") or sp["log"]), "device": st.get("device"),
            "auto_resolved": json.dumps(resolved, sort_keys=True) if resolved else "",
            "rerun_epoch": again.get("epoch", ""), "lost_val_dice": again.get("lost", ""),
            "rerun_val_dice": again.get("again", "")}
    return out


def _in_folder(folder: StudyFolder, path: str) -> str:
    """``path`` relative to the study folder when it lies inside it (``logs/<run>.log``), so that the report
    stays valid when the folder is moved, copied or committed; other paths as they are."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder.root))
    return path if rel.startswith(os.pardir) else rel


def _column_order(name: str):
    """test_* and cv_* first, then the stops by epoch: ``test_dice`` ... ``test_epoch5_dice`` ..."""
    which = name.rsplit("_", 1)[0]
    epoch = int(which[len("test_epoch"):]) if which.startswith("test_epoch") else -1
    return (epoch, name)


def _run_level(cases: Dict[str, List[dict]], evaluations: List[tuple], base: str,
               family_size: int) -> Dict[str, List[dict]]:
    """{evaluation: its run-level tests of the Dice} from each evaluation's per-case rows (``cases``),
    Holm-corrected over one family per data source (module docstring): the test set (``test`` and every
    ``test_epoch<E>``) and the cross-validation (``cv``), each of at least ``family_size`` tests."""
    tests = {which: run_level_tests(run_values(cases[which], runs, "dice"), base, arms)
             for which, _, arms, runs in evaluations}
    for family in ([w for w in tests if w != "cv"], [w for w in tests if w == "cv"]):
        rows = [t for w in family for t in tests[w]]
        m = max(family_size, len(rows))
        for t, p in zip(rows, holm_planned([t["p_value"] for t in rows], m)):
            t["p_holm"], t["family_size"] = float(p), m
    return tests


def _score(dest: Callable[..., str], out: str, rows: List[dict], which: str, label: str, arms: List[str], runs: List[tuple],
           base: str, tests: List[dict], per_run: Dict[tuple, dict], run_rows: List[dict],
           screen_rows: Optional[List[dict]]) -> List[str]:
    """The run- and case-level sections of one evaluation (``out``: ``evaluation/<which>``, its per-case
    ``rows``) with its run-level ``tests``; fills ``per_run`` (``<which>_<metric>`` columns), ``run_rows`` and ``screen_rows`` (unless
    None). Returns the markdown."""
    for metric in ("dice",) + tuple(m for m in ("precision", "recall") if m in rows[0]):
        for arm, by in run_values(rows, runs, metric).items():
            for (f, s), v in by.items():
                per_run[(arm, f, s)][f"{which}_{metric}"] = v
    values = run_values(rows, runs, "dice")
    for t in tests:
        run_rows.append({"evaluation": which, "metric": "dice", **t})
    n = len(runs)
    m = tests[0]["family_size"] if tests else 0
    family = "cross-validation" if which == "cv" else "test set, at the end or at the halving stop that ended it"
    md = [f"## Run level, {label}: does training with this loss change the Dice?", "",
          f"One value per run: the mean Dice over the cases and foreground classes of one (fold, seed) "
          f"training; {n} runs per arm, paired with {base}'s run of the same fold and seed. Two-sided "
          f"Wilcoxon signed-rank test over the runs, Holm's correction over {m} arms (every arm the study "
          f"compares with {base} on this data, {family}; those not compared yet count as p = 1). This level "
          f"includes training randomness: it supports sentences about *the loss* (\"training with X gives a "
          f"higher Dice on this dataset\"). The smallest p a test can reach with n runs is 2/2^n.", "",
          "| arm | mean Dice of the runs | difference to the baseline | runs better / equal / worse | p | "
          "p (Holm) | smallest reachable p |", "|---|---|---|---|---|---|---|"]
    for arm in arms:
        mean = [v for v in values.get(arm, {}).values() if not math.isnan(v)]
        t = next((t for t in tests if t["arm"] == arm), None)
        cells = ["(baseline)", "", "", "", ""] if t is None else [
            f"{t['mean_diff']:+.4f}", f"{t['better']} / {t['equal']} / {t['worse']}", _fmt(t["p_value"], 3),
            _fmt(t["p_holm"], 3), _fmt(t["smallest_p"], 3)]
        md.append(f"| {arm} | {_fmt(sum(mean) / len(mean) if mean else float('nan'))} | " + " | ".join(cells)
                  + " |")
    _plot_runs(dest("plots", f"runs_{which}_dice.png"), values, arms,
               f"mean Dice per run ({label.split(' (')[0]})")
    md += ["", f"![runs](plots/runs_{which}_dice.png)", "",
           f"## Case level, {label}: do these trained models differ on cases like these?", "",
           "The compare tool's paired comparison against the baseline: the models are fixed and the cases are "
           "resampled (bootstrap interval, Wilcoxon over (case, run) pairs, Holm over arms and classes). It "
           "supports sentences about *these models* only, not about the loss: a second training could rank "
           "them otherwise.", ""]
    summary = os.path.join(out, "summary.md")
    if os.path.isfile(summary):
        with open(summary) as f:
            text = f.read()
        for title in ("Paired differences: Dice", "Ranking: Dice"):
            block = next((b for b in text.split("\n## ") if b.startswith(title)), None)
            if block:
                md += ["### " + block.strip().replace("\n## ", "\n### "), ""]
    md += [f"Full tables: `evaluation/{which}/summary.md`.", ""]
    if screen_rows is not None:
        screen_rows += [{"evaluation": which, **r} for r in screen(rows, runs, base)]
    return md


def build_report(folder: StudyFolder, echo: Callable[[str], None] = print, evaluate: bool = True,
                 out_dir: Optional[str] = None) -> str:
    """Evaluate (unless ``evaluate=False``: reuse ``evaluation/``) and write the report; its path.

    ``out_dir``: write the report, its files and ``evaluation/`` there instead of into the study folder,
    which is then only read; that needs no lock, so it gives a snapshot of a study that is still training
    (state files are replaced atomically; a run counts as done, or as predicted at a stop, only after its
    predictions are written)."""
    dest = (lambda *parts: os.path.join(out_dir, *parts)) if out_dir else folder.path
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    record = folder.read_study()
    definition = StudyDefinition.from_json(record["definition"])
    specs = run_specs(folder, record, definition)
    arms, runs, left_out = scored_runs(folder, definition, specs)
    base = definition.baseline_arm
    md = [f"# Study {os.path.basename(folder.root)}", "",
          f"Dataset {record['dataset']['name']}, configuration {definition.configuration}, plans {definition.plans}; "
          f"arms {', '.join(a.name for a in definition.arms)} (baseline {base}); folds {definition.folds}; "
          f"seeds {definition.seeds}; schedule {record['schedule']['epochs'] or 'nnU-Net default'} epochs x "
          f"{record['schedule']['iterations'] or 'default'} iterations. Versions: "
          + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + ".", ""]
    for a in definition.arms:
        md.append(f"- **{a.name}**: `{a.trainer}`" + (f" with options `{a.options}`" if a.options else "")
                  + (f" (not scored: {left_out[a.name]})" if a.name in left_out else ""))
    md += ["", "## Runs", "", *_status_table(folder, specs), ""]
    sources = {}
    sections: list = []  # in page order: markdown lines, or an evaluation (which, label, arms, runs) to score
    if base in left_out:
        sections.append([f"The baseline {base} has no finished run: nothing is compared yet.", ""])
    elif not runs:
        sections.append(["No (fold, seed) run is finished by every scored arm yet: nothing is compared.", ""])
    else:
        for which in ("test", "cv"):
            try:
                out, e_runs = _evaluate(folder, record, definition, arms, runs, specs, which, echo, dest=dest) \
                    if evaluate else (dest("evaluation", which), runs)
            except RuntimeError as e:
                if which == "test":
                    raise
                # the cross-validation is a second view: a fold with a single validation case (say) leaves
                # it out, with the reason, instead of the whole report
                echo(f"  cross-validation not scored: {e}")
                sections.append([f"Cross-validation not scored: {e}.", ""])
                continue
            if out and os.path.isfile(os.path.join(out, "per_case.csv")):
                sources[which] = out
                label = "test set" if which == "test" else "cross-validation (each fold's own validation cases)"
                sections.append((which, label, arms, e_runs))
    stops = stop_scored_runs(folder, definition, specs)
    for epoch, (stop_arms, stop_runs) in stops.items():
        which = f"test_epoch{epoch}"
        sections.append([f"## Arms stopped by successive halving after epoch {epoch} of "
                         f"{record['schedule']['epochs'] or 'the default'}, scored at their stop", "",
                         f"{', '.join(stop_arms[1:])} stopped after epoch {epoch}; their runs and {base}'s predicted "
                         f"the test set with their checkpoint at that epoch. These values describe the losses **after "
                         f"{epoch} epochs** (a slow start shows here), not after the full schedule.", ""])
        if not stop_runs:
            sections.append(["No (fold, seed) run has its predictions at this stop for every one of these arms yet.",
                             ""])
            continue
        out, stop_runs = _evaluate(folder, record, definition, stop_arms, stop_runs, specs, which, echo, epoch, dest) \
            if evaluate else (dest("evaluation", which), stop_runs)
        if out and os.path.isfile(os.path.join(out, "per_case.csv")):
            sources[which] = out
            sections.append((which, f"test set at epoch {epoch}", stop_arms, stop_runs))
    evaluations = [s for s in sections if isinstance(s, tuple)]
    cases = {which: read_csv(os.path.join(out, "per_case.csv")) for which, out in sources.items()}
    tests = _run_level(cases, evaluations, base, family_size=len(definition.arms) - 1)
    per_run = progress_rows(folder, specs)
    screen_rows: List[dict] = []
    run_rows: List[dict] = []
    for item in sections:
        if isinstance(item, list):
            md += item
            continue
        which, label, e_arms, e_runs = item  # the screen: of the test set (else the cross-validation) and stops
        md += _score(dest, sources[which], cases[which], which, label, e_arms, e_runs, base, tests[which], per_run, run_rows,
                     screen_rows if which.startswith("test_epoch") or not screen_rows else None)
    flagged = [r for r in screen_rows if r["flag"]]
    md += ["## Degenerate-solution screen", "",
           "Per run and class: median over the cases of predicted / reference foreground volume, mean precision, "
           "predicted components touching no reference structure. Flagged: volume ratio outside [0.5, 2], or "
           "precision below half the baseline's in the same run (at the same epoch).", ""]
    if screen_rows:
        md += ["| evaluation | arm | fold | seed | class | volume ratio | precision | false components | flag |",
               "|---|---|---|---|---|---|---|---|---|"]
        for r in screen_rows:
            md.append(f"| {r['evaluation']} | {r['arm']} | {r['fold']} | {r['seed']} | {r['class']} | "
                      f"{_fmt(r['volume_ratio'], 2)} | {_fmt(r['precision'], 3)} | {r['false_components']} | "
                      f"{r['flag'] or 'ok'} |")
        md += ["", f"{len(flagged)} flagged row(s)." if flagged else "No run flagged.", ""]
    else:
        md += ["Nothing scored yet.", ""]
    # the files next to report.md
    main = sources.get("test") or sources.get("cv")
    for name in COPIED:
        src = os.path.join(main, name) if main else None
        if src and os.path.isfile(src):
            shutil.copyfile(src, dest(name))
    for which in [w for w in sources if w.startswith("test_epoch")]:  # the stops: per_case_test_epoch5.csv, ...
        for name in ("per_case.csv", "paired.csv"):
            src = os.path.join(sources[which], name)
            if os.path.isfile(src):
                shutil.copyfile(src, dest(name.replace(".csv", f"_{which}.csv")))
    per_run_cols = PROGRESS_COLUMNS + sorted(
        {k for r in per_run.values() for k in r if k.startswith(("test_", "cv_"))}, key=_column_order)
    write_csv(dest("per_run.csv"), list(per_run.values()), per_run_cols)
    write_csv(dest("run_level.csv"), run_rows, ["evaluation", "metric", "arm", "baseline", "n_runs",
                                                        "mean_diff", "better", "equal", "worse", "p_value", "p_holm",
                                                        "family_size", "smallest_p"])
    write_csv(dest("screen.csv"), screen_rows, ["evaluation", "arm", "fold", "seed", "class", "volume_ratio",
                                                       "precision", "false_components", "flag"])
    stop_files = [w for w in sources if w.startswith("test_epoch")]
    md += ["Files: `per_run.csv` (one row per run), `run_level.csv` (run-level tests), `per_case.csv`, "
           "`paired.csv`, `ranking.csv` (case level, " + ("test set" if "test" in sources else "cross-validation")
           + ")" + "".join(f", `per_case_{w}.csv`, `paired_{w}.csv`" for w in stop_files)
           + ", `screen.csv`, `plots/`, `evaluation/`.", ""]
    path = dest("report.md")
    atomic_write_bytes(path, "\n".join(md).encode())
    return path
