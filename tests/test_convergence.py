"""Convergence: a tiny conv net fits a synthetic image (one large disc, four small discs) with each loss,
in 150 Adam steps on the CPU (MONAI's loss integration test is the model)."""
import pytest

import nnunet_losses as nl
from nnunet_losses.demo import fit


@pytest.mark.parametrize("name", nl.__all__)
def test_tiny_net_fits_synthetic_image(name):
    r = fit(name, iterations=150)
    assert r["last"] < 0.5 * r["first"], f"{name}: loss {r['first']:.4f} -> {r['last']:.4f}"
    # both the large and the small structure are recovered (hard Dice of the argmax)
    assert min(r["dice"]) > 0.8, f"{name}: Dice per class {r['dice']}"
