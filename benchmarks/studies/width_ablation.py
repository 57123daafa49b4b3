"""Contour-width ablation (docs/quality.md): CWCD's erosion iterations x element side, OsC's band.

Arms, each trained with several seeds on two folds and scored on held-out test cases:

* ``nnU-Net``: nnU-Net's default trainer (CE + Dice), the baseline of the paired statistics;
* ``CWCD i{1,2,3,6} k{2,3}``: ``nnUNetTrainerCWCD`` with ``iterations`` x ``kernel_size``;
* ``OsC b{1,2,3}``: ``nnUNetTrainerOsC`` with ``band``.

Datasets: DRIVE (2D vessels; the data of docs/quality.md, 10 test images) and MSD Hippocampus (3D,
two small structures; 165 cases for nnU-Net's 5-fold split, 30 held out for testing). Both use
nnU-Net's own plans, shrunk so that one model trains in well under a minute on one CPU core
(:data:`PLANS_SHAPE`), the same schedule for every arm, online maps (the loss computes contours and
bands from the augmented target at every deep-supervision scale).

Each (dataset, seed, fold) group of arms runs in one worker process: nnU-Net's ``run_training``
code path (what ``nnUNetv2_train ... -device cpu`` runs) with one torch thread, then nnU-Net's
predictor on the test cases (sliding window, no mirroring). The seed sets Python's, NumPy's and
torch's generators before nnU-Net builds the network and the loader (augmentation runs in the main
process, ``nnUNet_n_proc_DA=0``), so a seed is a reproducible draw of weights, patches and
augmentation. Finished models and complete predictions are skipped, interrupted trainings resumed
from ``checkpoint_latest.pth``: re-running the same command continues the study.

    python -m benchmarks.studies.width_ablation --dataset drive hippocampus            # prepare, train, predict
    python -m benchmarks.studies.width_ablation --dataset hippocampus --steps compare  # tables from what exists

Everything goes under ``--root`` (default /tmp/width_ablation); the tables are
``<root>/<dataset>/table.md`` and the compare tool's output ``<root>/<dataset>/compare``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.dirname(sys.executable)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
PLANS = "nnUNetAblationPlans"

#: arm name -> (trainer, loss options)
ARMS = {"nnU-Net": ("nnUNetTrainer", {})}
ARMS.update({f"CWCD_i{i}_k{k}": ("nnUNetTrainerCWCD", {"iterations": i, "kernel_size": k})
             for i in (1, 2, 3, 6) for k in (2, 3)})
ARMS.update({f"OsC_b{b}": ("nnUNetTrainerOsC", {"band": b}) for b in (1, 2, 3)})

DATASETS = {
    "drive": {"id": 501, "name": "Dataset501_DRIVE", "config": "2d", "ending": ".png", "metrics_extra":
              ["cldice", "betti0_error", "betti1_error"]},
    "hippocampus": {"id": 504, "name": "Dataset504_Hippocampus", "config": "2d", "ending": ".nii.gz",
                    "metrics_extra": []},
}
#: the shrunk plans: nnU-Net's own configuration with fewer stages / features and a smaller batch
PLANS_SHAPE = {
    "drive": {"n_stages": 5, "base_features": 16, "max_features": 128, "patch_2d": 128, "batch_size": 2, "convs": 2},
    "hippocampus": {"n_stages": 4, "base_features": 16, "max_features": 128, "patch_2d": 64, "batch_size": 12,
                    "convs": 2},
}
HIPPOCAMPUS_TEST = 30  # held-out cases: every sixth case of the sorted list




def trainer_name(arm: str, seed: int) -> str:
    return f"{ARMS[arm][0]}__{arm}__s{seed}".replace("-", "")


def log_time(root, **record):
    with open(os.path.join(root, "timings.jsonl"), "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}) + "\n")


def environment(root, extra=None):
    env = dict(os.environ, nnUNet_raw=os.path.join(root, "raw"), nnUNet_preprocessed=os.path.join(root, "preprocessed"),
               nnUNet_results=os.path.join(root, "results"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               nnUNet_n_proc_DA="0", nnUNet_compile="f")
    env["nnUNet_extTrainer"] = os.path.join(root, "ext_trainers")
    env.pop("NNUNET_LOSSES_OPTIONS", None)
    env.update(extra or {})
    return env


def run(cmd, env, log_path):
    shown = " ".join(cmd) if len(" ".join(cmd)) < 300 else " ".join(cmd)[:300] + " ..."
    print(f"[{time.strftime('%H:%M:%S')}] {shown}  (log: {log_path})", flush=True)
    with open(log_path, "a") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"failed (exit {rc}): see {log_path}")


# ---------------------------------------------------------------------------------------------- prepare
def _convert(key, root, env, args):
    ds = DATASETS[key]
    raw = os.path.join(root, "raw", ds["name"])
    if os.path.isdir(raw):
        return raw
    if key == "drive":
        run([os.path.join(BIN, "nnunet_losses_convert_drive"), "-i", os.path.join(args.data, "DRIVE"), "-d",
             str(ds["id"])], env, os.path.join(root, "logs", "convert.log"))
        return raw
    staging = os.path.join(root, "raw", ".hippocampus_staging")
    shutil.rmtree(staging, ignore_errors=True)
    run([os.path.join(BIN, "nnunet_losses_convert_msd"), "-i", os.path.join(args.data, "Hippocampus"), "-d",
         str(ds["id"]), "-o", staging, "--name", "Hippocampus"], env, os.path.join(root, "logs", "convert.log"))
    src = os.path.join(staging, ds["name"])
    cases = sorted(f[: -len(".nii.gz")] for f in os.listdir(os.path.join(src, "labelsTr")))
    test = cases[3::6][:HIPPOCAMPUS_TEST]
    os.makedirs(os.path.join(src, "labelsTs"))
    for case in test:  # held out: images to imagesTs, labels to labelsTs
        os.rename(os.path.join(src, "imagesTr", case + "_0000.nii.gz"), os.path.join(src, "imagesTs", case + "_0000.nii.gz"))
        os.rename(os.path.join(src, "labelsTr", case + ".nii.gz"), os.path.join(src, "labelsTs", case + ".nii.gz"))
    with open(os.path.join(src, "dataset.json")) as f:
        meta = json.load(f)
    meta["numTraining"] = len(cases) - len(test)
    with open(os.path.join(src, "dataset.json"), "w") as f:
        json.dump(meta, f, indent=2)
    os.rename(src, raw)
    shutil.rmtree(staging)
    return raw


def prepare(key, args):
    root = os.path.join(args.root, key)
    for sub in ("raw", "preprocessed", "results", "logs", "ext_trainers", "pred"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    ds = DATASETS[key]
    env = environment(root, {"nnUNet_n_proc_DA": "1"})  # 0 would make the planner set 0 torch threads
    _convert(key, root, env, args)
    pre = os.path.join(root, "preprocessed", ds["name"])
    if not os.path.isfile(os.path.join(pre, "nnUNetPlans.json")) or not os.path.isdir(
            os.path.join(pre, f"nnUNetPlans_{ds['config']}")):
        run([os.path.join(BIN, "nnUNetv2_plan_and_preprocess"), "-d", str(ds["id"]), "-c", ds["config"], "-np", "2",
             "-npfp", "2"], env, os.path.join(root, "logs", "preprocess.log"))
    from nnunet_losses.nnunet.testing.tiny_plans import shrink_configuration

    with open(os.path.join(pre, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    shape = dict(PLANS_SHAPE[key])
    convs = shape.pop("convs")
    cfg = shrink_configuration(plans["configurations"][ds["config"]], **shape)
    kw = cfg["architecture"]["arch_kwargs"]
    kw["n_conv_per_stage"] = [convs] * kw["n_stages"]
    kw["n_conv_per_stage_decoder"] = [convs] * (kw["n_stages"] - 1)
    plans = {**plans, "plans_name": PLANS, "configurations": {ds["config"]: cfg}}
    with open(os.path.join(pre, f"{PLANS}.json"), "w") as f:
        json.dump(plans, f, indent=2)
    from nnunet_losses.nnunet.testing.short_schedule import Schedule, write_short_schedule_trainers

    # one class per (arm, seed): its own results folder; the seed and the arm's options are set by group_worker
    schedule = Schedule(epochs=args.epochs, iterations=args.iters, val_iterations=args.val_iters, threads=1,
                        final_validation=False, note="the test set is evaluated instead")
    write_short_schedule_trainers(os.path.join(root, "ext_trainers"), "width_ablation_trainers",
                                  {trainer_name(a, s): ARMS[a][0] for a in args.arms for s in args.seeds}, schedule,
                                  writer="benchmarks/studies/width_ablation.py")
    print(f"{key}: plans {PLANS} (patch {cfg['patch_size']}, batch {cfg['batch_size']}, features "
          f"{kw['features_per_stage']}); {len(args.arms)} arms x seeds {args.seeds} x folds {args.folds}", flush=True)


# ---------------------------------------------------------------------------------------------- train + predict
def model_folder(root, key, arm, seed):
    ds = DATASETS[key]
    return os.path.join(root, "results", ds["name"], f"{trainer_name(arm, seed)}__{PLANS}__{ds['config']}")


def pred_folder(root, arm, seed, fold):
    return os.path.join(root, "pred", arm, f"s{seed}_fold{fold}")


def n_test_cases(root, key):
    ds = DATASETS[key]
    return len([f for f in os.listdir(os.path.join(root, "raw", ds["name"], "imagesTs")) if f.endswith(ds["ending"])])


def predicted(folder, n, ending):
    return os.path.isdir(folder) and len([f for f in os.listdir(folder) if f.endswith(ending)]) == n


def group_worker(key, root, seed, fold, arms):
    """Train and predict every arm of one (seed, fold) in this process (nnU-Net's run_training code path)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    from nnunet_losses.nnunet.testing.short_schedule import SEED_VARIABLE

    torch.set_num_threads(1)
    os.environ[SEED_VARIABLE] = str(seed)
    ds = DATASETS[key]
    images = os.path.join(root, "raw", ds["name"], "imagesTs")
    n = n_test_cases(root, key)
    for arm in arms:
        name = trainer_name(arm, seed)
        out = os.path.join(model_folder(root, key, arm, seed), f"fold_{fold}")
        if not os.path.isfile(os.path.join(out, "checkpoint_final.pth")):
            t0 = time.time()
            resume = os.path.isfile(os.path.join(out, "checkpoint_latest.pth"))
            os.environ.pop("NNUNET_LOSSES_OPTIONS", None)
            if ARMS[arm][1]:
                os.environ["NNUNET_LOSSES_OPTIONS"] = json.dumps(ARMS[arm][1])
            trainer = get_trainer_from_args(str(ds["id"]), ds["config"], int(fold), name, PLANS, resume,
                                            device=torch.device("cpu"))
            maybe_load_checkpoint(trainer, resume, False, None)
            trainer.run_training()
            log_time(root, step="train", arm=arm, seed=seed, fold=fold, seconds=round(time.time() - t0, 1),
                     resumed=resume)
            del trainer
        pred = pred_folder(root, arm, seed, fold)
        if not predicted(pred, n, ds["ending"]):
            t0 = time.time()
            predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                        perform_everything_on_device=False, device=torch.device("cpu"),
                                        verbose=False, verbose_preprocessing=False, allow_tqdm=False)
            predictor.initialize_from_trained_model_folder(model_folder(root, key, arm, seed), use_folds=(int(fold),),
                                                           checkpoint_name="checkpoint_final.pth")
            os.makedirs(pred, exist_ok=True)
            predictor.predict_from_files_sequential(images, pred, save_probabilities=False, overwrite=True)
            log_time(root, step="predict", arm=arm, seed=seed, fold=fold, seconds=round(time.time() - t0, 1))
        print(f"[{time.strftime('%H:%M:%S')}] {key} seed {seed} fold {fold} {arm}: done", flush=True)


