"""Render ``docs/benchmarks.md`` from the results files of ``python -m benchmarks.run``.

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

KEEP = re.compile(r"<!-- keep:(\w+) -->\n(.*?)<!-- /keep:\1 -->", re.S)

DEFAULT_KEEP = {
    "intro": "How the numbers are measured: see `benchmarks/loss_bench.py` and `benchmarks/maps_worker.py`.\n",
    "notes": "(hand-written notes on the misses go here)\n",
}

#: target groups of issue 6, in the order of the summary
TARGETS = [
    ("<= 1.10x", ["Combo", "AsymFbeta", "Tversky", "GDL", "Focal"]),
    ("<= 1.25x (stored maps)", ["CWCE stored", "SDL stored", "CWCD stored"]),
    ("<= 1.35x (on the fly, GPU)", ["CWCE on the fly", "SDL on the fly", "CWCD on the fly"]),
    ("<= 1.5x", ["TopKDice", "CETopKDice", "OsC stored", "OsC on the fly"]),
]


def load(path: str) -> dict:
    with open(path) as f:
        res = json.load(f)
    res["_file"] = os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    lines += [f"Dataset: {m['dataset']} ({m['source']}, {n} cases, {pc['voxels'] / n / 1e3:.0f}k voxels per case "
              f"on average, {pc['num_classes']} classes), configuration {m['configuration']} (patch "
              f"{'x'.join(map(str, pre['patch_size']))}, spacing {pre['spacing']}). nnU-Net's preprocessing "
              f"(`DefaultPreprocessor.run_case_save`, sequential, in process): **{pre['seconds']:.2f} s** "
              f"({1e3 * pre['seconds'] / n:.0f} ms per case); preprocessed data (image + seg + pkl): "
              f"{_human_bytes(pc['preprocessed_bytes'])}.", "",
              "| map | ours: compute, ms/case | naive SciPy loop, ms/case | speed-up (target >= 10x) | "
              "ours: precompute incl. I/O, s | share of nnU-Net preprocessing (target <= 10%) | map files | "
              "share of preprocessed size | same result as naive |",
              "|---|---|---|---|---|---|---|---|---|"]
    tot_pre, tot_bytes = 0.0, 0
    for name, e in pc["maps"].items():
        sp = e["naive_s"] / e["compute_s"] if e["compute_s"] else float("nan")
        share = e["precompute_s"] / pre["seconds"]
        tot_pre += e["precompute_s"]
        tot_bytes += e["bytes"]
        lines.append(f"| {name} | {1e3 * e['compute_s'] / n:.1f} | {1e3 * e['naive_s'] / n:.1f} | {sp:.2f}x "
                     f"{'met' if sp >= 10 else '**missed**'} | {e['precompute_s']:.2f} | {100 * share:.0f}% "
                     f"{'met' if share <= 0.10 else '**missed**'} | {_human_bytes(e['bytes'])} | "
                     f"{100 * e['bytes'] / pc['preprocessed_bytes']:.1f}% | {'yes' if e['agree_with_naive'] else 'NO'} |")
    share = tot_pre / pre["seconds"]
    lines.append(f"| all three | | | | {tot_pre:.2f} | {100 * share:.0f}% {'met' if share <= 0.10 else '**missed**'} "
                 f"| {_human_bytes(tot_bytes)} | {100 * tot_bytes / pc['preprocessed_bytes']:.1f}% | |")
    lines.append("")
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
    lines = [f"### {_device_label(res)} run", "", "| data path | loader | batch | patch | batches/s | vs nnU-Net (target >= 90%) |",
             "|---|---|---|---|---|---|"]
    if not ld:
        lines.append("| nnU-Net, no maps | not measured | | | | |")
    elif "error" in ld:
        lines.append(f"| nnU-Net, no maps | error: {ld['error'][:120]} | | | | |")
    else:
        lines.append(f"| nnU-Net, no maps | `{ld['loader']}` (nnUNet_n_proc_DA={ld['workers']}) | {ld['batch_size']} | "
                     f"{'x'.join(map(str, ld['patch_size']))} | {ld['batches_per_s']:.1f} | 100% |")
    lines.append("| nnU-Net + stored maps | not measured (data path not implemented) | | | | not measured |")
    lines.append("")
    return lines


def render(results: List[dict], keep: Dict[str, str]) -> str:
    results = sorted(results, key=lambda r: ("gpu" in r["meta"], r["meta"]["date_utc"]))
    has_gpu = any("gpu" in r["meta"] for r in results)
    out = ["# Benchmarks", "",
           "<!-- Generated by `python -m benchmarks.run` from benchmarks/results/*.json. Edit only inside the "
           "keep blocks; everything else is rewritten on every run. -->", "",
           "Every ratio is measured against nnU-Net's own code in the same run, on identical inputs (see "
           "*How the numbers are measured*).", ""]
    if not has_gpu:
        out += ["> **No GPU was available to the session that produced these numbers: the tables show CPU "
                "ratios only.** The GPU targets (on-the-fly contours <= 1.35x, peak GPU memory <= 1.15x, "
                "torch.compile and AMP) are not measured yet; run `python -m benchmarks.run --device cuda --amp "
                "--compile` on a GPU machine to add them (the document then shows both runs).", ""]
    out += ["## How the numbers are measured", "", _keep("intro", keep), "## Runs", ""] + _runs_table(results) + [""]
    out += ["## Summary against the targets", "",
            "Ratio = median time of forward + backward with deep supervision / the same for nnU-Net's "
            "`DC_and_CE_loss`, measured in the same run (lower is better). A `*` marks a target that issue 6 sets "
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
            "Ours = `nnunet_losses.nnunet.precompute` (`compute_map`, which calls `nnunet_losses.maps`); naive = a "
            "per-class (contour, offset band) or per-object (U-Net weight map) SciPy loop written in "
            "`benchmarks/maps_worker.py`; both on the same preprocessed segmentations, results compared.", ""]
    for res in results:
        out += _maps_section(res)
    out += ["## Data loader", ""]
    for res in results:
        out += _loader_section(res)
    out += ["## Closing note", "", _keep("notes", keep)]
    return "\n".join(out).rstrip() + "\n"


def write(path: str, results: List[dict]) -> None:
    keep = _keep_blocks(path)
    text = render(results, keep)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
