"""Stored maps through nnU-Net's data path (docs/trainers.md, "Stored maps"): loader, transforms, deep supervision, trainers.

Each test works on a private copy of a tiny preprocessed dataset (``nnunet_tiny``), because the
trainers write ``nnunet_losses_maps/`` there. The reference everywhere is the loss's own on-the-fly
computation (torch morphology) from the target that reaches the loss, independent of the stored
(NumPy, whole-case) maps.

Alignment is compared away from the patch faces that cut the image: a contour depends on the
labels up to ``iterations * (kernel_size // 2)`` voxels away, which the crop removed (the stored map
saw the whole case, the recomputation only the patch). At a deep-supervision scale the stored map is
nnU-Net's seg downsampling (``nearest-exact``) of the full-resolution map; the reference is the same
downsampling of the full-resolution recomputation.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2")
import nnunet_losses_trainers as T  # noqa: E402
from nnunet_losses._core import prepare  # noqa: E402
from nnunet_losses.morphology.torch_ops import contours_and_band  # noqa: E402
from nnunet_losses.nnunet.maps.transforms import MapSpatialTransform, PackMapsTransform  # noqa: E402
from nnunet_losses.nnunet.maps import MapFileError  # noqa: E402
from nnunet_losses.nnunet.training.trainer_base import split_region_ignore  # noqa: E402


#: maps other tests' trainers may have built in the shared fixture (DWCE's default is "stored")
_NO_MAPS = shutil.ignore_patterns("nnunet_losses_maps")


def _private(nnunet_tiny, monkeypatch, tmp_path, key):
    """A copy of the preprocessed dataset ``key``; nnU-Net's paths point at it."""
    pre = tmp_path / "pre"
    shutil.copytree(nnunet_tiny.folder(key), pre / nnunet_tiny.datasets[key], ignore=_NO_MAPS)
    nnunet_tiny.use(monkeypatch, str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    return pre / nnunet_tiny.datasets[key]


def _trainer(nnunet_tiny, monkeypatch, cls, key, config, ds, options):
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", json.dumps(options))
    tr = nnunet_tiny.trainer(cls, key, config, ds)
    tr.initialize()
    return tr


def _loaders(tr, spatial_aug: bool):
    dl_tr, dl_val = tr.get_dataloaders()
    comp = dl_tr.data_loader.transforms
    sp = [t for t in comp.transforms if isinstance(t, MapSpatialTransform)]
    assert len(sp) == 1 and isinstance(comp.transforms[-1], PackMapsTransform)
    if spatial_aug:
        sp[0].p_rotation = sp[0].p_scaling = 1.0  # always: the hard case
    else:
        sp[0].p_rotation = sp[0].p_scaling = sp[0].p_elastic_deform = 0.0  # crop, pad, mirror only
    return dl_tr, dl_val


def _recompute(tr, target):
    """(contour, band) from the target the loss sees, by the loss's on-the-fly functions."""
    core = tr.loss.loss
    lm = tr.label_manager
    if lm.has_regions:
        regions, mask = split_region_ignore(target)
        c = regions.shape[1]
        prep = prepare(torch.zeros((target.shape[0], c, *target.shape[2:])), regions, True, None, mask)
        return contours_and_band(prep.g, c, True, core.kernel_size, core.contour_width, prep.ignored)
    c = lm.num_segmentation_heads
    prep = prepare(torch.zeros((target.shape[0], c, *target.shape[2:])), target, False, core.ignore_index)
    return contours_and_band(prep.labels, c, False, core.kernel_size, core.contour_width, prep.ignored)


def _interior(shape, margin):
    m = torch.zeros(shape, dtype=torch.bool)
    m[(slice(None), slice(None)) + tuple(slice(margin, s - margin) for s in shape[2:])] = True
    return m


def _down(x, shape):
    return torch.nn.functional.interpolate(x.float(), size=list(shape), mode="nearest-exact") > 0.5


CASES = [("labels3d", "3d_fullres"), ("labels3d", "2d"), ("regions2d", "2d")]


@pytest.mark.parametrize("key,config", CASES, ids=[f"{k}-{c}" for k, c in CASES])
def test_alignment_without_spatial_augmentation(nnunet_tiny, monkeypatch, tmp_path, key, config):
    _private(nnunet_tiny, monkeypatch, tmp_path, key)
    torch.manual_seed(0)
    np.random.seed(0)
    tr = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerCWCD, key, config, True, {"maps": "stored", "contour_width": 1})
    dl_tr, _ = _loaders(tr, spatial_aug=False)
    n_checked, misaligned = 0, False
    for _ in range(4):
        batch = next(dl_tr)
        targets, maps = tr.loss.stored(list(batch["target"]))
        assert set(maps) == {"contour", "boundary_band"} and len(maps["boundary_band"]) == len(targets) > 1
        contour0, band0 = _recompute(tr, targets[0])
        inner = _interior(band0.shape, 1)
        assert (maps["boundary_band"][0].bool() == band0)[inner.expand_as(band0)].all()
        assert (maps["contour"][0].bool() == contour0)[inner.expand_as(contour0)].all()
        flipped = torch.flip(maps["boundary_band"][0].bool(), (-1,))  # the comparison can see a misalignment
        misaligned = misaligned or not (flipped == band0)[inner.expand_as(band0)].all()
        for s in range(1, len(targets)):
            shape = targets[s].shape[2:]
            keep = _down(inner, shape)
            assert (maps["boundary_band"][s].bool() == _down(band0, shape))[keep.expand_as(maps["boundary_band"][s])].all()
            assert (maps["contour"][s].bool() == _down(contour0, shape))[keep.expand_as(maps["contour"][s])].all()
        n_checked += int(band0.sum())
    assert n_checked > 0 and misaligned


