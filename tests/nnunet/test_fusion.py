"""Sliding-window fusion (docs/inference.md): the windows, exactness of --fusion gaussian, the seam error.

The model folder is a real nnU-Net one (plans.json in nnU-Net 2.8.1's planner format with a
smaller network, dataset.json, fold_0/checkpoint_final.pth holding the weights of the network that
nnUNetTrainer builds from those plans) with a seeded initialisation, not trained weights: exactness
of the fusion does not depend on the weights, and training would cost most of the time budget.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline
from torch import nn

pytest.importorskip("nnunetv2")
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # noqa: E402
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window  # noqa: E402
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # noqa: E402

from nnunet_losses.nnunet.inference import cli as predict_cli  # noqa: E402
from nnunet_losses.nnunet.inference.predictor import (  # noqa: E402
    BSPLINE_BORDER, bspline_window, bspline_window_1d, compute_bspline, gaussian_window,
    nnUNetFusionPredictor, normalise_importance_map, window)

CPU = torch.device("cpu")
BIN = Path(sys.executable).parent
DATASET_ID, DATASET = 981, "Dataset981_FusionTiny"
TRAINERS = ("nnUNetTrainer", "nnUNetTrainerAsymFbeta")  # AsymFbeta: the paper that fuses with B-splines


# --------------------------------------------------------------------------- windows
@pytest.mark.parametrize("patch", [(32, 40), (33, 17), (2, 5), (16, 24, 20), (7, 8, 9), (40, 56, 40)])
def test_bspline_window_properties(patch):
    w = bspline_window(patch)
    assert w.shape == patch and w.dtype == np.float64
    assert np.all(w > 0), "no zero weight inside the patch"
    for axis in range(len(patch)):
        np.testing.assert_allclose(w, np.flip(w, axis), rtol=0, atol=1e-15)  # symmetric
    assert w.max() == pytest.approx(1.0)
    # peak at the centre: the central voxel (odd size) or the two central voxels (even size) per axis
    centre = tuple(slice((n - 1) // 2, n // 2 + 1) for n in patch)
    assert np.all(w[centre] == w.max())
    outside = np.ones(patch, bool)
    outside[centre] = False
    assert np.all(w[outside] < w.max())
    # separable: the tensor product of the 1D windows
    w1 = [bspline_window_1d(n) for n in patch]
    np.testing.assert_allclose(w, np.prod(np.meshgrid(*w1, indexing="ij"), axis=0), rtol=1e-12)


def test_bspline_1d_against_scipy_basis_element():
    """Independent computation: scipy's cardinal cubic B-spline, knots at -2..2, sampled at the voxels."""
    b3 = BSpline.basis_element([-2, -1, 0, 1, 2], extrapolate=False)
    for n in (5, 8, 64, 129):
        t = np.linspace(-BSPLINE_BORDER, BSPLINE_BORDER, n)
        expected = np.nan_to_num(b3(t))
        np.testing.assert_allclose(bspline_window_1d(n), expected / expected.max(), rtol=1e-12)
    # border value: B3(1.5) / B3(0) = (1/48) / (2/3) = 1/32 (odd n samples the peak exactly)
    assert bspline_window_1d(129)[0] == pytest.approx(1 / 32)
    # monotone from the border to the centre
    assert np.all(np.diff(bspline_window_1d(64)[:32]) > 0)


@pytest.mark.parametrize("patch", [(128, 128), (512, 512), (40, 56, 40), (48, 96, 96)])
def test_normalised_like_compute_gaussian(patch):
    imp = compute_bspline(patch, value_scaling_factor=10, dtype=torch.float16, device=CPU)
    assert imp.dtype == torch.float16 and tuple(imp.shape) == patch
    assert float(imp.max()) == 10.0
    assert float(imp.min()) > 0
    # even the 3D corner weight is a normal float16 number (no subnormal quantisation)
    assert float(imp.min()) >= torch.finfo(torch.float16).tiny
    # same procedure as nnU-Net: applied to nnU-Net's own Gaussian it reproduces compute_gaussian
    ref = compute_gaussian.__wrapped__(patch, 1. / 8, 10, torch.float16, CPU)
    assert torch.equal(normalise_importance_map(gaussian_window(patch), 10, torch.float16, CPU), ref)


