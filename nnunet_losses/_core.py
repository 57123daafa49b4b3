"""What every loss shares: one softmax/sigmoid, the one-hot target, the counted-voxel mask and CE.

Conventions (SPEC section 2):

* ``logits`` (B, C, *spatial), 2D or 3D. Computation runs in float32 (float64 if the logits are
  float64, so ``torch.autograd.gradcheck`` works); autocast is switched off inside the loss.
* softmax mode: ``p = softmax(logits)``, ``target`` holds labels 0..C-1 as (B, 1, *spatial) or (B, *spatial).
* sigmoid (region) mode: ``p = sigmoid(logits)``, ``target`` is (B, C, *spatial) binary.
* ``ignore_index``: voxels with that label (sigmoid mode: with that value in any channel) count in
  no term. ``mask`` (B, 1, *spatial), 1 = counts, can be passed as well; both combine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_ignore_index, check_logits, check_mask, normalise_target


@dataclass
class Prepared:
    """Quantities shared by the terms of one loss evaluation (computed once)."""

    x: torch.Tensor  # logits in the compute dtype, (B, C, *sp)
    p: torch.Tensor  # probabilities, (B, C, *sp)
    logp: torch.Tensor  # log p, (B, C, *sp)
    g: torch.Tensor  # one-hot target (softmax) or binary target (sigmoid), (B, C, *sp); arbitrary where ignored
    labels: Optional[torch.Tensor]  # (B, 1, *sp) long, ignored voxels set to 0 (softmax mode only)
    ignored: Optional[torch.Tensor]  # (B, 1, *sp) bool, True = does not count; None if every voxel counts
    m: Optional[torch.Tensor]  # float mask (B, 1, *sp), 1 = counts; None if every voxel counts
    sigmoid: bool

    @property
    def fg(self) -> slice:
        """Channels of the foreground classes: 1..C-1 in softmax mode, every region in sigmoid mode."""
        return slice(None) if self.sigmoid else slice(1, None)

    def dice_channels(self, include_background: bool) -> slice:
        return slice(None) if (self.sigmoid or include_background) else slice(1, None)


def compute_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def prepare(logits: torch.Tensor, target: torch.Tensor, sigmoid: bool, ignore_index: Optional[int],
            mask: Optional[torch.Tensor] = None) -> Prepared:
    """Validate inputs and compute probabilities, log-probabilities, one-hot target and mask once."""
    check_logits(logits, sigmoid)
    target = normalise_target(target, logits, sigmoid, ignore_index)
    mask = check_mask(mask, logits)
    x = logits.to(compute_dtype(logits))
    ignored = None
    if ignore_index is not None:
        ign = target == ignore_index
        ignored = ign.any(1, keepdim=True) if sigmoid else ign
    if mask is not None:
        not_counted = mask.to(x.device) <= 0
        ignored = not_counted if ignored is None else (ignored | not_counted)
    if sigmoid:
        logp = F.logsigmoid(x)
        p = torch.sigmoid(x)
        g = target.to(x.dtype)
        if ignored is not None:
            g = torch.where(ignored, torch.zeros((), dtype=x.dtype, device=x.device), g)
        labels = None
    else:
        logp = torch.log_softmax(x, 1)
        p = logp.exp()
        labels = target.long() if not target.dtype == torch.long else target
        if ignored is not None:
            labels = torch.where(ignored, torch.zeros((), dtype=torch.long, device=x.device), labels)
        g = torch.zeros_like(x).scatter_(1, labels, 1.0)
    m = None if ignored is None else (~ignored).to(x.dtype)
    return Prepared(x=x, p=p, logp=logp, g=g, labels=labels, ignored=ignored, m=m, sigmoid=sigmoid)


# ----------------------------------------------------------------------------- reductions
def masked_mean(values: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of ``values`` (B, K, *sp) over counted voxels and the K channels; 0 if nothing counts."""
    if m is None:
        return values.mean()
    count = m.sum() * values.shape[1]
    return (values * m).sum() / count.clamp_min(1.0)


