"""Input and hyper-parameter validation shared by every loss.

Every problem raises a ``ValueError`` whose message says what was wrong and what to do.
Checks that need the data (label range, NaN logits) synchronise with the device; they are
skipped while ``torch.compile`` traces and can be switched off globally with
``nnunet_losses.set_input_checks(False)`` (or the environment variable
``NNUNET_LOSSES_INPUT_CHECKS=0``) once a pipeline is known to be sane.
"""
from __future__ import annotations

import functools
import math
import numbers
import os
import warnings
from typing import Dict, Iterable, Optional, Sequence

import torch

_INPUT_CHECKS = os.environ.get("NNUNET_LOSSES_INPUT_CHECKS", "1").lower() not in ("0", "false", "no")


def set_input_checks(enabled: bool) -> None:
    """Turn the data-dependent input checks (label range, NaN/inf logits, map values) on or off."""
    global _INPUT_CHECKS
    _INPUT_CHECKS = bool(enabled)


def input_checks_enabled() -> bool:
    if not _INPUT_CHECKS:
        return False
    try:
        return not torch.compiler.is_compiling()
    except AttributeError:  # very old torch
        return True


# ----------------------------------------------------------------------------- hyper-parameters
def check_number(name: str, value, low=None, high=None, low_inclusive=True, high_inclusive=True,
                 integer=False) -> float:
    """Validate one scalar hyper-parameter and return it (as int if ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a {'whole ' if integer else ''}number, got {value!r}")
    if integer and int(value) != value:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    lo_ok = low is None or (value >= low if low_inclusive else value > low)
    hi_ok = high is None or (value <= high if high_inclusive else value < high)
    if not (lo_ok and hi_ok):
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        rng = f"{'[' if low_inclusive and low is not None else '('}{lo}, {hi}{']' if high_inclusive and high is not None else ')'}"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return int(value) if integer else float(value)


def check_ignore_index(ignore_index) -> Optional[int]:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        if isinstance(ignore_index, numbers.Real) and float(ignore_index).is_integer():
            return int(ignore_index)
        raise ValueError(f"ignore_index must be an integer label value or None, got {ignore_index!r}")
    return int(ignore_index)


def check_kernel_size(kernel_size, low: int = 2):
    """``kernel_size`` is an int (cube) or one int per spatial axis (box; 1 = no change along that axis)."""
    if isinstance(kernel_size, (tuple, list)):
        ks = tuple(check_number(f"kernel_size[{i}]", k, 1, integer=True) for i, k in enumerate(kernel_size))
        if len(ks) not in (2, 3):
            raise ValueError(f"kernel_size must be an int or one int per spatial axis (2 or 3), got {kernel_size!r}")
        if max(ks) < 2:
            raise ValueError(f"kernel_size {kernel_size!r} has no axis >= 2: the element would do nothing")
        return ks
    return check_number("kernel_size", kernel_size, low, integer=True)


# ----------------------------------------------------------------------------- tensors
def check_logits(logits: torch.Tensor, sigmoid: bool, data: bool = True) -> None:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim not in (4, 5):
        raise ValueError(
            f"logits must have shape (B, C, X, Y) for 2D or (B, C, X, Y, Z) for 3D, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating point tensor, got {logits.dtype}")
    if not sigmoid and logits.shape[1] < 2:
        raise ValueError(
            f"softmax mode needs at least 2 channels (background + one class), got C={logits.shape[1]}; "
            "for one binary region use sigmoid=True")
    if data and input_checks_enabled():
        # one reduction and one sync in the common case: a sum is finite only if every value is
        # (NaN and inf propagate); only a non-finite sum (possibly a float overflow) looks closer
        if bool(torch.isfinite(_logits_sum(logits))):
            return
        _explain_non_finite_logits(logits)


def _logits_sum(logits: torch.Tensor) -> torch.Tensor:
    return logits.detach().sum(dtype=torch.float64 if logits.dtype == torch.float64 else torch.float32)


def _explain_non_finite_logits(logits: torch.Tensor) -> None:
    """Raise if ``logits`` hold NaN/inf (called once their sum was found non-finite; an overflow passes)."""
    bad = ~torch.isfinite(logits.detach())
    if bool(bad.any()):
        n_nan = int(torch.isnan(logits.detach()).sum())
        raise ValueError(
            f"logits contain {int(bad.sum())} non-finite values ({n_nan} NaN): the network diverged or "
            "overflowed; lower the learning rate or check the input data/normalisation")


def normalise_target(target: torch.Tensor, logits: torch.Tensor, sigmoid: bool,
                     ignore_index: Optional[int], data: bool = True) -> torch.Tensor:
    """Check ``target`` against ``logits`` and return it as (B, 1, *spatial) (softmax) or (B, C, *spatial)."""
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}")
    b, c = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    if sigmoid:
        if tuple(target.shape) != (b, c, *spatial):
            raise ValueError(
                f"sigmoid (region) mode: target must have the logits' shape {(b, c, *spatial)} "
                f"(one binary channel per region), got {tuple(target.shape)}")
    else:
        if target.ndim == logits.ndim - 1:
            target = target.unsqueeze(1)
        if tuple(target.shape) != (b, 1, *spatial):
            raise ValueError(
                f"softmax mode: target must hold integer labels with shape {(b, 1, *spatial)} or {(b, *spatial)} "
                f"for logits of shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    if target.device != logits.device:
        raise ValueError(f"target is on {target.device} but logits are on {logits.device}")
    if data and input_checks_enabled() and target.dtype != torch.bool:  # bool targets are always in range
        t = target.detach()
        # ignored voxels are replaced by 0, a valid label/region value, instead of being indexed
        # out (boolean indexing costs a nonzero + gather): the outcome of every check is the same
        tv = t if ignore_index is None else torch.where(t == ignore_index, torch.zeros((), dtype=t.dtype), t)
        if tv.numel():
            if t.is_floating_point():
                if not bool(torch.isfinite(tv).all()):
                    raise ValueError("target contains NaN or inf values")
                if not bool((tv == torch.round(tv)).all()):
                    raise ValueError("target must hold whole-number labels, found fractional values")
            hi = c - 1 if not sigmoid else 1
            lo_val, hi_val = torch.stack(torch.aminmax(tv)).tolist()  # one pass, one sync
            if lo_val < 0 or hi_val > hi:
                tv = t if ignore_index is None else t[t != ignore_index]
                bad = torch.unique(tv[(tv < 0) | (tv > hi)])[:10].tolist()
                what = f"labels 0..{c - 1} for C={c} channels" if not sigmoid else "binary values 0/1 per region"
                extra = "" if ignore_index is None else f" (or the ignore_index {ignore_index})"
                raise ValueError(
                    f"target holds values {bad} outside the allowed range: expected {what}{extra}. "
                    "Check the number of output channels, the dataset labels and ignore_index")
    return target


def check_data(logits: torch.Tensor, target: torch.Tensor, sigmoid: bool, ignore_index: Optional[int]) -> None:
    """The data checks of :func:`check_logits` and :func:`normalise_target` (shapes already checked) with
    ONE host sync: the logits' sum (finite iff no NaN/inf), the target's min and max (and, for a float
    target, whether every value is whole) are stacked and read together. Same errors, same messages."""
    if not input_checks_enabled():
        return
    parts = [_logits_sum(logits).float()]
    t = target.detach()
    check_target = t.dtype != torch.bool and t.numel() > 0  # bool targets are always in range
    if check_target:
        tv = t if ignore_index is None else torch.where(t == ignore_index, torch.zeros((), dtype=t.dtype), t)
        lo, hi = torch.aminmax(tv)
        parts += [lo.float(), hi.float()]
        if t.is_floating_point():
            parts.append((tv == torch.round(tv)).all().float())
    vals = torch.stack(parts).tolist()  # the one sync
    if not math.isfinite(vals[0]):
        _explain_non_finite_logits(logits)
    if check_target and (not (math.isfinite(vals[1]) and math.isfinite(vals[2]))
                         or (t.is_floating_point() and vals[3] != 1.0)
                         or vals[1] < 0 or vals[2] > (1 if sigmoid else logits.shape[1] - 1)):
        normalise_target(target, logits, sigmoid, ignore_index)  # raises with the detailed message


def check_mask(mask: Optional[torch.Tensor], logits: torch.Tensor) -> Optional[torch.Tensor]:
    if mask is None:
        return None
    b = logits.shape[0]
    spatial = tuple(logits.shape[2:])
    if mask.ndim == logits.ndim - 1:
        mask = mask.unsqueeze(1)
    if tuple(mask.shape) != (b, 1, *spatial):
        raise ValueError(f"mask must have shape {(b, 1, *spatial)} (1 = voxel counts), got {tuple(mask.shape)}")
    return mask


def check_map(name: str, value: Optional[torch.Tensor], shape: Sequence[int], binary: bool = False,
              nonnegative: bool = True) -> Optional[torch.Tensor]:
    """Validate a precomputed map passed to forward (contour, band, weight_map, offset_band)."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}; "
                         "recompute the maps for this configuration (nnunet_losses_precompute --force)")
    # bool maps are finite, >= 0 and binary by construction; empty maps have nothing to check
    if input_checks_enabled() and value.dtype != torch.bool and value.numel():
        v = value.detach()
        # min and max in one pass and one sync (NaN propagates into both, inf shows in one)
        lo, hi = torch.stack(torch.aminmax(v)).tolist()
        if v.is_floating_point() and not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} contains NaN or inf values; recompute it (nnunet_losses_precompute --force)")
        if nonnegative and lo < 0:
            raise ValueError(f"{name} contains negative values; weights and maps must be >= 0")
        if binary and (lo < 0 or hi > 1 or (v.is_floating_point() and bool(((v != 0) & (v != 1)).any()))):
            raise ValueError(f"{name} must be binary (0/1)")
    return value


