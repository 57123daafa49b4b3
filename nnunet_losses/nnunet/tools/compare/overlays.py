"""Overlay PNGs: the reference and each method's prediction painted on the image, for the cases where
the methods differ most (3D: on the slice with the most disagreement)."""
from __future__ import annotations

import os

import numpy as np

from .plots import pyplot
from .reading import read_seg
from .table import MEAN


def pick_overlay_cases(df, n_methods: int, n: int):
    """Cases where the methods' mean Dice differs most (one method: the worst cases)."""
    if n <= 0:
        return []
    d = df[df["class"] == MEAN].groupby(["case", "method"])["dice"].mean().unstack()
    score = (d.max(axis=1) - d.min(axis=1)) if n_methods > 1 else 1 - d.iloc[:, 0]
    score = score[np.isfinite(score)].sort_values(ascending=False, kind="stable")
    return list(score.index[:n])


def image_for_overlay(reader, images_dir, case, ending):
    """Background for the overlays: the case's first image file scaled to [0, 1], shape (x, y, z) for a grey
    image or (x, y, z, 3) for an RGB natural image; None when there is no image folder or file."""
    if not images_dir:
        return None
    name = f"{case}_0000{ending}"
    if not os.path.isfile(os.path.join(images_dir, name)):
        return None
    img, _ = reader.read_images([os.path.join(images_dir, name)])
    img = np.asarray(img, dtype=np.float32)
    if img.shape[0] in (3, 4) and ending in (".png", ".bmp", ".tif"):
        return np.moveaxis(np.clip(img[:3] / 255.0, 0, 1), 0, -1)
    lo, hi = np.percentile(img[0], (1, 99))
    return np.clip((img[0] - lo) / max(hi - lo, 1e-8), 0, 1)


CLASS_COLOURS = np.array([[44, 160, 44], [255, 127, 14], [148, 103, 189], [140, 86, 75], [227, 119, 194],
                          [188, 189, 34], [23, 190, 207], [127, 127, 127]]) / 255.0
FALSE_POSITIVE, MISSED, IGNORED = np.array([214, 39, 40]) / 255.0, np.array([31, 119, 180]) / 255.0, 0.35


def overlay_rgb(seg, ref, values, ignore, image=None, alpha=0.75):
    """RGB picture of one slice: the image (grey or RGB, else black) with ``seg`` painted on it.

    ``seg is ref`` (the reference panel): each label in its colour. Otherwise: voxels labelled as in the
    reference in the label's colour, wrongly labelled foreground (false positive / wrong class) red,
    missed reference foreground blue; the reference's ignore region is darkened.
    """
    base = np.zeros(ref.shape + (3,)) if image is None else (image if image.ndim == 3 else
                                                             np.repeat(image[..., None], 3, -1))
    out = np.array(base, dtype=np.float64)
    fg_seg, fg_ref = np.isin(seg, values), np.isin(ref, values)
    for i, v in enumerate(values):
        m = (seg == v) & (seg == ref) if seg is not ref else seg == v
        out[m] = (1 - alpha) * out[m] + alpha * CLASS_COLOURS[i % len(CLASS_COLOURS)]
    if seg is not ref:
        for m, colour in ((fg_seg & (seg != ref), FALSE_POSITIVE), (fg_ref & ~fg_seg, MISSED)):
            out[m] = (1 - alpha) * out[m] + alpha * colour
    if ignore is not None:
        out[ref == ignore] *= IGNORED
    return np.clip(out, 0, 1)


def plot_overlay(case, reader, ref_path, preds, image, classes, ignore, dice, path):
    """Reference and each method's prediction on the slice where they disagree most (3D) or the image (2D)."""
    plt = pyplot()
    ref, _ = read_seg(reader, ref_path)
    segs = [read_seg(reader, p)[0] for _, p in preds]
    if image is not None and image.shape[: ref.ndim] != ref.shape:
        image = None  # an image on another grid is no background for these labels
    squeeze = tuple(n for n in ref.shape if n > 1)
    if image is not None:
        image = image.reshape(squeeze + image.shape[ref.ndim:])  # grey: squeeze; RGB: squeeze + (3,)
    ref = ref.reshape(squeeze)
    segs = [s.reshape(squeeze) for s in segs]
    where = ""
    if ref.ndim == 3:
        valid = ref != ignore if ignore is not None else np.ones(ref.shape, bool)
        disagree = sum(((s != ref) & valid).sum(axis=(1, 2)) for s in segs)
        score = np.asarray(disagree, dtype=np.float64) * (ref.size + 1) + (ref > 0).sum(axis=(1, 2))
        k = int(np.argmax(score))
        ref, segs = ref[k], [s[k] for s in segs]
        image = image[k] if image is not None else None
        where = f", slice {k} of axis 0"
    values = sorted({v for c in classes for v in (c if isinstance(c, tuple) else (c,))})
    ncol = 1 + len(segs)
    h, w = ref.shape[:2]
    panel = 4.0 if max(h, w) >= 256 else 3.0
    fig, axes = plt.subplots(1, ncol, figsize=(panel * ncol, panel * h / w + 0.8), squeeze=False)
    titles = ["reference"] + [f"{name}: Dice {d:.3f}" for (name, _), d in zip(preds, dice)]
    for ax, seg, title in zip(axes[0], [ref] + segs, titles):
        ax.imshow(overlay_rgb(seg, ref, values, ignore, image), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{case}{where} - colour: label as in the reference; red: false positive or wrong label; "
                 f"blue: missed; dark: ignored", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_overlay(case, job, df, methods, reader, images, ending, classes, ignore, path):
    """overlays/<case>.png: each method's first fold's prediction of ``case`` (a job of reading.build_jobs)."""
    _, ref_path, preds = job
    first = {}
    for mi, fold, p in preds:
        first.setdefault(mi, (fold, p))
    order = sorted(first)
    sel = df[(df["class"] == MEAN) & (df.case == case)]
    dice = [float(sel[(sel.method == mi) & (sel.fold == first[mi][0])]["dice"].iloc[0]) for mi in order]
    plot_overlay(case, reader, ref_path, [(methods[mi].name, first[mi][1]) for mi in order],
                 image_for_overlay(reader, images, case, ending), classes, ignore, dice, path)
