"""Render ``docs/benchmarks.md`` from the results files of ``python -m benchmarks.speed.run``.

Everything in the document is generated except the blocks between ``<!-- keep:NAME -->`` and
``<!-- /keep:NAME -->``, which are hand-written and carried over from the existing document (or
filled with the defaults below when the document does not exist yet).
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Dict, List, Optional

from benchmarks.worker import REPO

KEEP = re.compile(r"<!-- keep:(\w+) -->\n(.*?)<!-- /keep:\1 -->", re.S)

DEFAULT_KEEP = {
    "intro": "How the numbers are measured: see `benchmarks/speed/loss.py` and `benchmarks/speed/maps.py`.\n",
    "notes": "(hand-written notes on the misses go here)\n",
}

#: target groups (speed and memory goals of docs/benchmarks.md), in the order of the summary
TARGETS = [
    ("<= 1.10x", ["Combo", "AsymFbeta", "Tversky", "GDL", "Focal"]),
    ("<= 1.25x (stored maps)", ["CWCE stored", "SDL stored", "CWCD stored"]),
    ("<= 1.35x (on the fly, GPU)", ["CWCE on the fly", "SDL on the fly", "CWCD on the fly"]),
    ("<= 1.5x", ["TopKDice", "CETopKDice", "OsC stored", "OsC on the fly"]),
    ("<= 1.15x (skeleton given)", ["SkeletonRecall stored"]),
    ("<= 2x", ["clDice"]),
]


def load(path: str) -> dict:
    with open(path) as f:
        res = json.load(f)
    res["_file"] = os.path.relpath(path, REPO)
    return res


def _keep_blocks(path: str) -> Dict[str, str]:
    blocks = dict(DEFAULT_KEEP)
    if os.path.isfile(path):
        with open(path) as f:
            blocks.update({m.group(1): m.group(2) for m in KEEP.finditer(f.read())})
    return blocks


def _keep(name: str, blocks: Dict[str, str]) -> str:
    return f"<!-- keep:{name} -->\n{blocks.get(name, '')}<!-- /keep:{name} -->\n"


def _fmt_ratio(x: Optional[float]) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _status(entry: dict, device_type: str) -> str:
    st = entry.get("status")
    if st is None:
        return ""
    mark = "met" if st == "met" else "**missed**"
    if entry.get("gpu_only_target") and device_type != "cuda":
        mark = "met*" if st == "met" else "missed*"
    return " " + mark


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _device_label(res: dict) -> str:
    meta = res["meta"]
    if "gpu" in meta:
        return f"GPU ({meta['gpu']['name']})"
    return "CPU"


def _runs_table(results: List[dict]) -> List[str]:
    lines = ["| | " + " | ".join(_device_label(r) for r in results) + " |",
             "|---|" + "---|" * len(results)]

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(r) for r in results) + " |")

    row("date", lambda r: r["meta"]["date_utc"])
    row("command", lambda r: f"`{r['meta']['command']}`")
    row("results file", lambda r: f"`{r['_file']}`")
    row("machine", lambda r: f"{r['meta']['cpu']}, {r['meta']['cpu_count']} logical CPUs"
        + (f"; {r['meta']['gpu']['name']} ({r['meta']['gpu']['memory_gib']} GiB, CUDA {r['meta']['gpu']['cuda']})"
           if "gpu" in r["meta"] else ""))
    row("torch threads", lambda r: str(r["meta"]["torch_threads"]))
    row("versions", lambda r: ", ".join(f"{k} {v}" for k, v in r["meta"]["versions"].items()))
    row("python / OS", lambda r: f"{r['meta']['python']} / {r['meta']['platform']}")
    row("git", lambda r: r["meta"]["git"])
    row("load average (1/5/15 min) at start / end",
        lambda r: " / ".join(", ".join(f"{x:.2f}" for x in la) if la else "-"
                             for la in (r["meta"].get("load_avg_start"), r["meta"].get("load_avg_end"))))
    row("wall time", lambda r: f"{r['meta'].get('wall_s', 0) / 60:.1f} min")
    row("timed rounds per problem", lambda r: f"{r['settings']['repeats']} (+{r['settings']['warmup']} warm-up)")
    return lines


def _problem_title(p: dict) -> str:
    shape = "x".join(str(s) for s in p["patch"])
    w = ", ".join(f"{x:.3g}" for x in p["ds_weights"])
    return (f"{p['dim']}D, batch {p['batch']}, patch {shape}, batch_dice={p['batch_dice']}; "
            f"{len(p['ds_weights'])} deep-supervision outputs {', '.join('x'.join(map(str, s)) for s in p['scale_shapes'])} "
            f"with weights {w}")


def _group(problems: List[dict]) -> Dict[tuple, List[dict]]:
    groups: Dict[tuple, List[dict]] = {}
    for p in problems:
        groups.setdefault((p["variant"], p["dim"]), []).append(p)
    return groups


def _loss_tables(res: dict) -> List[str]:
    dev = "cuda" if "gpu" in res["meta"] else "cpu"
    lines = []
    for (variant, dim), probs in _group(res.get("loss", [])).items():
        probs = sorted(probs, key=lambda p: p["num_classes"])
        lines += [f"### {_device_label(res)}, {variant}, {dim}D", "", _problem_title(probs[0]) + ".", ""]
        head = "| loss | maps | target | " + " | ".join(f"{p['num_classes']} classes" for p in probs) + " |"
        lines += [head, "|---|---|---|" + "---|" * len(probs)]
        base = [next(e for e in p["rows"] if e["key"].startswith("nnU-Net")) for p in probs]
        lines.append("| **nnU-Net DC_and_CE** (median ms) | - | - | "
                     + " | ".join(f"{b['median_s'] * 1e3:.1f} ms" if b.get("median_s") else "-" for b in base) + " |")
        if any(p.get("network_step_s") for p in probs):
            lines.append("| for scale: nnU-Net's network, forward + backward (ms; once per dimension) | - | - | "
                         + " | ".join(f"{p['network_step_s'] * 1e3:.0f} ms" if p.get("network_step_s") else "-"
                                      for p in probs) + " |")
        keys = [e["key"] for e in probs[0]["rows"] if not e["key"].startswith("nnU-Net")]
        for key in keys:
            cells = []
            ent0 = None
            for p in probs:
                e = next((x for x in p["rows"] if x["key"] == key), None)
                ent0 = ent0 or e
                if e is None:
                    cells.append("-")
                elif e.get("error"):
                    cells.append(f"error: {e['error'][:60]}")
                else:
                    cells.append(f"{_fmt_ratio(e['ratio'])}{_status(e, dev)}")
            tgt = f"<= {ent0['target']:.2f}" + ("*" if ent0.get("gpu_only_target") else "") if ent0 and ent0.get(
                "target") else "-"
            lines.append(f"| {key} | {ent0['maps'] if ent0 else '-'} | {tgt} | " + " | ".join(cells) + " |")
        lines.append("")
        if any("peak_mem_bytes" in e for p in probs for e in p["rows"]):
            lines += ["Peak CUDA memory of one call above what was allocated before it (ratio to nnU-Net; target "
                      "<= 1.15x):", "",
                      "| loss | " + " | ".join(f"{p['num_classes']} classes" for p in probs) + " |",
                      "|---|" + "---|" * len(probs)]
            for key in ["nnU-Net DC_and_CE"] + keys:
                cells = []
                for p in probs:
                    e = next((x for x in p["rows"] if x["key"] == key), {})
                    if "peak_mem_bytes" not in e:
                        cells.append("-")
                    elif key.startswith("nnU-Net"):
                        cells.append(_human_bytes(e["peak_mem_bytes"]))
                    else:
                        r = e.get("mem_ratio")
                        cells.append(f"{_fmt_ratio(r)}{' met' if r is not None and r <= 1.15 else ' **missed**'}")
                lines.append(f"| {key} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def _profile_sections(res: dict) -> List[str]:
    lines = []
    for p in res.get("loss", []):
        profs = p.get("profiles") or {}
        if not profs:
            continue
        lines += [f"<details><summary>{_device_label(res)}, {p['variant']}, {p['dim']}D, {p['num_classes']} classes: "
                  f"top operators of the rows that missed their target (self time per call, 3 calls profiled)"
                  f"</summary>", ""]
        for key, prof in profs.items():
            if "error" in prof:
                lines += [f"**{key}**: profiling failed: {prof['error']}", ""]
                continue
            ops = "; ".join(f"`{o['name']}` {o['self_us_per_call'] / 1e3:.2f} ms ({100 * o['share']:.0f}%, "
                            f"{o['calls_per_call']:.0f}x)" for o in prof["ops"])
            lines += [f"**{key}** ({prof['total_us_per_call'] / 1e3:.1f} ms per call): {ops}", ""]
        lines += ["</details>", ""]
    return lines


def _step_share(problem: dict, entry: dict) -> Optional[float]:
    """Extra time of a training step (network forward + backward + loss) with this loss instead of nnU-Net's."""
    net = problem.get("network_step_s")
    base = next((e for e in problem["rows"] if e["key"].startswith("nnU-Net")), {}).get("median_s")
    if not net or not base or entry.get("median_s") is None:
        return None
    return (entry["median_s"] - base) / (net + base)


