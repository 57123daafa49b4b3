"""Map precompute and data-loader benchmarks on a small real dataset (run in a subprocess by ``benchmarks.run``).

nnU-Net reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` when it is imported, so this
runs as ``python -m benchmarks.maps_worker --work DIR ...`` with those variables pointing into ``DIR`` (a
temporary folder; nothing is written anywhere else, the shared data is only read). It prints one JSON
object on its last stdout line.

What is measured (one process, one thread, no process start-up in any timing):

* nnU-Net's preprocessing: ``DefaultPreprocessor.run_case_save`` for every case, sequentially (the work
  of ``nnUNetv2_preprocess -np 1`` without its worker-process start-up);
* our precompute: :func:`nnunet_losses.nnunet.precompute.precompute` for each map (contour, dwce, osc),
  in-process (``-np 1``), reading nnU-Net's segmentations and writing blosc2 files;
* compute only (no file I/O), per map and case: :func:`~nnunet_losses.nnunet.precompute.compute_map`
  against a naive per-class / per-object SciPy loop written here (``naive_*``), on the same arrays, with
  the results compared;
* nnU-Net's training data loader (``nnUNetTrainer.get_dataloaders``, the plans' batch size and patch,
  ``nnUNet_n_proc_DA=0``: augmentation in the calling process): batches per second.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from scipy import ndimage

HIPPOCAMPUS = "/work/shared/data/Hippocampus"
DATASET_ID = 987


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


NAIVE = {
    "contour": lambda lab, c: naive_contour(lab, c),
    "dwce": lambda lab, c: naive_unet_weight_map(lab),
    "osc": lambda lab, c: naive_offset_band(lab, c),
}


def _agree(name: str, ours: np.ndarray, naive, num_classes: int) -> bool:
    from nnunet_losses.nnunet.precompute import unpack_bits
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
        from nnunet_losses.nnunet.convert_msd import convert_msd
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
    from nnunet_losses.nnunet.synthetic import make_label_dataset_3d
    return make_label_dataset_3d(raw, DATASET_ID, "SynthBench3D", num_cases=cases, shape=(40, 48, 40), ignore=False)


def plan(dataset_id: int) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, plan_experiment_dataset
    extract_fingerprint_dataset(dataset_id, num_processes=1, check_dataset_integrity=False, verbose=False,
                                show_progress_bar=False)
    plan_experiment_dataset(dataset_id)


def nnunet_preprocess(dataset_id: int, configuration: str) -> dict:
    """nnU-Net's DefaultPreprocessor on every case, sequentially in this process (timed per case)."""
    import shutil
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets
    name = maybe_convert_to_dataset_name(dataset_id)
    with open(os.path.join(nnUNet_preprocessed, name, "nnUNetPlans.json")) as f:
        pm = PlansManager(json.load(f))
    cm = pm.get_configuration(configuration)
    with open(os.path.join(nnUNet_preprocessed, name, "dataset.json")) as f:
        dataset_json = json.load(f)
    out = os.path.join(nnUNet_preprocessed, name, cm.data_identifier)
    shutil.rmtree(out, ignore_errors=True)
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


def maps_benchmark(dataset_id: int, configuration: str, maps, repeats: int) -> dict:
    import blosc2
    from nnunet_losses.nnunet import precompute as pc
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    ctx = pc.MapContext.from_ids(maybe_convert_to_dataset_name(dataset_id), configuration)
    ids = ctx.identifiers()
    result = {"cases": len(ids), "num_classes": ctx.num_classes, "preprocessed_bytes": pc.preprocessed_bytes(ctx),
              "maps": {}}
    segs = [blosc2.open(urlpath=os.path.join(ctx.folder, f"{c}_seg.b2nd"), mode="r")[:] for c in ids]
    voxels = int(sum(s.size for s in segs))
    result["voxels"] = voxels
    for name in maps:
        summary = pc.precompute(ctx, [name], num_processes=1, force=True, progress=False, log=lambda *a: None)
        rp = pc.resolve_params(ctx, name)
        ours_t, naive_t, agree = [], [], True
        for r in range(repeats):
            t_ours = t_naive = 0.0
            for seg in segs:
                t0 = time.perf_counter()
                ours = pc.compute_map(seg, rp)
                t_ours += time.perf_counter() - t0
                t0 = time.perf_counter()
                naive = NAIVE[name](np.maximum(seg[0], 0).astype(np.int64), ctx.num_classes)  # -1 -> 0 as compute_map
                t_naive += time.perf_counter() - t0
                if r == 0:
                    agree = agree and _agree(name, ours, naive, ctx.num_classes)
            ours_t.append(t_ours)
            naive_t.append(t_naive)
        result["maps"][name] = {
            "precompute_s": float(summary["seconds"]), "bytes": int(summary["bytes"][name]),
            "compute_s": float(np.median(ours_t)), "naive_s": float(np.median(naive_t)),
            "compute_s_all": ours_t, "naive_s_all": naive_t, "agree_with_naive": agree,
            "params": rp["params"], "kernel": rp.get("kernel")}
    return result