def _dice(a, b):
    a, b = a.bool(), b.bool()
    return float(2 * (a & b).sum() / max(1, int(a.sum() + b.sum())))


#: threshold of test_full_augmentation_keeps_maps_close (the reason is in its docstring)
FULL_AUG_DICE = 0.85


@pytest.mark.parametrize("key", ["labels3d", "regions2d"])
def test_full_augmentation_keeps_maps_close(nnunet_tiny, monkeypatch, tmp_path, key):
    """With rotation and scaling always on, the stored band that reaches the loss and the band
    recomputed from the target that reaches the loss have Dice >= FULL_AUG_DICE = 0.85.

    Why not 1: the stored band is resampled by nearest neighbour, while nnU-Net resamples the
    segmentation linearly (one-hot, argmax) and the band is then recomputed from that; the two
    disagree only along the band's edges, about one voxel on each side of a band 2 * iterations =
    12 voxels wide across a boundary, i.e. roughly 2 / 12 of the band, hence 0.85 (measured: 0.93
    labels3d, 0.97 regions2d). Why this threshold can fail: the same stored band shifted by 2 voxels
    along either axis must fit worse than the unshifted one (measured 0.89-0.92 / 0.91-0.94), so a
    misaligned map (wrong crop offset, rotation in the wrong direction) fails. Compared away from
    the patch faces (iterations + 2 voxels), where the recomputation cannot see beyond the patch.
    """
    _private(nnunet_tiny, monkeypatch, tmp_path, key)
    torch.manual_seed(1)
    np.random.seed(1)
    tr = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerCWCD, key, "2d", False, {"maps": "stored"})
    dl_tr, _ = _loaders(tr, spatial_aug=True)
    stored, recomputed = [], []
    for _ in range(12):
        batch = next(dl_tr)
        targets, maps = tr.loss.stored([batch["target"]])
        stored.append(maps["boundary_band"][0].bool())
        recomputed.append(_recompute(tr, targets[0])[1])
    a, b = torch.cat(stored), torch.cat(recomputed)
    inner = _interior(b.shape, tr.loss.loss.contour_width + 2)
    d = _dice(a[inner], b[inner])
    assert d >= FULL_AUG_DICE, d
    for shift in ((2, 0), (-2, 0), (0, 2), (0, -2)):
        assert _dice(torch.roll(a, shift, (-2, -1))[inner], b[inner]) < d, shift


def _boundary_error_logits(tr, target):
    """Logits of a prediction that is right except near the boundaries (the target shifted by two
    voxels, plus noise): the value of a contour / band weighted loss then depends on where the maps
    are (with random logits it hardly does)."""
    g = torch.Generator().manual_seed(3)
    shifted = torch.roll(target, 2, -1)
    if tr.label_manager.has_regions:
        regions = shifted[:, :-1] if tr.label_manager.has_ignore_label else shifted
        onehot = regions.float() * 2 - 1
    else:
        lab = shifted[:, 0].long().clamp_max(tr.label_manager.num_segmentation_heads - 1)
        onehot = torch.nn.functional.one_hot(lab, tr.label_manager.num_segmentation_heads).movedim(-1, 1).float()
    return 3.0 * onehot + 0.5 * torch.randn(onehot.shape, generator=g)