def test_window_argument_checks():
    for bad in [(32,), (0, 4), (4, 4, 4, 4), "ab", (3.5, 4)]:
        with pytest.raises(ValueError, match="patch_size"):
            bspline_window(bad)
    with pytest.raises(ValueError, match="border"):
        bspline_window_1d(8, border=2.0)
    with pytest.raises(ValueError, match="fusion"):
        window((8, 8), "hann")
    with pytest.raises(ValueError, match="importance map"):
        normalise_importance_map(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="fusion"):
        nnUNetFusionPredictor(device=CPU, fusion="Gaussian")
    with pytest.raises(ValueError, match="fusion='constant'"):
        nnUNetFusionPredictor(device=CPU, use_gaussian=False, fusion="bspline")
    with pytest.raises(ValueError, match="tile_step_size"):
        nnUNetFusionPredictor(device=CPU, tile_step_size=1.5)


# --------------------------------------------------------------------------- fake networks
def _predictor(patch, fusion, network, step=0.5):
    plans = {"dataset_name": "Dataset999_Fake", "plans_name": "fake",
             "configurations": {"c": {"patch_size": list(patch), "architecture": {}}}}
    pm = PlansManager(plans)
    p = nnUNetFusionPredictor(tile_step_size=step, use_mirroring=False, device=CPU, allow_tqdm=False, fusion=fusion)
    p.manual_initialization(network, pm, pm.get_configuration("c"), None,
                            {"labels": {"background": 0, "fg": 1}}, "fake", None)
    return p


def _predict(predictor, image):
    """image: (1, *spatial) -> fused logits (2, *spatial) in float32 (2D goes through nnU-Net's (c, 1, x, y))."""
    x = image[:, None] if image.ndim == 3 else image
    return predictor.predict_sliding_window_return_logits(x).float().reshape((2,) + tuple(image.shape[1:]))


class ConstantNet(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.shape[0], 2, *x.shape[2:]), self.value)


@pytest.mark.parametrize("patch,image", [((128, 128), (300, 300)), ((40, 56, 40), (90, 120, 90))])
def test_constant_prediction_is_preserved(patch, image):
    """Fusing identical patch predictions must return them: checks that no weight underflows in float16."""
    for value in (0.3, -7.1):
        out = _predict(_predictor(patch, "bspline", ConstantNet(value)), torch.zeros((1,) + image))
        # nnU-Net accumulates in float16: plain averaging itself is off by up to 0.25% (0.017 at -7.1);
        # a 3D window whose border weights underflow is off by up to 100% (0.3 at 0.3) near image corners
        assert float((out - value).abs().max()) <= 5e-3 * abs(value) + 2e-3


class BorderNoisyNet(nn.Module):
    """A model less reliable at patch borders: returns the true logits (channel 0 of the input) plus an
    error e = bias * r^4 + (sigma0 + sigma1 * r^4) * N(0, 1), r = the L-inf distance from the patch
    centre (0 at the centre, 1 on the border), fresh noise for every patch (seeded)."""

    def __init__(self, patch, sigma0=0.1, sigma1=2.0, bias=1.0, seed=0):
        super().__init__()
        r = torch.zeros(patch)
        for axis, n in enumerate(patch):
            shape = [1] * len(patch)
            shape[axis] = n
            r = torch.maximum(r, ((torch.arange(n) - (n - 1) / 2).abs() / ((n - 1) / 2)).reshape(shape))
        self.bias, self.sigma = bias * r ** 4, sigma0 + sigma1 * r ** 4
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x):
        z = x[:, :1] + self.bias + self.sigma * torch.randn(x.shape[2:], generator=self.generator)
        return torch.cat([-z, z], 1)


def _seam_mask(image, patch, steps, k=1):
    """The k voxels on each side of every patch border that lies inside the image (where patches meet)."""
    mask = np.zeros(image, bool)
    for axis, n in enumerate(image):
        line = np.zeros(n, bool)
        for edge in {e for s in steps[axis] for e in (s, s + patch[axis]) if 0 < e < n}:
            line[max(0, edge - k):edge + k] = True
        shape = [1] * len(image)
        shape[axis] = n
        mask |= line.reshape(shape)
    return mask