def spatial_sum(values: torch.Tensor, batch: bool = False) -> torch.Tensor:
    """Sum over spatial axes -> (B, C); with ``batch`` also over the batch -> (1, C)."""
    s = values.sum(dim=tuple(range(2, values.ndim)))
    return s.sum(0, keepdim=True) if batch else s


# ----------------------------------------------------------------------------- cross-entropy
def cross_entropy_map(prep: Prepared) -> torch.Tensor:
    """Per-voxel CE, (B, 1, *sp): softmax ``-log p_y``; sigmoid BCE averaged over the channels."""
    if prep.sigmoid:
        return bce_map(prep).mean(1, keepdim=True)
    return -prep.logp.gather(1, prep.labels)


def bce_map(prep: Prepared) -> torch.Tensor:
    """Per-voxel, per-channel BCE with logits, (B, C, *sp) (sigmoid mode)."""
    return F.binary_cross_entropy_with_logits(prep.x, prep.g, reduction="none")


def cross_entropy(prep: Prepared) -> torch.Tensor:
    """Mean CE over counted voxels (sigmoid mode: BCE over counted voxels and channels)."""
    if prep.sigmoid:
        return masked_mean(bce_map(prep), prep.m)
    return masked_mean(cross_entropy_map(prep), prep.m)


def log1m_softmax(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - softmax(x)_c)`` for every class, stably (SPEC 3.2).

    ``log(1 - p_c) = logsumexp_{j != c} x_j - logsumexp_j x_j``. The sum over the other classes is
    formed around its own maximum (the largest logit, or the second largest for the arg-max class),
    so it is >= 1 before the log: no cancellation, finite values and gradients for logits of 1e4.
    """
    top2 = x.topk(2, dim=1).values
    m1, m2 = top2[:, :1], top2[:, 1:2]
    is_max = x >= m1
    s1 = torch.exp(x - m1).sum(1, keepdim=True)  # >= 1
    s2 = torch.exp(torch.minimum(x, m2) - m2).sum(1, keepdim=True)  # >= 2
    others_nonmax = s1 - torch.exp(x - m1)  # >= 1 for non-max classes
    others_max = s2 - 1.0  # >= 1
    others = torch.where(is_max, others_max, others_nonmax)
    m_other = torch.where(is_max, m2, m1)
    lse_all = m1 + torch.log(s1)
    return m_other + torch.log(others) - lse_all


def log1m_p_of_label(prep: Prepared) -> torch.Tensor:
    """``log(1 - p_y)`` at the true label, (B, 1, *sp), as logsumexp over the other classes minus over all."""
    others = prep.x.scatter(1, prep.labels, float("-inf"))
    return torch.logsumexp(others, 1, keepdim=True) - torch.logsumexp(prep.x, 1, keepdim=True)


# ----------------------------------------------------------------------------- base class
class LossBase(nn.Module):
    """Base of every loss: validation, one preparation, autocast off, float32 result.

    Subclasses implement ``compute(prep, **maps)``; composite losses call the ``compute`` of their
    parts on the same :class:`Prepared`, so the softmax is evaluated once.
    """

    def __init__(self, sigmoid: bool = False, ignore_index: Optional[int] = None):
        super().__init__()
        self.sigmoid = bool(sigmoid)
        self.ignore_index = check_ignore_index(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None,
                **maps) -> torch.Tensor:
        unknown = set(maps) - set(self.map_names)
        if unknown:
            allowed = ", ".join(self.map_names) or "none"
            raise ValueError(f"{type(self).__name__} got unknown map argument(s) {sorted(unknown)}; it accepts: {allowed}")
        device_type = logits.device.type if isinstance(logits, torch.Tensor) else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            prep = prepare(logits, target, self.sigmoid, self.ignore_index, mask)
            loss = self.compute(prep, **maps)
        return loss if loss.dtype == torch.float64 else loss.float()

    #: names of the precomputed maps ``forward`` accepts as keyword arguments
    map_names: tuple = ()

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"sigmoid={self.sigmoid}, ignore_index={self.ignore_index}"
