"""Batch Dice under DDP: two CPU processes (gloo) equal one process on the concatenated batch.

nnU-Net gathers the batch-Dice sums of all ranks (``AllGatherGrad``) so that a DDP training with
batch_dice computes the Dice of the global batch. Our losses do the same with ``ddp=True``, which
the trainers pass as ``ddp=self.is_ddp`` (tests/test_deep_supervision.py checks that). Here a
1x1x1-conv model is wrapped in ``DistributedDataParallel``; each rank gets half of the batch. The
mean of the ranks' losses and the (DDP-averaged) parameter gradients must equal the single-process
loss and gradients on the full batch, for every Dice-type loss, with batch_dice=True.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent('''
    import json, os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.nn.parallel import DistributedDataParallel as DDP
    import nnunet_losses as L

    CASES = {
        "DiceCELoss": (L.DiceCELoss, {}),
        "SoftDiceLoss": (L.SoftDiceLoss, {}),
        "DiceCELoss_sigmoid": (L.DiceCELoss, {"sigmoid": True}),
        "ComboLoss": (L.ComboLoss, {}),
        "SeparableDiceLoss": (L.SeparableDiceLoss, {"iterations": 1}),
        "CWCDLoss": (L.CWCDLoss, {"iterations": 1}),
        "AsymmetricFbetaLoss": (L.AsymmetricFbetaLoss, {}),
        "TverskyLoss": (L.TverskyLoss, {}),
        "TopKDiceLoss": (L.TopKDiceLoss, {"k": 30}),
        "CETopKDiceLoss": (L.CETopKDiceLoss, {"k": 30}),
        "GeneralizedDiceLoss": (L.GeneralizedDiceLoss, {}),
        "FocalDiceLoss": (L.FocalDiceLoss, {}),
        "DiceCELoss_noddp": (L.DiceCELoss, {}),  # control: without gathering the ranks disagree
    }
    B, CIN, C, SP = 4, 2, 3, (6, 6, 6)

    def data(sigmoid):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, CIN, *SP, generator=g)
        if sigmoid:
            t = (torch.rand(B, C, *SP, generator=g) < 0.3).float()
            t[B // 2:, 1:] = 0
        else:
            t = torch.randint(0, C, (B, 1, *SP), generator=g)
        t[B // 2:] = 0  # the second rank's half has no foreground: per-rank Dice would differ a lot
        return x, t

    def model():
        torch.manual_seed(1)
        return torch.nn.Conv3d(CIN, C, 1)

    def run(rank, world, store, out):
        # A file store, not env:// : rank 0 then hosts no TCPStore daemon thread, whose teardown at
        # interpreter exit aborted the process now and then ("terminate called without an active exception").
        dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=world)
        torch.set_num_threads(1)
        res = {}
        for name, (cls, kw) in CASES.items():
            x, t = data(kw.get("sigmoid", False))
            per = B // world
            xs, ts = x[rank * per:(rank + 1) * per], t[rank * per:(rank + 1) * per]
            net = DDP(model())
            loss = cls(batch_dice=True, ddp=not name.endswith("_noddp"), **kw)(net(xs), ts)
            loss.backward()
            lsum = loss.detach().clone()
            dist.all_reduce(lsum)
            grads = [p.grad.detach().clone() for p in net.module.parameters()]
            del net, loss  # DDP's reducer holds the process group: release it before the group goes
            if rank == 0:
                ref_net = model()
                ref = cls(batch_dice=True, ddp=False, **kw)(ref_net(x), t)
                ref.backward()
                res[name] = {
                    "loss_ddp": lsum.item() / world, "loss_single": ref.detach().item(),
                    "grad_max_abs_diff": max(float((a - p.grad).abs().max())
                                             for a, p in zip(grads, ref_net.parameters())),
                    "grad_max_abs": max(float(p.grad.abs().max()) for p in ref_net.parameters()),
                }
        if rank == 0:
            with open(out, "w") as f:
                json.dump(res, f)
        dist.barrier()  # rank 1 must not tear gloo down while rank 0 still computes (abort at exit)
        dist.destroy_process_group()
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(0)  # the work is done and written: skip C++ static destructors at interpreter exit

    if __name__ == "__main__":
        out = sys.argv[1]
        store = out + ".store"
        if os.path.exists(store):
            os.remove(store)
        mp.spawn(run, args=(2, store, out), nprocs=2, join=True)
''')

NAMES = ["DiceCELoss", "SoftDiceLoss", "DiceCELoss_sigmoid", "ComboLoss", "SeparableDiceLoss", "CWCDLoss",
         "AsymmetricFbetaLoss", "TverskyLoss", "TopKDiceLoss", "CETopKDiceLoss", "GeneralizedDiceLoss", "FocalDiceLoss"]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    d = tmp_path_factory.mktemp("ddp")
    script, out = d / "ddp_worker.py", d / "results.json"
    script.write_text(WORKER)
    p = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(out.read_text())


def test_control_without_gathering_differs(ddp_results):
    r = ddp_results["DiceCELoss_noddp"]
    assert abs(r["loss_ddp"] - r["loss_single"]) > 1e-4 or r["grad_max_abs_diff"] > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_ddp_equals_single_process(ddp_results, name):
    r = ddp_results[name]
    assert r["loss_ddp"] == pytest.approx(r["loss_single"], rel=1e-5, abs=1e-6)
    assert r["grad_max_abs"] > 1e-6  # the comparison is not vacuous
    assert r["grad_max_abs_diff"] <= 1e-5 * max(1.0, r["grad_max_abs"])
