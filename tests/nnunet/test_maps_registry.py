"""The map registry: defaults agree by construction, a new kind is one declaration, and every loss
trainer composes with nnU-Net's trainer variants (cooperative super())."""
from __future__ import annotations

import math
import os
import pickle

import blosc2
import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2")
import nnunet_losses_trainers as T  # noqa: E402
from nnunet_losses.nnunet import maps as M  # noqa: E402
from nnunet_losses.nnunet.maps.auto_width import resolve_auto  # noqa: E402
from nnunet_losses.nnunet.maps.cli import build_parser  # noqa: E402
from nnunet_losses.nnunet.maps.dataset import MapSpec  # noqa: E402
from nnunet_losses.nnunet.maps.registry import (MapKind, Param, map_kind, map_kind_for_loss, map_kinds,  # noqa: E402
                                                positive_number, register_map_kind, unregister_map_kind)
from nnunet_losses.nnunet.maps.request import resolve_map  # noqa: E402
from nnunet_losses.nnunet.maps.transforms import StoredMapSplit  # noqa: E402

STORED_MAP_TRAINERS = {"nnUNetTrainerCWCD": "contour", "nnUNetTrainerCWCE": "contour", "nnUNetTrainerSDL": "contour",
                       "nnUNetTrainerOsC": "osc", "nnUNetTrainerDWCE": "dwce", "nnUNetTrainerSkeletonRecall": "skeleton"}


def _ctx(folder, num_classes=3, spacing=(1.0, 1.0, 1.0), patch=(16, 16, 16)):
    return M.MapContext(folder=str(folder), dataset_name="Dataset999_Toy", plans_identifier="nnUNetPlans",
                        configuration="3d_fullres", spacing=spacing, patch_size=patch, num_classes=num_classes)


# ----------------------------------------------------------------------------- defaults by construction
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (5.0, 0.7, 0.7)], ids=["isotropic", "anisotropic"])
@pytest.mark.parametrize("name", sorted(STORED_MAP_TRAINERS))
def test_command_defaults_equal_what_every_stored_map_trainer_asks_for(tmp_path, name, spacing):
    """Maps built by ``nnunet_losses_precompute --maps KIND`` with no parameter flag have the same
    fingerprint as the request of the trainer with its default options (anisotropic data included:
    the command's default element must be the losses' cube)."""
    cls = getattr(T, name)
    kind = cls.map_kind()
    assert kind is map_kind(STORED_MAP_TRAINERS[name])
    ctx = _ctx(tmp_path, spacing=spacing)
    seg = np.zeros((1, 40, 40, 40), np.int8)   # structures 15 voxels thick: "auto" widths above 1
    seg[0, 2:17, 2:17, 2:38], seg[0, 20:35, 20:35, 2:38] = 1, 2
    _write_case(str(tmp_path), "case_0", seg)
    with open(os.path.join(tmp_path, "case_0.pkl"), "wb") as f:
        pickle.dump({}, f)
    options = cls.tunable_options()
    for option, rule in cls.auto_options.items():  # what the trainer resolves "auto" to for this dataset
        options[option] = resolve_auto(rule, ctx)[0]
    loss_args = {k: v for k, v in options.items() if k not in cls.trainer_options()}
    loss = cls.loss_class(**loss_args)
    trainer_values = {k: options[k] for k in cls.trainer_options()}
    asked = kind.check_params(kind.request(loss, trainer_values))
    a = build_parser().parse_args(["-d", "1", "-c", "3d_fullres", "--maps", kind.name])
    command = {p.name: getattr(a, f"{kind.name}__{p.name}") for p in kind.params}
    assert resolve_map(ctx, kind.name, command).fingerprint == resolve_map(ctx, kind.name, asked).fingerprint
    assert resolve_map(ctx, kind.name, {}).fingerprint == resolve_map(ctx, kind.name, asked).fingerprint


def test_contour_losses_share_one_default():
    from nnunet_losses import CWCDLoss, ContourWeightedCELoss, SeparableDiceLoss
    requests = [map_kind("contour").request(cls(), {}) for cls in (CWCDLoss, ContourWeightedCELoss, SeparableDiceLoss)]
    assert requests[0] == requests[1] == requests[2]
    defaults = map_kind("contour").check_params({})
    assert requests[0] == {**defaults, "iterations": requests[0]["iterations"]}
    assert defaults["iterations"] == "auto"  # the command's default: the trainers' per-dataset value