def _summary(results: List[dict]) -> List[str]:
    lines = ["| target | loss | measured ratios (all problems of the run) | worst | status | worst extra time per "
             "training step |", "|---|---|---|---|---|---|"]
    for res in results:
        dev = "cuda" if "gpu" in res["meta"] else "cpu"
        for target, keys in TARGETS:
            for key in keys:
                ents = [(p, e) for p in res.get("loss", []) for e in p["rows"] if e["key"] == key and e.get("ratio")]
                if not ents:
                    continue
                ratios = [e["ratio"] for _, e in ents]
                worst = max(ratios)
                met = sum(e.get("status") == "met" for _, e in ents)
                status = f"met in {met}/{len(ents)}"
                if ents[0][1].get("gpu_only_target") and dev != "cuda":
                    status += " (GPU target; CPU for information)"
                spread = f"{min(ratios):.2f}-{worst:.2f}"
                extra = [_step_share(p, e) for p, e in ents]
                extra = [x for x in extra if x is not None]
                step = f"{100 * max(extra) + 0.0:+.1f}%".replace("-0.0%", "+0.0%") if extra else "-"
                lines.append(f"| {target} | {key} ({_device_label(res)}) | {spread} | {worst:.2f} | {status} | {step} |")
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _profile_lines(prof: dict, title: str, per: str) -> List[str]:
    """A cProfile summary (benchmarks.speed.maps._profile) as a collapsible table."""
    if not prof or not prof.get("functions"):
        return []
    lines = [f"<details><summary>{title} (cProfile, own time; {prof['total_s']:.2f} s in all{per})</summary>", "",
             "| function | calls | own time, s | share |", "|---|---|---|---|"]
    for f in prof["functions"]:
        lines.append(f"| `{f['name']}` | {f['calls']} | {f['tottime_s']:.3f} | {100 * f['share']:.0f}% |")
    return lines + ["", "</details>", ""]


