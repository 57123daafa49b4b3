"""Loss hyper-parameters without code: NNUNET_LOSSES_OPTIONS, validation, loss_options.json, resume."""
from __future__ import annotations

import json
import os

import pytest

from nnunet_losses.nnunet.training import options as opt

# ----------------------------------------------------------------------------- parsing (no nnU-Net)


def test_parse_pairs_and_json():
    assert opt.parse_options("beta=2.0,k=5") == {"beta": 2.0, "k": 5}
    assert opt.parse_options(" alpha = [0.25, 0.75] , batch_dice=true, kernel_size=(3,3,1)") == {
        "alpha": [0.25, 0.75], "batch_dice": True, "kernel_size": [3, 3, 1]}
    assert opt.parse_options('{"k": 5, "alpha": null}') == {"k": 5, "alpha": None}
    assert opt.parse_options("") == {} and opt.parse_options(None) == {}
    assert opt.parse_options("alpha=None,gamma=False") == {"alpha": None, "gamma": False}
    assert opt.parse_options("maps=stored,k=5") == {"maps": "stored", "k": 5}  # a bare word is a string


@pytest.mark.parametrize("text,match", [("beta", "name=value"), ("beta=1.2.3", "value of 'beta'"), ("beta=a b", "value of 'beta'"),
                                        ("beta=1,beta=2", "given twice"), ("{beta: 1}", "JSON"),
                                        ("[1, 2]", "name=value"), ("1x=2", "not an option name")])
def test_parse_errors(text, match):
    with pytest.raises(ValueError, match=match):
        opt.parse_options(text)


def test_resolve_rules():
    allowed = {"beta": 1.5, "smooth": 1e-5}
    assert opt.resolve_options("beta=2", None, False, allowed, "X") == {"beta": 2}
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['k'\].*beta=1.5"):
        opt.resolve_options("k=3", None, False, allowed, "X")
    with pytest.raises(ValueError, match="set by nnU-Net"):
        opt.resolve_options("sigmoid=true", None, False, allowed, "X")
    saved = {"options": {"beta": 2}}
    assert opt.resolve_options(None, saved, True, allowed, "X") == {"beta": 2}  # restored
    assert opt.resolve_options("beta=2.0", saved, True, allowed, "X") == {"beta": 2}  # same values: fine
    with pytest.raises(ValueError, match="contradicts"):
        opt.resolve_options("beta=3", saved, True, allowed, "X")
    assert opt.resolve_options("beta=3", saved, False, allowed, "X") == {"beta": 3}  # a new training


def test_save_load_atomic(tmp_path):
    path = opt.save_options(str(tmp_path), {"options": {"k": 5}, "resolved": {"k": 5}})
    assert opt.load_options(str(tmp_path))["options"] == {"k": 5}
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    with open(path, "w") as f:
        f.write("{broken")
    with pytest.raises(ValueError, match="loss_options.json"):
        opt.load_options(str(tmp_path))
    assert opt.load_options(str(tmp_path / "nothing")) is None


# ----------------------------------------------------------------------------- trainers
pytest.importorskip("nnunetv2")
import nnunet_losses_trainers as T  # noqa: E402


def test_tunable_options_of_every_trainer():
    for name in T.__all__:
        tun = getattr(T, name).tunable_options()
        assert not set(tun) & {"sigmoid", "ignore_index", "ddp", "self"}, name
    assert T.nnUNetTrainerAsymFbeta.tunable_options()["beta"] == 1.5
    assert T.nnUNetTrainerCETopKDice.tunable_options()["k"] == 10
    assert T.nnUNetTrainerCWCD.tunable_options()["contour_width"] == "auto"  # from the dataset's thickness
    assert T.nnUNetTrainerOsC.tunable_options()["contour_width"] == "auto"
    assert "iterations" not in T.nnUNetTrainerCWCD.tunable_options()   # the old name is no option of its own
    assert T.nnUNetTrainerDWCE.tunable_options()["w0"] == 10.0
    assert T.nnUNetTrainerDWCE.tunable_options()["sigma"] == 5.0
    assert T.nnUNetTrainerGDL.tunable_options()["include_background"] is True
    assert T.nnUNetTrainerSkeletonRecall.tunable_options()["weight_skeleton"] == 1.0
    assert T.nnUNetTrainerSkeletonRecall.tunable_options()["dilations"] == 2
    assert T.nnUNetTrainerSkeletonRecall.tunable_options()["maps"] == "loader"
    assert T.nnUNetTrainerclDice.tunable_options()["alpha"] == 0.5
    assert T.nnUNetTrainerclDice.tunable_options()["iterations"] == 3


