"""Map precompute and data-loader benchmarks on a small real dataset (run in a subprocess by ``benchmarks.speed.run``).

nnU-Net reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` when it is imported, so this
runs as ``python -m benchmarks.speed.maps --work DIR ...`` with those variables pointing into ``DIR`` (a
temporary folder; nothing is written anywhere else, the shared data is only read). It prints one JSON
object on its last stdout line.

What is measured (one process, one thread; every time is in-process work per case: Python, torch and
nnU-Net imports, process start-up and worker pools are excluded on both sides):

* nnU-Net's preprocessing: ``DefaultPreprocessor.run_case_save`` for every case, sequentially (the work
  of ``nnUNetv2_preprocess -np 1`` without its worker-process start-up): read the NIfTI image and
  label, crop, resample, normalise, write blosc2;
* our precompute: :func:`nnunet_losses.nnunet.maps.build.precompute` (``-np 1``, ``--force``) with all
  three maps in one run (what a user runs: ``--maps contour dwce osc``) and with each map alone: read
  nnU-Net's segmentation, fingerprint it, compute, write blosc2, fsync, manifest. nnU-Net's
  preprocessing and our all-maps run alternate ``--repeats`` times (medians), so a change in machine
  load hits both sides alike; a cProfile of one all-maps run says where the time goes;
* compute only (no file I/O), per map and case: :func:`~nnunet_losses.nnunet.maps.build.compute_map`
  against a naive per-class / per-object SciPy loop written here (``naive_*``), on the same arrays,
  alternating case by case, with the results compared;
* nnU-Net's training data loader (``nnUNetTrainer.get_dataloaders``: the plans' batch size and patch,
  ``nnUNet_n_proc_DA=0``, i.e. loading and augmentation in the calling process) against the same
  loader of our trainers with stored maps (``maps="stored"``: ``nnUNetDatasetBlosc2WithMaps`` and the
  training transforms wrapped by ``with_maps``) and with the skeleton computed in the loader
  (``maps="loader"``: ``with_loader_maps``), batch by batch in turn, each loader's i-th batch drawn with the
  same seed (same cases, crops and augmentation), timed by the process's CPU time: batches/s; and, on
  the same batches, the Dice between the stored skeleton carried through the augmentation and the
  skeleton recomputed from the augmented target. ``--only-loader`` runs just this part (after nnU-Net's
  preprocessing).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
from scipy import ndimage

HIPPOCAMPUS = "/work/shared/data/Hippocampus"
DATASET_ID = 987
MAPS = ("contour", "dwce", "osc")


# ----------------------------------------------------------------------------- naive references
def naive_contour(lab: np.ndarray, num_classes: int, kernel_size: int = 3, iterations: int = 6):
    """Per class: SciPy's iterated binary erosion (outside = foreground), contour = mask & ~eroded."""
    st = np.ones((kernel_size,) * lab.ndim, bool)
    contours = []
    for c in range(num_classes):
        m = lab == c
        contours.append(m & ~ndimage.binary_erosion(m, st, iterations=iterations, border_value=1))
    return np.any(contours, 0), np.stack(contours[1:])


def naive_offset_band(lab: np.ndarray, num_classes: int, band: int = 3):
    """Per foreground class: iterated dilation (outside = background) and not iterated erosion."""
    st = np.ones((3,) * lab.ndim, bool)
    out = []
    for c in range(1, num_classes):
        m = lab == c
        out.append(ndimage.binary_dilation(m, st, iterations=band, border_value=0)
                   & ~ndimage.binary_erosion(m, st, iterations=band, border_value=1))
    return np.stack(out)


