"""Cost of a whole training step: every trainer against nnU-Net's own ``nnUNetTrainer``.

A training step is nnU-Net's ``nnUNetTrainer.train_step`` on one batch: network forward with deep
supervision, the trainer's loss, backward, gradient clipping and the optimizer step (autocast on
CUDA, and ``torch.compile`` where nnU-Net compiles, i.e. on CUDA). Every trainer is built by
nnU-Net's ``get_trainer_from_args`` on the same plans with the same seed (same initial weights), in
its default maps mode (stored maps come with the batch from the trainer's own loader, online maps are
computed in the step), and all of them step on the same batches: drawn once per loader with one
seed and checked to carry the same images and labels. Steps are interleaved: every round runs each
trainer once, in a shuffled order, so a change in machine load hits all of them alike; the ratio is
the median step time over the median step time of ``nnUNetTrainer``. On a CPU with one torch thread
the clock is the thread's CPU time (as in :mod:`benchmarks.speed.loss`).

nnU-Net reads ``nnUNet_raw`` / ``_preprocessed`` / ``_results`` when it is imported, so this runs as a
worker, ``python -m benchmarks.speed.step --work DIR ...``, with those variables pointing into
``DIR`` (see :func:`benchmarks.worker.run_worker`); it prints one JSON object on its last stdout line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

PLANS = "nnUNetStepPlans"
BASE = "nnUNetTrainer"


def trainer_names() -> List[str]:
    """nnU-Net's default trainer, then every trainer of the registry (``nnunet_losses_trainers``)."""
    import nnunet_losses_trainers
    return [BASE] + list(nnunet_losses_trainers.TRAINERS)


# ----------------------------------------------------------------------------- dataset and plans
def prepare(work: str, source: str, cases: int, configuration: str, batch_size: Optional[int],
            tiny: bool = False, shape: Sequence[int] = (40, 48, 40)) -> dict:
    """Raw dataset, nnU-Net's fingerprint, plans and preprocessing, then plans ``nnUNetStepPlans``:
    nnU-Net's plans with only the batch size changed (``tiny``: shrunk by
    :mod:`nnunet_losses.nnunet.testing.tiny_plans`, for smoke runs). Returns what was planned."""
    from benchmarks.speed import maps as mw
    from nnunet_losses.nnunet.testing.synthetic import make_label_dataset_3d
    from nnunet_losses.nnunet.testing.tiny_plans import shrink_plans
    if source == "hippocampus":
        mw.make_dataset(work, source, cases)
    else:
        make_label_dataset_3d(os.environ["nnUNet_raw"], mw.DATASET_ID, "SynthStep3D", num_cases=cases,
                              shape=tuple(shape), ignore=False)
    mw.plan(mw.DATASET_ID)
    mw.nnunet_preprocess(mw.DATASET_ID, configuration)
    name, pm, cm, _ = mw.read_plans(mw.DATASET_ID, configuration)
    plans = json.loads(json.dumps(pm.plans))
    plans["configurations"] = {configuration: plans["configurations"][configuration]}
    if tiny:
        plans = shrink_plans(plans, PLANS)
    plans["plans_name"] = PLANS
    cfg = plans["configurations"][configuration]
    if batch_size:
        cfg["batch_size"] = int(batch_size)
    with open(os.path.join(os.environ["nnUNet_preprocessed"], name, f"{PLANS}.json"), "w") as f:
        json.dump(plans, f, indent=1)
    return {**describe(name, configuration, PLANS), "source": source, "cases": cases,
            "plans": "nnU-Net's plans (shrunk for a smoke run)" if tiny else "nnU-Net's plans",
            "nnunet_batch_size": int(cm.batch_size)}