def _maps_section(res: dict) -> List[str]:
    m = res.get("maps")
    if not m:
        return []
    lines = [f"### {_device_label(res)} run", ""]
    if "error" in m:
        return lines + [f"Not measured: {m['error']}", ""]
    pre = m["nnunet_preprocess"]
    pc = m["precompute"]
    n = pc["cases"]
    pre_case = pre["seconds"] / n
    rounds = f", median of {pre['repeats']} runs" if pre.get("repeats") else ""
    lines += [f"Dataset: {m['dataset']} ({m['source']}, {n} cases, {pc['voxels'] / n / 1e3:.0f}k voxels per case "
              f"on average, {pc['num_classes']} classes), configuration {m['configuration']} (patch "
              f"{'x'.join(map(str, pre['patch_size']))}, spacing {pre['spacing']}). nnU-Net's preprocessing "
              f"(`DefaultPreprocessor.run_case_save`, sequential, in process{rounds}): **{pre['seconds']:.2f} s** "
              f"(**{1e3 * pre_case:.1f} ms per case**); preprocessed data (image + seg + pkl): "
              f"{_human_bytes(pc['preprocessed_bytes'])}.", "",
              "All times are in-process work (one process, one thread) on both sides: Python, torch and nnU-Net "
              "imports, process start-up and worker pools are excluded from ours and from nnU-Net's alike. "
              "Compute = the map functions on arrays already in memory; precompute = "
              "`nnunet_losses.nnunet.maps.build.precompute(-np 1, --force)`, i.e. read nnU-Net's segmentation, "
              "fingerprint it, compute, write blosc2, fsync, manifest; nnU-Net's preprocessing reads the NIfTI "
              "files, crops, resamples, normalises and writes blosc2.", "",
              "| map | ours: compute, ms/case | naive SciPy loop, ms/case | speed-up (target >= 10x) | "
              "ours: precompute incl. I/O, ms/case | share of nnU-Net preprocessing (target <= 10%) | map files | "
              "share of preprocessed size | same result as naive |",
              "|---|---|---|---|---|---|---|---|---|"]
    tot_pre, tot_bytes = 0.0, 0
    for name, e in pc["maps"].items():
        sp = e["naive_s"] / e["compute_s"] if e["compute_s"] else float("nan")
        share = e["precompute_s"] / pre["seconds"]
        tot_pre += e["precompute_s"]
        tot_bytes += e["bytes"]
        lines.append(f"| {name} (alone) | {1e3 * e['compute_s'] / n:.2f} | {1e3 * e['naive_s'] / n:.2f} | {sp:.1f}x "
                     f"{_met(sp >= 10)} | {1e3 * e['precompute_s'] / n:.2f} | {100 * share:.0f}% ({_met(share <= 0.10)} "
                     f"alone) | "
                     f"{_human_bytes(e['bytes'])} | {100 * e['bytes'] / pc['preprocessed_bytes']:.1f}% | "
                     f"{'yes' if e['agree_with_naive'] else 'NO'} |")
    am = pc.get("all_maps")
    if am:  # one run with every map, what a user runs (--maps contour dwce osc), alternating with nnU-Net's
        comp = sum(e["compute_s"] for e in pc["maps"].values())
        naive = sum(e["naive_s"] for e in pc["maps"].values())
        share = am["share_of_preprocessing"]
        lines.append(f"| **all three, one run** (`--maps {' '.join(am['maps'])}`) | {1e3 * comp / n:.2f} | "
                     f"{1e3 * naive / n:.2f} | {naive / comp:.1f}x | **{1e3 * am['per_case_s']:.2f}** | "
                     f"**{100 * share:.0f}%** {_met(share <= 0.10)} | {_human_bytes(tot_bytes)} | "
                     f"{100 * tot_bytes / pc['preprocessed_bytes']:.1f}% | |")
    else:  # older results files: three separate runs
        share = tot_pre / pre["seconds"]
        lines.append(f"| all three | | | | {1e3 * tot_pre / n:.2f} | {100 * share:.0f}% {_met(share <= 0.10)} "
                     f"| {_human_bytes(tot_bytes)} | {100 * tot_bytes / pc['preprocessed_bytes']:.1f}% | |")
    lines.append("")
    if am:
        lines += [f"The all-maps row alternates with nnU-Net's preprocessing ({len(am['seconds_all'])} runs each, "
                  f"medians), so both see the same machine load; the per-map rows are single runs.", ""]
        top = [(f["name"], f["share"]) for f in (am.get("profile") or {}).get("functions", [])[:3]]
        if top:
            lines += ["Largest own times in the all-maps run: " + ", ".join(f"`{n_}` {100 * sh:.0f}%" for n_, sh in top)
                      + " (details below).", ""]
        lines += _profile_lines(am.get("profile"), "Where the precompute time goes: one all-maps run",
                                f", {n} cases")
    lines += _profile_lines(pc.get("compute_profile"), "Where the compute time goes: every map of every case once",
                            f", {n} cases x {len(pc['maps'])} maps")
    sc = m.get("scaling")
    if sc:
        lines += [f"Scaling (compute only, one synthetic blob volume {'x'.join(map(str, sc['shape']))}, "
                  f"{sc['num_classes']} classes):", "", "| map | ours, s | naive SciPy loop, s | speed-up | same result |",
                  "|---|---|---|---|---|"]
        for name, e in sc["maps"].items():
            lines.append(f"| {name} | {e['compute_s']:.3f} | {e['naive_s']:.3f} | "
                         f"{e['naive_s'] / e['compute_s']:.2f}x | {'yes' if e['agree_with_naive'] else 'NO'} |")
        lines.append("")
    return lines