def _whole_image_trainer(nnunet_tiny, monkeypatch, cls, key, folder, image_shape):
    """A 2d trainer (deep supervision off) whose training patch is exactly the whole image: patch
    size = image size, no enlarged initial patch (rotation is off anyway), and a loader crop that
    always starts at the image origin (nnU-Net's ``get_bbox`` centres the crop on an annotated voxel
    when the dataset has an ignore label, which would pad the patch)."""
    # a fresh plans dict per trainer: nnU-Net's trainer pops keys from it ("continue_training")
    plans = json.load(open(os.path.join(nnunet_tiny.folder(key), f"{nnunet_tiny.plans}.json")))
    plans["continue_training"] = False
    plans["configurations"]["2d"]["patch_size"] = list(image_shape)
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", json.dumps({"maps": "stored"}))
    tr = cls(plans=plans, configuration="2d", fold=0, dataset_json=json.load(open(folder / "dataset.json")),
             device=torch.device("cpu"))
    tr.enable_deep_supervision = False
    configure = tr.configure_rotation_dummyDA_mirroring_and_inital_patch_size

    def same_initial_patch():
        rotation, dummy_2d, _, mirror_axes = configure()
        return rotation, dummy_2d, list(image_shape), mirror_axes

    tr.configure_rotation_dummyDA_mirroring_and_inital_patch_size = same_initial_patch
    tr.initialize()
    return tr


@pytest.mark.parametrize("name,key,image_shape", [("nnUNetTrainerCWCD", "labels3d", (32, 32)),
                                                  ("nnUNetTrainerCWCE", "regions2d", (64, 64)),
                                                  ("nnUNetTrainerSDL", "regions2d", (64, 64)),
                                                  ("nnUNetTrainerOsC", "labels3d", (32, 32))])
def test_stored_and_online_steps_give_the_same_loss(nnunet_tiny, monkeypatch, tmp_path, name, key, image_shape):
    """With augmentation off (no rotation, scaling or elastic deformation; mirroring stays, the cube
    elements are symmetric) and a patch that is the whole image, the stored whole-case maps and the
    maps the loss computes on the fly from the target are the same, so one training step's loss value
    is the same (float32 round-off). Deep supervision off: with it, stored maps are downsampled while
    online ones are recomputed per scale, by design. Also a real ``train_step`` on each path gives
    the same loss (same weights, same batch)."""
    folder = _private(nnunet_tiny, monkeypatch, tmp_path, key)
    torch.manual_seed(2)
    np.random.seed(2)
    tr = _whole_image_trainer(nnunet_tiny, monkeypatch, getattr(T, name), key, folder, image_shape)
    dl_tr, _ = _loaders(tr, spatial_aug=False)
    get_bbox = dl_tr.data_loader.get_bbox

    def whole_slice(shape, *args, **kwargs):  # nnU-Net's choice of the slice (axis 0), the whole slice in-plane
        lbs, ubs = get_bbox(shape, *args, **kwargs)
        return [lbs[0]] + [0] * (len(shape) - 1), [ubs[0]] + list(shape[1:])

    dl_tr.data_loader.get_bbox = whole_slice
    n_shift_checks = 0
    for _ in range(4):
        batch = next(dl_tr)
        target = batch["target"]
        assert tuple(target.shape[2:]) == tuple(image_shape)
        n_t = tr.loss.stored.n_target
        assert target.shape[1] > n_t  # the map channels are there
        _, maps = tr.loss.stored([target])
        plain = target[:, :n_t].round().to(torch.bool if tr.label_manager.has_regions else torch.int16)
        logits = _boundary_error_logits(tr, plain)
        stored = tr.loss(logits, target)
        online = tr.loss(logits, plain)  # no map channels: the loss computes its maps itself
        assert torch.allclose(stored, online, rtol=1e-5, atol=1e-6), (float(stored), float(online))
        # the comparison can fail: the same maps shifted by 3 voxels (OsC's band is 3 voxels wide on each
        # side) change the loss by far more than the tolerance (checked on batches whose maps are not
        # empty: a 2d slice may hold no object)
        if all(float(m[0].sum()) > 0 for m in maps.values()):
            tgt, mask = plain, None
            if tr.label_manager.has_regions and tr.label_manager.has_ignore_label:
                tgt, mask = split_region_ignore(plain)
            shifted = tr.loss.loss(logits, tgt, mask=mask, **{k: torch.roll(m[0], 3, -1) for k, m in maps.items()})
            assert abs(float(shifted - online)) > 10 * (1e-6 + 1e-5 * abs(float(online))), (float(shifted),
                                                                                             float(online))
            n_shift_checks += 1
    assert n_shift_checks > 0
    # a real training step (optimizer, grad scaler, nnU-Net's train_step) on the batch with and without maps
    tr.network.train()
    state = {k: v.clone() for k, v in tr.network.state_dict().items()}
    opt_state = tr.optimizer.state_dict()
    with_maps = tr.train_step({"data": batch["data"], "target": batch["target"]})["loss"]
    tr.network.load_state_dict(state)
    tr.optimizer.load_state_dict(opt_state)
    without = tr.train_step({"data": batch["data"], "target": plain})["loss"]
    assert np.isclose(with_maps, without, rtol=1e-5, atol=1e-6), (with_maps, without)


