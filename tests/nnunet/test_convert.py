"""Converters: DRIVE and Hippocampus from /work/shared/data (skipped when absent), MSD layout on tiny files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image")
sitk = pytest.importorskip("SimpleITK")
pytest.importorskip("nnunetv2")

from nnunet_losses.nnunet.tools.convert_drive import entry_point as drive_entry_point  # noqa: E402
from nnunet_losses.nnunet.tools.convert_msd import convert_msd  # noqa: E402

DATA = os.environ.get("NNUNET_LOSSES_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
DRIVE = os.path.join(DATA, "DRIVE")
HIPPO = os.path.join(DATA, "Hippocampus")
BIN = os.path.dirname(sys.executable)


def _cli(name, args, env=None):
    exe = os.path.join(BIN, name)
    if not os.path.isfile(exe):
        pytest.fail(f"{exe} missing: run `pip install -e .` so that the console scripts exist")
    e = dict(os.environ, OMP_NUM_THREADS="1", nnUNet_raw="", nnUNet_preprocessed="", nnUNet_results="")
    e.update(env or {})  # nnU-Net folders of the developer's own environment play no part
    return subprocess.run([exe, *args], capture_output=True, text=True, env=e, timeout=300)


@pytest.fixture(autouse=True)
def _no_nnunet_env(monkeypatch):
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(k, raising=False)


def _verify(folder, n_cases=None):
    """nnU-Net's own checks of a raw dataset, in this process (``verify_dataset_integrity`` runs the same per-case
    functions, verify_labels and check_cases, in a spawned pool, which costs seconds): file lists and numTraining,
    labels consecutive, label values, image/label shapes, spacings and channel count."""
    from nnunetv2.experiment_planning import verify_dataset_integrity as v
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    dj = json.loads((folder / "dataset.json").read_text())
    dataset = v.get_filenames_of_train_images_and_targets(str(folder), dj)
    assert len(dataset) == dj["numTraining"]
    lm = LabelManager(dj["labels"], dj.get("regions_class_order"))
    expected = lm.all_labels + ([lm.ignore_label] if lm.has_ignore_label else [])
    assert np.all(np.diff(expected) == 1)
    first = next(iter(dataset.values()))
    rw = v.determine_reader_writer_from_dataset_json(dj, first["images"][0], verbose=False)
    for case in list(dataset.values())[:n_cases]:
        assert v.verify_labels(case["label"], rw, expected)
        assert v.check_cases(case["images"], case["label"], len(dj["channel_names"]), rw)


# ---------------------------------------------------------------------------------------- DRIVE
@pytest.mark.skipif(not os.path.isdir(os.path.join(DRIVE, "training")),
                    reason=f"DRIVE not found in {DRIVE} (see ../shared/data/README.md; set NNUNET_LOSSES_DATA)")
def test_drive_real_images(tmp_path, monkeypatch):
    import tifffile

    r = _cli("nnunet_losses_convert_drive", ["-i", DRIVE, "-d", "501", "-o", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    ds = tmp_path / "Dataset501_DRIVE"
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "vessel": 1, "ignore": 2} and dj["file_ending"] == ".png"
    assert dj["channel_names"] == {"0": "R", "1": "G", "2": "B"} and dj["numTraining"] == 20
    n_test = len(os.listdir(os.path.join(DRIVE, "test", "images")))
    assert len(os.listdir(ds / "imagesTr")) == 20 and len(os.listdir(ds / "labelsTs")) == n_test
    assert len(os.listdir(ds / "labelsTs_observer2")) == n_test
    # read back with nnU-Net's reader: the RGB TIFF's pixels as channels R, G, B (read independently by tifffile)
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    img, props = NaturalImage2DIO().read_images([str(ds / "imagesTr" / "DRIVE_021_0000.png")])
    tif = tifffile.imread(os.path.join(DRIVE, "training", "images", "21_training.tif"))
    assert img.shape == (3, 1, 584, 565) and np.array_equal(img[:, 0], np.moveaxis(tif, -1, 0))
    seg, _ = NaturalImage2DIO().read_seg(str(ds / "labelsTr" / "DRIVE_021.png"))
    seg = seg[0, 0]
    fov = np.asarray(PIL.open(os.path.join(DRIVE, "training", "mask", "21_training_mask.gif")).convert("L")) > 127
    manual = np.asarray(PIL.open(os.path.join(DRIVE, "training", "1st_manual", "21_manual1.gif")).convert("L")) > 127
    assert np.array_equal(seg == 2, ~fov)
    assert np.array_equal(seg == 1, manual & fov)
    assert 0.08 < (seg == 1).sum() / fov.sum() < 0.16  # vessels ~12% of the field of view
    obs2 = np.asarray(PIL.open(ds / "labelsTs_observer2" / "DRIVE_001.png"))
    man2 = np.asarray(PIL.open(os.path.join(DRIVE, "test", "2nd_manual", "01_manual2.gif")).convert("L")) > 127
    assert np.array_equal(obs2 == 1, man2 & (obs2 != 2)) and set(np.unique(obs2)) == {0, 1, 2}
    _verify(ds, n_cases=3)
    # the id is taken now: a second run stops with one clear line and changes nothing
    before = (ds / "dataset.json").stat().st_mtime_ns
    monkeypatch.setattr(sys, "argv", ["nnunet_losses_convert_drive", "-i", DRIVE, "-d", "501", "-o", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        drive_entry_point()
    assert "error:" in str(e.value) and "already" in str(e.value)
    assert (ds / "dataset.json").stat().st_mtime_ns == before


# ---------------------------------------------------------------------------------- Hippocampus
@pytest.mark.skipif(not os.path.isdir(os.path.join(HIPPO, "images")),
                    reason=f"Hippocampus not found in {HIPPO} (see ../shared/data/README.md; set NNUNET_LOSSES_DATA)")
def test_hippocampus_flat_layout_real_files(tmp_path):
    # five real cases (001: uint8 labels, 003: float32 labels), linked into a folder of the same layout
    src = tmp_path / "Hippocampus"
    for sub in ("images", "labels"):
        (src / sub).mkdir(parents=True)
    cases = sorted(os.listdir(os.path.join(HIPPO, "images")))[:5]
    for c in cases:
        for sub in ("images", "labels"):
            os.symlink(os.path.join(HIPPO, sub, c), src / sub / c)
    ds = tmp_path / "raw" / "Dataset004_Hippocampus"
    assert convert_msd(str(src), 4, str(tmp_path / "raw"), progress=False) == str(ds)
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "Anterior": 1, "Posterior": 2} and dj["channel_names"] == {"0": "MRI"}
    assert dj["numTraining"] == 5 and dj["file_ending"] == ".nii.gz"
    for c in cases:
        cid = c[: -len(".nii.gz")]
        src_img, out_img = sitk.ReadImage(str(src / "images" / c)), sitk.ReadImage(str(ds / "imagesTr" / f"{cid}_0000.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(src_img), sitk.GetArrayFromImage(out_img))
        src_lab, out_lab = sitk.ReadImage(str(src / "labels" / c)), sitk.ReadImage(str(ds / "labelsTr" / c))
        assert out_lab.GetPixelID() == sitk.sitkUInt8
        assert np.array_equal(sitk.GetArrayFromImage(src_lab), sitk.GetArrayFromImage(out_lab))
        assert out_lab.GetSpacing() == src_lab.GetSpacing() and out_lab.GetDirection() == src_lab.GetDirection()
        assert np.allclose(out_lab.GetOrigin(), src_img.GetOrigin())
    assert not os.listdir(ds / "imagesTs")
    _verify(ds)


# ------------------------------------------------------------------- MSD layout, tiny files written here
def _write(path, arr, spacing=(1.0, 1.0, 1.0)):
    im = sitk.GetImageFromArray(arr, isVector=False)
    im.SetSpacing(spacing)
    sitk.WriteImage(im, str(path))


@pytest.fixture
def msd_task(tmp_path):
    """Task09_Tiny: two-channel 4D images (channels first in the NIfTI's 4th axis), labels 0..2, one test image."""
    task = tmp_path / "Task09_Tiny"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for i, folder in ((1, "imagesTr"), (2, "imagesTr"), (3, "imagesTs")):
        img = rng.random((2, 6, 7, 8)).astype(np.float32)  # (channel, z, y, x) -> a 4D NIfTI
        _write(task / folder / f"tiny_{i:03d}.nii.gz", img, (0.8, 0.9, 2.5, 1.0))
        arrays[i] = img
        if folder == "imagesTr":
            lab = rng.integers(0, 3, (6, 7, 8)).astype(np.uint8)
            _write(task / "labelsTr" / f"tiny_{i:03d}.nii.gz", lab, (0.8, 0.9, 2.5))
            arrays[f"lab{i}"] = lab
    meta = {"name": "Tiny", "modality": {"0": "T1", "1": "T2"}, "labels": {"0": "background", "1": "a", "2": "b"},
            "numTraining": 2, "numTest": 1, "tensorImageSize": "4D",
            "training": [{"image": f"./imagesTr/tiny_00{i}.nii.gz", "label": f"./labelsTr/tiny_00{i}.nii.gz"}
                         for i in (1, 2)], "test": ["./imagesTs/tiny_003.nii.gz"]}
    (task / "dataset.json").write_text(json.dumps(meta))
    return task, arrays


def test_msd_layout_uses_nnunet_converter(msd_task, tmp_path):
    task, arrays = msd_task
    raw = tmp_path / "raw"
    r = _cli("nnunet_losses_convert_msd", ["-i", str(task), "-d", "109", "-o", str(raw), "-np", "1"],
             {"nnUNet_raw": str(raw)})
    assert r.returncode == 0, r.stderr
    ds = raw / "Dataset109_Tiny"
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "T1", "1": "T2"} and dj["labels"] == {"background": 0, "a": 1, "b": 2}
    assert dj["file_ending"] == ".nii.gz" and "modality" not in dj and "training" not in dj
    for i, folder in ((1, "imagesTr"), (2, "imagesTr"), (3, "imagesTs")):
        for ch in (0, 1):
            im = sitk.ReadImage(str(ds / folder / f"tiny_{i:03d}_{ch:04d}.nii.gz"))
            assert np.allclose(sitk.GetArrayFromImage(im), arrays[i][ch])
            assert np.allclose(im.GetSpacing(), (0.8, 0.9, 2.5))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(ds / "labelsTr" / "tiny_001.nii.gz")))
    assert np.array_equal(lab, arrays["lab1"])
    assert sorted(os.listdir(raw)) == ["Dataset109_Tiny"]  # no staging folder left behind


