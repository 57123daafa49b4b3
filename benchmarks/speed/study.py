"""What ``nnunet_losses_study`` costs on top of the trainings, on the CPU (docs/study.md, "Cost").

    python -m benchmarks.speed.study --root /tmp/study_bench [--iterations 200] [--skip-jobs]

On a generated 3D dataset (``nnunet_losses.nnunet.testing``: 4 cases 32^3, nnU-Net's planner, tiny plans):

1. **per-run overhead**: the same training (nnU-Net's default trainer, 1 epoch of ``--iterations``
   iterations, seed 0, fold 0, no test set) once as ``nnUNetv2_train`` of the generated ``_study`` trainer and
   once as a one-run study (``--jobs 1``, no report); the overhead is the study's wall time minus the plain
   command's, in % of the plain command's. Both include nnU-Net's final validation.
2. **--jobs 2**: a 4-run grid (2 arms x 2 folds, 1 epoch of 20 iterations) with ``--jobs 2`` against
   ``--jobs 1``: the ratio of the wall times.

Both numbers are ratios measured in one run; the load average at the start and the end is printed beside
them (the machine may be shared). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time

from nnunet_losses.nnunet.tools.commands import command_path


def _prepare(root: str) -> dict:
    from nnunet_losses.nnunet.testing.synthetic import make_label_dataset_3d
    from nnunet_losses.nnunet.testing.tiny_plans import write_tiny_plans, write_tiny_splits

    env = dict(os.environ, nnUNet_raw=os.path.join(root, "raw"), nnUNet_preprocessed=os.path.join(root, "pre"),
               nnUNet_results=os.path.join(root, "plain_results"), nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1",
               OMP_NUM_THREADS="1", nnUNet_compile="0", PYTHONWARNINGS="ignore")
    env.pop("NNUNET_LOSSES_OPTIONS", None)
    pre = os.path.join(env["nnUNet_preprocessed"], "Dataset990_SynthLabels3D")
    if not os.path.isfile(os.path.join(pre, "nnUNetTinyPlans.json")):
        make_label_dataset_3d(env["nnUNet_raw"], num_cases=4, ignore=False, overwrite=True)
        subprocess.run([command_path("nnUNetv2_plan_and_preprocess"), "-d", "990", "-c", "3d_fullres", "-np", "1",
                        "-npfp", "1"], env={**env, "nnUNet_n_proc_DA": "1"}, check=True, capture_output=True)
        write_tiny_plans(pre, configurations=["3d_fullres"])
        write_tiny_splits(pre)
    return env


def _study(root: str, name: str, env: dict, iterations: int, arms, folds, jobs: int) -> float:
    folder = os.path.join(root, name)
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([command_path("nnunet_losses_study"), "run", folder, "-d", "990", "-c", "3d_fullres", "-p",
                    "nnUNetTinyPlans", "--arms", *arms, "--folds", *folds, "--seeds", "0", "--epochs", "1",
                    "--iterations", str(iterations), "--val-iterations", "1", "--jobs", str(jobs), "--no-report"],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.study", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/tmp/study_bench")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-jobs", action="store_true")
    a = p.parse_args(argv)
    root = os.path.abspath(a.root)
    os.makedirs(root, exist_ok=True)
    env = _prepare(root)
    out = {"cpu_count": os.cpu_count(), "load_start": os.getloadavg()}
    if not a.skip_overhead:
        study_s = _study(root, "overhead", env, a.iterations, ["nnUNetTrainer"], ["0"], 1)
        results = os.path.join(root, "plain_results")
        shutil.rmtree(results, ignore_errors=True)
        plain_env = dict(env, nnUNet_results=results, nnUNet_extTrainer=os.path.join(root, "overhead", "trainers"),
                         NNUNET_LOSSES_SEED="0", NNUNET_LOSSES_THREADS=str(os.cpu_count() or 1),
                         nnUNet_def_n_proc=str(os.cpu_count() or 1), OMP_NUM_THREADS=str(os.cpu_count() or 1))
        t0 = time.perf_counter()
        subprocess.run([command_path("nnUNetv2_train"), "990", "3d_fullres", "0", "-p", "nnUNetTinyPlans", "-tr",
                        "nnUNetTrainer_study", "-device", "cpu"], env=plain_env, check=True, capture_output=True)
        plain_s = time.perf_counter() - t0
        out.update(plain_train_s=round(plain_s, 1), study_run_s=round(study_s, 1),
                   overhead_percent=round(100 * (study_s - plain_s) / plain_s, 1))
    if not a.skip_jobs:
        arms, folds = ["nnUNetTrainer", "nnUNetTrainerCWCD"], ["0", "1"]
        one = _study(root, "jobs1", env, 20, arms, folds, 1)
        two = _study(root, "jobs2", env, 20, arms, folds, 2)
        out.update(grid4_jobs1_s=round(one, 1), grid4_jobs2_s=round(two, 1), jobs2_ratio=round(two / one, 3))
    out["load_end"] = os.getloadavg()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