def test_trainer_options_come_from_the_registry():
    assert T.nnUNetTrainerDWCE.trainer_options() == {"w0": 10.0, "sigma": 5.0, "maps": "stored"}
    assert T.nnUNetTrainerCWCD.trainer_options() == {"maps": "online"}
    assert T.nnUNetTrainerSkeletonRecall.trainer_options() == {"maps": "loader"}
    assert T.nnUNetTrainerclDice.trainer_options() == {}
    assert T.nnUNetTrainerCombo.trainer_options() == {}
    for name in T.__all__:
        cls = getattr(T, name)
        assert (cls.map_kind() is None) == (name not in STORED_MAP_TRAINERS)


# ----------------------------------------------------------------------------- a new kind = one declaration
def _write_case(folder, case, seg):
    blosc2.asarray(np.zeros((1, *seg.shape[1:]), np.float32), urlpath=os.path.join(folder, f"{case}.b2nd"),
                   mode="w")
    blosc2.asarray(seg.astype(np.int8), urlpath=os.path.join(folder, f"{case}_seg.b2nd"), mode="w")


def _toy_compute(label, rp):
    """distance to the nearest foreground voxel, capped (a continuous toy map)."""
    from scipy import ndimage
    d = ndimage.distance_transform_edt(label == 0)
    return np.minimum(d, rp.params.cap)[None].astype(np.float32)


TOY = MapKind(name="toydist", description="capped distance to the foreground (test kind)",
              params=(Param("cap", 4.0, positive_number("toydist cap"), "--toy-cap", "distance cap"),),
              binary=False, loss_keywords=(("toy_map", 0, 1),), channels=lambda ctx: ["distance"],
              compute=_toy_compute, request=lambda loss, values: {"cap": float(values.get("cap", 4.0))})


@pytest.fixture
def toy_kind():
    register_map_kind(TOY)
    yield TOY
    unregister_map_kind(TOY.name)


def test_a_toy_kind_is_one_declaration(tmp_path, toy_kind):
    # the command line knows it, with its flag and default
    a = build_parser().parse_args(["-d", "1", "-c", "2d", "--maps", "toydist", "--toy-cap", "2.5"])
    assert a.maps == ["toydist"] and a.toydist__cap == 2.5
    with pytest.raises(ValueError, match="already registered"):
        register_map_kind(TOY)
    # build, store (float16), load with checksum, staleness: all from the declaration
    rng = np.random.default_rng(0)
    segs = {f"case_{i}": (rng.random((1, 12, 12, 12)) > 0.97).astype(np.int8) for i in range(2)}
    for case, seg in segs.items():
        _write_case(tmp_path, case, seg)
    ctx = _ctx(tmp_path, num_classes=2, patch=(8, 8, 8))
    res = M.precompute(ctx, {"toydist": {"cap": 2.5}}, progress=False, log=lambda *a: None)
    assert res["built"] == {"toydist": sorted(segs)}
    for case, seg in segs.items():
        stored = M.load_map(str(tmp_path), case, "toydist")[:]
        assert stored.dtype == np.float16
        np.testing.assert_allclose(stored, _toy_compute(seg[0], toy_kind.resolve(ctx, {"cap": 2.5})), atol=2e-3)
    assert M.find_missing_or_stale(ctx, {"toydist": {"cap": 2.5}}) == {"toydist": {}}
    assert set(M.find_missing_or_stale(ctx, {"toydist": {"cap": 3.0}})["toydist"]) == set(segs)
    # the loader's spec and the loss-side split read the declaration
    spec = MapSpec.from_resolved(toy_kind.resolve(ctx, {"cap": 2.5}))
    assert (spec.binary, spec.channels) == (False, 1)
    split = StoredMapSplit([spec], n_target=1, region=False, wanted=("toy_map",))
    target = torch.cat([torch.zeros(2, 1, 4, 4, 4), torch.full((2, 1, 4, 4, 4), 7.0)], 1)
    tgt, maps = split([target])
    assert tgt[0].shape == (2, 1, 4, 4, 4) and torch.equal(maps["toy_map"][0], torch.full((2, 1, 4, 4, 4), 7.0))
    # a loss whose map_names name the keyword finds the kind
    loss_cls = type("ToyLoss", (), {"map_names": ("toy_map",)})
    assert map_kind_for_loss(loss_cls) is toy_kind
    assert "toydist" in map_kinds()


