"""Contour widths set per dataset: ``contour_width="auto"`` (CWCD, CWCE, SDL, OsC).

In nnU-Net's spirit the width of the contour a loss weights is derived from the data instead of one
constant: the **thickness of each foreground class** (median local thickness along its skeleton, in
voxels of the configuration's spacing: :mod:`nnunet_losses.morphology.thickness`) is measured once per
dataset and configuration on nnU-Net's preprocessed training segmentations, cached beside the plans
in ``<nnUNet_preprocessed>/<Dataset>/nnunet_losses_thickness_<data identifier>.json`` (measured
again when a segmentation file changes: size or modification time), and a rule turns the thinnest class's thickness into the option's value
(:data:`RULES`; the evidence for the rules: docs/quality.md, "Contour width"). The value used and
where it came from are written to ``loss_options.json`` (``"contour_width": 1, "contour_width_source":
"auto: ..."``); an explicit value in ``NNUNET_LOSSES_OPTIONS`` wins.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from nnunet_losses._io import atomic_write_json
from nnunet_losses.morphology.thickness import class_masks, local_thickness, thickness_summary

from .context import MAPS_DIR_ENV, cache_dir_for
from .declaration import AUTO
from .segmentations import file_stat, read_seg, seg_path

__all__ = ["RULES", "measure_thickness", "dataset_thickness", "resolve_auto", "fill_auto", "cache_path"]

CACHE_FORMAT = 1
#: at most this many cases are measured (evenly spread over the sorted case list)
MAX_CASES = 100


# ---------------------------------------------------------------------------------------------- rules
def _sixth(thickness: float, high: int) -> int:
    """``clamp(floor(t / 6), 1, high)``: a contour of that depth on each side of the boundary covers at
    most a sixth of the structure's thickness from each side (a third in all)."""
    return int(min(high, max(1, math.floor(thickness / 6.0))))


def contour_iterations(thickness: float) -> int:
    """Erosion iterations of the contour from the thinnest class's thickness t (voxels):
    ``clamp(floor(t / 6), 1, 6)``. With the default 3-wide element one iteration peels one voxel from
    each side, so a structure 1-11 voxels thick gets 1 iteration, 12-17 voxels 2, ..., 36 or more the
    paper's 6; see docs/quality.md for the ablation behind the rule."""
    return _sixth(thickness, 6)


def osc_band(thickness: float) -> int:
    """Offset-curve band (voxels) from the thinnest class's thickness t: ``clamp(floor(t / 6), 1, 3)``."""
    return _sixth(thickness, 3)


#: rule name -> function of the thinnest class's median thickness (voxels)
RULES: Dict[str, Callable[[float], int]] = {"contour_iterations": contour_iterations, "osc_band": osc_band}


# ---------------------------------------------------------------------------------------------- measure
def measure_thickness(segmentations, classes: List, class_names: List[str], per_slice: bool) -> Dict[str, dict]:
    """``{class name: thickness_summary}`` pooled over ``segmentations`` (label arrays, channel axis first)."""
    pooled: List[List[np.ndarray]] = [[] for _ in classes]
    for seg in segmentations:
        seg = np.asarray(seg)
        seg = seg[0] if seg.ndim in (3, 4) and seg.shape[0] == 1 else seg
        slices = per_slice and seg.ndim == 3
        for i, mask in enumerate(class_masks(seg, classes)):
            pooled[i].append(local_thickness(mask, per_slice=slices))
    return {name: thickness_summary(np.concatenate(v) if v else np.zeros(0)) for name, v in zip(class_names, pooled)}


def _classes(ctx) -> Tuple[List, List[str]]:
    if ctx.regions:
        regions = [list(np.atleast_1d(r).tolist()) for r in ctx.regions]
        return regions, [f"region{r}" for r in regions]
    labels = list(range(1, ctx.num_classes))
    return labels, [str(c) for c in labels]


def cache_path(ctx) -> str:
    """``<nnUNet_preprocessed>/<Dataset>/nnunet_losses_thickness_<data identifier>.json`` (in
    ``$NNUNET_LOSSES_MAPS_DIR/<Dataset>/`` when that is set: :func:`.context.cache_dir_for`)."""
    folder = os.path.normpath(ctx.folder)
    return os.path.join(cache_dir_for(folder), f"nnunet_losses_thickness_{os.path.basename(folder)}.json")