def _loader_section(res: dict) -> List[str]:
    m = res.get("maps") or {}
    ld = m.get("loader")
    lines = [f"### {_device_label(res)} run", "",
             "nnU-Net's `nnUNetTrainer.get_dataloaders` (plans' batch size and patch, same process and workers) "
             "for nnU-Net's trainer and for our trainers with `maps=\"stored\"` (`nnUNetDatasetBlosc2WithMaps` "
             "reads the map crops with the segmentation, `with_maps` carries them through nnU-Net's augmentation "
             "and deep-supervision downsampling) or `maps=\"loader\"` (`with_loader_maps` computes the skeleton "
             "from the augmented target before the downsampling); the loaders take turns batch by batch, each "
             "loader's i-th batch drawn with the same seed (same cases, crops and augmentation: paired times); "
             "median time per batch" + (", timed by the CPU time of the process the loader runs in (other load on "
                                         "the machine does not count). " if (ld or {}).get("rows") and
                                        ld["rows"][0].get("clock") else ". ") +
             "Warm-up: every case loaded once per loader, then two batches: the first load of a case per worker "
             "opens its map files and verifies the checksum of their bytes, a one-time cost per worker and case shown in "
             "the last column, not part of the steady state the ratio measures.", "",
             "| data path | loader | batch | patch | batches/s | vs nnU-Net (target) | first load, ms/case |",
             "|---|---|---|---|---|---|---|"]
    if not ld:
        lines.append("| nnU-Net, no maps | not measured | | | | |")
    elif "error" in ld and "rows" not in ld:
        lines.append(f"| nnU-Net, no maps | error: {ld['error'][:120]} | | | | |")
    elif "rows" not in ld:  # older results files: nnU-Net's loader only
        lines.append(f"| nnU-Net, no maps | `{ld['loader']}` (nnUNet_n_proc_DA={ld['workers']}) | {ld['batch_size']} | "
                     f"{'x'.join(map(str, ld['patch_size']))} | {ld['batches_per_s']:.1f} | 100% |")
        lines.append("| nnU-Net + stored maps | not measured | | | | not measured |")
    else:
        for r in ld["rows"]:
            if r.get("error") or not r.get("batches_per_s"):
                lines.append(f"| {r['label']} | error: {str(r.get('error', 'no batches'))[:120]} | | | | |")
                continue
            vs, target = r.get("vs_nnunet"), r.get("target") or 0.9
            cell = "100%" if r["map"] is None else \
                ("-" if vs is None else f"{100 * vs:.0f}% (>= {100 * target:.0f}%) {_met(vs >= target)}")
            first = r.get("first_load_s_per_case")
            first = "-" if first is None else f"{1000 * first:.1f}"
            lines.append(f"| {r['label']} | `{r['loader']}` (nnUNet_n_proc_DA={r['workers']}) | {r['batch_size']} | "
                         f"{'x'.join(map(str, r['patch_size']))} | {r['batches_per_s']:.1f} | {cell} | {first} |")
        if ld.get("error"):
            lines.append(f"\nThe timed loop stopped early: {ld['error'][:300]}")
        if ld.get("measured_utc"):
            lines += ["", f"Loader numbers measured {ld['measured_utc']} by `{ld['command']}` (git {ld['git']}); the "
                          f"map precompute numbers above come from the file's own run."]
        sk = ld.get("skeleton_dice")
        if sk:
            lines += ["", f"Stored skeleton vs the skeleton of the augmented target, on the same {sk['n']} (sample, "
                          f"class) pairs of the timed `maps=stored` batches (full resolution): Dice mean "
                          f"**{sk['mean']:.2f}**, median {sk['median']:.2f}, min {sk['min']:.2f}. `maps=loader` is the "
                          f"skeleton of the augmented target by construction (Dice 1)."]
    lines.append("")
    for name, prof in ((ld or {}).get("profiles") or {}).items():
        lines += _profile_lines(prof, f"Loader profile, `{name}`", f", {prof.get('batches')} batches")
    return lines


