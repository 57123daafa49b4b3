"""Contour widths set per dataset ("auto"): thickness cache, rules, trainers, loss_options.json, resume,
stored maps and the precompute command agreeing on the resolved value."""
from __future__ import annotations

import json
import os
import pickle

import blosc2
import numpy as np
import pytest

pytest.importorskip("nnunetv2")
import nnunet_losses_trainers as T  # noqa: E402
from nnunet_losses.nnunet import maps as M  # noqa: E402
from nnunet_losses.nnunet.maps import auto_width as A  # noqa: E402
from nnunet_losses.nnunet.maps.cli import build_parser  # noqa: E402
from nnunet_losses.nnunet.maps.registry import map_kind  # noqa: E402
from nnunet_losses.nnunet.maps.request import resolve_map  # noqa: E402


def _write_case(folder, case, seg):
    blosc2.asarray(np.zeros((1, *seg.shape[1:]), np.float32), urlpath=os.path.join(folder, f"{case}.b2nd"), mode="w")
    blosc2.asarray(seg.astype(np.int8), urlpath=os.path.join(folder, f"{case}_seg.b2nd"), mode="w")
    with open(os.path.join(folder, f"{case}.pkl"), "wb") as f:
        pickle.dump({}, f)


def _bars_dataset(tmp_path, width1=13, width2=3):
    """Two cases: class 1 a straight bar ``width1`` voxels across, class 2 a bar ``width2`` across."""
    folder = tmp_path / "Dataset999_Toy" / "nnUNetPlans_3d_fullres"
    folder.mkdir(parents=True)
    for i in range(2):
        seg = np.zeros((1, 40, 40, 40), np.int8)
        seg[0, 2:2 + width1, 2:2 + width1, 3:37] = 1
        seg[0, 25:25 + width2, 25:25 + width2, 3:37] = 2
        _write_case(str(folder), f"case_{i}", seg)
    return M.MapContext(folder=str(folder), dataset_name="Dataset999_Toy", plans_identifier="nnUNetPlans",
                        configuration="3d_fullres", spacing=(1.0, 1.0, 1.0), patch_size=(32, 32, 32), num_classes=3)


def test_thickness_cache_beside_the_plans_and_thinnest_class(tmp_path):
    ctx = _bars_dataset(tmp_path, 13, 5)
    logs = []
    rec = A.dataset_thickness(ctx, logs.append)
    assert rec["classes"]["1"]["median"] == 13.0 and rec["classes"]["2"]["median"] == 5.0
    cache = A.cache_path(ctx)
    assert os.path.dirname(cache) == str(tmp_path / "Dataset999_Toy") and os.path.isfile(cache)
    assert A.thinnest(rec) == ("2", 5.0)
    value, source = A.resolve_auto("contour_iterations", ctx)
    assert value == A.contour_iterations(5.0)
    assert source.startswith("auto: median thickness 5.0 voxels (class 2)")
    # cached: a second call reads the file (no new log line); a changed case makes it stale
    A.dataset_thickness(ctx, logs.append)
    assert len(logs) == 1
    seg = np.zeros((1, 40, 40, 40), np.int8)
    seg[0, 5:30, 5:30, 5:30] = 1
    _write_case(ctx.folder, "case_1", seg)
    A.dataset_thickness(ctx, logs.append)
    assert any("stale" in m for m in logs) and len(logs) == 3


@pytest.mark.parametrize("t,iterations,band", [(1.0, 1, 1), (5.0, 1, 1), (60.0, 6, 3)])
def test_rules_are_clamped(t, iterations, band):
    assert A.contour_iterations(t) == iterations
    assert A.osc_band(t) == band
    assert A.contour_iterations(t) <= A.contour_iterations(t + 10)


def test_no_foreground_is_a_clear_error(tmp_path):
    ctx = _bars_dataset(tmp_path)
    for i in range(2):
        _write_case(ctx.folder, f"case_{i}", np.zeros((1, 8, 8, 8), np.int8))
    with pytest.raises(ValueError, match="no foreground voxels.*contour_width=1"):
        A.resolve_auto("contour_iterations", ctx)
    with pytest.raises(ValueError, match="unknown auto rule"):
        A.resolve_auto("nope", ctx)


