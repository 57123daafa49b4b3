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
  ``nnUNetTrainer``, same plans and batches, interleaved (CWCD also with stored maps);
* ``contours``: on-the-fly contours against stored maps, from the two sections above (CWCE, SDL and
  CWCD loss rows; CWCD's training step online against stored).

Writes ``<out>/<gpu|cpu>-<date>.json`` (``--out``: ``benchmarks/results`` on CUDA; with ``--device cpu`` a
new temporary folder unless given) and ``<out>/<gpu|cpu>-<date>.md`` (a Markdown summary), prints the
pass/fail table, and exits 1 if any check failed. ``--device cpu --smoke`` runs everything in
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
from typing import Dict, List

from benchmarks.worker import REPO, run_worker, worker_env

LABELS3D, REGIONS2D = (990, "AcceptLabels3D"), (991, "AcceptRegions2D")
CONTOUR_ROWS = ("CWCE", "SDL", "CWCD")
STORED_CWCD = "nnUNetTrainerCWCD:maps=stored"
#: with --smoke, the trainers that also run on the 2D regions dataset (region targets with maps)
SMOKE_REGION_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerCWCD", "nnUNetTrainerDWCE", "nnUNetTrainerSkeletonRecall")


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acceptance.gpu", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and few repetitions (CPU check of the script)")
    ap.add_argument("--out", default=None, help="results folder (default: benchmarks/results on CUDA, a temporary "
                                                "folder on a CPU)")
    ap.add_argument("--sections", nargs="+", choices=("e2e", "loss", "step", "contours"),
                    default=["e2e", "loss", "step", "contours"])
    ap.add_argument("--trainers", nargs="+", default=None, help="default: nnUNetTrainer and every trainer")
    ap.add_argument("--jobs", type=int, default=None, help="parallel e2e workers (default 4 on CUDA, 2 on a CPU)")
    ap.add_argument("--classes", type=int, nargs="+", default=None, help="loss section (default 2 4 16; smoke 2 4)")
    ap.add_argument("--no-compile", action="store_true", help="nnUNet_compile=0 everywhere (compile is nnU-Net's "
                                                              "default on CUDA)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per worker process")
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