def _step_section(res: dict) -> List[str]:
    st = res.get("step")
    lines = [f"### {_device_label(res)} run", ""]
    if not st:
        return lines + ["Not measured in this run.", ""]
    if "error" in st:
        return lines + [f"Not measured: {st['error'][:400]}", ""]
    net = f"{st['n_stages']} stages, features {st['features_per_stage']}"
    lines += [f"Dataset {st['dataset']} ({st['source']}, {st['cases']} cases, {st['num_classes']} classes), "
              f"configuration {st['configuration']}, {st['plans']}: patch {'x'.join(map(str, st['patch_size']))}, "
              f"network {net}, batch_dice={st['batch_dice']}, batch size **{st['batch_size']}** (the plans say "
              f"{st['nnunet_batch_size']}; the step time of every trainer scales alike). Deep supervision on. "
              f"{st['repeats']} interleaved rounds after {st['warmup']} warm-up rounds, {st['batches']} batches in "
              f"turn, {'the same images and labels for every trainer (checked)' if st['same_batches'] else 'NOTE: the stored-map loader drew other batches'}; "
              f"worker wall time {st.get('wall_s', 0) / 60:.1f} min." + _section_run(res, "step"), "",
              "| trainer | loss | maps (default mode) | median step, ms | ratio to nnUNetTrainer (target <= 1.02) | "
              "paired ratios (same round): median, quartiles |", "|---|---|---|---|---|---|"]
    for r in st["rows"]:
        cell = "1.000" if r["target"] is None else f"{r['ratio']:.3f} {_met(r['status'] == 'met')}"
        lines.append(f"| {r['trainer']} | {r['loss']} | {r['maps']} | {r['median_s'] * 1e3:.0f} | {cell} | "
                     f"{r.get('paired_ratio_median', float('nan')):.3f} ({r['paired_ratio_q25']:.3f}-"
                     f"{r['paired_ratio_q75']:.3f}) |")
    lines.append("")
    for name, prof in (st.get("profiles") or {}).items():
        ops = "; ".join(f"`{o['name']}` {o['self_us_per_step'] / 1e3:.1f} ms ({100 * o['share']:.0f}%)"
                        for o in prof["ops"])
        lines += [f"<details><summary>Step profile, {name} ({prof['total_us_per_step'] / 1e3:.0f} ms per step, "
                  f"self CPU time)</summary>", "", ops, "", "</details>", ""]
    return lines


