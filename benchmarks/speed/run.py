"""Benchmarks entry point: ``python -m benchmarks.speed.run`` (writes docs/benchmarks.md).

Runs, in one process and one run (so every ratio compares numbers taken side by side):

1. ``loss``: forward + backward with nnU-Net's deep supervision of every nnunet-losses loss against
   nnU-Net's ``DC_and_CE_loss`` (see :mod:`benchmarks.speed.loss`), 2D and 3D, 2 / 4 / 16 classes, for each
   variant (eager; ``--amp``; ``--compile``), with peak memory on CUDA;
2. ``maps``: map precompute against a naive SciPy loop and against nnU-Net's preprocessing, map size
   against preprocessed size, and nnU-Net's data-loader throughput (see :mod:`benchmarks.speed.maps`);
3. ``step``: a whole training step (``train_step``: network, loss, backward, optimizer) of every trainer
   against ``nnUNetTrainer`` on the same plans and batches, interleaved (see :mod:`benchmarks.speed.step`);

then writes ``benchmarks/results/<device>.json`` (raw numbers) and renders ``docs/benchmarks.md`` from
every results file present (a CPU run and a later GPU run end up side by side; the acceptance runs of
``benchmarks/acceptance/gpu.sh`` found there are listed too).

Examples::

    python -m benchmarks.speed.run                                   # CPU, CPU sizes (about 5 minutes on 2 cores)
    python -m benchmarks.speed.run --device cuda --sizes gpu --amp --compile
    python -m benchmarks.speed.run --sizes tiny --repeats 2 --sections loss --out-json /tmp/x.json --doc /tmp/x.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

from benchmarks.worker import REPO

RESULTS = os.path.join(REPO, "benchmarks", "results")
DOC = os.path.join(REPO, "docs", "benchmarks.md")


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed.run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--sizes", choices=("cpu", "gpu", "tiny"), default=None,
                    help="problem sizes: cpu = 2D batch 12 128x128, 3D batch 2 48^3 (default on CPU); gpu = 2D "
                         "batch 12 512x512, 3D batch 2 128^3 (nnU-Net's typical GPU sizes, default on CUDA); tiny = smoke test")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 3], choices=(2, 3))
    ap.add_argument("--classes", type=int, nargs="+", default=[2, 4, 16])
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per problem (default 30)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first (+3 when compiling)")
    ap.add_argument("--amp", action="store_true", help="also run with autocast (fp16 on CUDA, bf16 on CPU)")
    ap.add_argument("--compile", action="store_true", help="also run with torch.compile (as nnU-Net/our trainers do)")
    ap.add_argument("--no-eager", action="store_true", help="skip the plain eager fp32 variant")
    ap.add_argument("--rows", nargs="+", default=None, help="only these loss rows (names as in the table)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on CPU)")
    ap.add_argument("--sections", nargs="+", choices=("loss", "maps", "step"), default=["loss", "maps", "step"])
    ap.add_argument("--network", action=argparse.BooleanOptionalAction, default=True,
                    help="also time nnU-Net's network forward + backward per dimension (context for the loss times)")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                    help="profile rows that miss their target (largest class count of each dimension)")
    ap.add_argument("--maps-source", choices=("hippocampus", "synthetic"), default=None,
                    help="dataset for the maps section (default: Hippocampus if /work/shared/data has it)")
    ap.add_argument("--maps-cases", type=int, default=20)
    ap.add_argument("--maps-repeats", type=int, default=3)
    ap.add_argument("--loader-batches", type=int, default=30)
    ap.add_argument("--loader-only", action="store_true",
                    help="maps section: run only the data-loader benchmark and keep the precompute numbers of the "
                         "existing results file (they are still listed under that file's run)")
    ap.add_argument("--scaling-shape", type=int, nargs="*", default=[96, 96, 96])
    ap.add_argument("--step-source", choices=("hippocampus", "synthetic"), default=None,
                    help="dataset for the step section (default: Hippocampus 3d_fullres if /work/shared/data has it; "
                         "with --sizes tiny a synthetic dataset and shrunk plans)")
    ap.add_argument("--step-cases", type=int, default=20)
    ap.add_argument("--step-batch-size", type=int, default=2, help="replaces the plans' batch size (CPU time)")
    ap.add_argument("--step-repeats", type=int, default=12, help="interleaved rounds of training steps")
    ap.add_argument("--step-warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-json", default=None, help="results file (default benchmarks/results/<device>.json)")
    ap.add_argument("--update", action="store_true",
                    help="keep the other sections of an existing results file: only --sections are replaced (each "
                         "section records when and how it was measured)")
    ap.add_argument("--doc", default=DOC, help="markdown to render (default docs/benchmarks.md); '' = none")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


# ----------------------------------------------------------------------------- environment
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(mod: str) -> str:
    try:
        from importlib.metadata import version
        return version(mod)
    except Exception:
        return "not installed"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if out.returncode != 0:  # not a git checkout (a tree copied onto a GPU machine)
            return "unknown (no git)"
        return out.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")
    except Exception:
        return "unknown"


def machine_info(device) -> dict:
    import torch
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.speed.run" + ("" if len(sys.argv) <= 1 else " " + shlex.join(sys.argv[1:])),
        "host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "device": str(device), "git": _git_commit(),
        "versions": {m: _version(m) for m in ("torch", "nnunetv2", "numpy", "scipy", "blosc2", "edt",
                                              "connected-components-3d", "nnunet-losses")},
        "load_avg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2 ** 30, 1),
                       "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    return info


def _finite(obj):
    """NaN/inf -> None, so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(obj, path: str) -> None:
    """Atomic write (temporary file in the same folder, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_finite(obj), f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- sections
def run_loss_section(args, device, bar) -> list:
    import torch
    from benchmarks.speed import loss as lb
    sizes = lb.SIZES[args.sizes]
    variants = ([] if args.no_eager else ["eager"]) + (["amp"] if args.amp else []) + \
        (["compile"] if args.compile else []) + (["compile-amp"] if args.amp and args.compile else [])
    rows = lb.ROWS if not args.rows else [r for r in lb.ROWS if r.key in args.rows]
    if args.rows and len(rows) != len(args.rows):
        known = ", ".join(r.key for r in lb.ROWS)
        raise SystemExit(f"unknown --rows {sorted(set(args.rows) - {r.key for r in rows})}; known: {known}")
    out = []
    for dim in args.dims:
        batch, patch = sizes[dim]
        net_s = {}
        if args.network:
            bar.set_postfix_str(f"{dim}D network step")
            for v in variants:
                try:
                    net_s[v] = lb.network_step(dim, max(args.classes), batch, patch, device, "amp" in v,
                                               repeats=1 if device.type == "cpu" else 3)
                except Exception as e:  # context only: never fatal
                    net_s[v] = None
                    print(f"network step {dim}D {v} failed: {type(e).__name__}: {e}", file=sys.stderr)
        for c in args.classes:
            bar.set_postfix_str(f"{dim}D, {c} classes")
            out += lb.run_problem(dim, c, batch, patch, device, [lb.Variant.parse(v) for v in variants],
                                  args.repeats, args.warmup, rows, args.seed, tick=lambda: bar.update())
            for res in out[-len(variants):]:
                res["network_step_s"] = net_s.get(res["variant"])
            if args.profile and c == max(args.classes):
                for res in out[-len(variants):]:
                    res["profiles"] = profile_misses(res, rows, batch, patch, device, args.seed)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return out


def profile_misses(res: dict, rows, batch, patch, device, seed, top: int = 8) -> dict:
    """torch.profiler top operators (self time) of the rows that missed their target, and of nnU-Net's loss."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from benchmarks.speed import loss as lb
    missed = [e["key"] for e in res["rows"] if e.get("status") == "missed"]
    if not missed:
        return {}
    variant = lb.Variant.parse(res["variant"])
    prob = lb.make_problem(res["dim"], res["num_classes"], batch, patch, device,
                           lb.amp_dtype(device) if variant.amp else torch.float32, seed)
    calls = lb.build_calls(prob, [r for r in rows if r.key in missed], variant, device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    out = {}
    for key, call in calls.items():
        try:
            for _ in range(3 if variant.compiled else 1):
                call()
            with profile(activities=acts) as prof:
                for _ in range(3):
                    call()
                lb.device_sync(device)
        except Exception as e:
            out[key] = {"error": f"{type(e).__name__}: {e}"[:300]}
            continue
        attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        events = [ev for ev in prof.key_averages() if getattr(ev, attr, 0) > 0]
        total = sum(getattr(ev, attr) for ev in events) or 1.0
        events.sort(key=lambda ev: getattr(ev, attr), reverse=True)
        out[key] = {"time": attr, "total_us_per_call": total / 3,
                    "ops": [{"name": ev.key, "self_us_per_call": getattr(ev, attr) / 3,
                             "share": getattr(ev, attr) / total, "calls_per_call": ev.count / 3}
                            for ev in events[:top]]}
    return out


def run_maps_section(args) -> dict:
    source = args.maps_source or ("hippocampus" if os.path.isdir("/work/shared/data/Hippocampus/images")
                                  else "synthetic")
    with tempfile.TemporaryDirectory(prefix="nnunet_losses_bench_") as work:
        env = dict(os.environ, nnUNet_raw=os.path.join(work, "raw"),
                   nnUNet_preprocessed=os.path.join(work, "preprocessed"),
                   nnUNet_results=os.path.join(work, "results"), OMP_NUM_THREADS="1",
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-m", "benchmarks.speed.maps", "--work", work, "--source", source,
               "--cases", str(args.maps_cases), "--repeats", str(args.maps_repeats),
               "--loader-batches", str(args.loader_batches), "--scaling-shape", *map(str, args.scaling_shape)]
        cmd += ["--only-loader"] if args.loader_only else []
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": f"maps worker failed (exit {proc.returncode}): {proc.stderr[-1500:]}", "source": source}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = wall
    if args.loader_only:  # the existing file's maps section with this run's loader numbers
        path = args.out_json or os.path.join(RESULTS, f"{args.device.split(':')[0]}.json")
        with open(path) as f:
            old = json.load(f).get("maps") or {}
        res = {**old, "loader": {**res["loader"], "measured_utc": datetime.datetime.now(
            datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": "python -m benchmarks.speed.run "
            + shlex.join(sys.argv[1:]), "git": _git_commit()}}
    return res


def updated_results(path: str, new: dict, sections) -> dict:
    """The results file at ``path`` with ``sections`` replaced by those of ``new``; each replaced section
    records the run it comes from under ``meta.section_runs``."""
    with open(path) as f:
        old = json.load(f)
    keys = {"loss": "loss", "maps": "maps", "step": "step"}
    runs = old["meta"].setdefault("section_runs", {})
    for sec in sections:
        old[keys[sec]] = new.get(keys[sec])
        runs[sec] = {k: new["meta"].get(k) for k in ("date_utc", "command", "git", "cpu", "cpu_count", "wall_s",
                                                      "load_avg_start", "load_avg_end", "torch_threads")}
    return old


def run_step_section(args) -> dict:
    """:mod:`benchmarks.speed.step` in a worker process, in a temporary folder."""
    from benchmarks.worker import run_worker
    tiny = args.sizes == "tiny"
    source = args.step_source or ("synthetic" if tiny or not os.path.isdir("/work/shared/data/Hippocampus/images")
                                  else "hippocampus")
    opts = ["--source", source, "--cases", str(5 if tiny else args.step_cases), "--repeats", str(args.step_repeats),
            "--warmup", str(args.step_warmup), "--device", args.device, "--seed", str(args.seed)]
    opts += ["--tiny", "--batches", "2"] if tiny else ["--batch-size", str(args.step_batch_size), "--profile-misses"]
    with tempfile.TemporaryDirectory(prefix="nnunet_losses_step_") as work:
        return run_worker("benchmarks.speed.step", work, opts)


def main(argv=None) -> str:
    args = _parse(argv)
    import torch
    from tqdm import tqdm
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available on this machine")
    if args.sizes is None:
        args.sizes = "gpu" if device.type == "cuda" else "cpu"
    if args.repeats is None:
        args.repeats = 30
    threads = args.threads or (1 if device.type == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    os.environ.setdefault("nnUNet_raw", tempfile.gettempdir())  # silence nnunetv2.paths; nothing is written there
    os.environ.setdefault("nnUNet_preprocessed", tempfile.gettempdir())
    os.environ.setdefault("nnUNet_results", tempfile.gettempdir())
    from benchmarks.speed import loss as lb

    result = {"meta": machine_info(device), "settings": {k: v for k, v in vars(args).items()}}
    t0 = time.perf_counter()
    n_rows = len(lb.ROWS if not args.rows else [r for r in lb.ROWS if r.key in args.rows]) + 1
    n_var = (0 if args.no_eager else 1) + int(args.amp) + int(args.compile) + int(args.amp and args.compile)
    total = 0
    if "loss" in args.sections:
        total = len(args.dims) * len(args.classes) * n_var * n_rows * (args.repeats + args.warmup)
        total += len(args.dims) * len(args.classes) * n_rows * 3 * (int(args.compile) + int(args.amp and args.compile))
    with tqdm(total=total, desc="benchmarks", unit="call", disable=args.no_progress) as bar:
        if "loss" in args.sections:
            result["loss"] = run_loss_section(args, device, bar)
        if "maps" in args.sections:
            bar.set_postfix_str("maps + loader (subprocess)")
            result["maps"] = run_maps_section(args)
        if "step" in args.sections:
            bar.set_postfix_str("training steps (subprocess)")
            result["step"] = run_step_section(args)
    result["meta"]["wall_s"] = time.perf_counter() - t0
    result["meta"]["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out_json = args.out_json or os.path.join(RESULTS, f"{device.type}.json")
    if args.update and os.path.isfile(out_json):
        result = updated_results(out_json, result, args.sections)
    write_json(result, out_json)
    print(f"wrote {out_json}")
    if args.doc:
        from benchmarks.speed import report
        folder = os.path.dirname(os.path.abspath(out_json))
        files = sorted({os.path.abspath(out_json)} | {os.path.join(folder, f) for f in os.listdir(folder)
                                                        if f.endswith(".json")})
        loaded = [report.load(f) for f in files]
        report.write(args.doc, [r for r in loaded if r.get("kind") != "acceptance"],
                     [r for r in loaded if r.get("kind") == "acceptance"])
        print(f"wrote {args.doc}")
    return out_json


if __name__ == "__main__":
    main()