def test_older_manifest_is_recognised_and_rebuilt(tmp_path):
    seg = np.zeros((1, 10, 10, 10), np.int8)
    seg[0, 3:7, 3:7, 3:7] = 1
    _write_case(tmp_path, "case_0", seg)
    ctx = _ctx(tmp_path, num_classes=2, patch=(8, 8, 8))
    M.precompute(ctx, ["contour"], progress=False, log=lambda *a: None)
    path = M.manifest_path(str(tmp_path))
    import json
    man = json.load(open(path))
    man["format"] = 1
    json.dump(man, open(path, "w"))
    todo = M.find_missing_or_stale(ctx, ["contour"])
    assert "older nnunet-losses" in todo["contour"]["case_0"]
    logs = []
    res = M.precompute(ctx, ["contour"], progress=False, log=logs.append)
    assert res["built"] == {"contour": ["case_0"]} and any("older nnunet-losses" in line for line in logs)
    assert json.load(open(path))["format"] == M.MANIFEST_FORMAT


def test_damaged_file_never_reaches_the_decoder(tmp_path, monkeypatch):
    seg = np.zeros((1, 10, 10, 10), np.int8)
    seg[0, 2:8, 2:8, 2:8] = 1
    _write_case(tmp_path, "case_0", seg)
    ctx = _ctx(tmp_path, num_classes=2, patch=(8, 8, 8))
    M.precompute(ctx, ["dwce"], progress=False, log=lambda *a: None)
    path = os.path.join(ctx.maps_dir, f"case_0_dwce_{M.resolve_map(ctx, 'dwce').fingerprint}.b2nd")
    raw = bytearray(open(path, "rb").read())
    for i in range(40, len(raw), 7):        # header and chunk offsets damaged too
        raw[i] ^= 0xFF
    open(path, "wb").write(bytes(raw))

    def no_decoding(*a, **k):
        raise AssertionError("blosc2 must not open a file whose checksum fails")

    monkeypatch.setattr(blosc2, "open", no_decoding)
    with pytest.raises(M.MapFileError, match=r"case_0_dwce_\w+\.b2nd is corrupt .*checksum.*Fix: nnunet_losses_precompute"):
        M.load_map(str(tmp_path), "case_0", "dwce")
    assert M.find_missing_or_stale(ctx, ["dwce"])["dwce"]["case_0"].startswith("corrupt")
    monkeypatch.undo()
    # training start rebuilds it with a log line
    from nnunet_losses.nnunet.maps.dataset import ensure_maps
    logs = []
    ensure_maps(ctx, {"dwce": {}}, log=logs.append)
    assert any(f"{path} is damaged" in line and "checksum" in line and "rebuilding" in line for line in logs)
    assert M.find_missing_or_stale(ctx, ["dwce"]) == {"dwce": {}}
    M.load_map(str(tmp_path), "case_0", "dwce")[:]


# ----------------------------------------------------------------------------- composition with nnU-Net's variants
def _loader_transforms(dl):
    """The transforms of nnU-Net's data loader inside its (single- or multi-threaded) augmenter."""
    inner = getattr(dl, "data_loader", None) or getattr(dl, "generator", None) or dl
    return inner.transforms


def _flatten(t):
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
    from batchgeneratorsv2.transforms.utils.random import OneOfTransform, RandomTransform
    from nnunet_losses.nnunet.maps.transforms import HideMaps
    if isinstance(t, ComposeTransforms):
        return [x for c in t.transforms for x in _flatten(c)]
    if isinstance(t, (RandomTransform, HideMaps)):
        return [t] + _flatten(t.transform)
    if isinstance(t, OneOfTransform):
        return [t] + [x for c in t.list_of_transforms for x in _flatten(c)]
    return [t]


LOSS_TRAINERS = ["nnUNetTrainerCWCD", "nnUNetTrainerCWCE", "nnUNetTrainerSDL", "nnUNetTrainerOsC", "nnUNetTrainerDWCE",
                 "nnUNetTrainerCombo", "nnUNetTrainerAsymFbeta", "nnUNetTrainerTversky", "nnUNetTrainerCETopKDice",
                 "nnUNetTrainerGDL", "nnUNetTrainerFocal", "nnUNetTrainerFocalDice", "nnUNetTrainerSkeletonRecall",
                 "nnUNetTrainerclDice"]


