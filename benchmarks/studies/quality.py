"""Quality study on DRIVE (docs/quality.md): nnU-Net's default trainer against the package's losses.

One entry point that reproduces the study, step by step, with real nnU-Net commands:

1. ``nnunet_losses_convert_drive`` (20 training images; test images 01-10 with both observers);
2. ``nnUNetv2_plan_and_preprocess -c 2d``;
3. a smaller copy of nnU-Net's 2d plans (``nnunet_losses.nnunet.testing.tiny_plans.shrink_configuration``:
   fewer stages and features, smaller patch) so that a CPU run fits; same preprocessed data;
4. a trainer-variant module (``<root>/ext_trainers``, put on ``nnUNet_extTrainer``) with fewer
   epochs / iterations, one torch thread, and no final validation (the test set is what we report);
5. ``nnUNetv2_train 501 2d FOLD -p nnUNetQualityPlans -tr <trainer>_qs -device cpu`` per trainer and
   fold (folds of nnU-Net's own 5-fold split of the 20 training images); finished trainings are
   skipped, interrupted ones resumed with ``--c``;
6. prediction of the 10 test images with each fold's model: nnU-Net's predictor as
   ``nnUNetv2_predict -device cpu --disable_tta`` runs it (no test-time mirroring), all models in one
   process without worker processes (:func:`predict_worker`);
7. ``nnunet_losses_compare`` against the first observer, the second observer as a method (the
   human reference), over the field of view (the converter's ignore label); the per-fold spread
   comes from summary.csv's ``std_folds``.

Everything goes under ``--root`` (default /tmp/quality_study); nothing is written into the repo.

    python benchmarks/studies/quality.py                       # 4 epochs x 50 iterations, folds 0 1
    python benchmarks/studies/quality.py --time-only          # 1 epoch x 5 iterations per trainer, fold 0

Wall times of every step are appended to ``<root>/timings.jsonl``; the final table is
``<root>/table.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.dirname(sys.executable)
DATASET_ID = 501
DATASET = f"Dataset{DATASET_ID:03d}_DRIVE"
PLANS = "nnUNetQualityPlans"
CONFIG = "2d"
TRAINERS = ["nnUNetTrainer", "nnUNetTrainerCWCD", "nnUNetTrainerCombo", "nnUNetTrainerAsymFbeta",
            "nnUNetTrainerCETopKDice", "nnUNetTrainerOsC"]
SHORT = {"nnUNetTrainer": "nnU-Net (CE+Dice)", "nnUNetTrainerCWCD": "CWCD", "nnUNetTrainerCombo": "Combo",
         "nnUNetTrainerAsymFbeta": "AsymFbeta", "nnUNetTrainerCETopKDice": "CETopKDice", "nnUNetTrainerOsC": "OsC",
         "nnUNetTrainerSkeletonRecall": "SkeletonRecall", "nnUNetTrainerclDice": "clDice"}
#: the thin-structure study: nnU-Net's default against the skeleton losses (same protocol)
THIN_TRAINERS = ["nnUNetTrainer", "nnUNetTrainerCWCD", "nnUNetTrainerSkeletonRecall", "nnUNetTrainerclDice"]
SUFFIX = "_qs"


def log_time(root, step, seconds, **extra):
    with open(os.path.join(root, "timings.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, "seconds": round(seconds, 1), **extra}) + "\n")


def run(cmd, env, log_path, root, step, **extra):
    """Run a command with its output in ``log_path``; record its wall time; stop on failure."""
    print(f"[{time.strftime('%H:%M:%S')}] {step}: {' '.join(cmd)}  (log: {log_path})", flush=True)
    t0 = time.time()
    with open(log_path, "a") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - t0
    log_time(root, step, seconds, rc=rc, **extra)
    if rc != 0:
        sys.exit(f"{step} failed (exit {rc}): see {log_path}")
    return seconds


def environment(root, extra=None):
    env = dict(os.environ, nnUNet_raw=os.path.join(root, "raw"), nnUNet_preprocessed=os.path.join(root, "preprocessed"),
               nnUNet_results=os.path.join(root, "results"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    user = os.environ.get("nnUNet_extTrainer")
    env["nnUNet_extTrainer"] = os.pathsep.join(p for p in (os.path.join(root, "ext_trainers"), user) if p)
    env.update(extra or {})
    return env


def prepare(args):
    root = args.root
    for sub in ("raw", "preprocessed", "results", "logs", "ext_trainers", "pred"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    env = environment(root)
    raw = os.path.join(root, "raw", DATASET)
    if not os.path.isdir(raw):
        run([os.path.join(BIN, "nnunet_losses_convert_drive"), "-i", args.drive, "-d", str(DATASET_ID)], env,
            os.path.join(root, "logs", "convert.log"), root, "convert")
    pre = os.path.join(root, "preprocessed", DATASET)
    if not os.path.isdir(os.path.join(pre, "nnUNetPlans_2d")):
        # nnUNet_n_proc_DA=0 would make the planner call torch.set_num_threads(0): keep it >= 1 here
        run([os.path.join(BIN, "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIG, "-np", "1",
             "-npfp", "1"], {**env, "nnUNet_n_proc_DA": "1"}, os.path.join(root, "logs", "preprocess.log"), root,
            "plan_and_preprocess")
    # study plans: nnU-Net's 2d plans, shrunk (fewer stages / features, smaller patch); same preprocessed data
    from nnunet_losses.nnunet.testing.tiny_plans import shrink_configuration

    with open(os.path.join(pre, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    cfg = shrink_configuration(plans["configurations"][CONFIG], n_stages=args.stages, base_features=args.features,
                               max_features=args.max_features, patch_2d=args.patch, batch_size=args.batch)
    kw = cfg["architecture"]["arch_kwargs"]
    kw["n_conv_per_stage"] = [args.convs] * kw["n_stages"]
    kw["n_conv_per_stage_decoder"] = [args.convs] * (kw["n_stages"] - 1)
    plans = {**plans, "plans_name": PLANS, "configurations": {CONFIG: cfg}}
    dst = os.path.join(pre, f"{PLANS}.json")
    with open(dst + ".tmp", "w") as f:
        json.dump(plans, f, indent=2)
    os.replace(dst + ".tmp", dst)
    from nnunet_losses.nnunet.testing.short_schedule import Schedule, short_names, write_short_schedule_trainers

    schedule = Schedule(epochs=args.epochs, iterations=args.iters, val_iterations=args.val_iters, threads=1,
                        final_validation=False, note="the test set is evaluated instead")
    path = write_short_schedule_trainers(os.path.join(root, "ext_trainers"), "quality_study_trainers",
                                         short_names(dict.fromkeys(list(SHORT) + list(args.trainers)), SUFFIX),
                                         schedule, writer="benchmarks/studies/quality.py")
    print(f"plans: {dst} (patch {cfg['patch_size']}, batch {cfg['batch_size']}, features "
          f"{kw['features_per_stage']}, convs/stage {args.convs}); trainers: {path}", flush=True)


def result_folder(root, trainer, fold):
    return os.path.join(root, "results", DATASET, f"{trainer}{SUFFIX}__{PLANS}__{CONFIG}", f"fold_{fold}")


def train(args):
    root = args.root
    env = environment(root, {"nnUNet_n_proc_DA": "0", "nnUNet_compile": "f"})  # 0: augmentation in the main process
    for fold in args.folds:
        for trainer in args.trainers:
            out = result_folder(root, trainer, fold)
            if os.path.isfile(os.path.join(out, "checkpoint_final.pth")):
                print(f"skip {trainer} fold {fold}: finished", flush=True)
                continue
            cmd = [os.path.join(BIN, "nnUNetv2_train"), str(DATASET_ID), CONFIG, str(fold), "-p", PLANS,
                   "-tr", trainer + SUFFIX, "-device", "cpu"]
            if os.path.isfile(os.path.join(out, "checkpoint_latest.pth")):
                cmd.append("--c")
            run(cmd, env, os.path.join(root, "logs", f"train_{trainer}_fold{fold}.log"), root, "train",
                trainer=trainer, fold=fold, epochs=args.epochs, iters=args.iters)


def predict(args):
    """Each fold's model on the 10 test images, in one worker process (nnU-Net's predictor, one thread)."""
    root = args.root
    images = os.path.join(root, "raw", DATASET, "imagesTs")
    n_cases = len([f for f in os.listdir(images) if f.endswith(".png")])
    jobs = []
    for fold in args.folds:
        for trainer in args.trainers:
            out = os.path.join(root, "pred", trainer, f"fold_{fold}")
            if not os.path.isfile(os.path.join(result_folder(root, trainer, fold), "checkpoint_final.pth")):
                print(f"not predicting {trainer} fold {fold}: training not finished", flush=True)
            elif not (os.path.isdir(out) and len([f for f in os.listdir(out) if f.endswith(".png")]) == n_cases):
                jobs.append({"model": os.path.dirname(result_folder(root, trainer, fold)), "fold": fold,
                             "trainer": trainer, "images": images, "out": out})
    if jobs:
        run([sys.executable, os.path.abspath(__file__), "--predict-worker", json.dumps(jobs), "--root", root],
            environment(root), os.path.join(root, "logs", "predict.log"), root, "predict_all", n_models=len(jobs))


def predict_worker(root, jobs):
    """What ``nnUNetv2_predict -i IMAGES -o OUT -d 501 -c 2d -p PLANS -tr TRAINER -f FOLD -device cpu --disable_tta``
    does, without its worker processes (``predict_from_files_sequential``) and with one torch thread: the CLI
    starts one interpreter plus pre-/post-processing processes per call: on the shared 2-core machine
    that start-up took longer than predicting (one test image: 83 s with the CLI, 41 s here)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(1)
    for job in jobs:
        t0 = time.time()
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(job["model"], use_folds=(int(job["fold"]),),
                                                       checkpoint_name="checkpoint_final.pth")
        os.makedirs(job["out"], exist_ok=True)
        predictor.predict_from_files_sequential(job["images"], job["out"], save_probabilities=False, overwrite=True)
        seconds = time.time() - t0
        log_time(root, "predict", seconds, trainer=job["trainer"], fold=job["fold"])
        print(f"predicted {job['trainer']} fold {job['fold']}: {seconds:.1f} s", flush=True)


