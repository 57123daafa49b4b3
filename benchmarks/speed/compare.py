"""Cost of the compare tool's statistics and topology metrics (not a timed test).

Generates 100 small 3D cases (40 x 48 x 40 voxels, spacing 2 x 0.8 x 0.8 mm, two labels: a blob
and a curved tube) and six methods' predictions of them (baseline: one voxel off; then shifted,
eroded, dilated, broken (the tube cut), noisy (false-positive specks))
as NIfTI files in a temporary folder, then times the ``nnunet_losses_compare`` command (the whole
run as a user sees it: start-up and imports, reading, metrics, tables, CSVs, plots; no overlays) in
these settings:

- ``plain``: the default metrics, one process;
- ``stats``: the same with ``--baseline`` and ``--ranking`` (10 000 + 1 000 bootstrap samples): every
  statistics addition on (paired.csv with Hodges-Lehmann, per-class rankings with rank quantiles and
  Kendall's tau, pairwise.csv, consensus.csv, blob plots and significance maps);
- ``topology np1`` / ``topology np2``: the default metrics plus cldice, betti0_error and
  betti1_error, with one and with two worker processes (``plain np2``: the reference for the latter).

Each setting runs ``--repeat`` times (default 3) and the fastest run counts (the machine may be
shared). Both wall time and CPU time (the command and its worker processes) are reported: on a
loaded machine the CPU time is the steadier measure of the work added. Usage::

    python benchmarks/speed/compare.py [--cases 100] [--repeat 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage

SHAPE = (40, 48, 40)
SPACING_ZYX = (2.0, 0.8, 0.8)
METHODS = ["baseline", "shifted", "eroded", "dilated", "broken", "noisy"]
TOPOLOGY = ["cldice", "betti0_error", "betti1_error"]


def reference(rng) -> np.ndarray:
    """Label 1: a random ellipsoid; label 2: a tube along a random sine curve (thin, topology matters)."""
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    c = rng.uniform([12, 14, 12], [28, 22, 20])
    r = rng.uniform([4, 6, 5], [7, 10, 8])
    seg = np.zeros(SHAPE, np.uint8)
    seg[((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1] = 1
    amp, phase = rng.uniform(2, 5), rng.uniform(0, 2 * np.pi)
    cy = 36 + amp * np.sin(np.arange(SHAPE[2]) / 6.0 + phase)
    tube = (z - 20) ** 2 / 4.0 + (y - cy[None, None, :]) ** 2 <= rng.uniform(2.0, 4.0)
    seg[tube & (x > 3) & (x < SHAPE[2] - 4)] = 2
    return seg


def predict(ref: np.ndarray, method: str, rng) -> np.ndarray:
    """One method's prediction: the reference moved by one voxel, then changed in the method's own way."""
    base = np.roll(ref, 1, axis=2)  # every method is one voxel (0.8 mm) off along x
    pred = base.copy()
    if method == "shifted":
        pred = np.roll(base, int(rng.integers(1, 3)), axis=1)
    elif method == "eroded":
        for label in (1, 2):
            m = base == label
            pred[m & ~ndimage.binary_erosion(m)] = 0
    elif method == "dilated":
        for label in (1, 2):
            pred[ndimage.binary_dilation(base == label) & (pred == 0)] = label
    elif method == "broken":  # the tube cut in one place: Dice barely moves, the topology does
        x = int(rng.integers(10, 30))
        pred[:, :, x:x + 2][pred[:, :, x:x + 2] == 2] = 0
    elif method == "noisy":  # a few false-positive specks of tube
        specks = ndimage.gaussian_filter(rng.random(SHAPE), 1.5) > 0.59
        pred[specks & (base == 0)] = 2
    return pred


def write_dataset(root: str, n_cases: int, seed: int = 0) -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    for d in ["labelsTs"] + METHODS:
        os.makedirs(os.path.join(root, d))
    for i in range(n_cases):
        ref = reference(rng)
        arrays = {"labelsTs": ref, **{m: predict(ref, m, rng) for m in METHODS}}
        for d, arr in arrays.items():
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing(tuple(reversed(SPACING_ZYX)))
            sitk.WriteImage(im, os.path.join(root, d, f"case_{i:03d}.nii.gz"))
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "blob": 1, "tube": 2},
                   "numTraining": n_cases, "file_ending": ".nii.gz"}, f)


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (the command and its worker processes)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(root: str, repeat: int, args) -> tuple[float, float]:
    """(best wall time, best CPU time) in seconds of the ``nnunet_losses_compare`` command with ``args``."""
    cli = os.path.join(os.path.dirname(sys.executable), "nnunet_losses_compare")
    out = os.path.join(root, "out")
    cmd = [cli, "-i", *[f"{m}={os.path.join(root, m)}" for m in METHODS], "-ref", os.path.join(root, "labelsTs"),
           "--dataset-json", os.path.join(root, "dataset.json"), "-o", out, "--overlays", "0", "--no-progress",
           *args]
    wall = cpu = float("inf")
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        t0, c0 = time.perf_counter(), _children_cpu()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, MPLBACKEND="Agg"))
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, _children_cpu() - c0)
    return wall, cpu


def breakdown(root: str) -> dict:
    """CPU seconds of each step that --baseline/--ranking add, measured in this (fresh) process."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    from nnunet_losses.nnunet.tools.compare import methods_from_folders
    from nnunet_losses.nnunet.tools.compare.checks import check_inputs
    from nnunet_losses.nnunet.tools.compare.paired import holds_lines, paired_comparison, paired_section
    from nnunet_losses.nnunet.tools.compare.pairwise import pairwise_section, pairwise_table
    from nnunet_losses.nnunet.tools.compare.plots import plot_ranking, plot_significance
    from nnunet_losses.nnunet.tools.compare.ranking import (consensus_section, consensus_table, ranking_section,
                                                            ranking_table)
    from nnunet_losses.nnunet.tools.compare.reading import build_jobs, parse_labels
    from nnunet_losses.nnunet.tools.compare.table import MEAN, MetricOptions, evaluate

    with open(os.path.join(root, "dataset.json")) as f:
        dataset_json = json.load(f)
    methods = methods_from_folders([f"{m}={os.path.join(root, m)}" for m in METHODS])
    classes, names, ignore = parse_labels(dataset_json)
    jobs = build_jobs(methods, os.path.join(root, "labelsTs"), ".nii.gz")
    reader = determine_reader_writer_from_dataset_json(dataset_json, jobs[0][1], verbose=False)
    metrics = ["dice", "iou", "hd95", "nsd", "precision", "recall"]
    class_order = [str(c) for c in classes] + [MEAN]
    steps, t = {}, time.process_time()

    def mark(name):
        nonlocal t
        steps[name] = time.process_time() - t
        t = time.process_time()

    check_inputs(jobs, reader, dataset_json, METHODS, 1, False)
    mark("input checks (every file read once before the metrics)")
    df, _ = evaluate(jobs, reader, classes, ignore, MetricOptions(), 1, False)
    mark("evaluation (all cases, default metrics)")
    importlib.import_module("scipy.stats")  # its first use in a run
    mark("import scipy.stats")
    paired = paired_comparison(df, metrics, methods, 0, class_order)
    mark("paired comparison (10 000 draws, Hodges-Lehmann)")
    ranks = ranking_table(df, metrics, methods, class_order=class_order)
    mark("rankings of every class and the mean row (1 000 draws, quantiles, Kendall's tau)")
    pairs = pairwise_table(df, metrics, methods)
    consensus = consensus_table(ranks, metrics)
    mark("pairwise one-sided tests and consensus")
    [paired_section(paired, m, methods, 0, class_order, {}) for m in metrics]
    [ranking_section(ranks, m) + pairwise_section(pairs, m) for m in metrics]
    consensus_section(consensus)
    holds_lines(paired, methods, 0, {})
    mark("Markdown tables and console lines")
    for m in metrics:
        plot_ranking(ranks, m, os.path.join(root, f"ranking_{m}.png"))
        plot_significance(pairs, ranks, m, os.path.join(root, f"significance_{m}.png"))
    mark("blob plots and significance maps")
    return steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", help="write the timings here as well")
    p.add_argument("--breakdown", action="store_true", help="also: CPU time of each statistics step, in process")
    p.add_argument("--settings", nargs="+", help="run only these settings (default: all; plain and stats are needed "
                                                 "for the statistics figure)")
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = tempfile.mkdtemp(prefix="compare_bench_")
    try:
        t0 = time.perf_counter()
        write_dataset(root, a.cases)
        print(f"{a.cases} cases x {len(METHODS)} methods written in {time.perf_counter() - t0:.1f} s ({root})",
              flush=True)
        default = ["--metrics", "dice", "iou", "hd95", "nsd", "precision", "recall"]
        settings = {
            "plain": default,
            "stats": default + ["--baseline", "baseline", "--ranking"],
            "plain np2": default + ["-np", "2"],
            "topology np1": default + TOPOLOGY,
            "topology np2": default + TOPOLOGY + ["-np", "2"],
        }
        settings = {k: v for k, v in settings.items() if not a.settings or k in a.settings}
        times = {}
        for name, args in settings.items():
            times[name] = run(root, a.repeat, args)
            print(f"{name:>14}: wall {times[name][0]:6.2f} s, CPU {times[name][1]:6.2f} s", flush=True)
        for i, kind in enumerate(("wall", "CPU") if {"plain", "stats"} <= set(times) else ()):
            plain, stats = times["plain"][i], times["stats"][i]
            print(f"statistics + ranking ({kind}): +{stats - plain:.2f} s = {100 * (stats / plain - 1):+.1f}% "
                  f"(goal: at most +25%)")
        for np_ in (1, 2):
            if f"topology np{np_}" not in times or ("plain" if np_ == 1 else "plain np2") not in times:
                continue
            ref = times["plain" if np_ == 1 else "plain np2"][0]
            topo = times[f"topology np{np_}"][0]
            print(f"topology metrics with -np {np_} (wall): +{topo - ref:.2f} s over the default metrics "
                  f"({topo:.2f} s vs {ref:.2f} s)")
        if a.breakdown:
            steps = breakdown(root)
            for name, sec in steps.items():
                print(f"  {name}: {sec:.2f} s CPU")
            times["breakdown"] = steps
        try:
            load = os.getloadavg()
        except OSError:
            load = None
        print(f"load average at the end: {load}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"cases": a.cases, "methods": len(METHODS), "seconds_wall_cpu": times,
                           "cpus": os.cpu_count(), "loadavg": load, "python": sys.version.split()[0]}, f, indent=2)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
