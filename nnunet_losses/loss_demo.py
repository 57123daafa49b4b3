"""Quick demo: a tiny conv net fits a synthetic image with every loss (CPU, about a minute).

    python -m nnunet_losses.loss_demo [--iterations 200] [--losses CWCDLoss ComboLoss ...]

The image holds blobs of three very different sizes (a large organ, a medium one and small
lesions), so class imbalance matters. For each loss the script prints the loss at the start and
at the end and the hard Dice per class reached, then a summary table. The full nnU-Net demo
(plan, preprocess, train, predict, compare) is ``nnunet_losses_demo`` (``bash scripts/demo.sh``).
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Dict, List

import numpy as np
import torch
from torch import nn

import nnunet_losses as nl

NUM_CLASSES = 3


def synthetic_case(size: int = 48, seed: int = 0, small_radius: float = 0.045):
    """Image (1, 1, H, W) and labels (1, 1, H, W): class 1 one large disc, class 2 a few small discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), dtype=np.int64)
    cy, cx, r = size * 0.45, size * 0.4, size * 0.25
    labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = 1
    for _ in range(4):
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * small_radius) ** 2] = 2
    means = np.array([0.0, 1.0, 2.0])
    image = means[labels] + rng.normal(0, 0.35, labels.shape)
    to_t = lambda a, dt: torch.from_numpy(a[None, None]).to(dt)  # noqa: E731
    return to_t(image, torch.float32), to_t(labels, torch.long)


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, NUM_CLASSES, 1),
    )


def weight_map_for(labels: torch.Tensor) -> torch.Tensor:
    from nnunet_losses.morphology.numpy_ops import unet_weight_map

    w = unet_weight_map(labels[0, 0].numpy())
    return torch.from_numpy(np.asarray(w, dtype=np.float32))[None, None]


def hard_dice(logits: torch.Tensor, labels: torch.Tensor) -> List[float]:
    pred = logits.argmax(1, keepdim=True)
    out = []
    for c in range(1, NUM_CLASSES):
        p, g = pred == c, labels == c
        denom = p.sum() + g.sum()
        out.append(float(2 * (p & g).sum() / denom) if denom else 1.0)
    return out


def fit(loss_name: str, iterations: int = 200, lr: float = 3e-3, seed: int = 0) -> Dict[str, object]:
    """Train the tiny net on the synthetic case with one loss; return losses and Dice."""
    image, labels = synthetic_case(seed=seed)
    net = tiny_net(seed)
    loss_fn = getattr(nl, loss_name)(**({"iterations": 2} if loss_name in ("CWCDLoss", "SeparableDiceLoss",
                                                                           "ContourWeightedCELoss") else {}))
    maps = {"weight_map": weight_map_for(labels)} if loss_name == "DistanceWeightedCELoss" else {}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    for _ in range(iterations):
        opt.zero_grad()
        loss = loss_fn(net(image), labels, **maps)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    with torch.no_grad():
        dice = hard_dice(net(image), labels)
    return {"loss": loss_name, "first": history[0], "last": float(np.mean(history[-5:])), "dice": dice,
            "history": history}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--losses", nargs="+", default=list(nl.__all__), choices=list(nl.__all__))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    print(f"Fitting a tiny CNN on a 48x48 synthetic image (large disc + small discs), "
          f"{args.iterations} Adam steps per loss\n")
    rows = []
    t0 = time.time()
    for i, name in enumerate(args.losses, 1):
        r = fit(name, args.iterations)
        rows.append(r)
        print(f"[{i:2d}/{len(args.losses)}] {name:24s} loss {r['first']:.4f} -> {r['last']:.4f}   "
              f"Dice large {r['dice'][0]:.3f}  small {r['dice'][1]:.3f}", flush=True)
    print(f"\n{'loss':24s} | {'start':>8s} | {'end':>8s} | {'Dice large':>10s} | {'Dice small':>10s}")
    print("-" * 72)
    for r in rows:
        print(f"{r['loss']:24s} | {r['first']:8.4f} | {r['last']:8.4f} | {r['dice'][0]:10.3f} | {r['dice'][1]:10.3f}")
    ok = all(r["last"] < r["first"] and not math.isnan(r["last"]) for r in rows)
    print(f"\n{'every loss fell' if ok else 'SOME LOSS DID NOT FALL'} ({time.time() - t0:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