#: the compare tool's metrics: overlap, surface, and the topology of the vessel tree
COMPARE_METRICS = ["dice", "iou", "hd95", "nsd", "precision", "recall", "cldice", "betti0_error", "betti1_error"]


def compare(args):
    root = args.root
    env = environment(root)
    raw = os.path.join(root, "raw", DATASET)
    n_cases = len([f for f in os.listdir(os.path.join(raw, "imagesTs")) if f.endswith(".png")])
    specs = []
    for t in args.trainers:  # the folds with complete test predictions (a study cut short may lack some)
        dirs = [os.path.join(root, "pred", t, f"fold_{f}") for f in args.folds]
        dirs = [d for d in dirs if os.path.isdir(d) and len([f for f in os.listdir(d) if f.endswith(".png")]) == n_cases]
        if dirs:
            specs.append(f"{SHORT.get(t, t).split(' ')[0]}=" + ",".join(dirs))
        else:
            print(f"compare: no complete predictions of {t}, left out", flush=True)
    specs.append("observer2=" + os.path.join(raw, "labelsTs_observer2"))
    out = os.path.join(root, "compare")
    cmd = [os.path.join(BIN, "nnunet_losses_compare"), "-d", str(DATASET_ID), "-ref", os.path.join(raw, "labelsTs"),
           "-i", *specs, "--images", os.path.join(raw, "imagesTs"), "-o", out, "--overwrite", "--no-progress",
           "--metrics", *COMPARE_METRICS, "--baseline", "nnU-Net", "--ranking"]
    run(cmd, env, os.path.join(root, "logs", "compare.log"), root, "compare")
    write_table(root, out, args)


