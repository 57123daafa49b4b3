"""Every trainer x {3D labels + ignore label: 2d, 3d_fullres; 2D regions + ignore channel: 2d} x
deep supervision {on, off}, in-process on nnU-Net's real data loaders (tiny plans): one training
step (the weights change, the loss is finite and >= 0) and one validation step, with the loss
arguments nnU-Net's default trainer would use (sigmoid for regions, ignore label, batch_dice from
the plans, deep-supervision weights).
"""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("nnunetv2")
import nnunet_losses_trainers as T  # noqa: E402
from nnunet_losses.nnunet.training.deep_supervision import nnunet_deep_supervision_weights  # noqa: E402
from nnunet_losses.nnunet.training.trainer_base import NnUNetLoss, nnUNetTrainerLossBase  # noqa: E402

SETUPS = [("labels3d", "2d"), ("labels3d", "3d_fullres"), ("regions2d", "2d")]


def test_every_trainer_is_a_thin_nnunet_trainer():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    for name in T.__all__:
        cls = getattr(T, name)
        assert cls.__name__ == name and issubclass(cls, nnUNetTrainerLossBase) and issubclass(cls, nnUNetTrainer)
        own = {k for k in vars(cls) if not k.startswith("__")}
        assert own <= {"loss_class", "loss_defaults", "default_maps", "auto_options"}, own


@pytest.mark.parametrize("deep_supervision", [True, False], ids=["ds", "nods"])
@pytest.mark.parametrize("key,config", SETUPS, ids=[f"{k}-{c}" for k, c in SETUPS])
@pytest.mark.parametrize("name", T.__all__)
def test_one_step(nnunet_tiny, monkeypatch, tmp_path, name, key, config, deep_supervision):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    torch.manual_seed(0)
    tr = nnunet_tiny.trainer(getattr(T, name), key, config, deep_supervision)
    tr.initialize()
    loss = tr.loss
    assert isinstance(loss, NnUNetLoss)
    regions = key == "regions2d"
    core = loss.loss
    assert core.sigmoid is regions
    assert core.ignore_index == (None if regions else 3)
    assert loss.region_ignore is regions
    if hasattr(core, "batch_dice"):
        assert core.batch_dice is bool(tr.configuration_manager.batch_dice)
    if deep_supervision:
        assert loss.weight_factors == nnunet_deep_supervision_weights(len(tr._get_deep_supervision_scales()))
    else:
        assert loss.weight_factors is None
    dl_tr, dl_val = tr.get_dataloaders()
    tr.set_deep_supervision_enabled(deep_supervision)
    before = [p.detach().clone() for p in tr.network.parameters()]
    tr.network.train()
    out = tr.train_step(next(dl_tr))
    assert math.isfinite(float(out["loss"])) and float(out["loss"]) >= 0
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.network.parameters())), "no update"
    tr.network.eval()
    with torch.no_grad():
        val = tr.validation_step(next(dl_val))
    assert math.isfinite(float(val["loss"]))
    assert len(val["tp_hard"]) == 2  # two foreground classes / two regions
