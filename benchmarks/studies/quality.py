"""docs/quality.md's study sections, README's "Which loss?" table and the two decisions docs/losses.md and
docs/trainers.md repeat, regenerated from committed study data.

    # copy a study's data into the repository (docs/data/studies/NAME/): its report is rebuilt first, in the
    # study folder, or, while the study trains (its folder is locked), as a snapshot in a temporary folder
    python -m benchmarks.studies.quality collect /work/evidence_runs/hippo/every_trainer hippocampus_every_trainer
    # rewrite every generated block of docs/quality.md, README.md, docs/losses.md, docs/trainers.md
    python -m benchmarks.studies.quality page
    python -m benchmarks.studies.quality page --check      # exit 1 where a page and the data disagree

A generated block sits between ``<!-- generated: KEY -->`` and ``<!-- /generated: KEY -->``; the text outside
the blocks is written by hand and compares no losses. Keys: ``study NAME`` (one per entry of ``STUDIES``),
``pilots`` and ``which-loss``, and in docs/losses.md and docs/trainers.md ``width-evidence`` and
``recall-weighted-evidence`` (the two decisions the grids make, in the words of docs/quality.md), and in
docs/trainers.md ``flagged-evidence`` (the other arms the degenerate-solution screen flags), and in docs/losses.md
and docs/quality.md ``twins-evidence`` (AsymFbeta against Tversky, nearly one loss: one test per dataset, so
its p needs no correction and the sentence says so).

Every sentence a block writes about a difference between losses names its level (**runs**: one value per
training, training randomness included; **cases**: the trained models fixed, the cases resampled), n, the
test and Holm's corrected p, and says a difference *holds* only where the corrected p is below 0.05; every
other difference reads "not established".
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from nnunet_losses.nnunet.tools.study.folder import StudyFolder
from nnunet_losses.nnunet.tools.study.grid import SCREEN_EPOCHS, halving_drop
from nnunet_losses.nnunet.tools.study.report import read_csv
from nnunet_losses.nnunet.tools.study.statistics import as_float, holm_planned, run_level_tests, smallest_p

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join("docs", "data", "studies")
ALPHA = 0.05
#: the files of a study's data folder besides study.json (each optional but per_run.csv), and those of the
#: arms scored at a successive-halving stop (``per_case_test_epoch5.csv``, ...)
FILES = ("per_run.csv", "run_level.csv", "per_case.csv", "paired.csv", "ranking.csv", "screen.csv", "halving.json")
STOP_FILES = ("per_case_test_epoch", "paired_test_epoch")


@dataclass(frozen=True)
class Study:
    name: str        # folder under docs/data/studies/ and benchmarks/studies/NAME.json
    title: str
    dataset: str     # short name in README's table


STUDIES = (
    Study("hippocampus_every_trainer", "Every trainer with its shipped defaults, MSD Hippocampus", "Hippocampus"),
    Study("drive_every_trainer", "Every trainer with its shipped defaults, DRIVE", "DRIVE"),
    Study("hippocampus_contour_width", "CWCD's contour width, MSD Hippocampus", "Hippocampus"),
)


@dataclass(frozen=True)
class Pilot:
    csv: str                 # docs/data/..., made by benchmarks.studies.pilot_curve extract
    dataset: str             # its ``dataset`` column
    iterations_per_epoch: int
    what: str
    per_run: str = ""        # the pilot study's per_run.csv (its test-set Dice), if kept


PILOTS = (
    Pilot("docs/data/pilot_curves.csv", "Hippocampus", 20, "15 epochs x 20 iterations (the first pilot)"),
    Pilot("docs/data/pilot_curve_hippocampus_50x50.csv", "Hippocampus-50x50", 50,
          "50 epochs x 50 iterations (the second pilot), stopped after epoch 26"),
    Pilot("docs/data/pilot_curve_drive.csv", "DRIVE", 50, "40 epochs x 50 iterations",
          per_run="docs/data/pilot_drive_per_run.csv"),
)

#: the pages with generated blocks; docs/losses.md and docs/trainers.md repeat the two decisions
PAGES = ("docs/quality.md", "README.md", "docs/losses.md", "docs/trainers.md")


# ----------------------------------------------------------------------------------------------- reading
def _f(v: float, d: int = 3) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.{d}f}"


def _p(v: float) -> str:
    if math.isnan(v):
        return "–"
    return f"{v:.2g}" if v < 0.001 else f"{v:.3f}"


class StudyData:
    """One study's committed data folder."""

    def __init__(self, root: str, study: Study):
        self.study = study
        self.dir = os.path.join(root, DATA, study.name)
        path = os.path.join(self.dir, "study.json")
        self.record = json.load(open(path)) if os.path.isfile(path) else None
        self.per_run = read_csv(os.path.join(self.dir, "per_run.csv"), missing_ok=True)
        level = [r for r in read_csv(os.path.join(self.dir, "run_level.csv"), missing_ok=True) if r["metric"] == "dice"]
        self.run_level = [r for r in level if r["evaluation"] == "test"]
        #: {stop epoch: run-level rows of the arms stopped there, against the baseline at that epoch}
        self.stop_level: Dict[int, List[dict]] = {}
        for r in level:
            if r["evaluation"].startswith("test_epoch"):
                self.stop_level.setdefault(int(r["evaluation"][len("test_epoch"):]), []).append(r)
        self.paired = [r for r in read_csv(os.path.join(self.dir, "paired.csv"), missing_ok=True) if r["metric"] == "dice"]
        self.screen = read_csv(os.path.join(self.dir, "screen.csv"), missing_ok=True)
        self.halving = StudyFolder(self.dir).read_halving()

    def runs_of(self, arm: str) -> List[dict]:
        """per_run.csv's rows of ``arm`` (one per run of the grid that the data has)."""
        return [r for r in self.per_run if r["arm"] == arm]

    @property
    def started(self) -> bool:
        return self.record is not None

    @property
    def definition(self) -> dict:
        return self.record["definition"]

    @property
    def baseline(self) -> str:
        d = self.definition
        return d.get("baseline") or next(iter(d["arms"]))

    @property
    def arms(self) -> List[str]:
        return list(self.definition["arms"])

    @property
    def recall_rule_arms(self) -> tuple:
        """The arms the recall-weighted rule, fixed before the data, decides: AsymFbeta and Tversky on DRIVE,
        where their rim of false positives was seen; none on other datasets (the general screen rule there)."""
        return tuple(a for a in RECALL_WEIGHTED if a in self.arms) if self.study.name.startswith("drive") else ()


