"""Draw the three sliding-window fusion windows (docs/img/fusion_windows.png).

Top: the windows over a 128 x 128 patch (nnU-Net's Gaussian, the cubic B-spline, constant).
Bottom: the central profile (linear and log scale) and the share of one patch in the fused
prediction along a line covered by patches at nnU-Net's default step (half a patch):
``w(x - o_k) / sum_j w(x - o_j)``.

    python benchmarks/studies/fusion_windows.py [--out docs/img/fusion_windows.png] [--patch 128]
"""
from __future__ import annotations

import argparse
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nnunet_losses.nnunet.inference.predictor import FUSIONS, window  # noqa: E402

STYLE = {"gaussian": ("tab:blue", "nnU-Net Gaussian (sigma = n/8)"),
         "bspline": ("tab:orange", "cubic B-spline (border at t = 1.5)"),
         "constant": ("tab:grey", "constant (plain average)")}


def draw(out: str, n: int = 128) -> None:
    windows = {f: window((n, n), f) for f in FUSIONS}
    fig = plt.figure(figsize=(13, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, 3)
    for i, f in enumerate(FUSIONS):
        ax = fig.add_subplot(grid[0, i])
        im = ax.imshow(windows[f], vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{f}: {STYLE[f][1]}", fontsize=10)
        ax.set_xticks([0, n - 1])
        ax.set_yticks([0, n - 1])
    fig.colorbar(im, ax=fig.axes[:3], shrink=0.8, label="weight (peak 1)")

    x = np.arange(n)
    ax_lin, ax_log, ax_share = (fig.add_subplot(grid[1, i]) for i in range(3))
    step = n // 2
    length = 4 * n
    offsets = range(0, length - n + 1, step)
    for f in FUSIONS:
        colour, label = STYLE[f]
        profile = windows[f][n // 2]
        ax_lin.plot(x, profile, color=colour, label=label)
        ax_log.semilogy(x, profile, color=colour, label=label)
        total = np.zeros(length)
        for o in offsets:
            total[o:o + n] += profile
        k = len(offsets) // 2
        o = offsets[k]
        share = np.full(length, np.nan)
        share[o:o + n] = profile / total[o:o + n]
        ax_share.plot(np.arange(length), share, color=colour, label=label)
    ax_lin.set(title=f"central profile (patch of {n} voxels)", xlabel="voxel in the patch", ylabel="weight")
    ax_log.set(title="same, log scale (border weights)", xlabel="voxel in the patch", ylim=(1e-4, 2))
    ax_share.set(title=f"share of one patch in the fused logits (step {step})",
                 xlabel="voxel along the image", ylabel="w_k / sum_j w_j")
    for o in offsets:
        ax_share.axvline(o, color="k", lw=0.3)
    ax_lin.legend(fontsize=8)
    fig.suptitle("Sliding-window fusion windows (nnunet_losses_predict --fusion)")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(out)))
    os.close(fd)
    fig.savefig(tmp, dpi=90)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)  # atomic: never a half-written figure
    plt.close(fig)
    print(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "docs", "img",
                                                      "fusion_windows.png"))
    parser.add_argument("--patch", type=int, default=128, help="patch side in voxels")
    args = parser.parse_args()
    draw(os.path.normpath(args.out), args.patch)


if __name__ == "__main__":
    main()