@pytest.mark.parametrize("kind_name,param,flag", [("contour", "iterations", "--iterations"),
                                                  ("osc", "band", "--osc-band")])
def test_command_auto_and_trainer_value_give_one_fingerprint(tmp_path, kind_name, param, flag):
    ctx = _bars_dataset(tmp_path, 19, 13)
    kind = map_kind(kind_name)
    rule = next(p.auto for p in kind.params if p.name == param)
    value = A.resolve_auto(rule, ctx)[0]
    default = build_parser().parse_args(["-d", "1", "-c", "3d_fullres", "--maps", kind_name])
    assert getattr(default, f"{kind_name}__{param}") == "auto"
    given = build_parser().parse_args(["-d", "1", "-c", "3d_fullres", "--maps", kind_name, flag, str(value)])
    assert getattr(given, f"{kind_name}__{param}") == value
    auto_fp = resolve_map(ctx, kind_name, {param: "auto"}).fingerprint
    assert auto_fp == kind.resolve(ctx, {param: value}).fingerprint
    assert auto_fp != kind.resolve(ctx, {param: value + 1}).fingerprint
    with pytest.raises(ValueError, match="must be resolved"):   # "auto" is resolved in one place: resolve_map
        kind.resolve(ctx, {param: "auto"})
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-d", "1", "-c", "3d_fullres", "--maps", kind_name, flag, "wide"])
    with pytest.raises(ValueError, match="whole number"):
        kind.check_params({param: "wide"})


def _trainer(tiny, cls):
    return tiny.trainer(cls, "labels3d", "3d_fullres", True)


def _record(tr):
    with open(os.path.join(tr.output_folder, "loss_options.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("cls,name,attr,rule", [
    (T.nnUNetTrainerCWCD, "contour_width", "contour_width", "contour_iterations"),
    (T.nnUNetTrainerOsC, "contour_width", "contour_width", "osc_band"),
])
def test_trainers_configure_the_width_per_dataset(nnunet_tiny, monkeypatch, tmp_path, cls, name, attr, rule):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    tr = _trainer(nnunet_tiny, cls)
    assert cls.tunable_options()[name] == "auto"
    tr.initialize()
    ctx = M.MapContext.from_nnunet(tr.plans_manager, tr.configuration_name, tr.dataset_json,
                                   folder=tr.preprocessed_dataset_folder)
    value, source = A.resolve_auto(rule, ctx)
    assert getattr(tr.loss.loss, attr) == value
    rec = _record(tr)
    assert rec["resolved"][name] == value and rec["resolved"][f"{name}_source"] == source
    assert source.startswith("auto: median thickness") and rec["options"] == {}

    # an explicit value wins, and says so
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", f"{name}={value + 1}")
    explicit = _trainer(nnunet_tiny, cls)
    explicit.initialize()
    assert getattr(explicit.loss.loss, attr) == value + 1
    assert _record(explicit)["resolved"][f"{name}_source"] == "NNUNET_LOSSES_OPTIONS"


def test_resume_keeps_the_saved_width(nnunet_tiny, monkeypatch, tmp_path):
    """--c / --val reuse the value of loss_options.json even if the dataset's thickness changed since."""
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    first = _trainer(nnunet_tiny, T.nnUNetTrainerCWCD)
    first.initialize()
    ckpt = os.path.join(first.output_folder, "checkpoint_latest.pth")
    first.save_checkpoint(ckpt)
    saved = _record(first)["resolved"]["contour_width"]
    path = os.path.join(first.output_folder, "loss_options.json")
    with open(path) as f:
        rec = json.load(f)
    rec["resolved"]["contour_width"] = saved + 2   # as if the rule or the data had changed since the start
    with open(path, "w") as f:
        json.dump(rec, f)
    resumed = _trainer(nnunet_tiny, T.nnUNetTrainerCWCD)
    resumed.load_checkpoint(ckpt)
    assert resumed.loss.loss.contour_width == saved + 2
    assert _record(resumed)["resolved"]["contour_width_source"].startswith("auto")