@pytest.mark.parametrize("patch,image", [((32, 32), (88, 88)), ((24, 24, 24), (60, 60, 60))])
def test_bspline_lowers_seam_error_vs_constant(patch, image):
    truth = torch.from_numpy(np.random.default_rng(0).normal(0, 3, (1,) + image).astype(np.float32))
    seam = _seam_mask(image, patch, compute_steps_for_sliding_window(image, patch, 0.5))
    errors, overall = {}, {}
    for fusion in ("constant", "gaussian", "bspline"):
        out = _predict(_predictor(patch, fusion, BorderNoisyNet(patch)), truth)
        error = (out[1] - truth[0]).abs().numpy()
        errors[fusion], overall[fusion] = float(error[seam].mean()), float(error.mean())
    print(f"\nMAE of the foreground logit, {patch} patches in {image}, at seams ({seam.mean():.0%} of voxels): "
          + ", ".join(f"{k} {v:.4f}" for k, v in errors.items())
          + f" (bspline / constant = {errors['bspline'] / errors['constant']:.3f}); everywhere: "
          + ", ".join(f"{k} {v:.4f}" for k, v in overall.items()))
    assert errors["bspline"] < 0.8 * errors["constant"]
    assert overall["bspline"] < overall["constant"]


# --------------------------------------------------------------------------- a tiny nnU-Net model folder
def _write_png(path, array):
    from PIL import Image
    Image.fromarray(array.astype(np.uint8)).save(path)


def _disc_case(rng, shape):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    label = np.zeros(shape, np.uint8)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(3, 8)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = 1
    image = 60 + 120 * label + rng.normal(0, 20, shape)
    return np.clip(image, 0, 255), label


