"""torch.compile(fullgraph=True) traces the losses without graph breaks (CPU inductor here; the same graph
runs on CUDA). Input checks are skipped while compiling, so nothing syncs with the device."""
import pytest
import torch

import nnunet_losses as nl


@pytest.mark.parametrize("name", ["CWCDLoss", "CETopKDiceLoss", "OffsetCurvesLoss", "SoftclDiceLoss", "ComboLoss"])
def test_fullgraph_compile_with_ignore_label_matches_eager(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 12, 12)
    t = torch.randint(0, 3, (2, 1, 12, 12, 12))
    t[:, :, :3] = 9
    loss = getattr(nl, name)(ignore_index=9)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    eager = loss(x1, t)
    eager.backward()
    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True)(x2, t)
    compiled.backward()
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-5)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-7)
