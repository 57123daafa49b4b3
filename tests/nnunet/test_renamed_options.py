"""Renamed loss options in nnU-Net trainings: ``NNUNET_LOSSES_OPTIONS`` with the old name
(``iterations``, OsC's ``band``) still works for one release (log line); ``loss_options.json`` of an
older run, written with the old names, is restored by ``--c`` under the new ones."""
import json
import os

import pytest

pytest.importorskip("nnunetv2")

import nnunet_losses_trainers as T  # noqa: E402


def _record(tr):
    with open(os.path.join(tr.output_folder, "loss_options.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("cls,old", [(T.nnUNetTrainerCWCD, "iterations"), (T.nnUNetTrainerOsC, "band")])
def test_old_option_name_and_old_options_file(nnunet_tiny, monkeypatch, tmp_path, cls, old):
    nnunet_tiny.use(monkeypatch, str(tmp_path))
    monkeypatch.setenv("NNUNET_LOSSES_OPTIONS", f"{old}=2")
    tr = nnunet_tiny.trainer(cls, "labels3d", "3d_fullres")
    tr.initialize()
    assert tr.loss.loss.contour_width == 2
    rec = _record(tr)
    assert rec["options"] == {"contour_width": 2} and rec["resolved"]["contour_width"] == 2
    assert f"'{old}' is now called 'contour_width'" in open(tr.log_file).read()
    # the record of an older run: the old names in options and resolved (with its _source entry)
    ckpt = os.path.join(tr.output_folder, "checkpoint_latest.pth")
    tr.save_checkpoint(ckpt)
    rec["options"] = {old: 3}
    rec["resolved"][old] = rec["resolved"].pop("contour_width") + 1
    rec["resolved"][f"{old}_source"] = rec["resolved"].pop("contour_width_source")
    with open(os.path.join(tr.output_folder, "loss_options.json"), "w") as f:
        json.dump(rec, f)
    monkeypatch.delenv("NNUNET_LOSSES_OPTIONS")
    resumed = nnunet_tiny.trainer(cls, "labels3d", "3d_fullres")
    resumed.load_checkpoint(ckpt)
    assert resumed.loss.loss.contour_width == 3
    assert _record(resumed)["options"] == {"contour_width": 3}