def _tiny_plans(dataset_name):
    """nnU-Net 2.8.1's planner output for 32 x 32 PNG images, with a smaller network (3 stages, 8-32 features)."""
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    return {
        "dataset_name": dataset_name, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [999.0, 1.0, 1.0], "original_median_shape_after_transp": [1, 32, 32],
        "image_reader_writer": "NaturalImage2DIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"2d": {
            "data_identifier": "nnUNetPlans_2d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": [32, 32], "median_image_size_in_voxels": [32.0, 32.0], "spacing": [1.0, 1.0],
            "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resampling,
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": "torch.nn.modules.conv.Conv2d",
                    "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]], "n_conv_per_stage": [2, 2, 2],
                    "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
            "batch_dice": True}},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 224.0, "mean": 159.2, "median": 159.0, "min": 85.0, "percentile_00_5": 93.0,
            "percentile_99_5": 218.0, "std": 24.0}},
    }


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """nnU-Net folders with a 2D model (patch 32 x 32) and two test images larger than the patch."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    root = tmp_path_factory.mktemp("fusion_nnunet")
    env = {k: str(root / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    raw = root / "nnUNet_raw" / DATASET
    (raw / "imagesTs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(72, 88), (50, 41)]):
        _write_png(raw / "imagesTs" / f"test_{i:03d}_0000.png", _disc_case(rng, shape)[0])
    dataset_json = {"channel_names": {"0": "grey"}, "labels": {"background": 0, "disc": 1},
                    "numTraining": 4, "file_ending": ".png"}
    (raw / "dataset.json").write_text(json.dumps(dataset_json))
    plans = _tiny_plans(DATASET)
    pm = PlansManager(plans)
    torch.manual_seed(0)
    network = nnUNetTrainer.build_network_architecture(pm, pm.get_configuration("2d"), 1, 2,
                                                       enable_deep_supervision=False)
    for trainer in TRAINERS:  # the same weights under nnU-Net's default trainer and one of ours
        folder = root / "nnUNet_results" / DATASET / f"{trainer}__nnUNetPlans__2d"
        (folder / "fold_0").mkdir(parents=True)
        (folder / "plans.json").write_text(json.dumps(plans))
        (folder / "dataset.json").write_text(json.dumps(dataset_json))
        torch.save({"network_weights": network.state_dict(), "trainer_name": trainer,
                    "init_args": {"configuration": "2d"}, "inference_allowed_mirroring_axes": (0, 1)},
                   folder / "fold_0" / "checkpoint_final.pth")
    return {"env": env, "folder": root / "nnUNet_results" / DATASET / "nnUNetTrainer__nnUNetPlans__2d",
            "images": raw / "imagesTs", "root": root}


def _load_predictor(cls, folder, **kwargs):
    p = cls(device=CPU, allow_tqdm=False, **kwargs)
    p.initialize_from_trained_model_folder(str(folder), (0,))
    return p


def test_gaussian_fusion_gives_nnunets_logits(model):
    torch.manual_seed(1)
    data = torch.randn(1, 1, 72, 88)  # preprocessed image, 3 x 4 windows of 32 x 32 at step 0.5
    ours = {f: _load_predictor(nnUNetFusionPredictor, model["folder"], fusion=f).predict_logits_from_preprocessed_data(data)
            for f in ("gaussian", "constant", "bspline")}
    nnunet = _load_predictor(nnUNetPredictor, model["folder"]).predict_logits_from_preprocessed_data(data)
    nnunet_avg = _load_predictor(nnUNetPredictor, model["folder"], use_gaussian=False) \
        .predict_logits_from_preprocessed_data(data)
    assert torch.equal(ours["gaussian"], nnunet)
    assert torch.equal(ours["constant"], nnunet_avg)
    # the window really changes the fusion (same logits away from overlaps, different where patches overlap)
    assert not torch.equal(ours["bspline"], nnunet)
    np.testing.assert_allclose(ours["bspline"][:, :, :8, :8], nnunet[:, :, :8, :8], rtol=1e-2, atol=1e-2)


def _run_all(cmds, env, cwd):
    """Run the commands side by side (each is mostly interpreter start-up) and check they succeed."""
    # nnU-Net predicts with min(nnUNet_def_n_proc, cpu_count) torch threads: 1 here, as two commands share 2 cores
    env = {**os.environ, **env, "OMP_NUM_THREADS": "1", "nnUNet_def_n_proc": "1"}
    procs = [subprocess.Popen(c, env=env, cwd=cwd, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in cmds]
    for cmd, proc in zip(cmds, procs):
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, f"{Path(cmd[0]).name} failed:\n{out[-4000:]}"


def test_cli_gaussian_reproduces_nnUNetv2_predict(model, tmp_path):
    """The real console scripts, same inputs, one of our trainers (found by nnU-Net through the package's
    trainer discovery): probabilities and segmentations are bitwise equal."""
    common = ["-i", str(model["images"]), "-d", str(DATASET_ID), "-c", "2d", "-f", "0", "-device", "cpu",
              "-tr", "nnUNetTrainerAsymFbeta",
              "--save_probabilities", "-npp", "0", "-nps", "0", "--disable_progress_bar",
              "--disable_tta"]  # mirroring is independent of the fusion; without it the test is 4x faster
    ref, ours = tmp_path / "nnunet", tmp_path / "ours"
    _run_all([[str(BIN / "nnUNetv2_predict"), "-o", str(ref), *common],
              [str(BIN / "nnunet_losses_predict"), "--fusion", "gaussian", "-o", str(ours), *common]],
             model["env"], tmp_path)
    from PIL import Image
    for case in ("test_000", "test_001"):
        probabilities = np.load(ref / f"{case}.npz")["probabilities"]
        assert probabilities.shape[0] == 2 and 0 < probabilities[1].mean() < 1
        assert np.array_equal(np.load(ours / f"{case}.npz")["probabilities"], probabilities)
        assert np.array_equal(np.asarray(Image.open(ours / f"{case}.png")), np.asarray(Image.open(ref / f"{case}.png")))


class _Built(Exception):
    pass


@pytest.mark.parametrize("args,expected", [
    (["--fusion", "constant", "--step_size", "0.25"], {"fusion": "constant", "tile_step_size": 0.25}),
    (["-step_size", "1"], {"fusion": "bspline", "tile_step_size": 1.0}),
    (["--disable_tta", "--fusion", "gaussian"], {"fusion": "gaussian", "tile_step_size": 0.5, "use_mirroring": False}),
])
def test_cli_passes_options_to_the_predictor(model, monkeypatch, tmp_path, args, expected):
    """nnU-Net's own entry point parses the arguments and builds our predictor with them."""
    seen = {}

    def recorder(**kwargs):
        seen.update(kwargs)
        raise _Built

    monkeypatch.setattr(predict_cli, "nnUNetFusionPredictor", recorder)
    for k, v in model["env"].items():
        monkeypatch.setenv(k, v)
    base = ["-i", str(model["images"]), "-o", str(tmp_path / "o"), "-device", "cpu"]
    threads = torch.get_num_threads()
    try:
        for where in (["-d", str(DATASET_ID), "-c", "2d"], ["-m", str(model["folder"]), "-f", "0"]):
            seen.clear()
            with pytest.raises(_Built):
                predict_cli.main(base + where + args)
            assert {k: seen[k] for k in expected} == expected
    finally:
        torch.set_num_threads(threads)  # nnU-Net's entry point sets it to the CPU count


@pytest.mark.parametrize("bad", [["--step_size", "0"], ["--step_size", "1.5"], ["--step_size", "x"],
                                 ["--fusion", "hann"]])
def test_cli_rejects_bad_options(bad, capsys):
    with pytest.raises(SystemExit) as e:
        predict_cli.main(["-i", "x", "-o", "y", "-d", "1", "-c", "2d", *bad])
    assert e.value.code == 2
    assert bad[0] in capsys.readouterr().err.splitlines()[-1]