def test_dwce_stored_is_the_default_and_trains_a_step(nnunet_tiny, monkeypatch, tmp_path, capsys):
    folder = _private(nnunet_tiny, monkeypatch, tmp_path, "labels3d")
    tr = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerDWCE, "labels3d", "3d_fullres", True, {})
    assert tr.loss.stored is not None
    dl_tr, dl_val = tr.get_dataloaders()
    assert tr._map_ctx.maps_dir.startswith(str(folder))
    assert os.path.isfile(os.path.join(tr._map_ctx.maps_dir, "manifest.json"))
    batch = next(dl_tr)
    targets, maps = tr.loss.stored(list(batch["target"]))
    w = maps["weight_map"]
    assert len(w) == len(targets) and all(m.shape[1] == 1 for m in w)
    assert float(w[0].min()) >= 0 and float(w[0].max()) > 1  # continuous weights survived (float16 bits)
    tr.set_deep_supervision_enabled(True)
    tr.network.train()
    out = tr.train_step(batch)
    assert np.isfinite(out["loss"])
    tr.network.eval()
    with torch.no_grad():
        assert np.isfinite(tr.validation_step(next(dl_val))["loss"])  # validation: online map


def test_missing_maps_built_at_start_and_damaged_file_rebuilt(nnunet_tiny, monkeypatch, tmp_path):
    folder = _private(nnunet_tiny, monkeypatch, tmp_path, "regions2d")
    tr = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerSDL, "regions2d", "2d", True, {"maps": "stored"})
    maps_dir = Path(tr._map_ctx.maps_dir)
    assert str(maps_dir).startswith(str(folder)) and not maps_dir.exists()
    tr.get_dataloaders()
    files = sorted(f for f in os.listdir(maps_dir) if "_contour_" in f and f.endswith(".b2nd"))
    assert len(files) == 4
    log = open(tr.log_file).read()
    assert "computing stored maps {'contour': 4}" in log and "nnunet_losses_precompute -d" in log
    # other parameters: built at the next start, beside the first set (which stays valid)
    tr2 = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerSDL, "regions2d", "2d", True,
                   {"maps": "stored", "contour_width": 2})
    tr2.get_dataloaders()
    assert "computing stored maps {'contour': 4} (cases: missing)" in open(tr2.log_file).read()
    files2 = sorted(f for f in os.listdir(maps_dir) if "_contour_" in f and f.endswith(".b2nd") and f not in files)
    assert len(files2) == 4 and all((maps_dir / f).is_file() for f in files)
    # truncated: rebuilt at the next start, with a log line naming the file
    victim = maps_dir / files2[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    tr3 = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerSDL, "regions2d", "2d", True,
                   {"maps": "stored", "contour_width": 2})
    tr3.get_dataloaders()
    log = open(tr3.log_file).read()
    assert f"map file {victim} is damaged" in log and "rebuilding it" in log
    assert len(victim.read_bytes()) > len(data) // 2
    # damaged while training (after the start check): the worker refuses it, naming the file and the fix
    case = files2[0].rsplit("_contour_", 1)[0]
    raw = bytearray(victim.read_bytes())
    for i in range(len(raw) // 3, len(raw) // 3 + 16):
        raw[i] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(MapFileError) as e:
        tr3.get_tr_and_val_datasets()[0].load_case(case)
    assert str(victim) in str(e.value) and "checksum" in str(e.value) and "nnunet_losses_precompute -d" in str(e.value)
    assert "--iterations 2" in str(e.value)


def test_changed_segmentation_rebuilt_at_start(nnunet_tiny, monkeypatch, tmp_path):
    """A case whose segmentation changed after precompute is stale: exactly that case is rebuilt at
    the next training start (log line), from the new segmentation; the others are not rewritten."""
    import blosc2
    from nnunet_losses.nnunet.maps import compute_map

    _private(nnunet_tiny, monkeypatch, tmp_path, "regions2d")
    tr = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerCWCE, "regions2d", "2d", True, {"maps": "stored"})
    tr.get_dataloaders()
    maps_dir = Path(tr._map_ctx.maps_dir)
    before = {f: (maps_dir / f).stat().st_mtime_ns for f in os.listdir(maps_dir) if f.endswith(".b2nd")}
    case = tr._map_ctx.identifiers()[1]
    seg_file = os.path.join(tr.preprocessed_dataset_folder, f"{case}_seg.b2nd")
    old = blosc2.open(seg_file, mode="r")
    chunks, blocks = old.chunks, old.blocks
    seg = old[:]
    seg[..., 20:30, 20:30] = 2  # a new object
    os.remove(seg_file)
    blosc2.asarray(np.ascontiguousarray(seg), urlpath=seg_file, chunks=chunks, blocks=blocks)
    tr2 = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerCWCE, "regions2d", "2d", True, {"maps": "stored"})
    tr2.get_dataloaders()
    log = open(tr2.log_file).read()
    assert "computing stored maps {'contour': 1}" in log and "stale (segmentation changed)" in log
    after = {f: (maps_dir / f).stat().st_mtime_ns for f in before}
    sha = tr2.loss.stored.specs[0].resolved.fingerprint
    assert [f for f in before if after[f] != before[f]] == [f"{case}_contour_{sha}.b2nd"]
    rebuilt = blosc2.open(str(maps_dir / f"{case}_contour_{sha}.b2nd"), mode="r")[:]
    rp = tr2.loss.stored.specs[0].resolved
    np.testing.assert_array_equal(rebuilt, compute_map(seg, rp))
    assert not np.array_equal(rebuilt, compute_map(old[:] * 0, rp))


