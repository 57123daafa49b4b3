"""Skeleton Recall with ``maps=loader``: the tubed skeleton computed in the data-loader workers from
the augmented target (before nnU-Net's deep-supervision downsampling), carried to the loss as extra
target channels; the option is validated against the map registry."""
from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("nnunetv2")
import nnunet_losses_trainers as T  # noqa: E402
from nnunet_losses.nnunet.maps.packing import unpack_bits  # noqa: E402
from nnunet_losses.nnunet.maps.loader import LoaderMapsTransform, with_loader_maps  # noqa: E402
from nnunet_losses.nnunet.maps.registry import MapKind, map_kind, register_map_kind, unregister_map_kind  # noqa: E402
from nnunet_losses.morphology.skeletons import skeleton_map, tubed_skeleton  # noqa: E402


def _flatten(t):
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
    from batchgeneratorsv2.transforms.utils.random import OneOfTransform, RandomTransform
    if isinstance(t, ComposeTransforms):
        return [x for c in t.transforms for x in _flatten(c)]
    if isinstance(t, RandomTransform):
        return [t] + _flatten(t.transform)
    if isinstance(t, OneOfTransform):
        return [t] + [x for c in t.list_of_transforms for x in _flatten(c)]
    return [t]


def _transforms(dl):
    inner = getattr(dl, "data_loader", dl)
    return getattr(inner, "transforms", None) or getattr(dl, "transform")


def _expected(target: torch.Tensor, lm, rp) -> np.ndarray:
    """nnunet_losses.morphology.skeletons of each sample of the full-resolution augmented target."""
    t = target.numpy()
    out = []
    for s in t:
        if lm.has_regions:
            n = len(lm.foreground_regions)
            masks = s[:n] > 0.5
            if lm.has_ignore_label:
                masks &= ~(s[n] > 0.5)[None]
            out.append(np.stack([tubed_skeleton(m, rp.params.dilations) for m in masks]))
        else:
            out.append(skeleton_map(s[0].round().astype(np.int64), num_classes=lm.num_segmentation_heads,
                                    ignore_label=lm.ignore_label, dilations=rp.params.dilations))
    return np.stack(out)


@pytest.mark.parametrize("key,config,variant", [("labels3d", "3d_fullres", None), ("labels3d", "2d", None),
                                                ("regions2d", "2d", None), ("labels3d", "3d_fullres", "DA5")])
def test_loader_skeleton_is_the_skeleton_of_the_augmented_target(nnunet_tiny, monkeypatch, tmp_path, key, config,
                                                                 variant):
    """The map channels at full resolution equal nnunet_losses.morphology.skeletons of the augmented target (the target
    channels of the same batch: ignore label and regions included); the lower scales are nnU-Net's
    nearest-exact downsampling of it; the transform sits after the augmentation, before the downsampling."""
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "maps=loader")
    cls = T.nnUNetTrainerSkeletonRecall
    if variant == "DA5":
        from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5
        cls = type("nnUNetTrainerSkeletonRecall_DA5", (cls, nnUNetTrainerDA5), {})
    tr = nnunet_tiny.trainer(cls, key, config)
    tr.initialize()
    assert not tr._map_specs and tr._loader_map and tr._loader_map[0] == "skeleton"
    dl_tr, dl_val = tr.get_dataloaders()
    flat = _flatten(_transforms(dl_tr))
    names = [type(t).__name__ for t in flat]
    pos = [i for i, t in enumerate(flat) if isinstance(t, LoaderMapsTransform)]
    assert len(pos) == 1, names
    assert pos[0] > max(i for i, t in enumerate(flat) if isinstance(t, SpatialTransform))
    assert flat[pos[0] + 1].__class__ is DownsampleSegForDSTransform
    if variant == "DA5":
        assert "Rot90Transform" in names
    lm, rp = tr.label_manager, tr._loader_map[1]
    n_fg = len(lm.foreground_regions) if lm.has_regions else lm.num_segmentation_heads - 1
    # A random patch can miss every structure (its skeleton is then empty, and equal trivially): every batch
    # is compared, and at least one of them must hold a skeleton.
    with_skeleton = 0
    for _ in range(4):
        batch = next(dl_tr)
        targets, maps = tr.loss.stored(list(batch["target"]))
        assert list(maps) == ["skeleton"]
        sk = maps["skeleton"]
        assert sk[0].shape[1] == n_fg
        assert batch["target"][0].shape[1] == targets[0].shape[1] + 1   # the skeletons travel as one packed byte
        expected = _expected(targets[0], lm, rp)
        with_skeleton += bool(expected.any())
        np.testing.assert_array_equal(sk[0].numpy() > 0.5, expected)
        for s in sk[1:]:
            down = F.interpolate(torch.from_numpy(expected).float(), s.shape[2:], mode="nearest-exact")
            assert torch.equal(s, down)
        assert math.isfinite(float(tr.train_step(batch)["loss"]))
    assert with_skeleton, "no batch of 4 held a skeleton: the comparison above proved nothing"
    # validation: nnU-Net's validation loader without map channels; the loss computes the skeleton itself
    val = next(dl_val)
    t = val["target"][0] if isinstance(val["target"], (list, tuple)) else val["target"]
    assert t.shape[1] == (len(lm.foreground_regions) + int(lm.has_ignore_label) if lm.has_regions else 1)
    assert math.isfinite(float(tr.validation_step(val)["loss"]))