def scaling_benchmark(shape, num_classes: int, maps, seed: int = 0) -> dict:
    """Compute only, one synthetic blob volume larger than Hippocampus: how both sides scale with size."""
    from benchmarks.loss_bench import blob_labels
    from nnunet_losses.nnunet import precompute as pc
    seg = blob_labels(1, tuple(shape), num_classes, seed)[0].astype(np.int16)  # (1, *shape), nnU-Net's layout
    ctx = pc.MapContext(folder="", dataset_name="synthetic", plans_identifier="nnUNetPlans",
                        configuration="3d_fullres", spacing=(1.0,) * len(shape), patch_size=tuple(shape),
                        num_classes=num_classes)
    out = {"shape": list(shape), "num_classes": num_classes, "maps": {}}
    for name in maps:
        rp = pc.resolve_params(ctx, name)
        t0 = time.perf_counter()
        ours = pc.compute_map(seg, rp)
        t1 = time.perf_counter()
        naive = NAIVE[name](np.maximum(seg[0], 0).astype(np.int64), num_classes)
        t2 = time.perf_counter()
        out["maps"][name] = {"compute_s": t1 - t0, "naive_s": t2 - t1,
                             "agree_with_naive": _agree(name, ours, naive, num_classes)}
    return out


def loader_benchmark(dataset_id: int, configuration: str, batches: int) -> dict:
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in this process (SingleThreadedAugmenter)
    trainer = get_trainer_from_args(str(dataset_id), configuration, 0, "nnUNetTrainer", "nnUNetPlans",
                                    device=torch.device("cpu"))
    trainer.print_to_log_file = lambda *a, **k: None
    trainer.initialize()
    dl_tr, dl_val = trainer.get_dataloaders()
    for _ in range(2):
        next(dl_tr)
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        next(dl_tr)
        times.append(time.perf_counter() - t0)
    for dl in (dl_tr, dl_val):
        if hasattr(dl, "_finish"):
            dl._finish()
    med = float(np.median(times))
    return {"loader": type(dl_tr).__name__, "batch_size": int(trainer.batch_size),
            "patch_size": list(trainer.configuration_manager.patch_size), "batches": batches,
            "median_s_per_batch": med, "batches_per_s": 1.0 / med if med > 0 else None, "times_s": times,
            "workers": os.environ.get("nnUNet_n_proc_DA")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="temporary folder (nnUNet_* must point inside it)")
    ap.add_argument("--source", choices=("hippocampus", "synthetic"), default="hippocampus")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--configuration", default="3d_fullres")
    ap.add_argument("--maps", nargs="+", default=["contour", "dwce", "osc"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loader-batches", type=int, default=20, help="0: skip the loader benchmark")
    ap.add_argument("--scaling-shape", type=int, nargs="*", default=[96, 96, 96],
                    help="synthetic volume for the compute-only scaling row (nothing: skip)")
    ap.add_argument("--scaling-classes", type=int, default=4)
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    out = {"source": a.source, "configuration": a.configuration}
    folder = make_dataset(a.work, a.source, a.cases)
    out["dataset"] = os.path.basename(folder)
    plan(DATASET_ID)
    out["nnunet_preprocess"] = nnunet_preprocess(DATASET_ID, a.configuration)
    out["precompute"] = maps_benchmark(DATASET_ID, a.configuration, a.maps, a.repeats)
    if a.scaling_shape:
        out["scaling"] = scaling_benchmark(a.scaling_shape, a.scaling_classes, a.maps)
    if a.loader_batches > 0:
        try:
            out["loader"] = loader_benchmark(DATASET_ID, a.configuration, a.loader_batches)
        except Exception as e:  # reported, not fatal
            out["loader"] = {"error": f"{type(e).__name__}: {e}"[:400]}
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
