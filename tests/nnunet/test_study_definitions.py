"""The repository's study definitions (benchmarks/studies/*.json) load, name real trainers, and prepare plans."""
import glob
import json
import os

import pytest

from benchmarks.studies.prepare import study_plans
from nnunet_losses.nnunet.tools.study.definition import load_definition
from nnunet_losses_trainers import TRAINERS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFINITIONS = sorted(glob.glob(os.path.join(REPO, "benchmarks", "studies", "*.json")))


def test_there_are_definitions():
    assert len(DEFINITIONS) >= 9


@pytest.mark.parametrize("path", DEFINITIONS, ids=os.path.basename)
def test_definition_loads_and_names_real_trainers(path):
    definition, prepare = load_definition(path)
    known = set(TRAINERS) | {"nnUNetTrainer"}
    unknown = [a.trainer for a in definition.arms if a.trainer not in known]
    assert not unknown, f"{path}: unknown trainers {unknown}"
    assert definition.baseline_arm == "nnU-Net"
    assert prepare is not None and prepare["source"] in ("drive", "hippocampus")


def test_every_trainer_grids_cover_the_whole_package():
    """The grids of 'every trainer with its shipped defaults': all of the package's trainers, no options."""
    for name in ("hippocampus_every_trainer.json", "drive_every_trainer.json", "hippocampus_gpu.json",
                 "drive_gpu.json"):
        definition, _ = load_definition(os.path.join(REPO, "benchmarks", "studies", name))
        assert {a.trainer for a in definition.arms} == set(TRAINERS) | {"nnUNetTrainer"}, name
        assert all(not a.options for a in definition.arms), name
        assert len(definition.folds) * len(definition.seeds) == 10, name


def test_plans_without_shape_are_nnunets_own_and_never_rewritten(tmp_path):
    own = tmp_path / "nnUNetPlans.json"
    own.write_text(json.dumps({"plans_name": "nnUNetPlans", "configurations": {}}))
    before = own.read_text()
    d = {"configuration": "3d_fullres", "plans": "nnUNetPlans", "prepare": {"source": "hippocampus"}}
    assert study_plans(str(tmp_path), d) == str(own)
    assert own.read_text() == before
    with pytest.raises(ValueError, match="plans_shape"):
        study_plans(str(tmp_path), dict(d, plans="nnUNetOtherPlans"))


@pytest.mark.parametrize("path", DEFINITIONS, ids=os.path.basename)
def test_arm_options_are_options_of_their_trainer(path):
    """Each arm's options are names its trainer takes, under their current names (a grid must not die at run time)."""
    import nnunet_losses_trainers

    definition, _ = load_definition(path)
    for arm in definition.arms:
        if not arm.options:
            continue
        cls = getattr(nnunet_losses_trainers, arm.trainer)
        allowed = cls.tunable_options()
        unknown = sorted(set(arm.options) - set(allowed))
        if os.path.basename(path) == "hippocampus_width.json":  # history: the old names, kept as run
            continue
        assert not unknown, f"{path}: arm {arm.name}: {unknown} not among {sorted(allowed)}"
