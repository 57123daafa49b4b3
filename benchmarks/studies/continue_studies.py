"""Start or continue the repository's CPU studies (docs/quality.md) in their planned order, here or on a new machine.

    python -m benchmarks.studies.continue_studies --root /work/evidence_runs --dry-run   # what it would do
    nohup python -m benchmarks.studies.continue_studies --root /work/evidence_runs >> studies.log 2>&1 &

One command for every session that goes on with the studies. For each study of :data:`PLAN` in turn, in the
folder ``ROOT/<dataset>/<study>`` (``<dataset>`` is the definition's ``prepare.source``, the folder that
``benchmarks.studies.prepare`` fills):

1. the dataset is prepared (``python -m benchmarks.studies.prepare``; each of its steps is skipped when done);
2. a study folder that has no run states yet (a new machine) is restored from the study's committed data,
   ``docs/data/studies/<study>``, where there is some (``nnunet_losses_study restore``): the grid goes on where
   the committed data ends, and a run the data does not cover trains from the start;
3. a study that shares runs with an earlier one (``adopt_from``) takes them over once that one is finished
   (``nnunet_losses_study adopt``: only runs it never started, only runs that still have their checkpoint);
4. ``nnunet_losses_study run`` trains it with the nnU-Net folders of step 1, ``--halving`` where the plan says,
   ``--jobs`` trainings side by side (default: one per core) of ``--threads`` torch threads each.

It goes on to the next study only when every run of this one is done or stopped by successive halving;
otherwise it stops, says how many runs are left in which state, and exits 1. Interrupt it at any time (Ctrl-C,
the end of a session) and run the same command again. The data goes into the repository with
``python -m benchmarks.studies.quality collect ROOT/<dataset>/<study> <study>`` (a snapshot while it trains),
then ``... quality page``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from nnunet_losses.nnunet.tools.commands import command_path
from nnunet_losses.nnunet.tools.study.definition import load_definition
from nnunet_losses.nnunet.tools.study.folder import StudyFolder
from nnunet_losses.nnunet.tools.study.grid import run_ids

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(REPO, "docs", "data", "studies")
FINISHED = ("done", "stopped")


@dataclass(frozen=True)
class PlannedStudy:
    """One study of the plan: ``benchmarks/studies/<name>.json``."""
    name: str
    halving: bool = False
    adopt_from: Optional[str] = None  # an earlier study of the plan whose shared runs this one takes over


#: the order the studies run in: the Hippocampus grid first (its schedule is the width study's), then the width
#: study (it takes over nnU-Net's and CWCD's runs of the grid), then DRIVE's grid (the longest)
PLAN = (PlannedStudy("hippocampus_every_trainer", halving=True),
        PlannedStudy("hippocampus_contour_width", adopt_from="hippocampus_every_trainer"),
        PlannedStudy("drive_every_trainer", halving=True))


def definition_path(name: str) -> str:
    return os.path.join(HERE, f"{name}.json")


def dataset_root(root: str, name: str) -> str:
    """``ROOT/<prepare source>``: the folder ``benchmarks.studies.prepare`` fills for study ``name``."""
    _, prepare = load_definition(definition_path(name))
    return os.path.join(root, prepare["source"])


def study_folder(root: str, name: str) -> str:
    return os.path.join(dataset_root(root, name), name)


def left(root: str, name: str) -> Dict[str, int]:
    """How many runs of study ``name`` are in each state other than done and stopped (``{}``: finished)."""
    definition, _ = load_definition(definition_path(name))
    folder = StudyFolder(study_folder(root, name))
    states = Counter(s["status"] for s in folder.states(run_ids(definition)).values())
    return {s: n for s, n in sorted(states.items()) if s not in FINISHED}


def _has_states(folder: str) -> bool:
    runs = os.path.join(folder, "runs")
    return os.path.isdir(runs) and any(n.endswith(".json") for n in os.listdir(runs))


def commands(root: str, study: PlannedStudy, jobs: int, threads: int) -> List[List[str]]:
    """The commands that take ``study`` as far as this machine can, in order (:func:`main`'s steps)."""
    definition, data_root = definition_path(study.name), dataset_root(root, study.name)
    folder = study_folder(root, study.name)
    out = [[sys.executable, "-m", "benchmarks.studies.prepare", definition, "--root", data_root]]
    committed = os.path.join(DATA, study.name)
    if not _has_states(folder) and os.path.isfile(os.path.join(committed, "per_run.csv")):
        out.append([command_path("nnunet_losses_study"), "restore", folder, "--from", committed,
                    "--definition", definition])
    if study.adopt_from:
        out.append([command_path("nnunet_losses_study"), "adopt", folder, "--from",
                    study_folder(root, study.adopt_from), "--definition", definition])
    out.append([command_path("nnunet_losses_study"), "run", folder, "--definition", definition, "--jobs", str(jobs),
                "--threads", str(threads)] + (["--halving"] if study.halving else []))
    return out


def nnunet_environment(root: str, name: str) -> Dict[str, str]:
    """The nnU-Net folders of the prepared dataset; data augmentation in the training process (as the studies
    were measured and seeded)."""
    data = dataset_root(root, name)
    return dict(os.environ, nnUNet_raw=os.path.join(data, "nnUNet_raw"),
                nnUNet_preprocessed=os.path.join(data, "nnUNet_preprocessed"), nnUNet_n_proc_DA="0")


def main(argv: Optional[Sequence[str]] = None, call: Callable[..., int] = subprocess.call) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.continue_studies",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="a folder outside the repository for the datasets and studies")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="trainings side by side (default: cores)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1)")
    p.add_argument("--only", nargs="+", choices=[s.name for s in PLAN], help="these studies of the plan only")
    p.add_argument("--dry-run", action="store_true", help="print the commands of the first unfinished study")
    a = p.parse_args(argv)
    root = os.path.abspath(a.root)
    for study in PLAN:
        if a.only and study.name not in a.only:
            continue
        if study.adopt_from and left(root, study.adopt_from):
            print(f"{study.name}: waits for {study.adopt_from}, whose runs it shares", flush=True)
            return 1
        if os.path.isdir(study_folder(root, study.name)) and not left(root, study.name):
            print(f"{study.name}: finished ({study_folder(root, study.name)})", flush=True)
            continue
        env = nnunet_environment(root, study.name)
        for cmd in commands(root, study, a.jobs, a.threads):
            print(("would run: " if a.dry_run else "$ ") + " ".join(cmd), flush=True)
            if not a.dry_run and call(cmd, env=env, cwd=REPO) != 0:
                print(f"{study.name}: stopped at the command above; run this command again to continue", flush=True)
                return 1
        if a.dry_run:
            return 0
        rest = left(root, study.name)
        if rest:
            print(f"{study.name}: not finished, runs left: " + ", ".join(f"{n} {s}" for s, n in rest.items())
                  + "; run this command again to continue", flush=True)
            return 1
        print(f"{study.name}: finished", flush=True)
    print("every study of the plan is finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