def run_e2e(work: str, trainers: List[str], args) -> dict:
    import json

    from benchmarks.acceptance.e2e import write_short_trainers
    t0 = time.perf_counter()
    datasets = prepare_datasets(work, args.smoke)
    cpu = args.device == "cpu"
    ext = write_short_trainers(os.path.join(work, "trainers"), trainers, iterations=2 if args.smoke else 5,
                               val_iterations=1 if args.smoke else 2, threads=1 if cpu else 2)
    jobs = e2e_jobs(datasets, trainers, args.smoke)
    n = max(1, min(args.jobs, len(jobs)))
    chunks = [jobs[i::n] for i in range(n)]

    def worker(i):
        env = worker_env(work, nnUNet_results=os.path.join(work, f"results_{i}"),
                         nnUNet_extTrainer=os.pathsep.join([ext] + [p for p in os.environ.get(
                             "nnUNet_extTrainer", "").split(os.pathsep) if p]),
                         nnUNet_n_proc_DA="0" if cpu else str(max(2, (os.cpu_count() or 8) // n - 1)),
                         **({"nnUNet_compile": "0"} if args.no_compile or cpu else {}))
        return run_worker("benchmarks.acceptance.e2e", work, ["--jobs", json.dumps(chunks[i]), "--device",
                                                              args.device], timeout=args.timeout, env=env)

    with ThreadPoolExecutor(max_workers=n) as ex:
        outs = list(ex.map(worker, range(n)))
    results = [r for o in outs if isinstance(o, list) for r in o]
    errors = [o["error"] for o in outs if isinstance(o, dict) and "error" in o]
    return {"datasets": datasets, "jobs": results, "worker_errors": errors, "wall_s": time.perf_counter() - t0}


def e2e_checks(e2e: dict) -> List[dict]:
    checks = [{"section": "e2e", "check": "workers", "ok": not e2e["worker_errors"],
               "detail": "; ".join(e[:300] for e in e2e["worker_errors"])}]
    for job in e2e["jobs"]:
        name = f"{job['trainer']}{' (' + job['options'] + ')' if job.get('options') else ''} on {job['dataset']}"
        failed = [k for k, v in job["checks"].items() if not v]
        times = ", ".join(f"{k} {v:.0f} s" for k, v in job["steps"].items())
        detail = job.get("error") or ("failed: " + ", ".join(failed) if failed else "train, --c, predict: " + times)
        checks.append({"section": "e2e", "check": name, "ok": job["ok"], "detail": detail})
    return checks


# ----------------------------------------------------------------------------- loss
def run_loss(args, device) -> dict:
    from benchmarks.speed import loss as lb
    t0 = time.perf_counter()
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
    problems = []
    for c in classes:
        problems += lb.run_problem(3, c, batch, patch, device, [lb.Variant.parse(v) for v in variants], repeats,
                                   warmup, rows)
    return {"problems": problems, "variants": variants, "rows": [r.key for r in rows],
            "wall_s": time.perf_counter() - t0}


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
        name = f"{p['variant']}, {p['num_classes']} classes, batch {p['batch']}, {'x'.join(map(str, p['patch']))}"
        checks.append({"section": "loss", "check": name, "ok": not bad, "detail": detail})
    return checks


# ----------------------------------------------------------------------------- step
def run_step(work: str, trainers: List[str], args, datasets=None) -> dict:
    """The step benchmark on the e2e section's 3D labels dataset and plans when it ran, else on its own."""
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
    if args.no_compile:
        env["nnUNet_compile"] = "0"
    return run_worker("benchmarks.speed.step", work, opts + ["--device", args.device, "--trainers", *names],
                      timeout=args.timeout, env=env)


def step_checks(step: dict) -> List[dict]:
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


def contour_checks(c: dict) -> List[dict]:
    ok = bool(c["loss"]) and all(math.isfinite(x["time_ratio"]) for x in c["loss"])
    worst = max((x["time_ratio"] for x in c["loss"]), default=float("nan"))
    checks = [{"section": "contours", "check": "loss: on the fly / stored", "ok": ok,
               "detail": f"{len(c['loss'])} comparisons, worst {worst:.2f}x"}]
    if c["step"] is not None:
        checks.append({"section": "contours", "check": "CWCD training step: online / stored",
                       "ok": math.isfinite(c["step"]), "detail": f"{c['step']:.3f}x"})
    return checks


# ----------------------------------------------------------------------------- report
def table(checks: List[dict]) -> str:
    lines = ["| section | check | result | detail |", "|---|---|---|---|"]
    lines += [f"| {c['section']} | {c['check']} | {'pass' if c['ok'] else '**FAIL**'} | {c['detail']} |"
              for c in checks]
    return "\n".join(lines)


def summary_markdown(result: dict) -> str:
    meta = result["meta"]
    n_fail = sum(not c["ok"] for c in result["checks"])
    lines = [f"# Acceptance run, {meta['date_utc']}", "",
             f"`{meta['command']}` on {meta.get('gpu', {}).get('name', meta['cpu'])} (device {meta['device']}, "
             f"{'smoke sizes' if result['settings']['smoke'] else 'full sizes'}), git {meta['git']}, "
             f"{meta['wall_s'] / 60:.1f} min: **{'PASS' if not n_fail else f'{n_fail} FAILED'}** "
             f"({len(result['checks'])} checks).", "", table(result["checks"]), ""]
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


def main(argv=None) -> int:
    args = _parse(argv)
    import torch

    from benchmarks.speed.run import write_json, machine_info
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda but CUDA is not available here (use --device cpu --smoke for a CPU check)",
              file=sys.stderr)
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
    meta["command"] = "bash benchmarks/acceptance/gpu.sh" + ("" if len(sys.argv) <= 1 else " " + " ".join(sys.argv[1:]))
    result = {"kind": "acceptance", "meta": meta, "settings": {**vars(args), "out": out, "work": work},
              "checks": []}
    t0 = time.perf_counter()
    try:
        for section in args.sections:
            t = time.perf_counter()
            print(f"[{section}] ...", flush=True)
            try:
                if section == "e2e":
                    result["e2e"] = run_e2e(work, trainers, args)
                    result["checks"] += e2e_checks(result["e2e"])
                elif section == "loss":
                    result["loss"] = run_loss(args, device)
                    result["checks"] += loss_checks(result["loss"], device)
                elif section == "step":
                    result["step"] = run_step(work, trainers, args, (result.get("e2e") or {}).get("datasets"))
                    result["checks"] += step_checks(result["step"])
                else:
                    result["contours"] = contour_comparison(result.get("loss"), result.get("step"))
                    result["checks"] += contour_checks(result["contours"])
            except Exception as e:  # a broken section is a failed check, the others still run
                result["checks"].append({"section": section, "check": "section ran", "ok": False,
                                         "detail": f"{type(e).__name__}: {e}"[:600]})
            print(f"[{section}] {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    meta["wall_s"] = time.perf_counter() - t0
    stem = f"{'gpu' if device.type == 'cuda' else 'cpu'}-{meta['date_utc'][:10]}"
    json_path, md_path = os.path.join(out, stem + ".json"), os.path.join(out, stem + ".md")
    write_json(result, json_path)
    with open(md_path, "w") as f:
        f.write(summary_markdown(result))
    print(table(result["checks"]))
    n_fail = sum(not c["ok"] for c in result["checks"])
    verdict = "PASS" if not n_fail else f"FAIL: {n_fail} of {len(result['checks'])} checks"
    print(f"\n{verdict} in {meta['wall_s'] / 60:.1f} min; wrote {json_path} and {md_path}")
    return 1 if n_fail else 0


if __name__ == "__main__":
    raise SystemExit(main())