def _trainer(tiny, cls, key="regions2d", config="2d"):
    return tiny.trainer(cls, key, config, True)


def test_options_reach_the_loss_and_the_output_folder(nnunet_tiny, monkeypatch, tmp_path):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "alpha=0.3,beta=0.7")
    tr = _trainer(nnunet_tiny, T.nnUNetTrainerCombo)
    tr.initialize()
    assert (tr.loss.loss.alpha, tr.loss.loss.beta) == (0.3, 0.7)
    with open(os.path.join(tr.output_folder, "loss_options.json")) as f:
        rec = json.load(f)
    assert rec["options"] == {"alpha": 0.3, "beta": 0.7}
    assert rec["resolved"]["alpha"] == 0.3 and rec["resolved"]["batch_dice"] == tr.configuration_manager.batch_dice
    assert rec["fixed"] == {"sigmoid": True, "ignore_index": None, "ddp": False}
    assert rec["loss"] == "nnunet_losses.combo.ComboLoss"


@pytest.mark.parametrize("cls,text,match", [
    ("nnUNetTrainerAsymFbeta", "beta=-1", "beta"),
    ("nnUNetTrainerCETopKDice", "k=0", "k"),
    ("nnUNetTrainerCWCD", "k=5", r"unknown option.*contour_width='auto'"),
    ("nnUNetTrainerDWCE", "sigma=0", "sigma"),
    ("nnUNetTrainerFocal", "sigmoid=true", "set by nnU-Net"),
])
def test_bad_options_stop_with_a_clear_error(nnunet_tiny, monkeypatch, tmp_path, cls, text, match):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", text)
    tr = _trainer(nnunet_tiny, getattr(T, cls))
    with pytest.raises(ValueError, match=match) as e:
        tr.initialize()
    assert "NNUNET_LOSSES_OPTIONS" in str(e.value)


def test_gdl_background_option(nnunet_tiny, monkeypatch, tmp_path):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    tr = _trainer(nnunet_tiny, T.nnUNetTrainerGDL, "labels3d", "2d")
    tr.initialize()
    assert tr.loss.loss.include_background is True
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "include_background=false")
    tr = _trainer(nnunet_tiny, T.nnUNetTrainerGDL, "labels3d", "3d_fullres")
    tr.initialize()
    assert tr.loss.loss.include_background is False


def test_resume_restores_saved_options(nnunet_tiny, monkeypatch, tmp_path):
    """--c and --val rebuild the trainer and call load_checkpoint: the saved options come back,
    and an environment that contradicts them is an error."""
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "beta=2.0")
    first = _trainer(nnunet_tiny, T.nnUNetTrainerAsymFbeta)
    first.initialize()
    ckpt = os.path.join(first.output_folder, "checkpoint_latest.pth")
    first.save_checkpoint(ckpt)
    assert first.loss.loss.beta == 2.0

    monkeypatch.delenv("NNUNET_LOSSES_OPTIONS")
    resumed = _trainer(nnunet_tiny, T.nnUNetTrainerAsymFbeta)
    assert resumed.output_folder == first.output_folder
    resumed.load_checkpoint(ckpt)
    assert resumed.loss.loss.beta == 2.0

    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "beta=2")
    _trainer(nnunet_tiny, T.nnUNetTrainerAsymFbeta).load_checkpoint(ckpt)  # same values: fine

    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", "beta=3.0")
    with pytest.raises(ValueError, match="contradicts"):
        _trainer(nnunet_tiny, T.nnUNetTrainerAsymFbeta).load_checkpoint(ckpt)

    fresh = _trainer(nnunet_tiny, T.nnUNetTrainerAsymFbeta)  # a new training (no --c) may change them
    fresh.initialize()
    assert fresh.loss.loss.beta == 3.0
    with open(os.path.join(fresh.output_folder, "loss_options.json")) as f:
        assert json.load(f)["options"] == {"beta": 3.0}