# ----------------------------------------------------------------------------------------------- blocks
def _progress(data: StudyData) -> List[str]:
    d = data.definition
    counts: Dict[str, int] = {}
    for r in data.per_run:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    epochs = d.get("epochs")
    paused = sorted({int(r["epochs"]) for r in data.per_run if r["status"] == "paused" and r.get("epochs")})
    parts = []
    for status in ("done", "paused", "stopped", "running", "failed", "pending"):
        if counts.get(status):
            extra = ""
            if status == "paused" and paused:
                extra = " at epoch " + "/".join(map(str, paused)) + f" of {epochs} (successive halving)"
            if status == "stopped":
                extra = " by successive halving"
            parts.append(f"{counts[status]} {status}{extra}")
    v = data.record["versions"]
    folds = ", ".join(map(str, d["folds"]))
    seeds = ", ".join(map(str, d["seeds"]))
    lines = [f"**Progress** (data collected {data.record['collected']}): {len(data.per_run)} runs "
             f"({len(d['arms'])} arms x folds {folds} x seeds {seeds}); " + ", ".join(parts) + ". "
             f"Schedule {epochs} epochs x {d.get('iterations')} iterations, configuration `{d['configuration']}`, "
             f"plans `{d['plans']}`; nnunet-losses {v.get('nnunet-losses', '?')} (commit {str(v.get('commit'))[:7]}), "
             f"nnU-Net {v.get('nnunetv2', '?')}, torch {v.get('torch', '?')}. Data: `{DATA}/{data.study.name}/`.", ""]
    return lines


def _validation_table(data: StudyData) -> List[str]:
    """Per arm: runs with a checkpoint, epochs, mean validation pseudo Dice (a screen, not a test)."""
    by: Dict[str, List[dict]] = {}
    for r in data.per_run:
        if int(r.get("epochs") or 0) > 0:
            by.setdefault(r["arm"], []).append(r)
    if not by:
        return []
    lines = ["Validation pseudo Dice so far: the foreground Dice nnU-Net logs after each epoch on the fold's own "
             f"validation patches, the mean of its last {SCREEN_EPOCHS} epochs (the value successive halving "
             "screens by). One "
             "value per run at its last checkpoint, averaged over the runs; **a screen, not a test**: no "
             "difference in this table is established.", "",
             "| arm | runs with a checkpoint | epochs | mean validation pseudo Dice | min - max over the runs |",
             "|---|---|---|---|---|"]
    for arm in data.arms:
        rows = by.get(arm)
        if not rows:
            continue
        ep = sorted({int(r["epochs"]) for r in rows})
        vals = [as_float(r["val_dice"]) for r in rows]
        vals = [v for v in vals if not math.isnan(v)]
        mean = sum(vals) / len(vals) if vals else float("nan")
        rng = f"{min(vals):.3f} - {max(vals):.3f}" if vals else "–"
        lines.append(f"| {arm} | {len(rows)} | {ep[0]}" + (f"-{ep[-1]}" if len(ep) > 1 else "")
                     + f" | {_f(mean)} | {rng} |")
    return lines + [""]


