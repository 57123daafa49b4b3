"""Sliding-window fusion windows and an nnU-Net predictor that uses them.

nnU-Net predicts an image patch by patch (patches overlap by half a patch by default) and fuses the
overlapping patch logits by a weighted average: ``fused = sum_k w(x - o_k) * z_k(x) / sum_k w(x - o_k)``
where ``o_k`` is the corner of patch k and ``w`` the *importance map* over the patch. Networks are
less reliable near patch borders (less context, zero padding), so ``w`` should be low there.

Three windows are offered (``fusion=``):

- ``"gaussian"``: nnU-Net's own (``compute_gaussian``: a Gaussian with sigma = patch / 8, centred on
  voxel ``n // 2``). Predictions are exactly those of ``nnUNetPredictor``.
- ``"constant"``: a plain average (nnU-Net's ``use_gaussian=False``).
- ``"bspline"``: B-spline weighted soft voting (Hashemi et al., "Asymmetric loss functions and deep
  densely connected networks for highly imbalanced medical image segmentation", IEEE Access 2018,
  arXiv 1803.11078), a separable tensor product of cubic B-splines
  ``w(x) = prod_d B3((x_d - c_d) / h_d)`` with ``c_d = (n_d - 1) / 2`` (exactly symmetric) and

      B3(t) = 2/3 - t^2 + |t|^3 / 2      for |t| < 1
              (2 - |t|)^3 / 6            for 1 <= |t| < 2
              0                          otherwise.

  Support (our choice, the paper gives none): the knot spacing is ``h_d = (n_d - 1) / (2 * border)``
  with ``border = 1.5``, i.e. the centres of the border voxels sit at t = 1.5, three quarters of the
  way to the end of the spline's support (|t| = 2). Every voxel of the patch therefore gets a
  weight > 0: the border value is B3(1.5) = 1/48, 1/32 of the peak, and a 3D corner gets
  (1/32)^3 = 3e-5 of the peak. A support that ends right at the patch (border -> 2) would give the
  border voxels ~2/n^3 of the peak, which nnU-Net's float16 accumulation (weights scaled to a peak
  of 10) stores as subnormal numbers or zero: the fused logits of the outermost voxels of an image
  are then quantised (errors up to 0.3 logit measured on a constant prediction, docs/inference.md). With border = 1.5 even the 3D corner weight is a normal float16 number.

Normalisation (all windows, as ``compute_gaussian``): scaled so that the maximum equals
``value_scaling_factor`` (nnU-Net uses 10 with float16 accumulation), cast to ``dtype``, and values
that became 0 replaced by the smallest non-zero value (a weight of 0 would give 0 / 0 = NaN).

``nnUNetFusionPredictor`` is ``nnUNetPredictor`` with one change: the importance map. It runs
nnU-Net's own sliding-window loop (``_internal_predict_sliding_window_return_logits``, not copied)
with ``compute_gaussian`` resolved to the B-spline window.
"""
from __future__ import annotations

import types
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian

FUSIONS = ("gaussian", "bspline", "constant")
BSPLINE_BORDER = 1.5  # spline coordinate t of the border voxel centres, in (0, 2)


def _check_patch_size(patch_size) -> tuple:
    try:
        patch = tuple(int(p) for p in patch_size)
    except (TypeError, ValueError):
        raise ValueError(f"patch_size must be a sequence of positive integers, got {patch_size!r}") from None
    if len(patch) not in (2, 3) or min(patch) < 1 or any(p != q for p, q in zip(patch, patch_size)):
        raise ValueError(f"patch_size must hold 2 or 3 positive integers (2D or 3D patch), got {patch_size!r}")
    return patch


def cubic_bspline(t: np.ndarray) -> np.ndarray:
    """Centred cubic B-spline B3 (support |t| < 2, B3(0) = 2/3, integral 1)."""
    a = np.abs(np.asarray(t, dtype=np.float64))
    return np.where(a < 1, 2 / 3 - a ** 2 + a ** 3 / 2, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))


def bspline_window_1d(n: int, border: float = BSPLINE_BORDER) -> np.ndarray:
    """B3 sampled at the n voxel centres of one patch axis, border voxels at |t| = ``border``.

    Symmetric about (n - 1) / 2, peak 1 (divided by its maximum), strictly positive for border < 2.
    """
    if not 0 < border < 2:
        raise ValueError(f"border must lie in (0, 2) (the cubic B-spline is 0 at |t| >= 2), got {border}")
    if n == 1:
        return np.ones(1)
    t = (np.arange(n) - (n - 1) / 2) * (2 * border / (n - 1))
    w = cubic_bspline(t)
    return w / w.max()


def bspline_window(patch_size: Sequence[int], border: float = BSPLINE_BORDER) -> np.ndarray:
    """Separable tensor-product cubic B-spline over a 2D or 3D patch, float64, peak 1, all > 0."""
    patch = _check_patch_size(patch_size)
    w = np.ones(patch)
    for axis, n in enumerate(patch):
        shape = [1] * len(patch)
        shape[axis] = n
        w = w * bspline_window_1d(n, border).reshape(shape)
    return w