def test_loader_transform_without_deep_supervision_and_its_checks():
    """Without nnU-Net's downsampling the transform is appended; a wrong shape from a kind is an error."""
    import dataclasses

    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

    from nnunet_losses.nnunet.maps.declaration import ResolvedMap, Values
    rp = ResolvedMap(kind="skeleton", params=Values({"dilations": 2}), algorithm=1, slicewise=False, num_classes=3,
                     regions=None, ignore_label=3, derived=Values({}), channels=("skeleton:1", "skeleton:2"))
    composed = with_loader_maps(ComposeTransforms([]), "skeleton", rp)
    seg = torch.zeros((1, 20, 24), dtype=torch.int16)
    seg[0, 4:16, 5:8] = 1
    seg[0, 2:4, :] = 3      # ignore label: in no class
    seg[0, 10:12, 10:22] = 2
    out = composed(segmentation=seg)["segmentation"]
    assert out.dtype == torch.float32 and out.shape == (2, 20, 24)   # the target and one packed byte
    assert torch.equal(out[0], seg[0].float())
    expected = skeleton_map(seg[0].numpy(), 3, ignore_label=3)
    assert expected[0].any() and expected[1].any()
    np.testing.assert_array_equal(unpack_bits(out[1:].numpy().astype(np.uint8), 2), expected)
    with pytest.raises(ValueError, match="has no loader computation"):
        LoaderMapsTransform("contour", rp)
    bad = dataclasses.replace(rp, channels=("skeleton:1",))
    with pytest.raises(ValueError, match="returned shape"):
        LoaderMapsTransform("skeleton", bad)(segmentation=seg)


def test_maps_option_is_validated_against_the_registry(nnunet_tiny, monkeypatch, tmp_path):
    """maps=loader for a kind without a loader computation, an unknown mode, and a trainer default that its
    kind cannot give are clear errors; a continuous kind cannot declare a loader computation."""
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    assert T.nnUNetTrainerSkeletonRecall.maps_modes() == ("stored", "online", "loader")
    assert T.nnUNetTrainerCWCD.maps_modes() == ("stored", "online")
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "maps=loader")
    tr = nnunet_tiny.trainer(T.nnUNetTrainerCWCD, "labels3d", "2d")
    with pytest.raises(ValueError, match=r"maps must be one of \['stored', 'online'\], got 'loader'.*'skeleton'.*"
                                         r"'contour' has none"):
        tr.initialize()
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "maps=worker")
    tr = nnunet_tiny.trainer(T.nnUNetTrainerSkeletonRecall, "labels3d", "2d")
    with pytest.raises(ValueError, match=r"maps must be one of \['stored', 'online', 'loader'\], got 'worker'"):
        tr.initialize()
    bad_default = type("BadDefault", (T.nnUNetTrainerCWCD,), {"default_maps": "loader"})
    with pytest.raises(TypeError, match="default_maps"):
        bad_default.trainer_options()
    kind = map_kind("dwce")
    with pytest.raises(ValueError, match="needs a binary kind"):
        register_map_kind(MapKind(**{**kind.__dict__, "name": "dwce_loader", "loader": lambda s, rp: s}))
    unregister_map_kind("dwce_loader")


def test_loader_mode_trains_end_to_end(nnunet_tiny, tiny_trainers_dir, tmp_path):
    """nnUNetv2_train with NNUNET_LOSSES_OPTIONS=maps=loader and one loader worker process: trains, checkpoints
    and records the mode."""
    results = str(tmp_path / "results")
    env = nnunet_tiny.env(results, nnUNet_extTrainer=tiny_trainers_dir, NNUNET_LOSSES_ITERATIONS=2, NNUNET_LOSSES_EPOCHS=1, NNUNET_LOSSES_FINAL_VALIDATION=0,
                          nnUNet_n_proc_DA=1, NNUNET_LOSSES_OPTIONS="maps=loader")
    did = nnunet_tiny.datasets["labels3d"][7:10]
    cmd = [nnunet_tiny.cli("nnUNetv2_train"), did, "3d_fullres", "0", "-p", nnunet_tiny.plans,
           "-tr", "nnUNetTrainerSkeletonRecall_tiny", "-device", "cpu"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    fold = os.path.join(results, nnunet_tiny.datasets["labels3d"],
                        f"nnUNetTrainerSkeletonRecall_tiny__{nnunet_tiny.plans}__3d_fullres", "fold_0")
    with open(os.path.join(fold, "loss_options.json")) as f:
        assert json.load(f)["resolved"]["maps"] == "loader"
    assert os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))
    log = "".join(open(os.path.join(fold, n)).read() for n in os.listdir(fold) if n.startswith("training_log"))
    assert "computed in the data loader" in log
