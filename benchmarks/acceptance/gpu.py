"""One-command acceptance run on a GPU: ``bash benchmarks/acceptance/gpu.sh`` (``python -m benchmarks.acceptance.gpu``).

Sections (``--sections``), in this order, each a pass/fail check:

* ``e2e``: a generated 3D labels dataset (with an ignore label) and a generated 2D regions dataset
  (with an ignore channel), planned and preprocessed by ``nnUNetv2_plan_and_preprocess``; every
  trainer (``nnUNetTrainer`` and the registry's) trains one epoch with nnU-Net's defaults on the device
  (CUDA: autocast, ``torch.compile``), resumes with ``--c`` to epoch 2 and predicts
  (:mod:`benchmarks.acceptance.e2e`) on both datasets; CWCD also with stored maps. Losses finite,
  checkpoints at epoch 2, predictions of the right shape and values;
* ``loss``: :mod:`benchmarks.speed.loss` on the device, 3D, batch 2, 128^3 on CUDA (a tiny patch with
  ``--smoke``), 2 / 4 / 16 classes, every row but the one with CPU-computed skeletons (full size only),
  with autocast eager and compiled on CUDA (eager fp32 on a CPU):
  time and peak memory (CUDA) ratios to nnU-Net's ``DC_and_CE_loss``; every row must run and give
  finite ratios (the targets are reported, a miss is not a failure);
* ``step``: :mod:`benchmarks.speed.step`: a whole training step of every trainer against
  ``nnUNetTrainer``, same plans and batches, interleaved (CWCD also with stored maps); autocast, eager
  (``--step-compile``: compiled; compile itself is checked by ``e2e``);
* ``contours``: on-the-fly contours against stored maps, from the two sections above (CWCE, SDL and
  CWCD loss rows; CWCD's training step online against stored).

The sections run in this order (their value), and within a section the most valuable work comes first
(e2e: every trainer on the 3D labels, then the 2D regions, then stored maps; loss: autocast eager, then
compiled). ``--budget SECONDS`` (default 420 on CUDA, so that the run fits one 8-minute call on a lent
machine with its installs; none on a CPU) bounds the whole run: each section may spend what is left
minus the least time the later sections need (:data:`MIN_SECTION_S`); a section, an e2e job or a loss
problem that would not fit is skipped, one that overruns is cut, and each is listed as *skipped* with
the reason (a skip is not a failure).

Writes ``<out>/<gpu|cpu>-<date>.json`` (``--out``: ``benchmarks/results`` on CUDA; with ``--device cpu`` a
new temporary folder unless given) and ``<out>/<gpu|cpu>-<date>.md`` (a Markdown summary) after every
section (``"complete": false`` until the end, so a run stopped from outside still leaves what it
measured), prints the pass/fail table, and exits 1 if any check failed. ``--device cpu --smoke`` runs everything in
minutes on a CPU with tiny sizes (the test suite does, so the script is known to work before it
meets a GPU).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Dict, List

from benchmarks.acceptance.budget import Budget, BudgetExceeded, time_limit
from benchmarks.worker import REPO, run_worker, worker_env

LABELS3D, REGIONS2D = (990, "AcceptLabels3D"), (991, "AcceptRegions2D")
CONTOUR_ROWS = ("CWCE", "SDL", "CWCD")
STORED_CWCD = "nnUNetTrainerCWCD:maps=stored"
#: with --smoke, the trainers that also run on the 2D regions dataset (region targets with maps)
SMOKE_REGION_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerCWCD", "nnUNetTrainerDWCE", "nnUNetTrainerSkeletonRecall")
SECTIONS = ("e2e", "loss", "step", "contours")
#: default --budget on CUDA (seconds): one call of at most 8 minutes on a lent machine, installs included
CUDA_BUDGET_S = 420.0
#: least seconds a section needs to be worth starting (guesses for one H100 until a run measures them; CPU:
#: the smoke sizes); reserved for the later sections while an earlier one runs
MIN_SECTION_S = {"cuda": {"e2e": 150.0, "loss": 45.0, "step": 60.0, "contours": 0.0},
                 "cpu": {"e2e": 60.0, "loss": 10.0, "step": 30.0, "contours": 0.0}}
#: the first compiled loss problem is guessed to cost this many times the longest autocast-eager one
COMPILE_GUESS = 3.0


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acceptance.gpu", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and few repetitions (CPU check of the script)")
    ap.add_argument("--out", default=None, help="results folder (default: benchmarks/results on CUDA, a temporary "
                                                "folder on a CPU)")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="default: all, in this order (their value)")
    ap.add_argument("--trainers", nargs="+", default=None, help="default: nnUNetTrainer and every trainer")
    ap.add_argument("--jobs", type=int, default=None, help="parallel e2e workers (default 4 on CUDA, 2 on a CPU)")
    ap.add_argument("--classes", type=int, nargs="+", default=None, help="loss section (default 2 4 16; smoke 2 4)")
    ap.add_argument("--no-compile", action="store_true", help="nnUNet_compile=0 everywhere (compile is nnU-Net's "
                                                              "default on CUDA)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per worker process")
    ap.add_argument("--budget", type=float, default=None,
                    help=f"seconds for the whole run; what would not fit is skipped and listed (default "
                         f"{CUDA_BUDGET_S:.0f} on CUDA, none on a CPU; 0 = none)")
    ap.add_argument("--step-compile", action="store_true", help="step section: compiled training steps "
                                                               "(default: eager, autocast on CUDA)")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary folder, removed at the end)")
    return ap.parse_args(argv)


#: ``nnUNetv2_plan_and_preprocess`` run as a module of the running interpreter: no console script needed (a
#: ``pip install --target`` or a carried wheelhouse may leave them off PATH)
PLAN_AND_PREPROCESS = [sys.executable, "-m", "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints"]


# ----------------------------------------------------------------------------- e2e
def prepare_datasets(work: str, smoke: bool) -> Dict[str, dict]:
    """Generate, plan and preprocess the two datasets; plans: shrunk (smoke) or nnU-Net's own."""
    from nnunet_losses.nnunet.testing.synthetic import make_label_dataset_3d, make_region_dataset_2d
    from nnunet_losses.nnunet.testing.tiny_plans import TINY_PLANS, write_tiny_plans, write_tiny_splits
    env = worker_env(work)
    raw, pre = env["nnUNet_raw"], env["nnUNet_preprocessed"]
    shape3d, shape2d = ((32, 32, 32), (64, 64)) if smoke else ((96, 96, 96), (256, 256))
    l3 = make_label_dataset_3d(raw, *LABELS3D, num_cases=4, shape=shape3d)
    r2 = make_region_dataset_2d(raw, *REGIONS2D, num_cases=4, shape=shape2d)
    proc = subprocess.run([*PLAN_AND_PREPROCESS, "-d", str(LABELS3D[0]), str(REGIONS2D[0]),
                           "-c", "2d", "3d_fullres", "-np", "2", "-npfp", "2"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("nnUNetv2_plan_and_preprocess failed:\n" + (proc.stdout + proc.stderr)[-3000:])
    plans = TINY_PLANS if smoke else "nnUNetPlans"
    out = {}
    for key, folder, config in (("labels3d", l3, "3d_fullres"), ("regions2d", r2, "2d")):
        pfolder = os.path.join(pre, os.path.basename(folder))
        if smoke:
            write_tiny_plans(pfolder)
        write_tiny_splits(pfolder)  # fold 0: 3 train / 1 val; fold 1: case 0 only
        images = sorted(os.listdir(os.path.join(folder, "imagesTr")))
        out[key] = {"dataset": os.path.basename(folder), "configuration": config, "plans": plans,
                    "image": os.path.join(folder, "imagesTr", images[-1]), "allowed": [0, 1, 2]}
    return out


def e2e_jobs(datasets: Dict[str, dict], trainers: List[str], smoke: bool) -> List[dict]:
    """Every trainer on both datasets (fold 0; smoke: on the 2D regions only nnU-Net's trainer and those with
    maps), and CWCD with stored maps on the 3D labels (fold 1)."""
    regions = [t for t in trainers if not smoke or t in SMOKE_REGION_TRAINERS]
    jobs = [{**datasets["labels3d"], "trainer": t, "fold": 0, "options": None} for t in trainers]
    jobs += [{**datasets["regions2d"], "trainer": t, "fold": 0, "options": None} for t in regions]
    if "nnUNetTrainerCWCD" in trainers:
        jobs.append({**datasets["labels3d"], "trainer": "nnUNetTrainerCWCD", "fold": 1, "options": "maps=stored"})
    return jobs


def skipped(section: str, check: str, reason: str) -> dict:
    """A check that did not run for the budget: ``ok`` is None (neither pass nor failure)."""
    return {"section": section, "check": check, "ok": None, "detail": "skipped: " + reason}


def _read_jsonl(path: str) -> List[dict]:
    import json
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_e2e(work: str, trainers: List[str], args, limit=None) -> dict:
    """Prepare the datasets, then the jobs in ``args.jobs`` worker processes; with ``limit`` (seconds) no job
    starts that would end after it, and workers still running then are stopped (their finished jobs kept)."""
    import json

    from benchmarks.acceptance.e2e import write_short_trainers
    t0 = time.perf_counter()
    datasets = prepare_datasets(work, args.smoke)
    cpu = args.device == "cpu"
    ext = write_short_trainers(os.path.join(work, "trainers"), trainers, iterations=2 if args.smoke else 5,
                               val_iterations=1 if args.smoke else 2, threads=1 if cpu else 2)
    jobs = e2e_jobs(datasets, trainers, args.smoke)
    n = max(1, min(args.jobs, len(jobs)))
    chunks = [jobs[i::n] for i in range(n)]  # round robin: every worker starts with the most valuable jobs
    left = None if limit is None else limit - (time.perf_counter() - t0)
    timeout = args.timeout if left is None else max(1.0, min(args.timeout, left))
    deadline = None if left is None else time.time() + left

    def worker(i):
        results = os.path.join(work, f"e2e_results_{i}.jsonl")
        env = worker_env(work, nnUNet_results=os.path.join(work, f"results_{i}"),
                         nnUNet_extTrainer=os.pathsep.join([ext] + [p for p in os.environ.get(
                             "nnUNet_extTrainer", "").split(os.pathsep) if p]),
                         nnUNet_n_proc_DA="0" if cpu else str(max(2, (os.cpu_count() or 8) // n - 1)),
                         **({"nnUNet_compile": "0"} if args.no_compile or cpu else {}))
        opts = ["--jobs", json.dumps(chunks[i]), "--device", args.device, "--results", results]
        opts += [] if deadline is None else ["--deadline", repr(deadline)]
        out = run_worker("benchmarks.acceptance.e2e", work, opts, timeout=timeout, env=env)
        return out, _read_jsonl(results)

    with ThreadPoolExecutor(max_workers=n) as ex:
        outs = list(ex.map(worker, range(n)))
    results, errors = [], []
    for (out, done), chunk in zip(outs, chunks):
        results += done
        if isinstance(out, dict) and "error" in out:
            if left is not None and timeout < args.timeout and "timed out" in out["error"]:
                results += [{**j, "skipped": f"cut by the budget: the worker was stopped after {timeout:.0f} s"}
                            for j in chunk[len(done):]]
            else:
                errors.append(out["error"])
    return {"datasets": datasets, "jobs": results, "worker_errors": errors, "wall_s": time.perf_counter() - t0}


def e2e_checks(e2e: dict) -> List[dict]:
    checks = [{"section": "e2e", "check": "workers", "ok": not e2e["worker_errors"],
               "detail": "; ".join(e[:300] for e in e2e["worker_errors"])}]
    for job in e2e["jobs"]:
        name = f"{job['trainer']}{' (' + job['options'] + ')' if job.get('options') else ''} on {job['dataset']}"
        if "skipped" in job:
            checks.append(skipped("e2e", name, job["skipped"]))
            continue
        failed = [k for k, v in job["checks"].items() if not v]
        times = ", ".join(f"{k} {v:.0f} s" for k, v in job["steps"].items())
        detail = job.get("error") or ("failed: " + ", ".join(failed) if failed else "train, --c, predict: " + times)
        checks.append({"section": "e2e", "check": name, "ok": job["ok"], "detail": detail})
    return checks


# ----------------------------------------------------------------------------- loss
def problem_name(variant: str, num_classes: int, batch: int, patch) -> str:
    return f"{variant}, {num_classes} classes, batch {batch}, {'x'.join(map(str, patch))}"


def run_loss(args, device, limit=None, clock=time.perf_counter, run_problem=None) -> dict:
    """The loss problems one by one, autocast eager before compiled; with ``limit`` (seconds) a problem that
    would not fit (guessed from the longest of its variant, a compiled one from :data:`COMPILE_GUESS` times
    the longest eager one) is not started, one that overruns is stopped; both are listed in ``skipped``."""
    from benchmarks.speed import loss as lb
    run_problem = run_problem or lb.run_problem
    t0 = clock()
    batch, patch = lb.SIZES["tiny" if args.smoke else ("gpu" if device.type == "cuda" else "cpu")][3]
    batch = max(batch, 2)
    classes = args.classes or ([2, 4] if args.smoke else [2, 4, 16])
    if device.type == "cuda":
        variants = ["amp"] + ([] if args.no_compile else ["compile-amp"])  # nnU-Net's defaults: autocast, compile
    else:
        variants = ["eager"]
    repeats, warmup = (2, 1) if args.smoke else (10, 2)
    # full size: no row whose maps come from the CPU (scikit-image skeletons of 128^3 x 16 classes per call would
    # take minutes; benchmarks.speed.run times it at CPU sizes)
    rows = [r for r in lb.ROWS if args.smoke or "CPU" not in r.maps]
    problems, skipped_problems, longest = [], [], {}
    for v in variants:
        for c in classes:
            name, left = problem_name(v, c, batch, patch), None if limit is None else limit - (clock() - t0)
            guess = longest.get(v) or (COMPILE_GUESS * max(longest.values()) if "compile" in v and longest else 0.0)
            if left is not None and (left <= 0 or guess > left):
                skipped_problems.append({"problem": name, "reason": f"not started: about {guess:.0f} s needed, "
                                                                    f"{max(0.0, left):.0f} s left"})
                continue
            tp = clock()
            try:
                with time_limit(left):
                    problems += run_problem(3, c, batch, patch, device, [lb.Variant.parse(v)], repeats, warmup, rows)
            except BudgetExceeded:
                skipped_problems.append({"problem": name, "reason": f"cut by the budget after {clock() - tp:.0f} s"})
                if device.type == "cuda":
                    import torch
                    torch.cuda.empty_cache()
            longest[v] = max(longest.get(v, 0.0), clock() - tp)
    return {"problems": problems, "skipped": skipped_problems, "variants": variants, "rows": [r.key for r in rows],
            "wall_s": clock() - t0}


def loss_checks(loss: dict, device) -> List[dict]:
    checks = []
    for p in loss["problems"]:
        bad = [e["key"] + (f" ({e['error'][:120]})" if e.get("error") else "") for e in p["rows"]
               if e.get("error") or not (isinstance(e.get("ratio"), float) and math.isfinite(e["ratio"])
                                         and e["ratio"] > 0)]
        if device.type == "cuda":
            bad += [e["key"] + " (no peak memory)" for e in p["rows"]
                    if not e.get("error") and "peak_mem_bytes" not in e]
        missed = [f"{e['key']} {e['ratio']:.2f} > {e['target']:.2f}" for e in p["rows"] if e.get("status") == "missed"]
        worst = max((e["ratio"] for e in p["rows"] if e.get("ratio")), default=float("nan"))
        detail = ("; ".join(bad) if bad else f"{len(p['rows'])} rows, worst ratio {worst:.2f}"
                  + (f"; targets missed: {', '.join(missed)}" if missed else "; every target met"))
        name = problem_name(p["variant"], p["num_classes"], p["batch"], p["patch"])
        checks.append({"section": "loss", "check": name, "ok": not bad, "detail": detail})
    checks += [skipped("loss", s["problem"], s["reason"]) for s in loss.get("skipped", [])]
    return checks


# ----------------------------------------------------------------------------- step
def run_step(work: str, trainers: List[str], args, datasets=None, limit=None) -> dict:
    """The step benchmark on the e2e section's 3D labels dataset and plans when it ran, else on its own;
    with ``limit`` (seconds) the worker is stopped then (``{"skipped": reason}``)."""
    names = trainers + ([STORED_CWCD] if "nnUNetTrainerCWCD" in trainers else [])
    opts = ["--repeats", "2", "--warmup", "1", "--batches", "2"] if args.smoke else \
        ["--repeats", "10", "--warmup", "3", "--batches", "4"]
    if datasets:
        d = datasets["labels3d"]
        opts += ["--dataset", d["dataset"], "--plans", d["plans"], "--configuration", d["configuration"]]
        env = worker_env(work, nnUNet_results=os.path.join(work, "results_step"))
    else:
        opts += ["--source", "synthetic", "--cases", "5", "--tiny"] if args.smoke else \
            ["--source", "synthetic", "--cases", "6", "--shape", "96", "96", "96", "--batch-size", "2"]
        work = os.path.join(work, "step")
        env = worker_env(work)
    if args.no_compile or not args.step_compile:
        env["nnUNet_compile"] = "0"
    timeout = args.timeout if limit is None else max(1.0, min(args.timeout, limit))
    res = run_worker("benchmarks.speed.step", work, opts + ["--device", args.device, "--trainers", *names],
                     timeout=timeout, env=env)
    if "error" in res and limit is not None and timeout < args.timeout and "timed out" in res["error"]:
        return {"skipped": f"cut by the budget after {timeout:.0f} s", "wall_s": res["wall_s"]}
    return res


def step_checks(step: dict) -> List[dict]:
    if "skipped" in step:
        return [skipped("step", "step benchmark", step["skipped"])]
    if "error" in step:
        return [{"section": "step", "check": "step benchmark", "ok": False, "detail": step["error"][-600:]}]
    checks = [{"section": "step", "check": "same batches for every trainer", "ok": bool(step["same_batches"]),
               "detail": ""}]
    for r in step["rows"]:
        ok = math.isfinite(r["ratio"]) and r["ratio"] > 0 and len(r["times_s"]) == step["repeats"]
        checks.append({"section": "step", "check": f"{r['trainer']} ({r['maps']} maps)" if r["maps"] != "-"
                       else r["trainer"], "ok": ok,
                       "detail": f"{r['median_s'] * 1e3:.1f} ms per step, {r['ratio']:.3f}x nnUNetTrainer"})
    return checks


# ----------------------------------------------------------------------------- contours
def contour_comparison(loss: dict, step: dict) -> dict:
    """On-the-fly contours / stored maps: loss rows per problem, and CWCD's training step."""
    out = {"loss": [], "step": None}
    for p in (loss or {}).get("problems", []):
        by = {e["key"]: e for e in p["rows"]}
        for name in CONTOUR_ROWS:
            fly, stored = by.get(f"{name} on the fly", {}), by.get(f"{name} stored", {})
            if fly.get("median_s") and stored.get("median_s"):
                mem = (fly["peak_mem_bytes"] / stored["peak_mem_bytes"]
                       if fly.get("peak_mem_bytes") and stored.get("peak_mem_bytes") else None)
                out["loss"].append({"loss": name, "variant": p["variant"], "num_classes": p["num_classes"],
                                    "time_ratio": fly["median_s"] / stored["median_s"], "mem_ratio": mem})
    rows = {r["trainer"]: r for r in (step or {}).get("rows", [])}
    if "nnUNetTrainerCWCD" in rows and STORED_CWCD in rows:
        out["step"] = rows["nnUNetTrainerCWCD"]["median_s"] / rows[STORED_CWCD]["median_s"]
    return out


def contour_checks(c: dict, loss_skipped: bool = False) -> List[dict]:
    """``loss_skipped``: the loss section (or all of its problems) gave way to the budget, so an empty
    comparison is a skip, not a failure."""
    if not c["loss"] and loss_skipped:
        checks = [skipped("contours", "loss: on the fly / stored", "no loss problem ran within the budget")]
    else:
        ok = bool(c["loss"]) and all(math.isfinite(x["time_ratio"]) for x in c["loss"])
        worst = max((x["time_ratio"] for x in c["loss"]), default=float("nan"))
        checks = [{"section": "contours", "check": "loss: on the fly / stored", "ok": ok,
                   "detail": f"{len(c['loss'])} comparisons, worst {worst:.2f}x"}]
    if c["step"] is not None:
        checks.append({"section": "contours", "check": "CWCD training step: online / stored",
                       "ok": math.isfinite(c["step"]), "detail": f"{c['step']:.3f}x"})
    return checks


# ----------------------------------------------------------------------------- sections
def section_e2e(run, limit) -> List[dict]:
    run.result["e2e"] = run_e2e(run.work, run.trainers, run.args, limit)
    return e2e_checks(run.result["e2e"])


def section_loss(run, limit) -> List[dict]:
    run.result["loss"] = run_loss(run.args, run.device, limit)
    return loss_checks(run.result["loss"], run.device)


def section_step(run, limit) -> List[dict]:
    run.result["step"] = run_step(run.work, run.trainers, run.args, (run.result.get("e2e") or {}).get("datasets"),
                                  limit)
    return step_checks(run.result["step"])


def section_contours(run, limit) -> List[dict]:
    loss = run.result.get("loss")
    loss_skipped = "loss" in run.result["skipped_sections"] or bool(loss and loss.get("skipped"))
    run.result["contours"] = contour_comparison(loss, run.result.get("step"))
    return contour_checks(run.result["contours"], loss_skipped)


#: section name -> runner(run, limit) returning its checks (run: args, device, work, trainers, result)
RUNNERS = {"e2e": section_e2e, "loss": section_loss, "step": section_step, "contours": section_contours}


# ----------------------------------------------------------------------------- report
def _result_word(ok) -> str:
    return "skipped" if ok is None else "pass" if ok else "**FAIL**"


def table(checks: List[dict]) -> str:
    lines = ["| section | check | result | detail |", "|---|---|---|---|"]
    lines += [f"| {c['section']} | {c['check']} | {_result_word(c['ok'])} | {c['detail']} |" for c in checks]
    return "\n".join(lines)


def verdict(result: dict) -> str:
    """PASS / N FAILED, with the number of checks skipped for the budget."""
    checks = result["checks"]
    n_fail, n_skip = sum(c["ok"] is False for c in checks), sum(c["ok"] is None for c in checks)
    word = "PASS" if not n_fail else f"{n_fail} FAILED"
    return word + (f", {n_skip} skipped for the budget" if n_skip else "")


def summary_markdown(result: dict) -> str:
    meta = result["meta"]
    budget = result["settings"].get("budget")
    lines = [f"# Acceptance run, {meta['date_utc']}", "",
             f"`{meta['command']}` on {meta.get('gpu', {}).get('name', meta['cpu'])} (device {meta['device']}, "
             f"{'smoke sizes' if result['settings']['smoke'] else 'full sizes'}), git {meta['git']}, "
             f"{meta['wall_s'] / 60:.1f} min" + (f" of a {budget:.0f} s budget" if budget else "") +
             f": **{verdict(result)}** ({len(result['checks'])} checks)"
             + ("." if result.get("complete") else f"; **partial**: written after section(s) "
                                                    f"{', '.join(result['sections_done']) or 'none'}."),
             "", table(result["checks"]), ""]
    step = result.get("step") or {}
    if step.get("rows"):
        lines += [f"Training step ({step['configuration']}, patch {'x'.join(map(str, step['patch_size']))}, batch "
                  f"{step['batch_size']}, {step['repeats']} interleaved rounds):", "",
                  "| trainer | maps | ms per step | vs nnUNetTrainer |", "|---|---|---|---|"]
        lines += [f"| {r['trainer']} | {r['maps']} | {r['median_s'] * 1e3:.1f} | {r['ratio']:.3f} |"
                  for r in step["rows"]]
        lines.append("")
    cont = result.get("contours") or {}
    if cont.get("loss"):
        lines += ["On-the-fly contours / stored maps (loss forward + backward with deep supervision):", "",
                  "| loss | variant | classes | time ratio | peak memory ratio |", "|---|---|---|---|---|"]
        for x in cont["loss"]:
            mem = "-" if x["mem_ratio"] is None else f"{x['mem_ratio']:.2f}"
            lines.append(f"| {x['loss']} | {x['variant']} | {x['num_classes']} | {x['time_ratio']:.2f} | {mem} |")
    return "\n".join(lines).rstrip() + "\n"


def _write_text(text: str, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = _parse(argv)
    import torch

    from benchmarks.speed.run import machine_info, write_json
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda but CUDA is not available here (use --device cpu --smoke for a CPU check)",
              file=sys.stderr)
        return 2
    budget_s = args.budget if args.budget is not None else (CUDA_BUDGET_S if device.type == "cuda" else None)
    if budget_s is not None and budget_s < 0:
        print(f"--budget must be >= 0 seconds (0 = no budget), got {budget_s}", file=sys.stderr)
        return 2
    args.jobs = args.jobs or (4 if device.type == "cuda" else 2)
    out = args.out or (os.path.join(REPO, "benchmarks", "results") if device.type == "cuda"
                       else tempfile.mkdtemp(prefix="nnunet_losses_acceptance_"))
    work = args.work or tempfile.mkdtemp(prefix="nnunet_losses_acceptance_work_")
    if device.type == "cpu":
        torch.set_num_threads(1)
    for k, v in worker_env(work).items():  # nnU-Net, imported by the loss section, reads its folders at import
        if k.startswith("nnUNet_"):
            os.environ.setdefault(k, v)
    from benchmarks.speed.step import trainer_names
    trainers = args.trainers or trainer_names()
    meta = machine_info(device)
    meta["command"] = "python -m benchmarks.acceptance.gpu" + ("" if len(sys.argv) <= 1 else " " + " ".join(sys.argv[1:]))
    result = {"kind": "acceptance", "complete": False, "meta": meta,
              "settings": {**vars(args), "out": out, "work": work, "budget": budget_s or None},
              "checks": [], "sections_done": [], "skipped_sections": []}
    stem = f"{'gpu' if device.type == 'cuda' else 'cpu'}-{meta['date_utc'][:10]}"
    json_path, md_path = os.path.join(out, stem + ".json"), os.path.join(out, stem + ".md")
    t0 = time.perf_counter()

    def save():  # after every section: a run stopped from outside keeps what it measured
        meta["wall_s"] = time.perf_counter() - t0
        write_json(result, json_path)
        _write_text(summary_markdown(result), md_path)

    run = SimpleNamespace(args=args, device=device, work=work, trainers=trainers, result=result)
    minimum = MIN_SECTION_S["cuda" if device.type == "cuda" else "cpu"]
    budget = Budget(budget_s or None)
    try:
        for i, section in enumerate(args.sections):
            limit = budget.limit(reserve=sum(minimum[s] for s in args.sections[i + 1:]))
            if limit is not None and minimum[section] > 0 and limit < minimum[section]:
                reason = f"about {minimum[section]:.0f} s needed, {max(0.0, limit):.0f} s of the budget left for it"
                result["checks"].append(skipped(section, "section", reason))
                result["skipped_sections"].append(section)
                print(f"[{section}] skipped: {reason}", flush=True)
                save()
                continue
            t = time.perf_counter()
            print(f"[{section}] ..." + ("" if limit is None else f" (at most {limit:.0f} s)"), flush=True)
            try:
                result["checks"] += RUNNERS[section](run, limit)
            except Exception as e:  # a broken section is a failed check, the others still run
                result["checks"].append({"section": section, "check": "section ran", "ok": False,
                                         "detail": f"{type(e).__name__}: {e}"[:600]})
            result["sections_done"].append(section)
            print(f"[{section}] {time.perf_counter() - t:.0f} s", flush=True)
            save()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["complete"] = True
    save()
    print(table(result["checks"]))
    n_fail = sum(c["ok"] is False for c in result["checks"])
    word = verdict(result) if not n_fail else f"FAIL: {n_fail} of {len(result['checks'])} checks"
    print(f"\n{word} in {meta['wall_s'] / 60:.1f} min; wrote {json_path} and {md_path}")
    return 1 if n_fail else 0


if __name__ == "__main__":
    raise SystemExit(main())
