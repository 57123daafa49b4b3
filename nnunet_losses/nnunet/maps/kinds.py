"""The built-in map kinds: ``contour`` (CWCE, SDL, CWCD), ``osc`` (Offset Curves), ``dwce`` (DWCE),
``skeleton`` (Skeleton Recall).

Each is one :class:`~nnunet_losses.nnunet.maps.declaration.MapKind` declaration (registered by
:mod:`.registry`); the NumPy computations are :mod:`nnunet_losses.morphology.numpy_ops` and
:mod:`nnunet_losses.morphology.skeletons` (the torch ones, for contours and bands, live in the losses
themselves: :mod:`nnunet_losses.morphology.torch_ops`). See docs/losses.md for the maps' definitions.

nnU-Net ``2d`` configurations are computed slice by slice (axis 0), as the network sees them.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nnunet_losses.morphology import numpy_ops as np_maps
from nnunet_losses.morphology import skeletons as np_skeletons
from nnunet_losses.contour import CWCDLoss
from nnunet_losses.skeleton_recall import SkeletonRecallLoss

from .declaration import (AUTO, MapKind, Param, ResolvedMap, loss_default, non_negative_number, one_of, positive_number,
                          whole_number)

__all__ = ["CONTOUR", "OSC", "DWCE", "SKELETON", "BUILTIN"]


def _foreground_names(ctx):
    return [f"region{list(x)}" for x in ctx.regions] if ctx.regions else [str(c) for c in range(1, ctx.num_classes)]


def _lead(ctx):
    return (1,) if ctx.slicewise else ()


# ----------------------------------------------------------------------------- contour
def _contour_extra(ctx, p: dict) -> dict:
    k = p["kernel_size"]
    if p["element"] == "auto":
        k = np_maps.anisotropic_kernel(ctx.spacing, k)
    return {"kernel": list(_lead(ctx) + (tuple(k) if isinstance(k, tuple) else (k,) * len(ctx.spacing)))}


def _contour_compute(label: np.ndarray, r: ResolvedMap) -> np.ndarray:
    cc, band = np_maps.contours_and_band(label, kernel_size=r.derived.kernel, iterations=r.params.iterations,
                                         **r.label_kwargs())
    return np.stack([band, *cc]).astype(bool, copy=False)


def _contour_request(loss, values: Mapping[str, Any]) -> dict:
    k = loss.kernel_size
    k = k if isinstance(k, int) else (k[0] if len(set(k)) == 1 else None)
    if k is None:
        raise ValueError(f"maps=\"stored\" needs a cubic kernel_size, got {loss.kernel_size!r}; use maps=\"online\" "
                         f"for other elements")
    return {"kernel_size": int(k), "iterations": int(loss.contour_width), "element": "cube"}


CONTOUR = MapKind(
    name="contour",
    description="boundary band + class contours (CWCE, SDL, CWCD)",
    params=(
        Param("kernel_size", loss_default(CWCDLoss, "kernel_size"), whole_number("contour kernel_size"),
              "--kernel-size", "structuring element side (the authors' code: 2)"),
        Param("iterations", AUTO, whole_number("contour iterations"), "--iterations",
              "erosion iterations (the losses' contour_width), or 'auto': from the thickness of the structures (the trainers' default)",
              auto="contour_iterations"),
        Param("element", "cube", one_of("contour element", ("cube", "auto")), "--element",
              "'cube' (what the losses use) or 'auto': spacing-aware element when max/min spacing > 3",
              choices=("cube", "auto")),
    ),
    binary=True,
    loss_keywords=(("boundary_band", 0, 1), ("contour", 1, None)),
    channels=lambda ctx: ["band"] + [f"contour:{c}" for c in _foreground_names(ctx)],
    compute=_contour_compute,
    request=_contour_request,
    resolve_extra=_contour_extra,
)


# ----------------------------------------------------------------------------- osc
def _osc_compute(label: np.ndarray, r: ResolvedMap) -> np.ndarray:
    out = np_maps.offset_band(label, band=r.params.band, kernel_size=r.derived.kernel, **r.label_kwargs())
    return np.asarray(out, dtype=bool)


OSC = MapKind(
    name="osc",
    description="offset-curve band of every foreground class / region (Offset Curves)",
    params=(Param("band", AUTO, whole_number("osc band"), "--osc-band",
                  "number of offset curves on each side of the boundary (OsC's contour_width), or 'auto': from the thickness of the "
                  "structures (the trainers' default)", auto="osc_band"),),
    binary=True,
    loss_keywords=(("offset_band", 0, None),),
    channels=lambda ctx: [f"band:{c}" for c in _foreground_names(ctx)],
    compute=_osc_compute,
    request=lambda loss, values: {"band": int(loss.contour_width)},
    resolve_extra=lambda ctx, p: {"kernel": list(_lead(ctx) + (3,) * len(ctx.spacing))},
)


# ----------------------------------------------------------------------------- dwce
def _dwce_compute(label: np.ndarray, r: ResolvedMap) -> np.ndarray:
    w = np_maps.unet_weight_map(label, r.params.w0, r.params.sigma, spacing=r.derived.spacing,
                                ignore_label=r.ignore_label, per_slice=r.slicewise)
    return np.asarray(w)[None]


def _dwce_online(label_manager, params: Mapping[str, Any]):
    from .online import UNetWeightMapFn
    lm = label_manager
    return UNetWeightMapFn(lm.has_regions, None if lm.has_regions else lm.ignore_label, float(params["w0"]),
                           float(params["sigma"]))


DWCE = MapKind(
    name="dwce",
    description="U-Net weight map (DWCE)",
    params=(
        Param("w0", 10.0, non_negative_number("dwce w0"), "--w0", "border weight w0", trainer_option=True),
        Param("sigma", 5.0, positive_number("dwce sigma"), "--sigma", "border width sigma", trainer_option=True),
        Param("sigma_unit", "voxel", one_of("dwce sigma_unit", ("voxel", "mm")), "--sigma-unit",
              "unit of sigma and of the distances", choices=("voxel", "mm")),
    ),
    binary=False,
    loss_keywords=(("weight_map", 0, 1),),
    channels=lambda ctx: ["weight"],
    compute=_dwce_compute,
    request=lambda loss, values: {"w0": float(values["w0"]), "sigma": float(values["sigma"])},
    resolve_extra=lambda ctx, p: {"spacing": list(ctx.spacing) if p["sigma_unit"] == "mm" else None},
    online=_dwce_online,
)


# ----------------------------------------------------------------------------- skeleton
def _skeleton_compute(label: np.ndarray, r: ResolvedMap) -> np.ndarray:
    return np_skeletons.skeleton_map(label, dilations=r.params.dilations, per_slice=r.slicewise, **r.label_kwargs())


def _skeleton_loader(seg: np.ndarray, r: ResolvedMap) -> np.ndarray:
    """The tubed skeletons of one augmented training patch: ``seg`` is nnU-Net's target before its
    deep-supervision downsampling, (1, *sp) labels or the region channels (ignore channel last). The
    patch is what the network sees (2D for ``2d``), so no slice-wise computation."""
    dilations = r.params.dilations
    if not r.regions:
        return np_skeletons.skeleton_map(seg[0], num_classes=r.num_classes, ignore_label=r.ignore_label,
                                         dilations=dilations)
    n = len(r.regions)
    masks = seg[:n].astype(bool)
    if r.ignore_label is not None:
        masks &= ~seg[n].astype(bool)[None]
    return np.stack([np_skeletons.tubed_skeleton(m, dilations) for m in masks])


SKELETON = MapKind(
    name="skeleton",
    description="tubed skeleton of every foreground class / region (Skeleton Recall)",
    params=(Param("dilations", loss_default(SkeletonRecallLoss, "dilations"), whole_number("skeleton dilations", 0),
                  "--skeleton-dilations", "cross-element dilations of the skeleton (the tube)"),),
    binary=True,
    loss_keywords=(("skeleton", 0, None),),
    channels=lambda ctx: [f"skeleton:{c}" for c in _foreground_names(ctx)],
    compute=_skeleton_compute,
    request=lambda loss, values: {"dilations": int(loss.dilations)},
    loader=_skeleton_loader,
)

#: the kinds the registry starts with
BUILTIN = (CONTOUR, OSC, DWCE, SKELETON)
