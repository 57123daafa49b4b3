"""Build the dataset of one of the repository's study definitions, ready for ``nnunet_losses_study``.

    python -m benchmarks.studies.prepare benchmarks/studies/drive_quality.json --root /tmp/drive_quality
    # prints the nnU-Net folders to export and the study command, e.g.
    nnunet_losses_study run /tmp/drive_quality/study --definition benchmarks/studies/drive_quality.json

Steps (each skipped when its output exists), under ``--root``:

1. the raw dataset from ``--data`` (default ``../shared/data``): ``nnunet_losses_convert_drive`` (DRIVE: 20
   training images, test images 01-10 with both observers) or ``nnunet_losses_convert_msd`` (Hippocampus;
   every sixth case from the fourth on, 30 in all, moved to ``imagesTs``/``labelsTs`` as the test set);
2. ``nnUNetv2_plan_and_preprocess`` of the definition's configuration;
3. the definition's plans: nnU-Net's configuration shrunk (``plans_shape``:
   :func:`nnunet_losses.nnunet.testing.tiny_plans.shrink_configuration`, then ``convs`` convolutions per
   stage), same preprocessed data; without ``plans_shape`` (the GPU definitions) nnU-Net's own
   ``nnUNetPlans``, unchanged.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from nnunet_losses._io import atomic_write_json
from nnunet_losses.nnunet.tools.commands import command_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")


def _run(cmd, env, log):
    print(f"$ {' '.join(cmd)}  (log {log})", flush=True)
    with open(log, "a") as f:
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"failed (exit {rc}): see {log}")


def convert(prepare: dict, dataset_id: int, raw: str, data: str, env: dict, log: str) -> str:
    """The raw dataset folder (converted once)."""
    source = prepare["source"]
    if source == "drive":
        name = f"Dataset{dataset_id:03d}_DRIVE"
        if not os.path.isdir(os.path.join(raw, name)):
            _run([command_path("nnunet_losses_convert_drive"), "-i", os.path.join(data, "DRIVE"), "-d",
                  str(dataset_id)], env, log)
        return os.path.join(raw, name)
    if source != "hippocampus":
        raise ValueError(f"unknown prepare source {source!r} (drive, hippocampus)")
    name = f"Dataset{dataset_id:03d}_Hippocampus"
    target = os.path.join(raw, name)
    if os.path.isdir(target):
        return target
    staging = os.path.join(raw, ".hippocampus_staging")
    shutil.rmtree(staging, ignore_errors=True)
    _run([command_path("nnunet_losses_convert_msd"), "-i", os.path.join(data, "Hippocampus"), "-d", str(dataset_id),
          "-o", staging, "--name", "Hippocampus"], env, log)
    src = os.path.join(staging, name)
    cases = sorted(f[: -len(".nii.gz")] for f in os.listdir(os.path.join(src, "labelsTr")))
    test = cases[prepare["test_offset"]::prepare["test_every"]][:prepare["test_cases"]]
    os.makedirs(os.path.join(src, "imagesTs"), exist_ok=True)
    os.makedirs(os.path.join(src, "labelsTs"), exist_ok=True)
    for case in test:  # held out: images to imagesTs, labels to labelsTs
        os.rename(os.path.join(src, "imagesTr", case + "_0000.nii.gz"), os.path.join(src, "imagesTs",
                                                                                   case + "_0000.nii.gz"))
        os.rename(os.path.join(src, "labelsTr", case + ".nii.gz"), os.path.join(src, "labelsTs", case + ".nii.gz"))
    with open(os.path.join(src, "dataset.json")) as f:
        meta = json.load(f)
    meta["numTraining"] = len(cases) - len(test)
    atomic_write_json(os.path.join(src, "dataset.json"), meta)
    os.rename(src, target)
    shutil.rmtree(staging)
    return target


def shrunk_plans(pre: str, configuration: str, plans: str, shape: dict) -> str:
    from nnunet_losses.nnunet.testing.tiny_plans import shrink_configuration

    with open(os.path.join(pre, "nnUNetPlans.json")) as f:
        source = json.load(f)
    shape = dict(shape)
    convs = shape.pop("convs")
    cfg = shrink_configuration(source["configurations"][configuration], **shape)
    kw = cfg["architecture"]["arch_kwargs"]
    kw["n_conv_per_stage"] = [convs] * kw["n_stages"]
    kw["n_conv_per_stage_decoder"] = [convs] * (kw["n_stages"] - 1)
    return atomic_write_json(os.path.join(pre, f"{plans}.json"),
                             {**source, "plans_name": plans, "configurations": {configuration: cfg}})


def study_plans(pre: str, definition: dict) -> str:
    """The plans file the study trains with: shrunk when the definition has ``plans_shape``, else nnU-Net's own."""
    shape = definition["prepare"].get("plans_shape")
    if shape is not None:
        return shrunk_plans(pre, definition["configuration"], definition["plans"], shape)
    if definition["plans"] != "nnUNetPlans":
        raise ValueError(f"plans {definition['plans']!r} without a prepare.plans_shape: give the shape to shrink "
                         "nnU-Net's plans to, or use \"plans\": \"nnUNetPlans\" (nnU-Net's own, unchanged)")
    return os.path.join(pre, "nnUNetPlans.json")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("definition", help="a study definition with a 'prepare' section (benchmarks/studies/*.json)")
    p.add_argument("--root", required=True, help="folder for nnUNet_raw, nnUNet_preprocessed and the study")
    p.add_argument("--data", default=SHARED, help="folder with DRIVE/ and Hippocampus/ (default ../shared/data)")
    a = p.parse_args(argv)
    with open(a.definition) as f:
        d = json.load(f)
    root = os.path.abspath(a.root)
    paths = {"nnUNet_raw": os.path.join(root, "nnUNet_raw"), "nnUNet_preprocessed": os.path.join(root,
                                                                                               "nnUNet_preprocessed")}
    for v in paths.values():
        os.makedirs(v, exist_ok=True)
    env = dict(os.environ, **paths, nnUNet_results=os.path.join(root, "unused_results"), nnUNet_n_proc_DA="1")
    log = os.path.join(root, "prepare.log")
    folder = convert(d["prepare"], int(d["dataset"]), paths["nnUNet_raw"], a.data, env, log)
    pre = os.path.join(paths["nnUNet_preprocessed"], os.path.basename(folder))
    if not os.path.isdir(os.path.join(pre, f"nnUNetPlans_{d['configuration']}")):
        _run([command_path("nnUNetv2_plan_and_preprocess"), "-d", str(d["dataset"]), "-c", d["configuration"],
              "-np", "2", "-npfp", "2"], env, log)
    plans = study_plans(pre, d)
    print(f"plans: {plans}\nnext:\n  export nnUNet_raw={paths['nnUNet_raw']} "
          f"nnUNet_preprocessed={paths['nnUNet_preprocessed']} nnUNet_n_proc_DA=0\n"
          f"  nnunet_losses_study run {os.path.join(root, 'study')} --definition {os.path.abspath(a.definition)} "
          f"--jobs 2")
    return paths


if __name__ == "__main__":
    main()