def _section_run(res: dict, section: str) -> str:
    """Where a section measured by a later ``--update`` run comes from (empty if from the file's own run)."""
    run = res["meta"].get("section_runs", {}).get(section)
    if not run:
        return ""
    la = run.get("load_avg_start")
    where = f"{run['cpu']}, {run['cpu_count']} logical CPUs, " if run.get("cpu") else ""
    return (f" Measured {run['date_utc']} by `{run['command']}` ({where}git {run['git']}"
            + (f", load average at start {', '.join(f'{x:.2f}' for x in la)}" if la else "") + ").")


def _acceptance_section(acceptance: List[dict]) -> List[str]:
    lines = ["`bash benchmarks/acceptance/gpu.sh` (`benchmarks/acceptance/gpu.py`) checks everything the CPU "
             "cannot: every trainer trains with nnU-Net's CUDA defaults (autocast, `torch.compile`), resumes with "
             "`--c` and predicts, on a generated 3D labels and a generated 2D regions dataset; the loss benchmark "
             "at 128^3, batch 2, 2 / 4 / 16 classes, eager and compiled, with time and peak-memory ratios; the "
             "training step of every trainer against `nnUNetTrainer`; on-the-fly contours against stored maps. "
             "It writes `benchmarks/results/gpu-<date>.json` and `.md`, prints a pass/fail table and exits "
             "non-zero on any failure; `--device cpu --smoke` runs the same code on a CPU in minutes (the "
             "test suite does).", ""]
    gpu = [a for a in acceptance if "gpu" in a["meta"]]
    if not gpu:
        lines += ["**The GPU acceptance run is ready but has not run on a GPU yet** (no GPU was available "
                  "to the sessions so far). On a CUDA machine with the environment installed: "
                  "`bash benchmarks/acceptance/gpu.sh` (it fits 420 s by default, `--budget SECONDS` changes that; "
                  "`--no-compile` or `--sections loss step` shorten it), then `python -m benchmarks.speed.run` "
                  "lists the run here. On a lent machine without network: *On the first GPU* below.", ""]
    else:
        lines += ["| date | GPU | command | checks | failed | skipped (budget) | wall time | summary |",
                  "|---|---|---|---|---|---|---|---|"]
        for a in sorted(gpu, key=lambda a: a["meta"]["date_utc"]):
            failed = [c for c in a["checks"] if c["ok"] is False]
            skipped = [c for c in a["checks"] if c["ok"] is None]
            lines.append(f"| {a['meta']['date_utc']} | {a['meta']['gpu']['name']} | `{a['meta']['command']}` | "
                         f"{len(a['checks'])} | {len(failed)} | {len(skipped)} | {a['meta']['wall_s'] / 60:.1f} min | "
                         f"`{a['_file'][:-5]}.md` |")
        lines.append("")
    return lines + _first_gpu_section()


