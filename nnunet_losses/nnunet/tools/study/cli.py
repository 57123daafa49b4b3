"""``nnunet_losses_study``: the command line (``run``, ``status``, ``report``, ``adopt``, ``restore``); docs/study.md.

    nnunet_losses_study run STUDY_DIR -d 4 -c 3d_fullres --arms nnUNetTrainer nnUNetTrainerCWCD \\
        'CWCD_i2=nnUNetTrainerCWCD:{"contour_width": 2}' --seeds 0 1 2 --jobs 2 --devices cuda:0 cuda:1
    nnunet_losses_study run STUDY_DIR                      # continue (finished runs are skipped)
    nnunet_losses_study status STUDY_DIR
    nnunet_losses_study report STUDY_DIR                   # rebuild report.md and the CSVs, no training
    nnunet_losses_study adopt STUDY_DIR --from OTHER_DIR   # copy OTHER's matching runs instead of training them
    nnunet_losses_study restore STUDY_DIR --from DATA_DIR --definition FILE   # a lost folder, from its report's data
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

from nnunet_losses.nnunet.tools.study.definition import StudyDefinition, load_definition, parse_arm
from nnunet_losses.nnunet.tools.study.folder import StudyFolder, StudyLocked

__all__ = ["main", "entry_point", "run_study", "status_lines"]


def _definition_from_args(a) -> Optional[StudyDefinition]:
    grid_flags = [a.dataset, a.configuration, a.arms]
    if a.definition:
        if any(grid_flags):
            raise ValueError("give the study either as --definition FILE or with -d/-c/--arms, not both")
        definition, _ = load_definition(a.definition)
    elif any(grid_flags):
        if not all(grid_flags):
            raise ValueError("a new study needs -d DATASET, -c CONFIGURATION and --arms (or --definition FILE)")
        definition = StudyDefinition(dataset=str(a.dataset), configuration=a.configuration,
                                     arms=[parse_arm(s) for s in a.arms], plans=a.plans or "nnUNetPlans",
                                     baseline=a.baseline, folds=a.folds or [0, 1, 2, 3, 4], seeds=a.seeds or [0],
                                     epochs=a.epochs, iterations=a.iterations, val_iterations=a.val_iterations,
                                     test_images=a.test_images and os.path.abspath(a.test_images),
                                     test_labels=a.test_labels and os.path.abspath(a.test_labels),
                                     **({"metrics": a.metrics} if a.metrics else {}), tta=not a.disable_tta,
                                     threads=None)
        return definition
    else:
        return None
    overrides = {k: getattr(a, k) for k in ("folds", "seeds", "epochs", "iterations") if getattr(a, k) is not None}
    if overrides:  # a repository definition shortened for a smoke run
        data = definition.to_json()
        data.update(overrides)
        definition = StudyDefinition.from_json(data)
    return definition


def run_study(folder: StudyFolder, definition: Optional[StudyDefinition], executor_kind: str = "local",
              jobs: int = 1, device: str = "cpu", devices: Optional[List[str]] = None, halving: bool = False,
              slurm=None, report: bool = True, cluster: Optional[str] = None, halving_metric=None,
              echo=print, threads: Optional[int] = None) -> dict:
    """Prepare (or continue) the study in ``folder``, run its grid, write its report; the study record.

    ``threads``: torch threads per run (default: the definition's, else on the CPU the cores / runs at a
    time); it changes the speed only, so a study may continue with another value.
    ``cluster`` (tests only): submitit back end of the SLURM path (``"local"``); ``halving_metric`` (tests
    only): the score of a paused run instead of nnU-Net's validation Dice."""
    from nnunet_losses.nnunet.tools.study.executor import make_executor, parse_devices
    from nnunet_losses.nnunet.tools.study.grid import prepare_study, run_grid, run_specs, validation_dice
    from nnunet_losses.nnunet.tools.study.report import build_report

    slots = parse_devices(devices, device, jobs)
    with folder:
        if definition is None:
            definition = StudyDefinition.from_json(folder.read_study()["definition"])
        executor = make_executor(executor_kind, folder.path("submitit"), slots, slurm, cluster=cluster)
        record = prepare_study(folder, definition)
        specs = run_specs(folder, record, definition)
        if threads is None and definition.threads is None and executor.kind == "local" and slots[0] == "cpu":
            threads = max(1, (os.cpu_count() or 1) // len(slots))
        if threads is not None:  # how the runs use this machine, not what they train: not in the definition
            specs = {r: {**s, "threads": threads} for r, s in specs.items()}
        echo(f"nnunet_losses_study: {len(specs)} runs ({len(definition.arms)} arms x {len(definition.folds)} folds x "
             f"{len(definition.seeds)} seeds) in {folder.root}; executor {executor.kind}"
             + (f", {len(slots)} at a time on {', '.join(slots)}" if executor.kind == "local" else ""))
        run_grid(folder, definition, specs, executor, halving=halving,
                 halving_metric=halving_metric or validation_dice, echo=echo)
        for line in status_lines(folder):
            echo(line)
        if report:
            echo(f"report: {build_report(folder, echo=echo)}")
    return record


def status_lines(folder: StudyFolder) -> List[str]:
    """The grid with each run's status, the progress and an ETA from the finished runs' times."""
    from nnunet_losses.nnunet.tools.study.grid import run_ids

    record = folder.read_study()
    definition = StudyDefinition.from_json(record["definition"])
    rids = run_ids(definition)
    states = folder.states(rids)
    counts = {}
    for st in states.values():
        counts[st.get("status")] = counts.get(st.get("status"), 0) + 1
    lines = [f"{folder.root}: {len(rids)} runs; " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    width = max(len(r) for r in rids)
    for rid, st in states.items():
        extra = ""
        if st.get("status") == "failed":
            extra = f"  {st.get('error')}; log {st.get('log')}"
        elif st.get("status") == "stopped":
            extra = f"  {st.get('reason')}"
        elif st.get("status") == "running" and st.get("started"):
            extra = f"  for {time.time() - st['started']:.0f} s"
        if st.get("adopted_from"):
            extra += f"  adopted from {st['adopted_from']['study']}/{st['adopted_from']['run']}"
        secs = (st.get("seconds") or {}).get("train")
        lines.append(f"  {rid:<{width}}  {st.get('status'):<8} attempts {st.get('attempts', 0)}"
                     + (f"  train {secs:.0f} s" if secs else "") + extra)
    done = [((st.get("seconds") or {}).get("train") or 0) + ((st.get("seconds") or {}).get("predict") or 0)
            for st in states.values() if st.get("status") == "done"]
    left = sum(1 for st in states.values() if st.get("status") in ("pending", "running", "paused"))
    if done and left:
        lines.append(f"ETA: about {left * sum(done) / len(done) / 60:.1f} run-minutes left ({left} runs x "
                     f"{sum(done) / len(done):.0f} s), divided by the runs that go at a time")
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnunet_losses_study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start or continue a study")
    r.add_argument("study", help="study folder (new, or one to continue)")
    g = r.add_argument_group("the study (new study; to continue give nothing, or the same)")
    g.add_argument("--definition", help="study definition (JSON file, docs/study.md)")
    g.add_argument("-d", "--dataset", help="dataset id or DatasetXXX_Name")
    g.add_argument("-c", "--configuration", help="nnU-Net configuration (2d, 3d_fullres, ...)")
    g.add_argument("-p", "--plans", help="plans identifier (default nnUNetPlans)")
    g.add_argument("--arms", nargs="+", help="[NAME=]TRAINER[:JSON options], e.g. nnUNetTrainer nnUNetTrainerCWCD "
                                              "'CWCD_i2=nnUNetTrainerCWCD:{\"contour_width\": 2}'")
    g.add_argument("--baseline", help="arm the others are compared with (default: the first)")
    g.add_argument("--folds", nargs="+", type=int, help="folds of nnU-Net's split (default 0 1 2 3 4)")
    g.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0)")
    g.add_argument("--epochs", type=int, help="epochs of every arm (default: nnU-Net's 1000)")
    g.add_argument("--iterations", type=int, help="training iterations per epoch (default: nnU-Net's 250)")
    g.add_argument("--val-iterations", type=int, help="validation iterations per epoch (default: nnU-Net's 50)")
    g.add_argument("--test-images", help="test images (default: imagesTs of the raw dataset, if it has labelsTs)")
    g.add_argument("--test-labels", help="test labels (default: labelsTs of the raw dataset)")
    g.add_argument("--metrics", nargs="+", help="compare tool metrics (default dice iou hd95 nsd precision recall; "
                                                "add cldice betti0_error betti1_error for topology)")
    g.add_argument("--disable-tta", action="store_true", help="predict the test set without mirroring")
    g.add_argument("--threads", type=int, help="torch threads per run (default: cores / runs at a time on the CPU); "
                   "a speed setting, not part of the study: a study may continue with another value")
    e = r.add_argument_group("how it runs")
    e.add_argument("--halving", action="store_true", help="successive halving: pause at 1/4 and 1/2 of the "
                                                          "schedule, stop the worse half of the arms each time")
    e.add_argument("--executor", choices=["local", "slurm"], default="local")
    e.add_argument("-j", "--jobs", type=int, default=1, help="runs at a time (local; SLURM: array parallelism)")
    e.add_argument("--device", default="cpu", help="cpu, cuda or mps (nnUNetv2_train -device; default cpu)")
    e.add_argument("--devices", nargs="+", help="local: one run at a time per device, e.g. cuda:0 cuda:1")
    e.add_argument("--slurm-partition")
    e.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes per run (default 1440)")
    e.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per run (default 1)")
    e.add_argument("--slurm-mem", type=int, help="GB of memory per run")
    e.add_argument("--slurm-cpus", type=int, help="CPUs per run")
    e.add_argument("--slurm-account")
    e.add_argument("--no-report", action="store_true", help="train only; build the report later with 'report'")
    s = sub.add_parser("status", help="the grid with progress and ETA")
    s.add_argument("study")
    rep = sub.add_parser("report", help="rebuild report.md, the CSVs and plots from the folder (no training)")
    rep.add_argument("study")
    rep.add_argument("--no-evaluate", action="store_true", help="reuse evaluation/ (no compare run)")
    ad = sub.add_parser("adopt", help="copy the matching done / paused / stopped runs of another study into this "
                                      "one instead of training them again")
    ad.add_argument("study", help="the study whose never-started runs are filled")
    ad.add_argument("--from", dest="source", required=True, metavar="OTHER_DIR", help="the study the runs come from "
                    "(left as it was)")
    ad.add_argument("--arm", action="append", metavar="OTHER=THIS", help="pair arm OTHER of --from with arm THIS "
                    "(repeatable); only these pairs are used, each still checked (default: every pair that trains "
                    "alike)")
    ad.add_argument("--definition", help="prepare STUDY from this definition first (writes study.json, trains "
                                         "nothing)")
    ad.add_argument("--dry-run", action="store_true", help="list what would be adopted, copy nothing")
    rs = sub.add_parser("restore", help="a study whose folder was lost: write its runs' states and per-case rows "
                                        "from the data its report left (per_run.csv, per_case*.csv, halving.json)")
    rs.add_argument("study", help="the new study folder (runs that have a state there keep it)")
    rs.add_argument("--from", dest="source", required=True, metavar="DATA_DIR",
                    help="the folder a report's CSV files were collected into (docs/data/studies/NAME)")
    rs.add_argument("--definition", required=True, help="the study's definition (JSON file)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    a = _parser().parse_args(argv)
    folder = StudyFolder(a.study)
    if a.command == "status":
        print("\n".join(status_lines(folder)))
        return 0
    if a.command == "adopt":
        from nnunet_losses.nnunet.tools.study.adopt import adopt

        adopt(a.study, a.source, pairs=a.arm, dry_run=a.dry_run,
              definition=load_definition(a.definition)[0] if a.definition else None)
        return 0
    if a.command == "restore":
        from nnunet_losses.nnunet.tools.study.restore import restore

        with folder:
            restore(folder, load_definition(a.definition)[0], a.source)
        return 0
    if a.command == "report":
        from nnunet_losses.nnunet.tools.study.report import build_report

        with folder:
            print(f"report: {build_report(folder, evaluate=not a.no_evaluate)}")
        return 0
    from nnunet_losses.nnunet.tools.study.executor import SlurmOptions

    definition = _definition_from_args(a)
    if definition is None and not folder.exists():
        raise ValueError(f"{a.study} holds no study yet: give --definition FILE, or -d, -c and --arms")
    slurm = SlurmOptions(partition=a.slurm_partition, time_min=a.slurm_time, gpus=a.slurm_gpus, mem_gb=a.slurm_mem,
                         cpus=a.slurm_cpus, account=a.slurm_account)
    run_study(folder, definition, a.executor, a.jobs, a.device, a.devices, a.halving, slurm,
              report=not a.no_report, threads=a.threads)
    return 0


def entry_point() -> None:
    try:
        sys.exit(main())
    except StudyLocked as e:
        print(f"nnunet_losses_study: {e}", file=sys.stderr)
        sys.exit(3)
    except ValueError as e:
        print(f"nnunet_losses_study: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("nnunet_losses_study: interrupted; run the same command again to continue", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as e:
        print(f"nnunet_losses_study: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    entry_point()
