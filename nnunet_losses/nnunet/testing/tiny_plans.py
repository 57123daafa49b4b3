"""Shrink nnU-Net plans so that a training iteration takes well under a second on a CPU.

Tests and the CPU demo train through nnU-Net's real commands on plans made by nnU-Net's own
planner, then shrunk here: fewer stages, few features, one convolution per stage, a small patch
and batch. Everything nnU-Net derives from the architecture (deep-supervision scales, pooling,
sliding-window step) stays consistent, because the shrunk plans are still nnU-Net plans.

    from nnunet_losses.nnunet.testing.tiny_plans import write_tiny_plans
    write_tiny_plans(preprocessed_dataset_folder)          # -> nnUNetTinyPlans.json
    nnUNetv2_train 990 3d_fullres 0 -p nnUNetTinyPlans -tr nnUNetTrainerCWCD -device cpu

The preprocessed data are shared (``data_identifier`` is kept), so no second preprocessing runs.
"""
from __future__ import annotations

import copy
import json
import math
import os
from typing import Optional, Sequence

from nnunet_losses._io import atomic_write_json

__all__ = ["shrink_configuration", "shrink_plans", "write_tiny_plans", "write_tiny_splits", "TINY_PLANS"]

TINY_PLANS = "nnUNetTinyPlans"


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def shrink_configuration(cfg: dict, n_stages: int = 4, base_features: int = 4, max_features: int = 16,
                         patch_2d: int = 32, patch_3d: int = 16, batch_size: int = 2) -> dict:
    """Shrink one configuration dict (configurations that only ``inherits_from`` are returned as is)."""
    cfg = copy.deepcopy(cfg)
    arch = cfg.get("architecture")
    if arch is None:
        return cfg
    kw = arch["arch_kwargs"]
    n = max(2, min(n_stages, int(kw["n_stages"])))
    kw["n_stages"] = n
    kw["features_per_stage"] = [min(base_features * 2 ** i, max_features) for i in range(n)]
    kw["kernel_sizes"] = kw["kernel_sizes"][:n]
    kw["strides"] = kw["strides"][:n]
    key = "n_conv_per_stage" if "n_conv_per_stage" in kw else "n_blocks_per_stage"
    kw[key] = [1] * n
    if "n_conv_per_stage_decoder" in kw:
        kw["n_conv_per_stage_decoder"] = [1] * (n - 1)
    ndim = len(cfg["patch_size"])
    target = patch_2d if ndim == 2 else patch_3d
    divisors = [math.prod(int(s[a]) for s in kw["strides"]) for a in range(ndim)]
    cfg["patch_size"] = [_round_up(min(int(p), target), d) if p >= d else d
                         for p, d in zip(cfg["patch_size"], divisors)]
    cfg["batch_size"] = int(batch_size)
    return cfg


def shrink_plans(plans: dict, plans_name: str = TINY_PLANS, **kwargs) -> dict:
    """A copy of ``plans`` with every configuration shrunk (see :func:`shrink_configuration`)."""
    out = copy.deepcopy(plans)
    out["plans_name"] = plans_name
    out["configurations"] = {k: shrink_configuration(v, **kwargs) for k, v in plans["configurations"].items()}
    return out


def write_tiny_plans(preprocessed_dataset_folder: str, source: str = "nnUNetPlans", plans_name: str = TINY_PLANS,
                     configurations: Optional[Sequence[str]] = None, **kwargs) -> str:
    """Read ``<folder>/<source>.json``, shrink it, write ``<folder>/<plans_name>.json``; return its path.

    ``configurations``: keep only these (default: all). ``kwargs`` go to :func:`shrink_configuration`.
    """
    src = os.path.join(preprocessed_dataset_folder, f"{source}.json")
    if not os.path.isfile(src):
        raise ValueError(f"{src} not found: run nnUNetv2_plan_and_preprocess for this dataset first")
    if plans_name == source:
        raise ValueError("plans_name must differ from source: never overwrite nnU-Net's own plans")
    with open(src) as f:
        plans = json.load(f)
    if configurations is not None:
        missing = set(configurations) - set(plans["configurations"])
        if missing:
            raise ValueError(f"configurations {sorted(missing)} are not in {src}")
        plans["configurations"] = {k: v for k, v in plans["configurations"].items() if k in configurations}
    tiny = shrink_plans(plans, plans_name, **kwargs)
    return atomic_write_json(os.path.join(preprocessed_dataset_folder, f"{plans_name}.json"), tiny)


def write_tiny_splits(preprocessed_dataset_folder: str, num_val: int = 1) -> str:
    """Write ``splits_final.json`` with two folds for tiny datasets; return its path.

    * fold 0: the last ``num_val`` cases validate, the others train (nnU-Net's default 5-fold
      split needs at least 5 cases; tiny datasets have fewer);
    * fold 1: train and validate on the first case only (overfitting checks).

    Refuses to replace an existing split file that differs.
    """
    gt = os.path.join(preprocessed_dataset_folder, "gt_segmentations")
    if not os.path.isdir(gt):
        raise ValueError(f"{gt} not found: run nnUNetv2_plan_and_preprocess for this dataset first")
    with open(os.path.join(preprocessed_dataset_folder, "dataset.json")) as f:
        ending = json.load(f)["file_ending"]
    cases = sorted(n[: -len(ending)] for n in os.listdir(gt) if n.endswith(ending))
    if not 1 <= num_val < len(cases):
        raise ValueError(f"num_val must be in 1..{len(cases) - 1} for {len(cases)} cases, got {num_val}")
    splits = [{"train": cases[:-num_val], "val": cases[-num_val:]}, {"train": cases[:1], "val": cases[:1]}]
    dst = os.path.join(preprocessed_dataset_folder, "splits_final.json")
    if os.path.isfile(dst):
        with open(dst) as f:
            if json.load(f) == splits:
                return dst
        raise ValueError(f"{dst} exists with another split; delete it first to use the tiny splits")
    return atomic_write_json(dst, splits)