def describe(dataset: str, configuration: str, plans_name: str) -> dict:
    """What a training step of these plans works on (patch, batch, network, classes)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    folder = os.path.join(os.environ["nnUNet_preprocessed"], dataset)
    with open(os.path.join(folder, f"{plans_name}.json")) as f:
        pm = PlansManager(json.load(f))
    with open(os.path.join(folder, "dataset.json")) as f:
        lm = pm.get_label_manager(json.load(f))
    cm = pm.get_configuration(configuration)
    arch = cm.network_arch_init_kwargs
    return {"dataset": dataset, "configuration": configuration, "plans_name": plans_name,
            "patch_size": list(cm.patch_size), "batch_size": int(cm.batch_size),
            "features_per_stage": list(arch["features_per_stage"]), "n_stages": int(arch["n_stages"]),
            "batch_dice": bool(cm.batch_dice), "regions": bool(lm.has_regions),
            "num_classes": int(lm.num_segmentation_heads)}


# ----------------------------------------------------------------------------- trainers and batches
def maps_mode(trainer) -> str:
    """``stored``, ``loader``, ``online`` or ``-`` (a loss without maps, nnU-Net's trainer)."""
    loss = trainer.loss
    if getattr(loss, "stored", None) is not None:  # maps as extra target channels of the batch
        return "loader" if getattr(trainer, "_loader_map", ()) else "stored"
    kind = getattr(type(trainer), "map_kind", None)
    return "online" if kind is not None and kind() is not None else "-"


def make_trainer(dataset: str, configuration: str, entry: str, device, seed: int = 0, plans: str = PLANS):
    """An initialised trainer (nnU-Net's ``get_trainer_from_args``), seeded, network in training mode.
    ``entry``: a trainer name, optionally with options, ``nnUNetTrainerCWCD:maps=stored`` (the
    ``NNUNET_LOSSES_OPTIONS`` syntax); without options the trainer's defaults."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args
    name, _, options = entry.partition(":")
    os.environ.pop("NNUNET_LOSSES_OPTIONS", None)
    if options:
        os.environ["NNUNET_LOSSES_OPTIONS"] = options
    torch.manual_seed(seed)
    trainer = get_trainer_from_args(dataset, configuration, 0, name, plans, device=device)
    trainer.print_to_log_file = lambda *a, **k: None
    trainer.initialize()
    os.environ.pop("NNUNET_LOSSES_OPTIONS", None)
    trainer.set_deep_supervision_enabled(trainer.enable_deep_supervision)
    trainer.network.train()
    return trainer


def draw_batches(trainer, n: int, seed: int = 0) -> list:
    """``n`` training batches of the trainer's own loader (nnU-Net's sampling and augmentation), seeded."""
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dl_tr, dl_val = trainer.get_dataloaders()
    batches = [next(dl_tr) for _ in range(n)]
    for dl in (dl_tr, dl_val):
        getattr(dl, "_finish", lambda: None)()
    return batches


def _same_images_and_labels(a: list, b: list, n_target: int) -> bool:
    import torch
    for x, y in zip(a, b):
        if not torch.equal(x["data"], y["data"]):
            return False
        tx, ty = x["target"][0], y["target"][0]
        if not torch.equal(tx[:, :n_target].float().round(), ty[:, :n_target].float().round()):
            return False
    return True


def time_steps(trainers: Dict[str, object], batches: Dict[str, list], device, repeats: int, warmup: int,
               seed: int = 0, tick=None) -> Dict[str, List[float]]:
    """Interleaved: each round steps every trainer once (shuffled order) on the round's batch."""
    from benchmarks.speed.loss import device_clock, device_sync
    rng = random.Random(seed)
    clock = device_clock(device)
    times: Dict[str, List[float]] = {k: [] for k in trainers}
    for r in range(warmup + repeats):
        order = list(trainers)
        rng.shuffle(order)
        for name in order:
            batch = batches[name][r % len(batches[name])]
            device_sync(device)
            t0 = clock()
            out = trainers[name].train_step(batch)
            device_sync(device)
            dt = clock() - t0
            if not np.isfinite(out["loss"]).all():
                raise FloatingPointError(f"{name}: loss {out['loss']} in round {r}")
            if r >= warmup:
                times[name].append(dt)
            if tick is not None:
                tick()
    return times


def summarise(times: Dict[str, List[float]], modes: Dict[str, str], losses: Dict[str, str],
              target: float = 1.02) -> List[dict]:
    base = times[BASE]
    base_med = float(np.median(base))
    rows = []
    for name, t in times.items():
        paired = [a / b for a, b in zip(t, base)]
        ratio = float(np.median(t)) / base_med
        rows.append({"trainer": name, "loss": losses[name], "maps": modes[name], "times_s": [round(x, 5) for x in t],
                     "median_s": float(np.median(t)), "ratio": ratio,
                     "paired_ratio_median": float(np.median(paired)),
                     "paired_ratio_q25": float(np.quantile(paired, 0.25)),
                     "paired_ratio_q75": float(np.quantile(paired, 0.75)),
                     "target": None if name == BASE else target,
                     "status": None if name == BASE else ("met" if ratio <= target else "missed")})
    return rows