def _first_gpu_section() -> List[str]:
    """The plan for a lent GPU machine (no network, 64 MiB per call), with the kit's parts if it was built."""
    lines = ["### On the first GPU", "",
             "A lent GPU machine has Python 3.12 with torch 2.11 and the packages listed in "
             "`benchmarks/acceptance/device_packages.txt`, no network, and takes at most 64 MiB per call (the "
             "working tree plus the folders the call carries); it stays warm 30 s after a call, and a session has "
             "15 minutes of it. The plan:", "",
             "1. Here, in the checkout the device tool sends: `python -m benchmarks.acceptance.kit build` (about "
             "3 minutes, needs a Python 3.12; pyenv's is found). It resolves the run's dependencies for the "
             "device's Python, keeps every one the image lacks (wheels downloaded, or built here for a package "
             "with only a source archive), splits them into parts that each travel with the tree under 60 MiB "
             "(`.gpu_kit/part<N>/`, ignored by git), writes `benchmarks/acceptance/gpu_kit.json` and prints "
             "the exact calls with their carry, commands and expected times (`kit plan` prints them again). "
             "When commits have grown the tree past what the parts leave it (a test says so), `python -m "
             "benchmarks.acceptance.kit split` groups the same wheels again, without a download.",
             "2. Here, to check the plan: `python -m benchmarks.acceptance.dry_run`: a fresh Python 3.12 "
             "environment with only what the image has, the printed calls in order on a copy of the tree, the "
             "acceptance run as `--device cpu --smoke`; it prints the size of each carry and the time of each "
             "step.",
             "3. On the machine: the printed calls, back to back. Each carries one part and installs it with "
             "`pip install --no-index --no-deps`; the last also installs this package from the tree, checks "
             "the installs (`kit verify`, which stops the call if the machine went cold between calls) and runs "
             "`python3 -m benchmarks.acceptance.gpu --out \"$OUT\"`: within its default budget of 420 s, the "
             "e2e checks of every trainer with AMP + compile first, then the loss ratios, the training steps "
             "and the contour comparison, the results written after every section; what would not fit is "
             "skipped and listed. Give the machine back right after.",
             "4. Copy the returned `gpu-<date>.json` and `.md` into `benchmarks/results/`; the next "
             "`python -m benchmarks.speed.run` lists the run above.", ""]
    manifest = os.path.join(REPO, "benchmarks", "acceptance", "gpu_kit.json")
    if os.path.isfile(manifest):
        with open(manifest) as f:
            kit = json.load(f)
        lines += ["| part | wheels | MiB | largest |", "|---|---|---|---|"]
        for p in kit["parts"]:
            wheels = sorted((w for w in kit["wheels"] if w["part"] == p["name"]), key=lambda w: -w["bytes"])
            lines.append(f"| {p['name']} | {len(wheels)} | {p['bytes'] / 2 ** 20:.1f} | "
                         f"{', '.join(w['name'] for w in wheels[:3])} |")
        lines.append("")
    return lines