def test_converter_errors_leave_nothing_behind(msd_task, tmp_path):
    task, _ = msd_task
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match="TaskXX_Name"):
        bad = tmp_path / "Tiny"
        os.rename(task, bad)
        convert_msd(str(bad), 110, str(raw))
    os.rename(bad, task)
    with pytest.raises(ValueError, match="flat layout only"):
        convert_msd(str(task), 110, str(raw), labels=["background", "x"])
    # flat layout: a label value without a name, and an image/label grid mismatch
    flat = tmp_path / "flat"
    (flat / "images").mkdir(parents=True)
    (flat / "labels").mkdir()
    _write(flat / "images" / "c1.nii.gz", np.zeros((4, 5, 6), np.float32))
    _write(flat / "labels" / "c1.nii.gz", np.full((4, 5, 6), 3, np.uint8))
    with pytest.raises(ValueError, match="outside 0..2"):
        convert_msd(str(flat), 111, str(raw), labels=["background", "a", "b"], progress=False)
    _write(flat / "labels" / "c1.nii.gz", np.zeros((4, 5, 7), np.uint8))
    with pytest.raises(ValueError, match="same grid"):
        convert_msd(str(flat), 111, str(raw), labels=["background", "a", "b"], progress=False)
    with pytest.raises(ValueError, match="--labels"):
        convert_msd(str(flat), 111, str(raw), progress=False)
    assert not raw.exists() or os.listdir(raw) == []
    (raw / "Dataset111_other").mkdir(parents=True)
    with pytest.raises(ValueError, match="already used"):
        convert_msd(str(flat), 111, str(raw), labels=["background", "a", "b"], progress=False)