_FIND_SILENT_FLIP = """
import sys, blosc2, numpy as np
path, tmp, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
good = open(path, "rb").read()
orig = blosc2.open(path, mode="r")
ref, meta = orig[:], orig.schunk.vlmeta["nnunet_losses"]
for pos in range(start, len(good)):
    print(pos, flush=True)  # the parent resumes after a position that crashed blosc2
    bad = bytearray(good)
    bad[pos] ^= 0x5A
    open(tmp, "wb").write(bytes(bad))
    try:
        arr = blosc2.open(tmp, mode="r")
        if arr.schunk.vlmeta["nnunet_losses"] == meta and arr.shape == ref.shape and not np.array_equal(arr[:], ref):
            print("FOUND", pos, flush=True)
            break
    except Exception:
        pass
"""


def _silent_corruption(path: Path) -> None:
    """Flip one byte of a map file (same size) such that blosc2 still opens and decompresses it
    without any error, with its metadata intact, but other values: the damage only a content hash
    can see. Searched in a child process: some flips crash blosc2's decoder outright."""
    import sys

    tmp, start = str(path) + ".probe", 0
    for _ in range(20):
        p = subprocess.run([sys.executable, "-c", _FIND_SILENT_FLIP, str(path), tmp, str(start)],
                           capture_output=True, text=True, timeout=120)
        lines = p.stdout.split()
        if "FOUND" in lines:
            pos = int(lines[lines.index("FOUND") + 1])
            bad = bytearray(path.read_bytes())
            bad[pos] ^= 0x5A
            path.write_bytes(bytes(bad))
            os.remove(tmp)
            return
        if p.returncode == 0 or not lines:
            break
        start = int(lines[-1]) + 1  # crashed at lines[-1]
    pytest.fail(f"no silent corruption of {path} found")