@pytest.mark.parametrize("name", LOSS_TRAINERS)
def test_every_loss_trainer_composes_with_nnunet_variants(nnunet_tiny, monkeypatch, tmp_path, name):
    """class X(<loss trainer>, nnUNetTrainerDA5): DA5's augmentation and our loss; NoMirroring: no
    mirroring and our loss; an epochs variant: its epochs and our loss."""
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import \
        nnUNetTrainerNoMirroring
    from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs import nnUNetTrainer_5epochs

    nnunet_tiny.use(monkeypatch, str(tmp_path))
    base = getattr(T, name)
    da5 = type(f"{name}_DA5", (base, nnUNetTrainerDA5), {})
    tr = nnunet_tiny.trainer(da5, "labels3d", "3d_fullres")
    tr.initialize()
    assert isinstance(tr.loss.loss, base.loss_class)
    dl_tr, _ = tr.get_dataloaders()
    names = {type(t).__name__ for t in _flatten(_loader_transforms(dl_tr))}
    assert "Rot90Transform" in names and "SharpeningTransform" in names, names
    batch = next(dl_tr)
    assert math.isfinite(float(tr.train_step(batch)["loss"]))

    nomirror = type(f"{name}_NoMirroring", (base, nnUNetTrainerNoMirroring), {})
    tr = nnunet_tiny.trainer(nomirror, "labels3d", "2d")
    tr.initialize()
    assert isinstance(tr.loss.loss, base.loss_class) and tr.inference_allowed_mirroring_axes is None
    epochs = type(f"{name}_5epochs", (base, nnUNetTrainer_5epochs), {})
    tr = nnunet_tiny.trainer(epochs, "labels3d", "2d")
    assert tr.num_epochs == 5
    tr.initialize()
    assert isinstance(tr.loss.loss, base.loss_class)


@pytest.mark.parametrize("name", ["nnUNetTrainerCWCD", "nnUNetTrainerDWCE"])
def test_stored_maps_follow_da5_augmentation(nnunet_tiny, monkeypatch, tmp_path, name):
    """With stored maps under DA5 (rot90, transposes, blank rectangles...), the maps are still the
    maps of the augmented target: binary maps equal the online maps of the target away from patch faces."""
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5
    from nnunet_losses.nnunet.maps.transforms import HideMaps

    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "maps=stored")
    cls = type(f"{name}_DA5", (getattr(T, name), nnUNetTrainerDA5), {})
    tr = nnunet_tiny.trainer(cls, "labels3d", "3d_fullres")
    tr.initialize()
    assert tr._map_specs
    dl_tr, _ = tr.get_dataloaders()
    flat = _flatten(_loader_transforms(dl_tr))
    assert any(isinstance(t, HideMaps) for t in flat)
    for _ in range(2):
        batch = next(dl_tr)
        target = batch["target"]
        t0 = target[0] if isinstance(target, (list, tuple)) else target
        assert t0.shape[1] > 1                              # target + map channels
        assert math.isfinite(float(tr.train_step(batch)["loss"]))


@pytest.mark.parametrize("key,config", [("labels3d", "3d_fullres"), ("labels3d", "2d"), ("regions2d", "2d")])
def test_stored_skeletons_reach_skeleton_recall(nnunet_tiny, monkeypatch, tmp_path, key, config):
    """nnUNetTrainerSkeletonRecall with maps=stored: the skeleton maps are built at training start, travel with the
    patch as extra target channels (one per foreground class / region, binary, inside the foreground) and the
    training step is finite."""
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "maps=stored")
    tr = nnunet_tiny.trainer(T.nnUNetTrainerSkeletonRecall, key, config)
    tr.initialize()
    assert tr._map_specs and tr._map_specs[0].name == "skeleton"
    dl_tr, _ = tr.get_dataloaders()
    batch = next(dl_tr)
    target = batch["target"]
    targets, maps = tr.loss.stored(list(target) if isinstance(target, (list, tuple)) else [target])
    lm = tr.label_manager
    n_fg = len(lm.foreground_regions) if lm.has_regions else lm.num_segmentation_heads - 1
    assert list(maps) == ["skeleton"]
    for t, sk in zip(targets, maps["skeleton"]):
        assert sk.shape[1] == n_fg and set(torch.unique(sk).tolist()) <= {0, 1}
    # the tube lies inside its class, up to the boundary voxels where nnU-Net's resampling of the label map and
    # the nearest-neighbour resampling of the stored map differ
    t, sk = targets[0], maps["skeleton"][0].bool()
    fg = t[:, :n_fg] > 0 if lm.has_regions else torch.cat([t == c for c in range(1, n_fg + 1)], 1)
    outside, total = int((sk & ~fg).sum()), int(sk.sum())
    assert total and outside <= 0.25 * total, f"{outside} of {total} tube voxels outside their class"
    assert math.isfinite(float(tr.train_step(batch)["loss"]))


def test_docs_table_is_the_registry():
    from nnunet_losses.nnunet.maps.registry import markdown_table
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(root, "docs", "trainers.md")).read()
    block = text.split("<!-- map-kinds:begin -->\n", 1)[1].split("\n<!-- map-kinds:end -->", 1)[0]
    assert block == markdown_table(), "docs/trainers.md's map table is out of date: paste markdown_table()"