def _read_cache(path: str, fingerprint: str) -> Optional[dict]:
    """The cached record if it is readable, of this format and of these segmentations; else None."""
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):                    # unreadable, not UTF-8, not JSON
        return None
    ok = (isinstance(record, dict) and record.get("format") == CACHE_FORMAT and record.get("fingerprint") == fingerprint
          and isinstance(record.get("classes"), dict)
          and all(isinstance(c, dict) and "median" in c for c in record["classes"].values()))
    return record if ok else None


def dataset_thickness(ctx, log: Optional[Callable[[str], None]] = None) -> dict:
    """The thickness record of one preprocessed configuration (a :class:`MapContext`), cached. A cache that
    cannot be read (damaged, of another shape, stale) is measured again; one that cannot be written
    (read-only ``nnUNet_preprocessed``) leaves the record in memory; each with a log line."""
    ids = ctx.identifiers()
    if not ids:
        raise ValueError(f"no preprocessed cases in {ctx.folder}: run nnUNetv2_preprocess for this configuration")
    classes, names = _classes(ctx)
    key = [[(i, file_stat(seg_path(ctx.folder, i))) for i in ids], ctx.slicewise, classes]
    fingerprint = hashlib.blake2b(json.dumps(key).encode(), digest_size=16).hexdigest()
    cache = cache_path(ctx)
    if os.path.isfile(cache):
        record = _read_cache(cache, fingerprint)
        if record is not None:
            return record
        if log:
            log(f"contour width: {cache} is stale or unreadable, measuring again")
    picked = [ids[i] for i in sorted({int(round(j)) for j in np.linspace(0, len(ids) - 1, min(MAX_CASES, len(ids)))})]
    segs = (read_seg(ctx.folder, i)[0] for i in picked)
    record = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "folder": os.path.basename(ctx.folder),
              "cases_measured": len(picked), "cases": len(ids), "per_slice": ctx.slicewise,
              "unit": "voxels of the configuration's spacing",
              "classes": measure_thickness(segs, classes, names, ctx.slicewise)}
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        atomic_write_json(cache, record, indent=2)
    except OSError as e:
        if log:
            log(f"contour width: measured the thickness of {len(picked)} cases in memory; the cache {cache} cannot "
                f"be written ({e.strerror or e}; {MAPS_DIR_ENV} keeps it in a writable folder)")
        return record
    if log:
        log(f"contour width: measured the thickness of {len(picked)} cases -> {cache}")
    return record


def thinnest(record: dict) -> Tuple[str, float]:
    """(class name, median thickness) of the thinnest class with a skeleton."""
    measured = [(name, c["median"]) for name, c in record["classes"].items() if c["median"] is not None]
    if not measured:
        raise ValueError("contour width \"auto\": no foreground voxels in the preprocessed training cases; set the "
                         "width explicitly (e.g. NNUNET_LOSSES_OPTIONS='contour_width=1')")
    return min(measured, key=lambda x: x[1])


def resolve_auto(rule: str, ctx, log: Optional[Callable[[str], None]] = None) -> Tuple[int, str]:
    """(value, source text) of ``rule`` for the dataset configuration ``ctx`` (a :class:`MapContext`)."""
    if rule not in RULES:
        raise ValueError(f"unknown auto rule {rule!r}; known: {sorted(RULES)}")
    name, t = thinnest(dataset_thickness(ctx, log))
    return RULES[rule](t), f"auto: median thickness {t:.1f} voxels (class {name}), rule {rule}"


def fill_auto(values: Dict[str, Any], rules: Mapping[str, str], ctx, log: Optional[Callable[[str], None]] = None,
              what: str = "") -> Dict[str, str]:
    """The ONE place where ``"auto"`` becomes a number: every ``values[name] == "auto"`` with a rule in
    ``rules`` (``{name: rule}``) is replaced in place by :func:`resolve_auto`'s value for the dataset
    configuration ``ctx``; returns ``{name: source text}`` of the replaced ones (one log line each).
    Used by the trainers (their ``auto_options``) and by :func:`.request.resolve_map` (map parameters
    with an ``auto`` rule, e.g. ``nnunet_losses_precompute --iterations auto``)."""
    sources = {}
    for name, rule in rules.items():
        if values.get(name) == AUTO:
            values[name], sources[name] = resolve_auto(rule, ctx, log)
            if log:
                log(f"{what}{name} = {values[name]} ({sources[name]})")
    return sources
