"""Acceptance worker: train, resume (``--c``) and predict with trainers, in nnU-Net's own code paths.

Run by :mod:`benchmarks.acceptance.gpu` as ``python -m benchmarks.acceptance.e2e --work DIR --jobs JSON``
with nnU-Net's folders set for the process (nnU-Net reads them at import). Each job is
``{"trainer", "dataset", "configuration", "fold", "options", "image", "allowed"}``; for each:

1. nnU-Net's training code path (what ``nnUNetv2_train`` runs) of the short-schedule variant ``<trainer>_demo``
   (:mod:`nnunet_losses.nnunet.testing.short_schedule`: the real trainer, fewer iterations; the number of
   epochs set on the trainer before it runs), one epoch, on the device with nnU-Net's defaults (on CUDA: autocast,
   grad scaler,
   ``torch.compile`` unless ``nnUNet_compile`` says otherwise);
2. the same with ``continue_training=True``: ``--c`` from ``checkpoint_final.pth`` to epoch 2;
3. ``nnUNetPredictor`` (what ``nnUNetv2_predict`` uses; sequential, no worker processes) on one
   raw image with the final checkpoint.

Checks per job: the checkpoint is at epoch 2, every logged training loss is finite, the prediction
has the image's shape and only the dataset's values. Prints one JSON list (one result per job) on its
last stdout line, and with ``--results FILE`` appends each result to FILE as it comes; a job's exception
is recorded, never fatal to the others. With ``--deadline`` a job that would end after it is not started.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import time
import traceback

SUFFIX = "_demo"  # the short-schedule variants (nnunet_losses.nnunet.testing.short_schedule)


def write_short_trainers(folder: str, trainers, iterations: int = 2, val_iterations: int = 2, threads: int = 1) -> str:
    """Write short-schedule variants ``<trainer>_demo`` of ``trainers`` into ``folder`` (for ``nnUNet_extTrainer``)."""
    from nnunet_losses.nnunet.testing.short_schedule import Schedule, short_names, write_short_schedule_trainers
    schedule = Schedule(iterations=iterations, val_iterations=val_iterations, threads=threads, final_validation=False,
                        note="the acceptance run predicts one image instead")
    write_short_schedule_trainers(folder, "acceptance_trainers", short_names(trainers, SUFFIX), schedule,
                                  writer="benchmarks/acceptance/e2e.py")
    return folder


def read_image(path: str):
    if path.endswith(".png"):
        import numpy as np
        from PIL import Image
        return np.asarray(Image.open(path))
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def _train(job: dict, device, epochs: int, resume: bool) -> None:
    """What nnU-Net's ``run_training`` does (``nnUNetv2_train``), with ``epochs`` set on the trainer."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint
    os.environ.pop("NNUNET_LOSSES_OPTIONS", None)
    if job.get("options"):
        os.environ["NNUNET_LOSSES_OPTIONS"] = job["options"]
    trainer = get_trainer_from_args(str(job["dataset"]), job["configuration"], int(job["fold"]),
                                    job["trainer"] + SUFFIX, job["plans"], device=device)
    trainer.num_epochs = epochs
    maybe_load_checkpoint(trainer, resume, False, None)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    trainer.run_training()


def run_job(job: dict, device, out_dir: str) -> dict:
    """Train, resume, predict one job; the checks' outcomes and timings."""
    import numpy as np
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.paths import nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    res = {**job, "steps": {}, "checks": {}}
    folder = os.path.join(nnUNet_results, maybe_convert_to_dataset_name(job["dataset"]),
                          f"{job['trainer']}{SUFFIX}__{job['plans']}__{job['configuration']}")
    res["output_folder"] = folder
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            for step, epochs, resume in (("train", 1, False), ("resume", 2, True)):
                t0 = time.perf_counter()
                _train(job, device, epochs, resume)
                res["steps"][step] = round(time.perf_counter() - t0, 2)
            ckpt = torch.load(os.path.join(folder, f"fold_{job['fold']}", "checkpoint_final.pth"),
                              map_location="cpu", weights_only=False)
            losses = [float(x) for x in ckpt["logging"]["train_losses"]]
            res["train_losses"] = losses
            res["checks"]["resumed to epoch 2"] = ckpt["current_epoch"] == 2
            res["checks"]["losses finite"] = len(losses) == 2 and all(math.isfinite(x) for x in losses)
            t0 = time.perf_counter()
            pred = nnUNetPredictor(use_mirroring=False, device=device, allow_tqdm=False)
            pred.initialize_from_trained_model_folder(folder, use_folds=(job["fold"],))
            ending = os.path.basename(job["image"]).split(".", 1)[1]
            out = os.path.join(out_dir, f"{job['trainer']}_{job['configuration']}_f{job['fold']}")
            pred.predict_from_files_sequential([[job["image"]]], [out], save_probabilities=False, overwrite=True)
            res["steps"]["predict"] = round(time.perf_counter() - t0, 2)
            seg, img = read_image(f"{out}.{ending}"), read_image(job["image"])
            res["checks"]["prediction shape"] = seg.shape == img.shape
            res["checks"]["prediction values"] = set(np.unique(seg).tolist()) <= set(job["allowed"])
    except Exception as e:  # recorded, the other jobs go on
        res["error"] = f"{type(e).__name__}: {e}"[:500]
        res["traceback"] = traceback.format_exc()[-3000:]
        res["log_tail"] = log.getvalue()[-2000:]
    res["ok"] = "error" not in res and bool(res["checks"]) and all(res["checks"].values())
    return res


def run_jobs(jobs, device, out_dir: str, deadline=None, results_path=None, clock=time.time, run=run_job):
    """Run ``jobs`` in order; append each result to ``results_path`` (JSON lines) as soon as it is known, so
    the finished jobs survive a worker stopped by its timeout. With ``deadline`` (a ``clock()`` time), a job
    that would end after it, judged by the longest job so far, is not started: ``{..., "skipped": reason}``."""
    results, longest = [], 0.0
    for job in jobs:
        t0 = clock()
        if deadline is not None and t0 + longest > deadline:
            res = {**job, "skipped": f"not started: about {longest:.0f} s needed, {max(0.0, deadline - t0):.0f} s "
                                     f"of the budget left"}
        else:
            res = run(job, device, out_dir)
            longest = max(longest, clock() - t0)
        results.append(res)
        if results_path:
            with open(results_path, "a") as f:
                f.write(json.dumps(res) + "\n")
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acceptance.e2e", description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--jobs", required=True, help="JSON list of jobs (see the module docstring)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--deadline", type=float, default=None, help="time.time() after which no job may end")
    ap.add_argument("--results", default=None, help="JSON-lines file that receives each job's result at once")
    args = ap.parse_args(argv)
    import torch
    device = torch.device(args.device)
    if device.type == "cuda":
        from benchmarks.speed.loss import allow_many_graphs
        allow_many_graphs()  # every job compiles its own network and loss in this process
    out_dir = os.path.join(args.work, "predictions")
    os.makedirs(out_dir, exist_ok=True)
    print(json.dumps(run_jobs(json.loads(args.jobs), device, out_dir, args.deadline, args.results)))


if __name__ == "__main__":
    main()