@pytest.mark.parametrize("trainer,name", [("nnUNetTrainerCWCE", "contour"), ("nnUNetTrainerDWCE", "dwce")])
def test_corrupt_map_of_the_right_size_is_an_error(nnunet_tiny, monkeypatch, tmp_path, trainer, name):
    """A damaged map file of the right size (blosc2 has no checksum: it may decompress silently to
    wrong values) raises MapFileError naming the file and the command, when a case is loaded."""
    _private(nnunet_tiny, monkeypatch, tmp_path, "regions2d")
    tr = _trainer(nnunet_tiny, monkeypatch, getattr(T, trainer), "regions2d", "2d", True, {"maps": "stored"})
    tr.get_dataloaders()
    ds_tr, _ = tr.get_tr_and_val_datasets()
    case = sorted(ds_tr.identifiers)[0]
    ds_tr.load_case(case)  # intact: fine
    victim = Path(tr._map_ctx.maps_dir) / f"{case}_{name}_{tr._map_specs[0].resolved.fingerprint}.b2nd"
    _silent_corruption(victim)
    fresh, _ = tr.get_tr_and_val_datasets()  # a new process's dataset: nothing verified yet
    with pytest.raises(MapFileError, match="corrupt") as e:
        fresh.load_case(case)
    assert str(victim) in str(e.value) and f"nnunet_losses_precompute -d {nnunet_tiny.datasets['regions2d']}" \
        in str(e.value)


def test_online_maps_are_the_default_and_recomputed_per_scale(nnunet_tiny, monkeypatch, tmp_path):
    """maps="online" (the contour trainers' default): nothing stored, the target carries no map
    channels, and at every deep-supervision scale the loss builds its contours and band by max-pool
    morphology from that scale's (augmented, downsampled) target."""
    folder = _private(nnunet_tiny, monkeypatch, tmp_path, "labels3d")
    torch.manual_seed(4)
    np.random.seed(4)
    tr = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerCWCD, "labels3d", "3d_fullres", True, {})
    assert tr.loss.stored is None
    assert json.load(open(os.path.join(tr.output_folder, "loss_options.json")))["resolved"]["maps"] == "online"
    dl_tr, _ = tr.get_dataloaders()
    assert not any(d.endswith("nnunet_losses_maps") for d, _, _ in os.walk(folder))
    batch = next(dl_tr)
    targets = list(batch["target"])
    assert len(targets) > 1 and all(t.shape[1] == 1 for t in targets)
    outputs = [torch.randn((t.shape[0], tr.label_manager.num_segmentation_heads, *t.shape[2:])) for t in targets]
    core, weights = tr.loss.loss, tr.loss.weight_factors
    expected = 0.0
    for w, o, t in zip(weights, outputs, targets):
        if w:
            contour, band = _recompute(tr, t)  # this scale's own maps
            expected = expected + w * core(o, t, contour=contour, band=band)
    assert torch.allclose(tr.loss(outputs, targets), expected, rtol=1e-5, atol=1e-6)


def test_ensure_maps_rank0_builds_the_others_wait(nnunet_tiny, monkeypatch, tmp_path):
    """Under DDP only rank 0 builds the maps; every rank passes the barrier."""
    from nnunet_losses.nnunet.maps.dataset import ensure_maps

    _private(nnunet_tiny, monkeypatch, tmp_path, "regions2d")
    tr = _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerCWCE, "regions2d", "2d", True, {"maps": "stored"})
    calls, logs = [], []
    ensure_maps(tr._map_ctx, tr._map_request, log=logs.append, is_rank0=False, barrier=lambda: calls.append(1))
    assert calls == [1] and not logs and not os.path.exists(tr._map_ctx.maps_dir)
    ensure_maps(tr._map_ctx, tr._map_request, log=logs.append, is_rank0=True, barrier=lambda: calls.append(0))
    assert calls == [1, 0] and any("computing stored maps" in m for m in logs)
    assert len([f for f in os.listdir(tr._map_ctx.maps_dir) if f.endswith(".b2nd")]) == 4