def train_and_predict(key, args):
    root = os.path.join(args.root, key)
    env = environment(root)
    n = n_test_cases(root, key)
    for seed in args.seeds:  # seed-major: a study cut short has complete seeds (all arms, both folds)
        for fold in args.folds:
            todo = [a for a in args.arms if not predicted(pred_folder(root, a, seed, fold), n, DATASETS[key]["ending"])]
            if not todo:
                continue
            run([sys.executable, "-m", "benchmarks.studies.width_ablation", "--group-worker",
                 json.dumps({"key": key, "root": root, "seed": seed, "fold": fold, "arms": todo})],
                {**env, "PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)},
                os.path.join(root, "logs", f"group_s{seed}_fold{fold}.log"))


# ---------------------------------------------------------------------------------------------- compare + tables
def complete_runs(root, key, arm, seeds, folds):
    """The (seed, fold) prediction folders of ``arm`` that are complete, seed-major."""
    n = n_test_cases(root, key)
    return [(s, f, pred_folder(root, arm, s, f)) for s in seeds for f in folds
            if predicted(pred_folder(root, arm, s, f), n, DATASETS[key]["ending"])]


def compare(key, args):
    """The compare tool on every arm with the (seed, fold) runs every arm has (paired by position), once
    per baseline: nnU-Net's default, and each arm of ``--baselines`` (e.g. the width "auto" picks)."""
    root = os.path.join(args.root, key)
    ds = DATASETS[key]
    runs = {a: complete_runs(root, key, a, args.seeds, args.folds) for a in args.arms}
    common = set.intersection(*({(s, f) for s, f, _ in r} for r in runs.values()))
    if not common:
        sys.exit(f"{key}: no (seed, fold) with predictions of every arm yet")
    order = [(s, f) for s in args.seeds for f in args.folds if (s, f) in common]
    specs = [f"{a}=" + ",".join(pred_folder(root, a, s, f) for s, f in order) for a in args.arms]
    raw = os.path.join(root, "raw", ds["name"])
    metrics = ["dice", "hd95", "nsd", "precision", "recall"] + ds["metrics_extra"]
    outs = {}
    for i, baseline in enumerate(["nnU-Net"] + [b for b in args.baselines if b != "nnU-Net"]):
        out = os.path.join(root, "compare" if i == 0 else f"compare_vs_{baseline}")
        run([os.path.join(BIN, "nnunet_losses_compare"), "-d", str(ds["id"]), "-ref", os.path.join(raw, "labelsTs"),
             "-i", *specs, "--images", os.path.join(raw, "imagesTs"), "-o", out, "--overwrite", "--no-progress",
             "--metrics", *(metrics if i == 0 else ["dice"]), "--baseline", baseline, "--overlays", "0" if i else "3",
             "-np", "2"], environment(root), os.path.join(root, "logs", f"compare_{baseline}.log"))
        outs[baseline] = out
    write_table(key, root, outs, order, args.arms)


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _holds(r) -> str:
    """▲ / ▼ when the paired difference holds (interval excludes 0 and Holm p < 0.05), for / against."""
    lo, hi, p = _float(r["ci_low"]), _float(r["ci_high"]), _float(r["p_holm"])
    if p < 0.05 and lo > 0:
        return "▲"
    if p < 0.05 and hi < 0:
        return "▼"
    return ""


def write_table(key, root, outs, order, arms):
    """Mean ± std over seeds (each seed: mean over classes, folds and test cases) and the paired statistics."""
    per_run = {}  # (arm, run index) -> metric -> [values over cases and classes]
    with open(os.path.join(outs["nnU-Net"], "per_case.csv")) as f:
        for r in csv.DictReader(f):
            for m in ("dice", "hd95", "recall", "precision"):
                per_run.setdefault((r["method_name"], int(r["fold"])), {}).setdefault(m, []).append(_float(r[m]))

    def nanmean(xs):
        xs = [x for x in xs if not math.isnan(x)]
        return sum(xs) / len(xs) if xs else float("nan")

    seeds = sorted({s for s, _ in order})
    lines = [f"{key}: {len(seeds)} seeds x {len(order) // max(1, len(seeds))} folds "
             f"(runs {', '.join(f's{s}/fold{f}' for s, f in order)}); each seed's value is the mean over its folds, "
             "the test cases and the foreground classes; mean ± std over seeds", "",
             "| arm | Dice | Dice per seed | HD95 | recall | precision |", "|---|---|---|---|---|---|"]
    table = {}
    for arm in arms:
        by_seed = {}
        for i, (s, _) in enumerate(order):
            vals = per_run.get((arm, i), {})
            for m in ("dice", "hd95", "recall", "precision"):
                by_seed.setdefault(s, {}).setdefault(m, []).extend(vals.get(m, []))
        stats = {}
        for m in ("dice", "hd95", "recall", "precision"):
            xs = [nanmean(by_seed[s][m]) for s in seeds]
            mu = sum(xs) / len(xs)
            sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
            stats[m] = (mu, sd, xs)
        table[arm] = stats
        d = stats["dice"]
        lines.append(f"| {arm} | {d[0]:.4f} ± {d[1]:.4f} | {' / '.join(f'{x:.3f}' for x in d[2])} | "
                     f"{stats['hd95'][0]:.2f} ± {stats['hd95'][1]:.2f} | {stats['recall'][0]:.3f} | "
                     f"{stats['precision'][0]:.3f} |")
    # training randomness: one value per (seed, fold) run (mean Dice over test cases and classes), paired by run
    from scipy.stats import wilcoxon

    run_means = {a: [nanmean(per_run.get((a, i), {}).get("dice", [])) for i in range(len(order))] for a in arms}
    run_level = {}
    for baseline in outs:
        lines += ["", f"Run-level paired Dice differences to {baseline}: each of the {len(order)} runs (seed x fold) "
                  "gives one mean Dice per arm; mean difference over runs, runs better / equal / worse, two-sided "
                  f"Wilcoxon signed-rank p over the runs (smallest possible with {len(order)} runs: "
                  f"{2 / 2 ** len(order):.3f}); this accounts for training randomness, the case-level table below "
                  "does not", "", "| arm | mean difference | runs better / equal / worse | p |", "|---|---|---|---|"]
        for arm in arms:
            if arm == baseline:
                continue
            d = [a - b for a, b in zip(run_means[arm], run_means[baseline])]
            nonzero = [x for x in d if x != 0]
            pval = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 1 else 1.0
            better, worse = sum(x > 0 for x in d), sum(x < 0 for x in d)
            run_level.setdefault(baseline, {})[arm] = {"mean_diff": sum(d) / len(d), "better": better,
                                                        "worse": worse, "p": pval}
            lines.append(f"| {arm} | {sum(d) / len(d):+.4f} | {better} / {len(d) - better - worse} / {worse} | "
                         f"{pval:.3f} |")
    paired = {}
    for baseline, out in outs.items():
        with open(os.path.join(out, "paired.csv")) as f:
            rows = [r for r in csv.DictReader(f) if r["metric"] == "dice"]
        classes = sorted({r["class"] for r in rows}, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0))
        lines += ["", f"Paired Dice differences to {baseline} (compare tool, `paired.csv`): mean difference "
                  "[95% bootstrap interval], wins/ties/losses over (case, run) pairs, Holm-corrected Wilcoxon p; "
                  "▲ / ▼: the difference holds (interval excludes 0 and p_holm < 0.05); conditional on the trained "
                  "models (cases are resampled, training runs are not)", "",
                  "| arm | " + " | ".join(f"class {c}" for c in classes) + " |", "|---|" + "---|" * len(classes)]
        by = {(r["method"], r["class"]): r for r in rows}
        for arm in arms:
            if arm == baseline:
                continue
            cells = []
            for c in classes:
                r = by.get((arm, c))
                cells.append("–" if r is None else
                             f"{_float(r['mean_diff']):+.4f} [{_float(r['ci_low']):+.4f}, {_float(r['ci_high']):+.4f}], "
                             f"{r['wins']}/{r['ties']}/{r['losses']}, p {_float(r['p_holm']):.2g} {_holds(r)}")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        paired[baseline] = [{k: r[k] for k in ("method", "class", "mean_diff", "ci_low", "ci_high", "p_holm", "wins",
                                                 "ties", "losses")} | {"holds": _holds(r)} for r in rows]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(root, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(root, "table.json"), "w") as f:
        json.dump({"runs": order, "arms": {a: {m: list(v[:2]) + [v[2]] for m, v in st.items()} for a, st in table.items()},
                   "paired_dice": paired, "run_means": run_means, "run_level": run_level}, f, indent=1)
    print(text)