def _halving_table(data: StudyData) -> List[str]:
    """The scores each halving decision used, with a decision it superseded (made with nnU-Net's EMA)."""
    if not data.halving:
        return []
    columns = []  # (header, scores, stopped, epoch)
    for e in sorted(data.halving, key=int):
        d = data.halving[e]
        if d.get("superseded"):
            old = d["superseded"]
            how = old.get("screen", "nnU-Net's EMA")
            columns.append((f"after epoch {e}, first decision ({how}; superseded)", old["scores"],
                            old["stopped"], e))
        columns.append((f"after epoch {e}", d["scores"], d["stopped"], e))
    lines = ["Successive halving decisions (the mean over each arm's runs of its validation pseudo Dice, the mean "
             f"of the last {SCREEN_EPOCHS} epochs up to the pause; a screen, not a test):", ""]
    if any(d.get("superseded") for d in data.halving.values()):
        lines += ["A first decision was taken with nnU-Net's EMA of the pseudo Dice (`0.9 ema + 0.1 x`, the value "
                  "nnU-Net picks its best checkpoint by). A few epochs into training it still weighs the first, "
                  "near-zero epochs, so it ranked arms by when they left zero rather than where they were. The "
                  f"decision was made again with the mean of the last {SCREEN_EPOCHS} epochs, from the runs' logged "
                  "history: "
                  "the arms the first decision stopped that this screen keeps continued, and the arms this screen "
                  "stops were stopped at that epoch (both decisions are in `halving.json`).", ""]
    lines += ["| arm | " + " | ".join(c[0] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    final_stop: Dict[str, str] = {}
    for e in sorted(data.halving, key=int):
        for a in data.halving[e]["stopped"]:
            final_stop.setdefault(a, e)
    for arm in data.arms:
        cells = []
        for _, scores, stopped, e in columns:
            score = scores.get(arm)
            if arm in final_stop and int(e) > int(final_stop[arm]):
                cells.append("")
            elif score is None and arm not in scores:
                cells.append("")
            else:
                cells.append(_f(as_float(score)) + (" (stopped)" if arm in stopped else ""))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    went_on = [(e, a) for e in sorted(data.halving, key=int) for a in data.halving[e].get("went_on") or []]
    if went_on:
        lines += ["", "Arms the screen would have stopped that had trained past the pause already, and went on: "
                  + ", ".join(f"{a} (epoch {e})" for e, a in went_on) + "."]
    return lines + [""]


def verdict(diff: float, p_holm: float) -> str:
    """"higher, holds" / "lower, holds" where Holm's p < 0.05, else "not established"."""
    if math.isnan(p_holm) or p_holm >= ALPHA or math.isnan(diff) or diff == 0:
        return "not established"
    return ("higher" if diff > 0 else "lower") + ", holds"


def _mean_test_dice(data: StudyData, arm: str, column: str = "test_dice") -> float:
    vals = [as_float(r.get(column)) for r in data.runs_of(arm)]
    vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _family(rows: List[dict]) -> int:
    """How many tests Holm corrected ``rows`` over: every arm the study compares with its baseline on the test
    set, at the end or at a halving stop (``family_size`` of run_level.csv; older data: the rows)."""
    return max([int(r["family_size"]) for r in rows if r.get("family_size")] + [len(rows)])


HOLM_FAMILY = ("Holm over the {m} arms the study compares with {base} on the test set, each once: at the end or "
               "at the halving stop that ended it; arms not compared yet count as p = 1")


def _stop_tables(data: StudyData) -> List[str]:
    """The arms stopped by successive halving, scored at their stop against the baseline at that epoch."""
    lines: List[str] = []
    epochs = data.definition.get("epochs")
    for epoch, rows in sorted(data.stop_level.items()):
        col = f"test_epoch{epoch}_dice"
        family = HOLM_FAMILY.format(m=_family(rows), base=data.baseline)
        lines += [f"**Arms stopped after epoch {epoch} of {epochs}, scored at their stop** (run level, test set; "
                  f"each run's checkpoint at epoch {epoch} paired with {data.baseline}'s at the same epoch; two-sided "
                  f"exact Wilcoxon signed-rank over the runs, {family}). This describes "
                  f"the losses after {epoch} epochs, where a slow start shows, not after the full schedule:", "",
                  "| arm | runs | mean test Dice at the stop | difference | runs better / equal / worse | p (Holm) | "
                  "result |", "|---|---|---|---|---|---|---|",
                  f"| {data.baseline} | {sum(1 for r in data.runs_of(data.baseline) if r.get(col))} | "
                  f"{_f(_mean_test_dice(data, data.baseline, col))} | (baseline at epoch {epoch}) | | | |"]
        for r in rows:
            diff, ph = as_float(r["mean_diff"]), as_float(r["p_holm"])
            lines.append(f"| {r['arm']} | {r['n_runs']} | {_f(_mean_test_dice(data, r['arm'], col))} | "
                         f"{diff:+.4f} | {r['better']} / {r['equal']} / {r['worse']} | {_p(ph)} | "
                         f"{verdict(diff, ph)} |")
        lines.append("")
    return lines


def run_level_sentences(data: StudyData) -> List[str]:
    """The study's run-level findings at the end of the schedule, one sentence each (dataset, level, n, test,
    corrected p in every one)."""
    if not data.run_level:
        return []
    k = _family(data.run_level)
    out = []
    where = f"{data.study.dataset}, at the end of the schedule"
    held = [r for r in data.run_level if verdict(as_float(r["mean_diff"]), as_float(r["p_holm"])) != "not established"]
    for r in held:
        out.append(f"{where}: training with {r['arm']} gives a "
                   f"{'higher' if as_float(r['mean_diff']) > 0 else 'lower'} mean test Dice than {r['baseline']} "
                   f"({as_float(r['mean_diff']):+.3f}; runs, n = {r['n_runs']}, two-sided Wilcoxon signed-rank, "
                   f"Holm over {k} arms: p = {_p(as_float(r['p_holm']))}).")
    if held:
        return out
    n = max(int(r["n_runs"]) for r in data.run_level)
    if 2 / 2 ** n >= 0.05:  # no exact two-sided test of n pairs can reach 0.05, before any correction
        return [f"{where}: only {n} run(s) per arm are finished so far, too few for a run-level difference to "
                f"hold (the smallest two-sided Wilcoxon p with n runs is 2/2^n = {_p(2 / 2 ** n)}); nothing is "
                f"established there yet."]
    reachable = best_reachable_holm(data)
    if reachable >= ALPHA:  # even the smallest p of n runs stays above 0.05 once corrected with the family
        return [f"{where}: only {n} runs per arm are finished so far, too few for a run-level difference to hold "
                f"yet: the smallest two-sided Wilcoxon p with n runs, 2/2^n = {_p(2 / 2 ** n)}, becomes at best "
                f"{_p(reachable)} after Holm over {k} arms beside the family's other tests as they stand; nothing "
                f"is established there yet."]
    ns = sorted({r["n_runs"] for r in data.run_level})
    best = min(as_float(r["p_holm"]) for r in data.run_level)
    return [f"{where}: no arm's mean test Dice differs from {data.baseline}'s at run level (n = {'/'.join(ns)} runs "
            f"per arm, two-sided Wilcoxon signed-rank, Holm over {k} arms: smallest corrected p = {_p(best)}): no "
            f"loss is established as better or worse than nnU-Net's default there."]


def best_reachable_holm(data: StudyData) -> float:
    """The smallest Holm-corrected p an end-of-schedule arm could have with the runs it has: its p at the
    floor of its n runs (2/2^n), the family's other tests (the test set at the end and at the halving stops)
    as they stand, arms not compared yet as p = 1."""
    family = data.run_level + [r for rows in data.stop_level.values() for r in rows]
    best = 1.0
    for i, r in enumerate(data.run_level):
        p = [as_float(x["p_value"]) for x in family]
        p[i] = smallest_p(int(r["n_runs"]))
        best = min(best, float(holm_planned(p, _family(family))[i]))
    return best


def _run_level_table(data: StudyData) -> List[str]:
    if not data.run_level:
        return ["**Run level, test set**: no (fold, seed) run is finished by every scored arm yet; nothing is "
                "compared.", ""]
    family = HOLM_FAMILY.format(m=_family(data.run_level), base=data.baseline)
    lines = [f"**Run level, test set** (does *training with the loss* change the Dice? One value per run: the "
             f"mean Dice over the test cases and foreground classes; each run paired with {data.baseline}'s run of "
             f"the same fold and seed; two-sided exact Wilcoxon signed-rank test over the runs, {family}; the "
             f"smallest p a test can reach with n runs is 2/2^n):", "",
             "| arm | runs | mean test Dice | difference | runs better / equal / worse | p | p (Holm) | "
             "smallest reachable p | result |", "|---|---|---|---|---|---|---|---|---|",
             f"| {data.baseline} | {sum(1 for r in data.runs_of(data.baseline) if r.get('test_dice'))} "
             f"| {_f(_mean_test_dice(data, data.baseline))} | (baseline) | | | | | |"]
    for r in data.run_level:
        diff, ph = as_float(r["mean_diff"]), as_float(r["p_holm"])
        lines.append(f"| {r['arm']} | {r['n_runs']} | {_f(_mean_test_dice(data, r['arm']))} | {diff:+.4f} | "
                     f"{r['better']} / {r['equal']} / {r['worse']} | {_p(as_float(r['p_value']))} | {_p(ph)} | "
                     f"{_p(as_float(r['smallest_p']))} | {verdict(diff, ph)} |")
    return lines + [""] + run_level_sentences(data) + [""]


def _case_level_table(data: StudyData) -> List[str]:
    rows = [r for r in data.paired if r["class"] != "mean"] or data.paired
    if not rows:
        return []
    lines = ["**Case level, test set** (do *these trained models* differ on cases like these? The models are "
             "fixed; each (case, run) pair is one observation; bootstrap interval of the mean difference, "
             "Wilcoxon signed-rank, Holm over arms and classes. It says nothing about a second training):", "",
             "| arm | class | pairs | mean difference [95% interval] | p (Holm) | result |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        diff, ph = as_float(r["mean_diff"]), as_float(r["p_holm"])
        lines.append(f"| {r['method']} | {r['class']} | {r['n']} | {diff:+.4f} [{as_float(r['ci_low']):+.4f}, "
                     f"{as_float(r['ci_high']):+.4f}] | {_p(ph)} | {verdict(diff, ph)} |")
    return lines + [""]


def _screen_table(data: StudyData) -> List[str]:
    if not data.screen:
        return []
    by: Dict[tuple, List[dict]] = {}
    for r in data.screen:
        by.setdefault((r.get("evaluation") or "test", r["arm"]), []).append(r)
    lines = ["**Degenerate-solution screen** (per run and class: median predicted / reference volume outside "
             "[0.5, 2], or precision below half the baseline's in the same run at the same epoch):", "",
             "| evaluated | arm | (run, class) rows | flagged | median volume ratio | mean precision | first reason |",
             "|---|---|---|---|---|---|---|"]
    order = sorted({w for w, _ in by}, key=lambda w: (w != "test", w))
    for which in order:
        label = "after training" if which == "test" else f"at epoch {which[len('test_epoch'):]}"
        for arm in data.arms:
            rows = by.get((which, arm), [])
            if not rows:
                continue
            flagged = [r for r in rows if r["flag"]]
            ratios = [v for v in (as_float(r["volume_ratio"]) for r in rows) if not math.isnan(v)]
            prec = [v for v in (as_float(r["precision"]) for r in rows) if not math.isnan(v)]
            median = statistics.median(ratios) if ratios else float("nan")
            lines.append(f"| {label} | {arm} | {len(rows)} | {len(flagged)} | {_f(median, 2)} | "
                         f"{_f(sum(prec) / len(prec) if prec else float('nan'))} | "
                         f"{flagged[0]['flag'] if flagged else ''} |")
    return lines + [""]


# ----------------------------------------------------------------------------------------------- decisions
#: the width study's arm with the shipped default and its fixed-width arms
WIDTH_DEFAULT = "CWCD_auto"
#: the losses whose degenerate-solution screen decides between a docs warning and a variant with CE
RECALL_WEIGHTED = ("AsymFbeta", "Tversky")


def _run_values(data: StudyData, column: str = "test_dice") -> Dict[str, Dict[tuple, float]]:
    out: Dict[str, Dict[tuple, float]] = {}
    for r in data.per_run:
        v = as_float(r.get(column))
        if not math.isnan(v):
            out.setdefault(r["arm"], {})[(r["fold"], r["seed"])] = v
    return out


def _width_outcome(data: StudyData) -> Optional[dict]:
    """The contour-width rule's inputs and result: ``{"done", "tests", "better"}`` (``tests`` None
    until every width arm and ``"auto"`` has 10 runs with a test Dice); None for a study without width arms."""
    widths = [a for a in data.arms if a.startswith("CWCD_") and a != WIDTH_DEFAULT]
    if WIDTH_DEFAULT not in data.arms or not widths:
        return None
    values = _run_values(data)
    done = {a: len(values.get(a, {})) for a in [WIDTH_DEFAULT] + widths}
    if any(n < 10 for n in done.values()):
        return {"done": done, "tests": None, "better": None}
    tests = run_level_tests(values, WIDTH_DEFAULT, [WIDTH_DEFAULT] + widths)
    better = [t for t in tests if verdict(t["mean_diff"], t["p_holm"]) == "higher, holds"]
    return {"done": done, "tests": tests, "better": max(better, key=lambda t: t["mean_diff"]) if better else None}


def _width_sentence(outcome: dict) -> str:
    """The width decision in one sentence, with its level, n, test and corrected p."""
    tests, best = outcome["tests"], outcome["better"]
    if tests is None:
        return ("Not decided yet: finished runs with a test Dice: "
                + ", ".join(f"{a} {n}" for a, n in outcome["done"].items()) + " (10 each needed).")
    if best:
        return (f"**Decision: change.** {best['arm']} gives a higher test Dice than `\"auto\"` "
                f"({best['mean_diff']:+.3f}; runs, n = {best['n_runs']}, Wilcoxon, Holm over {len(tests)} "
                f"widths: p = {_p(best['p_holm'])}): the rule's choice is not the best width on this dataset.")
    n, family = min(t["n_runs"] for t in tests), len(tests)
    top = max(tests, key=lambda t: t["mean_diff"])
    closest = (f"the closest, {top['arm']}: {top['mean_diff']:+.3f}, p = {_p(top['p_holm'])}"
               if top["mean_diff"] > 0 else "none is higher on average")
    text = (f"**Decision: keep `\"auto\"`.** No fixed width gives a higher test Dice than it at run level "
            f"(runs, n = {n}, two-sided Wilcoxon signed-rank, Holm over {family} widths; {closest}).")
    lower = [t for t in tests if verdict(t["mean_diff"], t["p_holm"]) == "lower, holds"]
    if not lower:
        return text + (" This says the rule's choice is not shown to be worse than a fixed width here, not that "
                       "the width matters.")
    named = " and ".join(f"{t['arm']} ({t['mean_diff']:+.3f}, p = {_p(t['p_holm'])})" for t in lower)
    return text + f" {named} give{'s' if len(lower) == 1 else ''} a lower one (same level and test)."


def width_decision(data: StudyData) -> List[str]:
    """The contour-width rule, decided by the rule fixed before the data: CWCD with ``"auto"`` against each
    fixed width at run level (test Dice, paired by fold and seed, two-sided exact Wilcoxon signed-rank, Holm
    over the fixed widths). A fixed width higher than ``"auto"`` with a corrected p below 0.05 changes the
    rule; otherwise ``"auto"`` stays."""
    outcome = _width_outcome(data)
    if outcome is None:
        return []
    head = ["**The width decision** (rule fixed before the data: `\"auto\"` stays unless a fixed width gives a "
            "higher test Dice than it at run level with Holm's p below 0.05):", ""]
    if outcome["tests"] is None:
        return head + [_width_sentence(outcome), ""]
    lines = head + [f"| fixed width | runs | difference to {WIDTH_DEFAULT} | runs better / equal / worse | "
                    "p (Holm) | result |", "|---|---|---|---|---|---|"]
    for t in outcome["tests"]:
        lines.append(f"| {t['arm']} | {t['n_runs']} | {t['mean_diff']:+.4f} | {t['better']} / {t['equal']} / "
                     f"{t['worse']} | {_p(t['p_holm'])} | {verdict(t['mean_diff'], t['p_holm'])} |")
    return lines + ["", _width_sentence(outcome), ""]


def _last_screened(data: StudyData, arm: str) -> List[List[dict]]:
    """``arm``'s screen rows per run, each run at its last scored evaluation (after training, else at its
    halving stop)."""
    by_run: Dict[tuple, List[dict]] = {}
    for r in data.screen:
        if r["arm"] == arm:
            by_run.setdefault((r["fold"], r["seed"]), []).append(r)
    picked = []
    for rows in by_run.values():
        final = [r for r in rows if (r.get("evaluation") or "test") == "test"]
        picked.append(final or [r for r in rows if r.get("evaluation") == max(
            (x.get("evaluation") for x in rows), key=lambda w: int(w[len("test_epoch"):]))])
    return picked


def _flag_counts(picked: List[List[dict]]) -> tuple:
    """(runs screened, runs with a flagged class, median volume ratio, mean precision) of one arm's runs, each
    given by its screen rows at one evaluation (:func:`_last_screened`)."""
    flagged = sum(1 for rows in picked if any(r["flag"] for r in rows))
    ratios = [v for rows in picked for v in (as_float(r["volume_ratio"]) for r in rows) if not math.isnan(v)]
    prec = [v for rows in picked for v in (as_float(r["precision"]) for r in rows) if not math.isnan(v)]
    return (len(picked), flagged, statistics.median(ratios) if ratios else float("nan"),
            sum(prec) / len(prec) if prec else float("nan"))


def _recall_weighted_rows(data: StudyData) -> List[tuple]:
    """(arm, runs screened, runs flagged, median volume ratio, mean precision, decision) per recall-weighted
    arm of the study, by the rule fixed before the data."""
    rows = []
    for arm in data.recall_rule_arms:
        n, flagged, ratio, prec = _flag_counts(_last_screened(data, arm))
        decision = "not decided yet (10 runs needed)" if n < 10 else (
            "variant with CE, and a warning" if flagged * 2 >= n else "a note in the docs")
        rows.append((arm, n, flagged, ratio, prec, decision))
    return rows


def recall_weighted_decision(data: StudyData) -> List[str]:
    """The recall-weighted losses (AsymFbeta, and Tversky, nearly the same loss), decided by the rule fixed
    before the data: a variant with CE when at least half of an arm's screened runs are flagged (10 runs
    screened), else a note in the docs."""
    rows = _recall_weighted_rows(data)
    if not rows:
        return []
    lines = ["**The recall-weighted losses** (rule fixed before the data: if at least half of an arm's 10 runs are "
             "flagged by the degenerate-solution screen, each run at its last scored epoch, the package adds a "
             "variant with CE, as nnU-Net pairs Dice with CE, and the docs warn; otherwise the docs say what the "
             "screen found):", "",
             "| arm | runs screened | runs flagged | median volume ratio | mean precision | decision |",
             "|---|---|---|---|---|---|"]
    for arm, n, flagged, ratio, prec, decision in rows:
        lines.append(f"| {arm} | {n} | {flagged} | {_f(ratio, 2)} | {_f(prec)} | {decision} |")
    return lines + [""]


def _evaluated(which: str, whose: str = "its") -> str:
    """How an evaluation reads in a sentence: "test" is after training, "test_epochN" at the run's halving stop."""
    return "after training" if which == "test" else f"at {whose} stop after epoch {which[len('test_epoch'):]}"


def flagged_arms(data: StudyData) -> List[dict]:
    """The arms besides nnU-Net's (and, on DRIVE, the recall-weighted losses, which have their own rule) with
    at least half of their screened runs flagged, each run at its last scored evaluation; with nnU-Net's runs
    flagged at the same evaluation for comparison. ``runs`` of ``of`` runs are screened: the warning waits for
    all of them."""
    out = []
    for arm in data.arms:
        if arm == data.baseline or arm in data.recall_rule_arms:
            continue
        picked = _last_screened(data, arm)
        n, flagged, ratio, prec = _flag_counts(picked)
        if not n or flagged * 2 < n:
            continue
        where = sorted({rows[0].get("evaluation") or "test" for rows in picked},
                       key=lambda w: (w != "test", w))
        base: Dict[tuple, bool] = {}
        for r in data.screen:
            if r["arm"] == data.baseline and (r.get("evaluation") or "test") in where:
                key = (r.get("evaluation") or "test", r["fold"], r["seed"])
                base[key] = base.get(key, False) or bool(r["flag"])
        out.append({"arm": arm, "evaluated": " / ".join(_evaluated(w) for w in where), "runs": n,
                    "of": len(data.runs_of(arm)) or n,
                    "flagged": flagged, "ratio": ratio, "precision": prec,
                    "baseline": (sum(base.values()), len(base))})
    return out


FLAGGED_RULE = ("rule written after the Hippocampus grid's first screen showed such arms: an arm with at least "
                "half of its screened runs flagged, each run at its last scored evaluation, gets a warning in "
                "docs/trainers.md with these numbers, and no variant: at a halving stop the screen cannot tell a "
                "degenerate solution from a slow start (compare nnU-Net's runs at the same epoch), and the arm "
                "was not trained further")


def flagged_decision(data: StudyData) -> List[str]:
    """The other arms the degenerate-solution screen flags, with the rule that gives them a docs warning."""
    if not data.screen:
        return []
    besides = " besides the recall-weighted losses" if data.recall_rule_arms else ""
    lines = [f"**Other arms the screen flags{besides}** ({FLAGGED_RULE}):", ""]
    rows = flagged_arms(data)
    if not rows:
        return lines + ["None so far.", ""]
    lines += [f"| arm | evaluated | runs flagged | median volume ratio | mean precision | {data.baseline}'s runs "
              "flagged there |", "|---|---|---|---|---|---|"]
    for r in rows:
        so_far = f" ({r['runs']} of {r['of']} runs screened so far)" if r["runs"] < r["of"] else ""
        lines.append(f"| {r['arm']} | {r['evaluated']} | {r['flagged']} of {r['runs']}{so_far} | "
                     f"{_f(r['ratio'], 2)} | {_f(r['precision'])} | {r['baseline'][0]} of {r['baseline'][1]} |")
    return lines + [""]


def _study(name: str) -> Study:
    return next(s for s in STUDIES if s.name == name)


def width_evidence_block(root: str) -> str:
    """docs/losses.md's and docs/trainers.md's paragraph on the contour-width default: the width study's
    decision (or how far it is), the same sentence docs/quality.md prints."""
    study = _study("hippocampus_contour_width")
    data = StudyData(root, study)
    outcome = _width_outcome(data) if data.started else None
    where = (f"**The contour-width study** (CWCD with `\"auto\"` against 1, 2, 3 and 6 erosions on MSD "
             f"Hippocampus, 5 folds x 2 seeds; data `{DATA}/{study.name}/`, rule and table in "
             f"docs/quality.md): ")
    if outcome is None:
        return where + "not started yet; until it decides, `\"auto\"` rests on the rule's reasoning, not on a " \
                       "measured gain.\n"
    text = _width_sentence(outcome)
    if outcome["tests"] is None:
        text = text[0].lower() + text[1:]
        text += " Until it decides, `\"auto\"` rests on the rule's reasoning, not on a measured gain."
    return where + text + "\n"


def recall_weighted_evidence_block(root: str) -> str:
    """docs/losses.md's and docs/trainers.md's paragraph on AsymFbeta and Tversky: what the DRIVE grid's
    degenerate-solution screen found and the decision the rule gives, as in docs/quality.md."""
    study = _study("drive_every_trainer")
    data = StudyData(root, study)
    rows = _recall_weighted_rows(data) if data.started else []
    where = (f"**What the DRIVE grid's degenerate-solution screen found** (each run at its last scored "
             f"evaluation: median predicted / reference volume outside [0.5, 2], or precision below half of "
             f"nnU-Net's run of the same fold, seed and epoch; data `{DATA}/{study.name}/`, rule in docs/quality.md): ")
    if not rows:
        return where + "not started yet.\n"
    parts = []
    for arm, n, flagged, ratio, prec, decision in rows:
        if n < 10:
            parts.append(f"{arm}: not decided yet ({n} of 10 runs screened)")
        else:
            parts.append(f"{arm}: {flagged} of {n} runs flagged (median volume ratio {_f(ratio, 2)}, mean "
                         f"precision {_f(prec)}); decision: {decision}")
    return where + "; ".join(parts) + ".\n"


#: two shipped losses that are nearly one (F-beta with beta = 1.5 is Tversky with 0.308 / 0.692; docs/losses.md 3.4)
TWINS = ("AsymFbeta", "Tversky")


def _scored_column(row: dict) -> str:
    """per_run.csv's test Dice column of a finished run's last scored evaluation: after training, or at its
    halving stop."""
    return "test_dice" if row["status"] == "done" else f"test_epoch{row['epochs']}_dice"


def _evaluation_label(column: str) -> str:
    """_evaluated for a per_run.csv column ("test_dice", "test_epochN_dice") that several runs share."""
    return _evaluated(column[:-len("_dice")], "their")


def twins_sentence(data: StudyData) -> Optional[str]:
    """AsymFbeta against Tversky on one dataset, each run at its last scored evaluation: run level, paired by
    fold and seed, one two-sided exact Wilcoxon signed-rank test (no family: one test per dataset, added after
    the Hippocampus grid's data). None for a study without both arms."""
    a, b = TWINS
    rows = {arm: {(r["fold"], r["seed"]): r for r in data.runs_of(arm)} for arm in TWINS}
    if not rows[a] or not rows[b]:
        return None
    where = f"{data.study.dataset}: "
    finished = {arm: sum(r["status"] in ("done", "stopped") for r in rows[arm].values()) for arm in TWINS}
    if any(finished[arm] < len(rows[arm]) for arm in TWINS):
        return where + "not compared yet (runs finished: " + ", ".join(
            f"{arm} {finished[arm]} of {len(rows[arm])}" for arm in TWINS) + ")"
    columns = {arm: {_scored_column(r) for r in rows[arm].values()} for arm in TWINS}
    if any(len(c) > 1 for c in columns.values()) or columns[a] != columns[b]:
        return where + "not comparable (" + ", ".join(
            f"{arm} scored " + " and ".join(sorted(_evaluation_label(c) for c in columns[arm])) for arm in TWINS) + ")"
    (column,) = columns[a]
    values = {arm: {k: as_float(r.get(column)) for k, r in rows[arm].items()} for arm in TWINS}
    values = {arm: {k: v for k, v in vs.items() if not math.isnan(v)} for arm, vs in values.items()}
    pairs = sorted(set(values[a]) & set(values[b]))
    if len(pairs) < 10:
        return where + f"not compared yet ({len(pairs)} of 10 pairs scored)"
    (t,) = run_level_tests(values, b, [a])
    mean = {arm: statistics.fmean(values[arm][k] for k in pairs) for arm in TWINS}
    said = verdict(t["mean_diff"], t["p_value"])
    result = "no difference established" if said == "not established" else f"{a} {said}"
    return (where + f"{_evaluation_label(column)}, mean test Dice {mean[a]:.3f} ({a}) and {mean[b]:.3f} ({b}), "
            f"difference {t['mean_diff']:+.4f}, {a} higher / equal / lower in {t['better']} / {t['equal']} / "
            f"{t['worse']} runs (run level, n = {t['n_runs']} pairs, two-sided exact Wilcoxon signed-rank: "
            f"p = {_p(t['p_value'])}): {result}")


def twins_evidence_block(root: str) -> str:
    """docs/losses.md's and docs/quality.md's sentence on whether AsymFbeta and Tversky train alike, per dataset."""
    found = [twins_sentence(StudyData(root, s)) for s in STUDIES if s.name.endswith("every_trainer")]
    found = [f for f in found if f]
    head = (f"**{TWINS[0]} against {TWINS[1]}** (each run at its last scored evaluation; one test per dataset, "
            f"added after the Hippocampus grid's data, outside the grids' Holm families): ")
    return head + ("; ".join(found) if found else "not started yet") + ".\n"


def flagged_evidence_block(root: str) -> str:
    """docs/trainers.md's warnings: per every-trainer study, the arms :func:`flagged_arms` lists."""
    parts = []
    for study in (s for s in STUDIES if s.name.endswith("every_trainer")):
        data = StudyData(root, study)
        if not data.started or not data.screen:
            parts.append(f"{study.dataset}: not screened yet")
            continue
        rows = flagged_arms(data)
        warned = [r for r in rows if r["runs"] == r["of"]]
        waiting = [r for r in rows if r["runs"] < r["of"]]
        text = "; ".join(
            f"{r['arm']} {r['evaluated']}, {r['flagged']} of {r['runs']} runs flagged (median volume ratio "
            f"{_f(r['ratio'], 2)}, mean precision {_f(r['precision'])}; {data.baseline}'s runs there: "
            f"{r['baseline'][0]} of {r['baseline'][1]})" for r in warned) \
            or ("no warning yet" if waiting else "no arm flagged so far")
        if waiting:  # a warning rests on all of an arm's runs; a partial count is shown, not acted on
            text += "; not decided yet: " + ", ".join(
                f"{r['arm']} ({r['flagged']} of {r['runs']} runs flagged, {r['runs']} of {r['of']} screened)"
                for r in waiting)
        parts.append(f"{study.dataset}: {text}")
    return ("**Warnings from the degenerate-solution screen** (per run: median predicted / reference volume outside "
            "[0.5, 2], or precision below half of nnU-Net's run of the same fold, seed and epoch; data "
            f"`{DATA}/`, tables in docs/quality.md; {FLAGGED_RULE}): " + ". ".join(parts) + ".\n")


def rerun_lines(data: StudyData) -> List[str]:
    """Runs restored without their checkpoint and trained again with the same seed and schedule (per_run.csv's
    ``rerun_epoch``, ``lost_val_dice``, ``rerun_val_dice``): how far the rerun's halving screen lies from the
    lost training's, and the decision at that epoch with the reruns' values in place of the lost ones."""
    lines: List[str] = []
    groups: Dict[int, List[dict]] = {}
    for r in data.per_run:
        if not math.isnan(as_float(r.get("rerun_epoch"))):
            groups.setdefault(int(as_float(r["rerun_epoch"])), []).append(r)
    for epoch, rows in sorted(groups.items()):
        d = [as_float(r["rerun_val_dice"]) - as_float(r["lost_val_dice"]) for r in rows]
        who = "run restored without its" if len(rows) == 1 else "runs restored without their"
        text = (f"**Same-seed reruns after epoch {epoch}** ({len(rows)} {who} checkpoint "
                f"and trained again with the same seed and schedule; descriptive, not a test): validation pseudo "
                f"Dice at epoch {epoch} of the rerun minus that of the lost training: median {statistics.median(d):+.4f}, "
                f"median |difference| {statistics.median(abs(x) for x in d):.4f}, largest {max(abs(x) for x in d):.4f}.")
        decision = data.halving.get(epoch) or {}
        scores = {a: (float("-inf") if v is None else float(v)) for a, v in (decision.get("scores") or {}).items()}
        if scores:
            runs = {a: len(data.runs_of(a)) for a in scores}
            moved = dict(scores)
            for r, x in zip(rows, d):
                if r["arm"] in moved and runs[r["arm"]]:
                    moved[r["arm"]] += x / runs[r["arm"]]
            again = halving_drop(moved, data.baseline)
            same = sorted(again) == sorted(decision.get("stopped") or [])
            text += (f" With these reruns' values in place of the lost ones, the decision after epoch {epoch} "
                     + ("stops the same arms." if same else
                        f"would stop {', '.join(again) or 'none'} instead of "
                        f"{', '.join(decision.get('stopped') or []) or 'none'} (the recorded decision stands: the "
                        f"runs went on by it)."))
        lines += [text, ""]
    return lines


def study_block(root: str, study: Study) -> str:
    data = StudyData(root, study)
    if not data.started:
        return (f"**Not started**: no data in `{DATA}/{study.name}/` yet. Definition: "
                f"`benchmarks/studies/{study.name}.json`.\n")
    lines = _progress(data) + _halving_table(data) + _validation_table(data) + _run_level_table(data) \
        + _case_level_table(data) + _stop_tables(data) + _screen_table(data) + rerun_lines(data)
    if study.name.endswith("contour_width"):
        lines += width_decision(data)
    if data.recall_rule_arms:
        lines += recall_weighted_decision(data)
    if study.name.endswith("every_trainer"):
        lines += flagged_decision(data)
    return "\n".join(lines).rstrip("\n") + "\n"


def _window_mean(rows: List[dict], row: dict, width: int = 5) -> float:
    i = rows.index(row)
    values = [as_float(r["pseudo_dice"]) for r in rows[max(0, i - width + 1):i + 1]]
    return sum(values) / len(values)


def pilots_block(root: str) -> str:
    lines = []
    for pilot in PILOTS:
        rows = [r for r in read_csv(os.path.join(root, pilot.csv), missing_ok=True) if r["dataset"] == pilot.dataset]
        if not rows:
            lines += [f"- **{pilot.dataset}**, {pilot.what}: not run yet (`{pilot.csv}`).", ""]
            continue
        step = max(1, len(rows) // 10)
        shown = rows[step - 1::step]
        if shown[-1] is not rows[-1]:
            shown.append(rows[-1])
        its = [str((int(r["epoch"]) + 1) * pilot.iterations_per_epoch) for r in shown]
        lines += [f"**{pilot.dataset}**, {pilot.what} (`{pilot.csv}`): nnU-Net's validation pseudo Dice "
                  f"(mean over the foreground classes) after each epoch, its mean over 5 epochs and nnU-Net's EMA.", "",
                  "| training iterations | " + " | ".join(its) + " |", "|---|" + "---|" * len(its),
                  "| pseudo Dice | " + " | ".join(_f(as_float(r["pseudo_dice"])) for r in shown) + " |",
                  "| mean of the 5 epochs up to here | " + " | ".join(_f(_window_mean(rows, r)) for r in shown) + " |",
                  "| EMA | " + " | ".join(_f(as_float(r["ema_pseudo_dice"])) for r in shown) + " |", ""]
        final = [r for r in read_csv(os.path.join(root, pilot.csv[:-4] + "_final.csv"), missing_ok=True)
                 if r.get("dataset") == pilot.dataset]
        runs = read_csv(os.path.join(root, pilot.per_run), missing_ok=True) if pilot.per_run else []
        test = f"; test set: mean Dice {_f(as_float(runs[0]['test_dice']))} (`{pilot.per_run}`)" if runs else ""
        if final:
            lines += [f"nnU-Net's final validation of that run (the fold's validation cases, whole images): mean Dice "
                      f"{_f(as_float(final[0]['validation_dice']))}{test}.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _n_runs(data: StudyData, arm: str, n_runs: str) -> str:
    """A run-level test's n, with "(of N so far)" while the arm has runs not in it yet (a grid part-way)."""
    total = len(data.runs_of(arm))
    return n_runs if int(n_runs) >= total else f"{n_runs} (of {total} so far)"


def which_loss_block(root: str) -> str:
    every = [s for s in STUDIES if s.name.endswith("every_trainer")]
    datas = [StudyData(root, s) for s in every]
    lines = ["| arm | " + " | ".join(f"{s.dataset}: run level, test Dice vs nnU-Net" for s in every) + " |",
             "|---|" + "---|" * len(every)]
    arms: List[str] = []
    for d in datas:
        for a in (d.arms if d.started else []):
            if a not in arms:
                arms.append(a)
    for arm in arms:
        cells = []
        for d in datas:
            row = next((r for r in d.run_level if r["arm"] == arm), None)
            if not d.started:
                cells.append("not started")
            elif arm == d.baseline:
                cells.append("(baseline)")
            elif row is None:
                status = {r["status"] for r in d.runs_of(arm)}
                stop = next(((e, r) for e, rows in d.stop_level.items() for r in rows if r["arm"] == arm), None)
                if stop:
                    e, r = stop
                    diff, ph = as_float(r["mean_diff"]), as_float(r["p_holm"])
                    cells.append(f"stopped by successive halving after epoch {e}; there: {diff:+.3f}, n = "
                                 f"{_n_runs(d, arm, r['n_runs'])}, p (Holm) = {_p(ph)}: {verdict(diff, ph)}")
                elif status == {"stopped"}:  # its test set at the stop is predicted after the decision
                    epochs = sorted({int(r["epochs"]) for r in d.runs_of(arm)})
                    cells.append(f"stopped by successive halving after epoch {'/'.join(map(str, epochs))}; "
                                 "not scored there yet")
                else:
                    cells.append("not compared yet")
            else:
                diff, ph = as_float(row["mean_diff"]), as_float(row["p_holm"])
                cells.append(f"{diff:+.3f}, n = {_n_runs(d, arm, row['n_runs'])}, p (Holm) = {_p(ph)}: "
                             f"{verdict(diff, ph)}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    sentences = [s for d in datas if d.started for s in run_level_sentences(d)]
    better = any(verdict(as_float(r["mean_diff"]), as_float(r["p_holm"])) == "higher, holds"
                 for d in datas if d.started for r in d.run_level)
    lines += ["", " ".join(_grid_progress(d) for d in datas if d.started) + " "
              + (" ".join(sentences) + " " if sentences else
                 "No run-level comparison at the end of the schedule exists yet. ")
              + "A result at a halving stop compares both trainings at that early epoch: it shows a fast or slow "
                "start, not where training ends."
              + ("" if better else " So far **no loss here is established as better than nnU-Net's default** at "
                                   "the end of the schedule: train nnU-Net's own trainer first and treat every other "
                                   "trainer as an experiment.")]
    return "\n".join(lines) + "\n"


def _grid_progress(data: StudyData) -> str:
    """How far one every-trainer grid is, in runs: trained to the end, stopped by successive halving and scored
    at their stop, total.

    A grid is finished when every run is one or the other; a stopped run is finished too once its stop is
    scored (it is compared there), so "50 done of 150" would undersell a finished grid, and a stop still
    waiting for its test-set predictions is not finished yet."""
    done = sum(1 for r in data.per_run if r["status"] == "done")
    stopped = [r for r in data.per_run if r["status"] == "stopped"]
    scored = sum(1 for r in stopped if r.get(_scored_column(r)) not in (None, ""))
    what = f"{done} trained to the end, {scored} stopped by successive halving and scored at their stop"
    if scored < len(stopped):
        what += f", {len(stopped) - scored} stopped and waiting for their stop's test-set score"
    if done + scored == len(data.per_run):
        return f"{data.study.dataset} grid: finished ({what})."
    return f"{data.study.dataset} grid: {done + scored} of {len(data.per_run)} runs finished ({what})."


def blocks(root: str) -> Dict[str, str]:
    out = {f"study {s.name}": study_block(root, s) for s in STUDIES}
    out["pilots"] = pilots_block(root)
    out["which-loss"] = which_loss_block(root)
    out["width-evidence"] = width_evidence_block(root)
    out["recall-weighted-evidence"] = recall_weighted_evidence_block(root)
    out["flagged-evidence"] = flagged_evidence_block(root)
    out["twins-evidence"] = twins_evidence_block(root)
    return out


# ----------------------------------------------------------------------------------------------- pages
def _markers(key: str):
    return f"<!-- generated: {key} -->", f"<!-- /generated: {key} -->"


def render(text: str, generated: Dict[str, str], page: str = "page") -> str:
    """``text`` with every generated block it holds replaced by ``generated[key]``."""
    out = text
    for key, body in generated.items():
        start, end = _markers(key)
        if start not in out:
            continue
        i = out.index(start) + len(start)
        j = out.find(end, i)
        if j < 0:
            raise ValueError(f"{page}: '{start}' has no closing '{end}'")
        out = out[:i] + "\n" + body + out[j:]
    return out


def write_pages(root: str = ROOT, check: bool = False) -> List[str]:
    """Rewrite (or with ``check`` only compare) the pages; the pages whose blocks differ from the data."""
    generated = blocks(root)
    stale = []
    for page in PAGES:
        path = os.path.join(root, page)
        text = open(path).read()
        new = render(text, generated, page)
        if new != text:
            stale.append(page)
            if not check:
                with open(path, "w") as f:
                    f.write(new)
    return stale


# ----------------------------------------------------------------------------------------------- collect
def collect(study_dir: str, name: str, root: str = ROOT, echo=print) -> str:
    """Copy a study folder's data to ``docs/data/studies/NAME``; its path. The report is rebuilt first
    (nnU-Net's predictions scored again): in the study folder when no runner holds it, else as a snapshot
    in a temporary folder (the study folder is only read; runs still training count as not finished)."""
    import tempfile

    from nnunet_losses.nnunet.tools.study.folder import StudyLocked
    from nnunet_losses.nnunet.tools.study.report import build_report

    if name not in {s.name for s in STUDIES}:
        raise ValueError(f"unknown study name {name!r}: one of {', '.join(s.name for s in STUDIES)} "
                         f"(benchmarks/studies/quality.py STUDIES)")
    folder = StudyFolder(study_dir)
    record = folder.read_study()
    out = os.path.join(root, DATA, name)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with folder:
                build_report(folder, echo=echo)
            source, reported = folder.root, True
        except StudyLocked:
            echo(f"{study_dir} is in use by a running study: scoring a snapshot of it")
            build_report(folder, echo=echo, out_dir=tmp)
            source, reported = tmp, "snapshot"
        if reported == "snapshot" and os.path.isfile(folder.path("halving.json")):
            shutil.copyfile(folder.path("halving.json"), os.path.join(tmp, "halving.json"))
        names = list(FILES) + sorted(n for n in os.listdir(source) if n.startswith(STOP_FILES) and n.endswith(".csv"))
        for f in names:
            src, dst = os.path.join(source, f), os.path.join(out, f)
            if os.path.isfile(src):
                shutil.copyfile(src, dst)
        for f in os.listdir(out):  # files of an earlier collect the study no longer makes
            if f != "study.json" and (f not in names or not os.path.isfile(os.path.join(source, f))):
                os.remove(os.path.join(out, f))
    kept = {"definition": record["definition"], "dataset": record.get("dataset", {}).get("name"),
            "schedule": record.get("schedule"), "versions": record.get("versions", {}),
            "collected": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "report": reported}
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump(kept, f, indent=1)
        f.write("\n")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.quality",
                                description=" ".join(__doc__.split("\n\n")[0].split()))
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="copy a study folder's data into docs/data/studies/NAME")
    c.add_argument("study_dir")
    c.add_argument("name", choices=[s.name for s in STUDIES])
    g = sub.add_parser("page", help="rewrite the generated blocks of " + ", ".join(PAGES))
    g.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is stale")
    a = p.parse_args(argv)
    if a.command == "collect":
        print(f"collected into {collect(a.study_dir, a.name)}; now run: python -m benchmarks.studies.quality page")
        return 0
    stale = write_pages(check=a.check)
    if a.check and stale:
        print(f"stale: {', '.join(stale)} (run: python -m benchmarks.studies.quality page)", file=sys.stderr)
        return 1
    print("rewritten: " + (", ".join(stale) or "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
