"""Renamed keywords keep working for one release: the contour width (``iterations`` of CWCE / SDL /
CWCD and ``band`` of OsC, now ``contour_width`` in all four) and CWCE's map keyword (``band``, now
``boundary_band``), each with a DeprecationWarning and the same numbers as the new name."""
import inspect

import pytest
import torch

import nnunet_losses as nl
from loss_catalogue import make_inputs
from nnunet_losses.morphology.torch_ops import boundary_band

RENAMED = [(nl.ContourWeightedCELoss, "iterations"), (nl.SeparableDiceLoss, "iterations"), (nl.CWCDLoss, "iterations"),
           (nl.OffsetCurvesLoss, "band")]


@pytest.mark.parametrize("cls,old", RENAMED)
def test_the_old_width_keyword_works_with_a_deprecation_warning(cls, old):
    logits, target = make_inputs(False, dim=2, size=12)
    with pytest.warns(DeprecationWarning, match=f"'{old}' is now called 'contour_width'"):
        before = cls(**{old: 2})
    after = cls(contour_width=2)
    assert before.contour_width == after.contour_width == 2
    assert torch.equal(before(logits, target), after(logits, target))
    assert not torch.equal(cls(contour_width=1)(logits, target), after(logits, target))  # the width is used
    with pytest.raises(TypeError, match="deprecated old name"):
        cls(**{old: 2, "contour_width": 2})
    assert old not in inspect.signature(cls).parameters and "contour_width" in inspect.signature(cls).parameters
    assert cls.renamed_arguments == {old: "contour_width"}


@pytest.mark.parametrize("cls", [nl.ContourWeightedCELoss, nl.CWCDLoss])
def test_the_old_map_keyword_works_with_a_deprecation_warning(cls):
    logits, target = make_inputs(False, dim=2, size=12)
    band = boundary_band(target, logits.shape[1], False, 3, 1).to(logits.dtype)
    band[..., :3] = 1 - band[..., :3]   # not the band the loss would build: the given map is used
    loss = cls(contour_width=1)
    with pytest.warns(DeprecationWarning, match="'band' is now called 'boundary_band'"):
        old = loss(logits, target, band=band)
    assert torch.equal(old, loss(logits, target, boundary_band=band))
    assert not torch.equal(old, loss(logits, target))