def render(results: List[dict], keep: Dict[str, str], acceptance: List[dict] = ()) -> str:
    results = sorted(results, key=lambda r: ("gpu" in r["meta"], r["meta"]["date_utc"]))
    has_gpu = any("gpu" in r["meta"] for r in results)
    out = ["# Benchmarks", "",
           "<!-- Generated by `python -m benchmarks.speed.run` from benchmarks/results/*.json. Edit only inside the "
           "keep blocks; everything else is rewritten on every run. -->", "",
           "Every ratio is measured against nnU-Net's own code in the same run, on identical inputs (see "
           "*How the numbers are measured*).", ""]
    if not has_gpu:
        out += ["> **No GPU was available to the session that produced these numbers: the tables show CPU "
                "ratios only.** The GPU targets (on-the-fly contours <= 1.35x, peak GPU memory <= 1.15x, "
                "torch.compile and AMP) are not measured yet; run `python -m benchmarks.speed.run --device cuda --amp "
                "--compile` on a GPU machine to add them (the document then shows both runs).", ""]
    out += ["## How the numbers are measured", "", _keep("intro", keep), "## Runs", ""] + _runs_table(results) + [""]
    out += ["## Summary against the targets", "",
            "Ratio = median time of forward + backward with deep supervision / the same for nnU-Net's "
            "`DC_and_CE_loss`, measured in the same run (lower is better). A `*` marks a goal set "
            "for GPU runs; on CPU it is shown for information. The last column puts the difference in "
            "context: (time of the loss - time of nnU-Net's loss) / (nnU-Net's network forward + backward + "
            "nnU-Net's loss) for the same problem, the worst over the run's problems.", ""] + _summary(results) + [""]
    out += ["## Loss forward + backward with deep supervision", "",
            "Cells: ratio to nnU-Net's `DC_and_CE_loss` (median of the timed rounds) and, where the row has a "
            "target, whether it is met. Maps: `stored` = precomputed per scale before the timed region and passed "
            "to the loss; `on the fly` = built from the target inside the timed call. The baseline row gives "
            "nnU-Net's absolute median time.", ""]
    for res in results:
        out += _loss_tables(res)
    prof = [line for res in results for line in _profile_sections(res)]
    if prof:
        out += ["### Profiles of the misses", ""] + prof
    out += ["## Map precompute", "",
            "Ours = `nnunet_losses.nnunet.maps.build` (`compute_map`, which calls `nnunet_losses.morphology.numpy_ops`); naive = a "
            "per-class (contour, offset band) or per-object (U-Net weight map) SciPy loop written in "
            "`benchmarks/speed/maps.py`; both on the same preprocessed segmentations, results compared.", ""]
    for res in results:
        out += _maps_section(res)
    out += ["## Data loader", ""]
    for res in results:
        out += _loader_section(res)
    out += ["## Training step against nnU-Net's trainer", "",
            "The cost of a loss where it counts: nnU-Net's whole `train_step` (network forward and backward with "
            "deep supervision, the trainer's loss, gradient clipping, optimizer step) of each trainer against "
            "`nnUNetTrainer`, built by nnU-Net's `get_trainer_from_args` on the same plans with the same seed, "
            "stepping on the same batches (`benchmarks/speed/step.py`). Each trainer runs in its default maps "
            "mode: online maps are computed inside the step (timed); stored maps and maps computed in the loader "
            "(`maps=\"loader\"`) arrive with the batch (their cost is the data loader's, above). Steps are "
            "interleaved, each round in a shuffled order; "
            "on a CPU with one torch thread the clock is the thread's CPU time, so other load on the machine "
            "does not count; the ratio is the median step time over nnU-Net's.", ""]
    for res in results:
        out += _step_section(res)
    out += ["## GPU acceptance run", ""] + _acceptance_section(list(acceptance))
    out += ["## Closing note", "", _keep("notes", keep)]
    return "\n".join(out).rstrip() + "\n"


def write(path: str, results: List[dict], acceptance: List[dict] = ()) -> None:
    keep = _keep_blocks(path)
    text = render(results, keep, acceptance)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
