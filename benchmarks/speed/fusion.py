"""Inference time of the fusion predictor vs nnU-Net's own predictor, same network, same inputs.

Runs ``predict_logits_from_preprocessed_data`` (nnU-Net's sliding window: patch extraction, network,
weighting, accumulation) with

- ``nnUNetPredictor`` (nnU-Net 2.8.1, Gaussian importance map): the reference,
- ``nnUNetFusionPredictor`` with ``fusion`` = gaussian, bspline, constant,

on a 2D case (DRIVE-like: patch 128 x 128, 5-stage U-Net, image 1 x 320 x 320: 16 windows) and a 3D case
(Hippocampus-like: patch 40 x 56 x 40, 4-stage U-Net, image 60 x 84 x 60: 8 windows), untrained weights
(time does not depend on them), and the same 3D sliding window around a 1x1x1 convolution
(image 120 x 168 x 120, 125 windows, 5x the repeats: the fusion's own cost, the worst case for any overhead). Runs are interleaved (ABCD ABCD ...) after one warm-up each, and
the ratios to nnU-Net's use the fastest wall time (least disturbed by other processes) and the median
CPU time of the process (``time.process_time``, insensitive to other processes on a shared machine;
on CUDA use the wall times). Prints one table per case; nothing is asserted.

    python benchmarks/speed/fusion.py [--device cpu|cuda] [--repeats 9] [--tta] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from tqdm import tqdm

from nnunet_losses.nnunet.inference.predictor import nnUNetFusionPredictor

CASES = {
    # name: (patch, features per stage, image shape (c, [1,] *spatial))
    "2d": ((128, 128), [32, 64, 128, 256, 512], (1, 1, 320, 320)),
    "3d": ((40, 56, 40), [32, 64, 128, 256], (1, 60, 84, 60)),
    # a 1x1x1 convolution instead of a U-Net: the time is the sliding window and the fusion alone
    # (the worst case for any overhead of the window)
    "3d-fusion-only": ((40, 56, 40), None, (1, 120, 168, 120)),
}


def _plans(patch, features):
    dim = len(patch)
    conv = f"torch.nn.modules.conv.Conv{dim}d"
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": len(features), "features_per_stage": features, "conv_op": conv,
            "kernel_sizes": [[3] * dim] * len(features),
            "strides": [[1] * dim] + [[2] * dim] * (len(features) - 1),
            "n_conv_per_stage": [2] * len(features), "n_conv_per_stage_decoder": [2] * (len(features) - 1),
            "conv_bias": True, "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    return {"dataset_name": "Dataset000_Bench", "plans_name": "bench",
            "configurations": {"c": {"patch_size": list(patch), "architecture": arch}}}


def _predictor(cls, pm, network, device, tta, **kwargs):
    p = cls(tile_step_size=0.5, use_mirroring=tta, device=device, allow_tqdm=False, **kwargs)
    p.manual_initialization(network, pm, pm.get_configuration("c"), [network.state_dict()],
                            {"labels": {"background": 0, "a": 1, "b": 2}}, "nnUNetTrainer",
                            tuple(range(len(pm.get_configuration("c").patch_size))))
    return p


def run_case(name, device, repeats, tta, quick):
    patch, features, shape = CASES[name]
    if quick and features:
        features = features[:3]
    pm = PlansManager(_plans(patch, features or [32]))
    torch.manual_seed(0)
    if features is None:
        network = getattr(torch.nn, f"Conv{len(patch)}d")(1, 3, 1).to(device)
    else:
        network = get_network_from_plans(pm.get_configuration("c").network_arch_class_name,
                                         pm.get_configuration("c").network_arch_init_kwargs,
                                         pm.get_configuration("c").network_arch_init_kwargs_req_import,
                                         1, 3, allow_init=True, deep_supervision=False).to(device)
    predictors = {
        "nnU-Net (gaussian)": _predictor(nnUNetPredictor, pm, network, device, tta),
        "ours gaussian": _predictor(nnUNetFusionPredictor, pm, network, device, tta, fusion="gaussian"),
        "ours bspline": _predictor(nnUNetFusionPredictor, pm, network, device, tta, fusion="bspline"),
        "ours constant": _predictor(nnUNetFusionPredictor, pm, network, device, tta, fusion="constant"),
    }
    data = torch.randn(shape)
    repeats = repeats * 5 if features is None else repeats
    wall = {k: [] for k in predictors}
    cpu = {k: [] for k in predictors}
    for k, p in predictors.items():  # warm-up (also builds and caches each importance map)
        p.predict_logits_from_preprocessed_data(data)
    for _ in tqdm(range(repeats), desc=f"{name} ({device})"):
        for k, p in predictors.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t, c = time.perf_counter(), time.process_time()
            p.predict_logits_from_preprocessed_data(data)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    ref = "nnU-Net (gaussian)"
    print(f"\n{name}: patch {patch}, image {shape[1:]}, features {features}, tta={tta}, device={device}, "
          f"{repeats} interleaved repeats, torch threads={torch.get_num_threads()}")
    print(f"{'predictor':<22}{'wall min s':>11}{'wall med s':>11}{'cpu med s':>10}"
          f"{'ratio wall min':>16}{'ratio cpu med':>15}")
    for k in predictors:
        print(f"{k:<22}{min(wall[k]):>11.3f}{statistics.median(wall[k]):>11.3f}{statistics.median(cpu[k]):>10.3f}"
              f"{min(wall[k]) / min(wall[ref]):>16.3f}"
              f"{statistics.median(cpu[k]) / statistics.median(cpu[ref]):>15.3f}")
    print("('ours gaussian' runs nnU-Net's own code: its ratio shows the measurement noise)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--tta", action="store_true", help="mirroring test-time augmentation (nnU-Net's default)")
    parser.add_argument("--quick", action="store_true", help="3-stage networks (a smoke run)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    for name in args.cases:
        run_case(name, torch.device(args.device), args.repeats, args.tta, args.quick)


if __name__ == "__main__":
    main()