def test_cascade_stages_use_online_maps(nnunet_tiny, monkeypatch, tmp_path):
    """Stored maps are not carried for cascade stages (``seg_prev``): DWCE's default falls back to
    online maps with a log line, an explicit maps="stored" is a clear error."""
    from nnunet_losses.nnunet.maps.dataset import nnUNetDatasetBlosc2WithMaps

    _private(nnunet_tiny, monkeypatch, tmp_path, "labels3d")
    prev = str(tmp_path / "prev_stage")
    tr = nnunet_tiny.trainer(T.nnUNetTrainerDWCE, "labels3d", "3d_fullres", True,
                             folder_with_segs_from_previous_stage=prev)
    tr.initialize()
    assert tr.loss.stored is None and tr.loss.map_fn is not None
    assert "stored maps are not supported, the maps are computed online" in open(tr.log_file).read()
    assert json.load(open(os.path.join(tr.output_folder, "loss_options.json")))["resolved"]["maps"] == "online"
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", json.dumps({"maps": "stored"}))
    tr = nnunet_tiny.trainer(T.nnUNetTrainerDWCE, "labels3d", "3d_fullres", True,
                             folder_with_segs_from_previous_stage=prev)
    with pytest.raises(ValueError, match="cascade"):
        tr.initialize()
    with pytest.raises(ValueError, match="cascade"):
        nnUNetDatasetBlosc2WithMaps(nnunet_tiny.folder("labels3d"), None, prev, ())


def test_bad_maps_option(nnunet_tiny, monkeypatch, tmp_path):
    _private(nnunet_tiny, monkeypatch, tmp_path, "regions2d")
    with pytest.raises(ValueError, match="maps must be"):
        _trainer(nnunet_tiny, monkeypatch, T.nnUNetTrainerCWCE, "regions2d", "2d", True, {"maps": "disk"})


def test_stored_maps_train_resume_predict_cli(nnunet_tiny, tiny_trainers_dir, tmp_path):
    """nnUNetTrainerCWCD with maps="stored" through nnUNetv2_train, --c and nnUNetv2_predict."""
    key, config = "labels3d", "3d_fullres"
    pre = tmp_path / "pre"
    shutil.copytree(nnunet_tiny.folder(key), pre / nnunet_tiny.datasets[key], ignore=_NO_MAPS)
    env = nnunet_tiny.env(str(tmp_path / "results"), nnUNet_extTrainer=tiny_trainers_dir, NNUNET_LOSSES_ITERATIONS=2,
                          NNUNET_LOSSES_FINAL_VALIDATION=0, nnUNet_preprocessed=str(pre), NNUNET_LOSSES_OPTIONS='{"maps": "stored"}')
    did = nnunet_tiny.datasets[key][7:10]
    train = [nnunet_tiny.cli("nnUNetv2_train"), did, config, "0", "-p", nnunet_tiny.plans, "-tr",
             "nnUNetTrainerCWCD_tiny", "-device", "cpu"]
    for extra, epochs in (([], "1"), (["--c"], "2")):
        p = subprocess.run(train + extra, env={**env, "NNUNET_LOSSES_EPOCHS": epochs}, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    fold = tmp_path / "results" / nnunet_tiny.datasets[key] / f"nnUNetTrainerCWCD_tiny__{nnunet_tiny.plans}__{config}" \
        / "fold_0"
    log = "".join(open(fold / f).read() for f in os.listdir(fold) if f.startswith("training_log"))
    assert "computing stored maps" in log and "maps: stored contour" in log
    assert json.load(open(fold / "loss_options.json"))["resolved"]["maps"] == "stored"
    raw = os.path.join(nnunet_tiny.raw, nnunet_tiny.datasets[key], "imagesTr")
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(os.path.join(raw, sorted(os.listdir(raw))[-1]), inp)
    p = subprocess.run([nnunet_tiny.cli("nnUNetv2_predict"), "-i", str(inp), "-o", str(tmp_path / "pred"), "-d", did,
                        "-c", config, "-f", "0", "-p", nnunet_tiny.plans, "-tr", "nnUNetTrainerCWCD_tiny",
                        "-device", "cpu", "-chk", "checkpoint_final.pth", "-npp", "1", "-nps", "1", "--disable_tta"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert len([f for f in os.listdir(tmp_path / "pred") if f.endswith(".nii.gz")]) == 1