def naive_unet_weight_map(lab: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Textbook U-Net map: class-frequency weights + w0 exp(-(d1 + d2)^2 / 2 sigma^2) on background, with
    one full-image Euclidean distance transform per object (connected component of each class)."""
    counts = np.bincount(lab.ravel()).astype(np.float64)
    present = counts > 0
    w_class = np.zeros_like(counts)
    w_class[present] = lab.size / (present.sum() * counts[present])
    w = w_class[lab].astype(np.float64)
    full = np.ones((3,) * lab.ndim, bool)
    dists = []
    for c in range(1, len(counts)):
        comp, n = ndimage.label(lab == c, full)
        for k in range(1, n + 1):
            dists.append(ndimage.distance_transform_edt(comp != k))
    if len(dists) >= 2:
        d = np.sort(np.stack(dists), 0)
        border = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2.0 * sigma ** 2))
        w = w + np.where(lab == 0, border, 0.0)
    return w.astype(np.float32)


NAIVE = {  # (labels, number of classes, the map's resolved parameters)
    "contour": lambda lab, c, p: naive_contour(lab, c, p["kernel_size"], p["iterations"]),
    "dwce": lambda lab, c, p: naive_unet_weight_map(lab),
    "osc": lambda lab, c, p: naive_offset_band(lab, c, p["band"]),
}


def _agree(name: str, ours: np.ndarray, naive, num_classes: int) -> bool:
    from nnunet_losses.nnunet.maps import unpack_bits
    if name == "contour":
        band, contours = naive
        unpacked = unpack_bits(ours, num_classes)  # channel 0 band, 1.. contours
        return bool(np.array_equal(unpacked[0], band) and np.array_equal(unpacked[1:], contours))
    if name == "osc":
        return bool(np.array_equal(unpack_bits(ours, num_classes - 1), naive))
    return bool(np.allclose(ours[0].astype(np.float32), naive, rtol=2e-3, atol=1e-3))


# ----------------------------------------------------------------------------- dataset
def make_dataset(work: str, source: str, cases: int) -> str:
    """Raw dataset ``Dataset987_*`` in ``$nnUNet_raw``: ``cases`` Hippocampus cases (symlinked into a flat
    folder, converted by our converter) or, for ``synthetic``, the package's synthetic 3D generator."""
    raw = os.environ["nnUNet_raw"]
    if source == "hippocampus":
        from nnunet_losses.nnunet.tools.convert_msd import convert_msd
        flat = os.path.join(work, "Hippocampus")
        for sub in ("images", "labels"):
            os.makedirs(os.path.join(flat, sub), exist_ok=True)
        names = sorted(f for f in os.listdir(os.path.join(HIPPOCAMPUS, "images")) if f.endswith(".nii.gz"))[:cases]
        for n in names:
            for sub in ("images", "labels"):
                dst = os.path.join(flat, sub, n)
                if not os.path.exists(dst):
                    os.symlink(os.path.join(HIPPOCAMPUS, sub, n), dst)
        return convert_msd(flat, DATASET_ID, raw, progress=False)
    from nnunet_losses.nnunet.testing.synthetic import make_label_dataset_3d
    return make_label_dataset_3d(raw, DATASET_ID, "SynthBench3D", num_cases=cases, shape=(40, 48, 40), ignore=False)


def plan(dataset_id: int) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, plan_experiment_dataset
    extract_fingerprint_dataset(dataset_id, num_processes=1, check_dataset_integrity=False, verbose=False,
                                show_progress_bar=False)
    plan_experiment_dataset(dataset_id)


def read_plans(dataset_id: int, configuration: str):
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    name = maybe_convert_to_dataset_name(dataset_id)
    with open(os.path.join(nnUNet_preprocessed, name, "nnUNetPlans.json")) as f:
        pm = PlansManager(json.load(f))
    with open(os.path.join(nnUNet_preprocessed, name, "dataset.json")) as f:
        dataset_json = json.load(f)
    return name, pm, pm.get_configuration(configuration), dataset_json


def nnunet_preprocess(dataset_id: int, configuration: str) -> dict:
    """nnU-Net's DefaultPreprocessor on every case, sequentially in this process (timed per case)."""
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets
    name, pm, cm, dataset_json = read_plans(dataset_id, configuration)
    out = os.path.join(nnUNet_preprocessed, name, cm.data_identifier)
    shutil.rmtree(out, ignore_errors=True)  # nnU-Net does not overwrite its blosc2 files (untimed)
    os.makedirs(out)
    dataset = get_filenames_of_train_images_and_targets(os.path.join(nnUNet_raw, name), dataset_json)
    pre = DefaultPreprocessor(verbose=False)
    times = []
    for k, v in dataset.items():
        t0 = time.perf_counter()
        pre.run_case_save(os.path.join(out, k), v["images"], v["label"], pm, cm, dataset_json)
        times.append(time.perf_counter() - t0)
    return {"seconds": float(sum(times)), "per_case_s": times, "patch_size": list(cm.patch_size),
            "batch_size": int(cm.batch_size), "spacing": [float(s) for s in cm.spacing]}


def _profile(fn, top: int = 12) -> dict:
    """cProfile of ``fn()``: the functions with the most own time (tottime)."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values()) or 1.0
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    from benchmarks.worker import REPO as repo

    def where(f):
        path, line, func = f
        if path == "~":
            return func
        for base in (repo + os.sep, os.path.join(sys.prefix, "lib") + os.sep):
            path = path.replace(base, "")
        if "site-packages" + os.sep in path:
            path = path.split("site-packages" + os.sep, 1)[1]
        return f"{path}:{line}({func})"

    return {"total_s": total, "functions": [{"name": where(f), "calls": v[1], "tottime_s": v[2], "cumtime_s": v[3],
                                             "share": v[2] / total} for f, v in rows]}


def precompute_vs_preprocessing(dataset_id: int, configuration: str, maps, repeats: int) -> dict:
    """nnU-Net's preprocessing and our all-maps precompute, alternating ``repeats`` times (medians)."""
    from nnunet_losses.nnunet import maps as pc
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    quiet = dict(num_processes=1, force=True, progress=False, log=lambda *a: None)
    pre_runs, ours_runs, info, ctx = [], [], None, None
    for _ in range(max(1, repeats)):
        info = nnunet_preprocess(dataset_id, configuration)
        pre_runs.append(info["seconds"])
        ctx = ctx or pc.MapContext.from_ids(maybe_convert_to_dataset_name(dataset_id), configuration)
        ours_runs.append(pc.precompute(ctx, list(maps), **quiet)["seconds"])
    n = len(ctx.identifiers())
    pre_s, ours_s = float(np.median(pre_runs)), float(np.median(ours_runs))
    prof = _profile(lambda: pc.precompute(ctx, list(maps), **quiet))
    info.update(seconds=pre_s, seconds_all=pre_runs, repeats=len(pre_runs))
    return {"nnunet_preprocess": info,
            "all_maps": {"maps": list(maps), "seconds": ours_s, "seconds_all": ours_runs, "per_case_s": ours_s / n,
                         "share_of_preprocessing": ours_s / pre_s, "profile": prof}}


def maps_benchmark(dataset_id: int, configuration: str, maps, repeats: int) -> dict:
    import blosc2
    from nnunet_losses.nnunet import maps as pc
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    ctx = pc.MapContext.from_ids(maybe_convert_to_dataset_name(dataset_id), configuration)
    ids = ctx.identifiers()
    result = {"cases": len(ids), "num_classes": ctx.num_classes, "preprocessed_bytes": pc.preprocessed_bytes(ctx),
              "maps": {}}
    segs = [blosc2.open(urlpath=os.path.join(ctx.folder, f"{c}_seg.b2nd"), mode="r")[:] for c in ids]
    result["voxels"] = int(sum(s.size for s in segs))
    for name in maps:
        summary = pc.precompute(ctx, [name], num_processes=1, force=True, progress=False, log=lambda *a: None)
        rp = pc.resolve_map(ctx, name)
        ours_t, naive_t, agree = [], [], True
        for r in range(repeats):
            t_ours = t_naive = 0.0
            for seg in segs:
                t0 = time.perf_counter()
                ours = pc.compute_map(seg, rp)
                t_ours += time.perf_counter() - t0
                t0 = time.perf_counter()
                naive = NAIVE[name](np.maximum(seg[0], 0).astype(np.int64), ctx.num_classes,  # -1 -> 0 as compute_map
                                    dict(rp.params))
                t_naive += time.perf_counter() - t0
                if r == 0:
                    agree = agree and _agree(name, ours, naive, ctx.num_classes)
            ours_t.append(t_ours)
            naive_t.append(t_naive)
        result["maps"][name] = {
            "precompute_s": float(summary["seconds"]), "bytes": int(summary["bytes"][name]),
            "compute_s": float(np.median(ours_t)), "naive_s": float(np.median(naive_t)),
            "compute_s_all": ours_t, "naive_s_all": naive_t, "agree_with_naive": agree,
            "params": dict(rp.params), "kernel": rp.derived.get("kernel")}
    # where the compute time goes (the map functions alone, every case once)
    rps = [pc.resolve_map(ctx, n) for n in maps]
    result["compute_profile"] = _profile(lambda: [pc.compute_map(s, rp) for rp in rps for s in segs])
    return result


#: explicit widths of the scaling benchmark (a synthetic volume has no preprocessed folder for "auto")
SCALING_PARAMS = {"contour": {"iterations": 6}, "osc": {"band": 3}}


def scaling_benchmark(shape, num_classes: int, maps, seed: int = 0) -> dict:
    """Compute only, one synthetic blob volume larger than Hippocampus: how both sides scale with size."""
    from benchmarks.speed.loss import blob_labels
    from nnunet_losses.nnunet import maps as pc
    seg = blob_labels(1, tuple(shape), num_classes, seed)[0].astype(np.int16)  # (1, *shape), nnU-Net's layout
    ctx = pc.MapContext(folder="", dataset_name="synthetic", plans_identifier="nnUNetPlans",
                        configuration="3d_fullres", spacing=(1.0,) * len(shape), patch_size=tuple(shape),
                        num_classes=num_classes)
    out = {"shape": list(shape), "num_classes": num_classes, "maps": {}}
    for name in maps:
        # no preprocessed dataset here to set the "auto" widths from: the paper's widths (the cost of our
        # maps does not depend on them; the naive reference's grows with them)
        rp = pc.resolve_map(ctx, name, SCALING_PARAMS.get(name))
        t0 = time.perf_counter()
        ours = pc.compute_map(seg, rp)
        t1 = time.perf_counter()
        naive = NAIVE[name](np.maximum(seg[0], 0).astype(np.int64), num_classes, dict(rp.params))
        t2 = time.perf_counter()
        out["maps"][name] = {"compute_s": t1 - t0, "naive_s": t2 - t1,
                             "agree_with_naive": _agree(name, ours, naive, num_classes)}
    return out


#: loader rows: (label, trainer, map, maps mode) -- our trainers with maps="stored" read the map through
#: nnUNetDatasetBlosc2WithMaps and with_maps, with maps="loader" they compute it from the augmented
#: patch (nnunet_losses.nnunet.maps.loader; see nnunet_losses.nnunet.training.trainer_base)
LOADERS = [("nnU-Net, no maps", "nnUNetTrainer", None, None),
           ("stored contour maps (nnUNetTrainerCWCD)", "nnUNetTrainerCWCD", "contour", "stored"),
           ("stored U-Net weight map (nnUNetTrainerDWCE)", "nnUNetTrainerDWCE", "dwce", "stored"),
           ("stored offset band (nnUNetTrainerOsC)", "nnUNetTrainerOsC", "osc", "stored"),
           ("stored skeleton (nnUNetTrainerSkeletonRecall, maps=stored)", "nnUNetTrainerSkeletonRecall", "skeleton",
            "stored"),
           ("skeleton computed in the loader (nnUNetTrainerSkeletonRecall, maps=loader)",
            "nnUNetTrainerSkeletonRecall", "skeleton", "loader")]


def _loader(dataset_id: int, configuration: str, trainer_name: str, mode):
    import torch
    from nnunet_losses.nnunet.training.options import ENV_VAR
    from nnunetv2.run.run_training import get_trainer_from_args
    if mode:
        os.environ[ENV_VAR] = json.dumps({"maps": mode})
    else:
        os.environ.pop(ENV_VAR, None)
    trainer = get_trainer_from_args(str(dataset_id), configuration, 0, trainer_name, "nnUNetPlans",
                                    device=torch.device("cpu"))
    trainer.print_to_log_file = lambda *a, **k: None
    trainer.initialize()
    dl_tr, dl_val = trainer.get_dataloaders()  # builds missing/stale maps first (untimed)
    return trainer, dl_tr, dl_val


def skeleton_agreement(trainer, batch) -> list:
    """Per sample and foreground class of one batch of the ``maps=stored`` skeleton loader: the Dice between
    the stored skeleton carried through the augmentation (full resolution) and the skeleton recomputed from
    the augmented target of the same batch (the ``maps=loader`` computation)."""
    from nnunet_losses.nnunet.maps.registry import map_kind
    targets, maps = trainer.loss.stored(list(batch["target"]))
    stored = maps["skeleton"][0].numpy() > 0.5
    rp = trainer._map_specs[0].resolved
    out = []
    for t, sk in zip(targets[0].numpy(), stored):
        again = map_kind("skeleton").loader(t, rp)
        for a, b in zip(sk, again):
            if a.any() or b.any():
                out.append(float(2 * (a & b).sum() / (a.sum() + b.sum())))
    return out


def loader_benchmark(dataset_id: int, configuration: str, batches: int, with_maps=True) -> dict:
    """batches/s of nnU-Net's training loader without and with maps (stored, computed in the loader), batch by
    batch in turn; the Dice of the stored skeleton against the one recomputed after augmentation (untimed)."""
    import random

    import torch
    os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in this process (SingleThreadedAugmenter)
    rows = LOADERS if with_maps else LOADERS[:1]
    loaders, out = [], {"rows": []}
    dice = []
    for label, name, m, mode in rows:
        entry = {"label": label, "trainer": name, "map": m, "mode": mode,
                 "target": None if m is None else (0.8 if mode == "loader" else 0.9)}
        try:
            loaders.append((entry, *_loader(dataset_id, configuration, name, mode)))
        except Exception as e:  # reported, not fatal
            entry["error"] = f"{type(e).__name__}: {e}"[:400]
        out["rows"].append(entry)
    times = {id(e): [] for e, *_ in loaders}
    wall = {id(e): [] for e, *_ in loaders}
    np.random.seed(0)
    random.seed(0)
    torch.manual_seed(0)
    for entry, _, dl_tr, _ in loaders:   # warm-up: every case once, then two batches
        # (the first load of a case per worker opens its map files and verifies the checksum of their bytes:
        # a one-time cost per worker and case, timed separately, not part of the steady state)
        data = getattr(getattr(dl_tr, "data_loader", None), "_data", None)
        if data is not None:
            t0 = time.perf_counter()
            for identifier in data.identifiers:
                data.load_case(identifier)
            entry["first_load_s_per_case"] = (time.perf_counter() - t0) / max(1, len(data.identifiers))
        for _ in range(2):
            next(dl_tr)
    try:
        for i in range(batches):
            for entry, trainer, dl_tr, _ in loaders:
                # same seed for every loader's i-th batch: the same cases, crops and augmentation parameters
                # (our transforms draw no random numbers of their own), so the times are paired
                np.random.seed(1000 + i)
                random.seed(1000 + i)
                torch.manual_seed(1000 + i)
                # the loader runs in this process (nnUNet_n_proc_DA=0): its CPU time (every thread of the
                # process, blosc2's included) is the cost; other load on the machine does not count
                w0, t0 = time.perf_counter(), time.process_time()
                batch = next(dl_tr)
                times[id(entry)].append(time.process_time() - t0)
                wall[id(entry)].append(time.perf_counter() - w0)
                if entry["map"] == "skeleton" and entry["mode"] == "stored":
                    dice += skeleton_agreement(trainer, batch)
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"[:400]
    base = None
    for entry, trainer, dl_tr, dl_val in loaders:
        t = times[id(entry)]
        med = float(np.median(t)) if t else None
        entry.update(loader=type(dl_tr).__name__, batch_size=int(trainer.batch_size),
                     patch_size=list(trainer.configuration_manager.patch_size), batches=len(t),
                     median_s_per_batch=med, batches_per_s=1.0 / med if med else None, times_s=t,
                     clock="process CPU time", wall_times_s=wall[id(entry)],
                     workers=os.environ.get("nnUNet_n_proc_DA"))
        if entry["map"] is None:
            base = entry["batches_per_s"]
        for dl in (dl_tr, dl_val):
            if hasattr(dl, "_finish"):
                dl._finish()
    for entry in out["rows"]:
        if base and entry.get("batches_per_s"):
            entry["vs_nnunet"] = entry["batches_per_s"] / base
    if dice:
        out["skeleton_dice"] = {"mean": float(np.mean(dice)), "median": float(np.median(dice)),
                                "min": float(np.min(dice)), "n": len(dice)}
    return out


def profile_loader(dataset_id: int, configuration: str, trainer_name: str, batches: int = 10, mode=None) -> dict:
    """cProfile of ``batches`` batches of one loader (the map loader that is slowest, if any missed)."""
    import random

    import torch
    os.environ["nnUNet_n_proc_DA"] = "0"
    _, dl_tr, dl_val = _loader(dataset_id, configuration, trainer_name, mode)
    np.random.seed(0)
    random.seed(0)
    torch.manual_seed(0)
    next(dl_tr)
    prof = _profile(lambda: [next(dl_tr) for _ in range(batches)], top=14)
    prof["trainer"], prof["batches"], prof["mode"] = trainer_name, batches, mode
    for dl in (dl_tr, dl_val):
        if hasattr(dl, "_finish"):
            dl._finish()
    return prof


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="temporary folder (nnUNet_* must point inside it)")
    ap.add_argument("--source", choices=("hippocampus", "synthetic"), default="hippocampus")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--configuration", default="3d_fullres")
    ap.add_argument("--maps", nargs="+", default=list(MAPS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loader-batches", type=int, default=20, help="0: skip the loader benchmark")
    ap.add_argument("--no-loader-maps", action="store_true", help="loader: nnU-Net's only (no stored-map rows)")
    ap.add_argument("--scaling-shape", type=int, nargs="*", default=[96, 96, 96],
                    help="synthetic volume for the compute-only scaling row (nothing: skip)")
    ap.add_argument("--scaling-classes", type=int, default=4)
    ap.add_argument("--only-loader", action="store_true", help="preprocess, then the loader benchmark only")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    out = {"source": a.source, "configuration": a.configuration}
    folder = make_dataset(a.work, a.source, a.cases)
    out["dataset"] = os.path.basename(folder)
    plan(DATASET_ID)
    if a.only_loader:
        nnunet_preprocess(DATASET_ID, a.configuration)
    else:
        both = precompute_vs_preprocessing(DATASET_ID, a.configuration, a.maps, a.repeats)
        out["nnunet_preprocess"] = both["nnunet_preprocess"]
        out["precompute"] = maps_benchmark(DATASET_ID, a.configuration, a.maps, a.repeats)
        out["precompute"]["all_maps"] = both["all_maps"]
    if a.scaling_shape and not a.only_loader:
        out["scaling"] = scaling_benchmark(a.scaling_shape, a.scaling_classes, a.maps)
    if a.loader_batches > 0:
        if a.only_loader:
            out["loader_only"] = True
        try:
            out["loader"] = loader_benchmark(DATASET_ID, a.configuration, a.loader_batches, not a.no_loader_maps)
            rows = [r for r in out["loader"]["rows"] if r["map"] and r.get("vs_nnunet")]
            slow = [r for r in rows if r["vs_nnunet"] < r["target"]]
            if slow:  # a missed target: where does the time go
                worst = min(slow, key=lambda r: r["vs_nnunet"])
                out["loader"]["profiles"] = {
                    r["trainer"] + (f" (maps={r['mode']})" if r["mode"] else ""):
                        profile_loader(DATASET_ID, a.configuration, r["trainer"], min(10, a.loader_batches), r["mode"])
                    for r in (out["loader"]["rows"][0], worst)}
        except Exception as e:  # reported, not fatal
            out["loader"] = {"error": f"{type(e).__name__}: {e}"[:400]}
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