def gaussian_window(patch_size: Sequence[int]) -> np.ndarray:
    """nnU-Net's Gaussian importance map (sigma = patch / 8) in float64 with peak 1."""
    patch = _check_patch_size(patch_size)
    return compute_gaussian.__wrapped__(patch, sigma_scale=1. / 8, value_scaling_factor=1,
                                        dtype=torch.float64, device=torch.device("cpu")).numpy()


def constant_window(patch_size: Sequence[int]) -> np.ndarray:
    """A window of ones (plain averaging of the overlapping patches)."""
    return np.ones(_check_patch_size(patch_size))


def window(patch_size: Sequence[int], fusion: str) -> np.ndarray:
    """The float64 window (peak 1) of ``fusion`` in {"gaussian", "bspline", "constant"}."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    return {"gaussian": gaussian_window, "bspline": bspline_window, "constant": constant_window}[fusion](patch_size)


def normalise_importance_map(w: np.ndarray, value_scaling_factor: float = 1, dtype=torch.float16,
                             device=torch.device("cpu")) -> torch.Tensor:
    """nnU-Net's normalisation of an importance map (as in ``compute_gaussian``).

    ``w / (max(w) / value_scaling_factor)``, cast to ``dtype`` on ``device``, then every 0 (underflow)
    replaced by the smallest non-zero value.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.size == 0 or not np.all(np.isfinite(w)) or w.min() < 0 or w.max() <= 0:
        raise ValueError("an importance map must be finite, >= 0 and not all 0")
    t = torch.from_numpy(w / (w.max() / value_scaling_factor)).to(device=device, dtype=dtype)
    mask = t == 0
    if mask.any():
        t[mask] = torch.min(t[~mask])
    return t


@lru_cache(maxsize=2)
def compute_bspline(tile_size, sigma_scale: float = None, value_scaling_factor: float = 1,
                    dtype=torch.float16, device=torch.device("cuda", 0)) -> torch.Tensor:
    """Drop-in for nnU-Net's ``compute_gaussian`` returning the B-spline importance map.

    ``sigma_scale`` is accepted for signature compatibility and ignored (the support is fixed by
    ``BSPLINE_BORDER``).
    """
    return normalise_importance_map(bspline_window(tile_size), value_scaling_factor, dtype, device)


def rebind_globals(function, **names):
    """A copy of nnU-Net's ``function`` in which the given global names resolve to other objects.

    The copy keeps nnU-Net's code object; only the namespace it looks global names up in differs (a
    copy of nnU-Net's module namespace), so nnU-Net itself is not modified and other callers are not
    affected. Decorators exposing ``__wrapped__`` (``torch.inference_mode``) are removed: re-apply them.
    """
    func = getattr(function, "__wrapped__", function)
    missing = [n for n in names if n not in func.__code__.co_names]
    if missing or func.__code__.co_freevars:
        raise ImportError(f"nnunetv2's {func.__qualname__} no longer looks up {missing or func.__code__.co_freevars} "
                          "as expected by nnunet_losses' fusion predictor (written for nnunetv2 2.8.x)")
    new = types.FunctionType(func.__code__, dict(func.__globals__, **names), func.__name__, func.__defaults__)
    new.__kwdefaults__, new.__qualname__, new.__doc__ = func.__kwdefaults__, func.__qualname__, func.__doc__
    return new


_bspline_sliding_window = torch.inference_mode()(rebind_globals(
    nnUNetPredictor._internal_predict_sliding_window_return_logits, compute_gaussian=compute_bspline))


class nnUNetFusionPredictor(nnUNetPredictor):
    """``nnUNetPredictor`` whose sliding-window importance map is chosen by ``fusion``.

    ``fusion="gaussian"`` is nnUNetPredictor unchanged, ``"constant"`` is nnU-Net's
    ``use_gaussian=False``, ``"bspline"`` (default) the cubic B-spline window of this module. All other
    arguments are nnUNetPredictor's; ``use_gaussian`` is implied by ``fusion``.
    """

    def __init__(self, tile_step_size: float = 0.5, use_gaussian: bool = True, use_mirroring: bool = True,
                 perform_everything_on_device: bool = True, device: torch.device = torch.device("cuda"),
                 verbose: bool = False, verbose_preprocessing: bool = False, allow_tqdm: bool = True,
                 fusion: str = "bspline"):
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if not use_gaussian and fusion != "constant":
            raise ValueError(f"use_gaussian=False means plain averaging: pass fusion='constant' "
                             f"instead of combining it with fusion={fusion!r}")
        if not 0 < tile_step_size <= 1:
            raise ValueError("tile_step_size (--step_size) is a fraction of the patch size and must lie in "
                             f"(0, 1], got {tile_step_size}")
        super().__init__(tile_step_size, fusion != "constant", use_mirroring, perform_everything_on_device,
                         device, verbose, verbose_preprocessing, allow_tqdm)
        self.fusion = fusion

    def _internal_predict_sliding_window_return_logits(self, data, slicers, do_on_device: bool = True):
        if self.fusion == "bspline":
            return _bspline_sliding_window(self, data, slicers, do_on_device)
        return super()._internal_predict_sliding_window_return_logits(data, slicers, do_on_device)