def docs_tables(key, args) -> str:
    """The condensed tables of docs/quality.md for one dataset, from ``<root>/<dataset>/table.json``."""
    with open(os.path.join(args.root, key, "table.json")) as f:
        t = json.load(f)
    arms = list(t["arms"])
    refs = [b for b in t["run_level"] if b != "nnU-Net"]
    bases = ["nnU-Net"] + refs
    head = ("| arm | Dice, mean ± std over seeds | per seed | HD95 | "
            + " | ".join(f"vs {b}: runs better/equal/worse, p | vs {b}: case level, mean [95% CI]" for b in bases)
            + " |")
    lines = [head, "|---" * (4 + 2 * len(bases)) + "|"]
    case = {b: {r["method"]: r for r in t["paired_dice"][b] if r["class"] == "mean"} for b in bases}
    for arm in arms:
        a = t["arms"][arm]
        cells = [f"{a['dice'][0]:.3f} ± {a['dice'][1]:.3f}", " / ".join(f"{x:.3f}" for x in a["dice"][2]),
                 f"{a['hd95'][0]:.1f}"]
        for b in bases:
            r = t["run_level"][b].get(arm)
            cells.append("–" if r is None else
                         f"{r['mean_diff']:+.3f}, {r['better']}/{len(t['runs']) - r['better'] - r['worse']}/"
                         f"{r['worse']}, p {r['p']:.3f}")
            r = case[b].get(arm)
            cells.append("–" if r is None else f"{_float(r['mean_diff']):+.3f} [{_float(r['ci_low']):+.3f}, "
                         f"{_float(r['ci_high']):+.3f}] {r['holds']}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/tmp/width_ablation")
    p.add_argument("--data", default=SHARED, help="folder with DRIVE/ and Hippocampus/ (default ../shared/data)")
    p.add_argument("--dataset", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--folds", nargs="+", default=["0", "1"])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--val-iters", type=int, default=1)
    p.add_argument("--baselines", nargs="+", default=["nnU-Net"],
                   help="arms to pair every other arm with (nnU-Net's default always)")
    p.add_argument("--steps", nargs="+", default=["prepare", "train", "compare"],
                   choices=["prepare", "train", "compare", "docs"])
    p.add_argument("--group-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.group_worker:
        job = json.loads(args.group_worker)
        group_worker(job["key"], job["root"], job["seed"], job["fold"], job["arms"])
        return
    args.root = os.path.abspath(args.root)
    for key in args.dataset:
        if "prepare" in args.steps:
            prepare(key, args)
        if "train" in args.steps:
            train_and_predict(key, args)
        if "compare" in args.steps:
            compare(key, args)
        if "docs" in args.steps:
            print(docs_tables(key, args))


if __name__ == "__main__":
    main()