def check_class_weights(name: str, weights: Optional[Iterable[float]]):
    if weights is None:
        return None
    w = [check_number(f"{name}[{i}]", x, 0) for i, x in enumerate(weights)]
    if not w:
        raise ValueError(f"{name} must not be empty")
    return w


def renamed_arguments(**renames: str):
    """Class decorator: constructor keywords renamed in this release (``old="new"``) keep working for one
    release, with a DeprecationWarning naming the new keyword; the signature shows the new names only.
    ``cls.renamed_arguments`` (old -> new, inherited) lets callers that store option names translate
    them (nnU-Net's ``loss_options.json`` of older runs).

    >>> import warnings
    >>> @renamed_arguments(iterations="contour_width")
    ... class Loss:
    ...     def __init__(self, contour_width=6):
    ...         self.contour_width = contour_width
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     Loss(iterations=2).contour_width, w[0].category.__name__
    (2, 'DeprecationWarning')
    """
    def wrap(cls):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            rename_keywords(type(self).__name__, kwargs, renames, "argument")
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        cls.renamed_arguments = {**getattr(cls, "renamed_arguments", {}), **renames}
        return cls
    return wrap


def rename_keywords(owner: str, kwargs: dict, renames: Dict[str, str], what: str = "argument") -> dict:
    """Replace old keywords of ``kwargs`` by their new names (in place) with a DeprecationWarning each;
    TypeError when both names are given."""
    for old, new in renames.items():
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"{owner}: give {new!r} only ({old!r} is its deprecated old name)")
            warnings.warn(f"{owner}: the {what} {old!r} is now called {new!r}; the old name will be removed in "
                          f"the next release", DeprecationWarning, stacklevel=3)
            kwargs[new] = kwargs.pop(old)
    return kwargs