METRIC_NAMES = [("dice", "Dice", 4), ("iou", "IoU", 4), ("hd95", "HD95 (px)", 2), ("nsd", "surface Dice (1 px)", 4),
                ("precision", "precision", 4), ("recall", "recall", 4)]
CLASS = "vessel"
PER_FOLD = [("dice", "Dice", 4), ("precision", "precision", 4), ("recall", "recall", 4), ("hd95", "HD95 (px)", 2)]


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def write_table(root, out, args):
    """From the compare tool's CSVs: mean ± std over test cases (folds pooled), per-fold means, fold spread."""
    import math

    summary = {}
    with open(os.path.join(out, "summary.csv")) as f:
        for r in csv.DictReader(f):
            if r["class_name"] == CLASS:
                summary.setdefault(r["method_name"], {})[r["metric"]] = r
    fold_vals = {}  # method -> fold -> metric -> [values over cases]
    paired = {}  # (method, fold, case) -> {metric: value}
    with open(os.path.join(out, "per_case.csv")) as f:
        for r in csv.DictReader(f):
            if r["class_name"] != CLASS:
                continue
            for key, _, _ in METRIC_NAMES:
                fold_vals.setdefault(r["method_name"], {}).setdefault(r["fold"], {}).setdefault(key, []).append(
                    _float(r[key]))
            paired[(r["method_name"], r["fold"], r["case"])] = {k: _float(r[k]) for k in ("dice", "precision", "recall")}
    methods = list(summary)

    def fmt(v, d):
        return "–" if v is None or math.isnan(v) else f"{v:.{d}f}"

    def mean(xs):
        xs = [x for x in xs if not math.isnan(x)]
        return sum(xs) / len(xs) if xs else float("nan")

    lines = ["Mean ± std over the test cases (all folds pooled: n = 10 cases x folds), vessel class, inside the FOV:",
             "", "| method | " + " | ".join(n for _, n, _ in METRIC_NAMES) + " | folds |",
             "|---|" + "---|" * (len(METRIC_NAMES) + 1)]
    for m in methods:
        cells = [f"{fmt(_float(summary[m][k]['mean']), d)} ± {fmt(_float(summary[m][k]['std']), d)}"
                 for k, _, d in METRIC_NAMES]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {summary[m]['dice']['n_folds']} |")
    lines += ["", "Per-fold means (each fold's model on the same 10 test cases) and the spread between folds "
              "(std of the fold means, compare tool's `std_folds`):", "",
              "| method | " + " | ".join(f"{n} per fold" for _, n, _ in PER_FOLD) + " | "
              + " | ".join(f"{n} fold spread" for _, n, _ in METRIC_NAMES) + " |",
              "|---|" + "---|" * (len(PER_FOLD) + len(METRIC_NAMES))]
    for m in methods:
        folds = sorted(fold_vals[m])
        per_fold = [" / ".join(fmt(mean(fold_vals[m][f][k]), d) for f in folds) for k, _, d in PER_FOLD]
        spread = [fmt(_float(summary[m][k]["std_folds"]), d) for k, _, d in METRIC_NAMES]
        lines.append(f"| {m} | " + " | ".join(per_fold + spread) + " |")
    base = methods[0]
    base_folds = sorted(fold_vals[base])
    lines += ["", f"Paired differences to {base} (same fold, same test case), mean over the cases of each fold "
              "(fold 0 / fold 1 ...), and the cases where the method's Dice is higher:", "",
              "| method | Dice | cases with higher Dice | recall | precision |", "|---|---|---|---|---|"]
    for m in methods[1:]:
        cells = {"dice": [], "wins": [], "recall": [], "precision": []}
        for f in base_folds:
            pairs = [(paired[(m, f, c)], paired[(base, f, c)]) for (mm, ff, c) in paired
                     if mm == base and ff == f and (m, f, c) in paired]
            for k, d in (("dice", 4), ("recall", 3), ("precision", 3)):
                cells[k].append(f"{mean([a[k] - b[k] for a, b in pairs]):+.{d}f}" if pairs else "–")
            cells["wins"].append(f"{sum(a['dice'] > b['dice'] for a, b in pairs)}/{len(pairs)}" if pairs else "–")
        lines.append(f"| {m} | " + " | ".join(" / ".join(cells[k]) for k in ("dice", "wins", "recall", "precision"))
                     + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(root, "table.md"), "w") as f:
        f.write(text)
    print(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/tmp/quality_study", help="working folder (default /tmp/quality_study)")
    p.add_argument("--drive", default=os.path.join(os.path.dirname(REPO), "shared", "data", "DRIVE"),
                   help="DRIVE folder (default ../shared/data/DRIVE)")
    p.add_argument("--trainers", nargs="+", default=TRAINERS)
    p.add_argument("--folds", nargs="+", default=["0", "1"])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--iters", type=int, default=50, help="training iterations per epoch")
    p.add_argument("--val-iters", type=int, default=2, help="validation iterations per epoch")
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--stages", type=int, default=5)
    p.add_argument("--features", type=int, default=16, help="features of the first stage (doubling per stage)")
    p.add_argument("--max-features", type=int, default=128)
    p.add_argument("--convs", type=int, default=2, help="convolutions per stage (nnU-Net: 2)")
    p.add_argument("--steps", nargs="+", default=["prepare", "train", "predict", "compare"],
                   choices=["prepare", "train", "predict", "compare"])
    p.add_argument("--time-only", action="store_true",
                   help="time 1 epoch x 5 iterations of each trainer on fold 0 (under <root>/timing) and stop")
    p.add_argument("--predict-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.root = os.path.abspath(args.root)
    if args.predict_worker:
        predict_worker(args.root, json.loads(args.predict_worker))
        return
    if args.time_only:
        base = args.root
        args.root = os.path.join(base, "timing")
        args.epochs, args.iters, args.folds = 1, 5, ["0"]
        os.makedirs(args.root, exist_ok=True)
        for sub in ("raw", "preprocessed"):  # reuse the converted / preprocessed data
            link = os.path.join(args.root, sub)
            if not os.path.exists(link):
                os.symlink(os.path.join(base, sub), link)
        prepare(args)
        train(args)
        return
    if "prepare" in args.steps:
        prepare(args)
    folds = args.folds
    for fold in folds:  # fold by fold: a study cut short still has complete folds (trained and predicted)
        args.folds = [fold]
        if "train" in args.steps:
            train(args)
        if "predict" in args.steps:
            predict(args)
    args.folds = folds
    if "compare" in args.steps:
        compare(args)


if __name__ == "__main__":
    main()