def benchmark(dataset: str, configuration: str, device, names: Sequence[str], repeats: int, warmup: int,
              n_batches: int, seed: int = 0, plans: str = PLANS, profile_misses: bool = False) -> dict:
    """Build every trainer, draw the batches, time interleaved steps; rows per trainer (and, with
    ``profile_misses``, the top operators of nnU-Net's step and of every step that missed its target)."""
    os.environ["nnUNet_n_proc_DA"] = "0"  # loading and augmentation in this process (untimed)
    if device.type == "cuda":
        from benchmarks.speed.loss import allow_many_graphs
        allow_many_graphs()  # one compiled network and loss per trainer, all in this process
    trainers = {n: make_trainer(dataset, configuration, n, device, seed, plans) for n in names}
    modes = {n: maps_mode(t) for n, t in trainers.items()}
    losses = {n: getattr(type(t), "loss_class", None).__name__ if getattr(type(t), "loss_class", None)
              else "DC_and_CE_loss" for n, t in trainers.items()}
    base_batches = draw_batches(trainers[BASE], n_batches, seed)
    n_target = base_batches[0]["target"][0].shape[1]
    batches, same = {}, True
    for n, t in trainers.items():
        if modes[n] in ("stored", "loader"):  # maps travel with the batch: the trainer's own loader, same seed
            batches[n] = draw_batches(t, n_batches, seed)
            same = same and _same_images_and_labels(batches[n], base_batches, n_target)
        else:
            batches[n] = base_batches
    if device.type == "cpu":
        import torch
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    times = time_steps(trainers, batches, device, repeats, warmup, seed)
    rows = summarise(times, modes, losses)
    res = {"rows": rows, "same_batches": same, "repeats": repeats, "warmup": warmup, "batches": n_batches,
           "device": str(device), "timed_wall_s": time.perf_counter() - t0}
    missed = [r["trainer"] for r in rows if r["status"] == "missed"]
    if profile_misses and missed and device.type == "cpu":
        res["profiles"] = {n: profile_step(trainers[n], batches[n][0]) for n in [BASE] + missed}
    return res


def profile_step(trainer, batch, top: int = 8) -> dict:
    """torch.profiler top operators (self CPU time) of three training steps."""
    from torch.profiler import ProfilerActivity, profile
    trainer.train_step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            trainer.train_step(batch)
    events = sorted(prof.key_averages(), key=lambda ev: ev.self_cpu_time_total, reverse=True)
    total = sum(ev.self_cpu_time_total for ev in events) or 1.0
    return {"total_us_per_step": total / 3,
            "ops": [{"name": ev.key, "self_us_per_step": ev.self_cpu_time_total / 3,
                     "share": ev.self_cpu_time_total / total} for ev in events[:top]]}


# ----------------------------------------------------------------------------- worker
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed.step", description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="folder holding nnUNet_raw/_preprocessed/_results")
    ap.add_argument("--source", choices=("hippocampus", "synthetic"), default="hippocampus")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--shape", type=int, nargs=3, default=[40, 48, 40], help="synthetic volume shape")
    ap.add_argument("--configuration", default="3d_fullres")
    ap.add_argument("--batch-size", type=int, default=None, help="replace the plans' batch size")
    ap.add_argument("--tiny", action="store_true", help="shrink the plans (smoke runs)")
    ap.add_argument("--dataset", default=None, help="an already preprocessed dataset in the work folder (no new "
                                                    "dataset is made; --plans names its plans)")
    ap.add_argument("--plans", default=PLANS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--trainers", nargs="+", default=None,
                    help="default: nnUNetTrainer and every trainer; NAME:options (e.g. nnUNetTrainerCWCD:maps=stored) "
                         "for a trainer with options")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batches", type=int, default=4, help="distinct batches, used in turn")
    ap.add_argument("--profile-misses", action="store_true",
                    help="profile (torch.profiler, CPU) nnU-Net's step and the steps that missed the target")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    names = args.trainers or trainer_names()
    if BASE not in names:
        names = [BASE] + list(names)
    if args.dataset:
        planned = describe(args.dataset, args.configuration, args.plans)
    else:
        planned = prepare(args.work, args.source, args.cases, args.configuration, args.batch_size, args.tiny,
                          args.shape)
    res = benchmark(planned["dataset"], args.configuration, device, names, args.repeats, args.warmup, args.batches,
                    args.seed, planned["plans_name"], args.profile_misses)
    res.update(planned)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
