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

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_ignore_index, check_logits, check_mask, normalise_target


class Prepared:
    """Quantities shared by the terms of one loss evaluation (computed once).

    ``p`` and ``g`` are built on first use: losses that need only ``logp`` (CE, focal, DWCE, CWCE)
    never pay for the probabilities or the one-hot copy.
    """

    def __init__(self, x: torch.Tensor, logp: torch.Tensor, labels: Optional[torch.Tensor],
                 ignored: Optional[torch.Tensor], m: Optional[torch.Tensor], sigmoid: bool,
                 target: Optional[torch.Tensor] = None):
        self.x = x  # logits in the compute dtype, (B, C, *sp)
        self.logp = logp  # log p, (B, C, *sp)
        self.labels = labels  # (B, 1, *sp) long, ignored voxels set to 0 (softmax mode only)
        self.ignored = ignored  # (B, 1, *sp) bool, True = does not count; None if every voxel counts
        self.m = m  # float mask (B, 1, *sp), 1 = counts; None if every voxel counts
        self.sigmoid = sigmoid
        self._target = target  # sigmoid mode: the binary target as given
        self._p: Optional[torch.Tensor] = None
        self._g: Optional[torch.Tensor] = None

    @property
    def p(self) -> torch.Tensor:
        """Probabilities, (B, C, *sp)."""
        if self._p is None:
            self._p = torch.sigmoid(self.x) if self.sigmoid else self.logp.exp()
        return self._p

    @property
    def g(self) -> torch.Tensor:
        """One-hot target (softmax) or binary target (sigmoid), (B, C, *sp); arbitrary where ignored."""
        if self._g is None:
            x = self.x
            if self.sigmoid:
                g = self._target.to(x.dtype)
                if self.ignored is not None:
                    g = torch.where(self.ignored, torch.zeros((), dtype=x.dtype, device=x.device), g)
            else:
                g = torch.zeros_like(x).scatter_(1, self.labels, 1.0)
            self._g = g
        return self._g

    @property
    def fg(self) -> slice:
        """Channels of the foreground classes: 1..C-1 in softmax mode, every region in sigmoid mode."""
        return slice(None) if self.sigmoid else slice(1, None)

    def dice_channels(self, include_background: bool) -> slice:
        return slice(None) if (self.sigmoid or include_background) else slice(1, None)


def as_dtype(t: torch.Tensor, dtype: torch.dtype, device=None) -> torch.Tensor:
    """``t.to(device, dtype)``; bool tensors go through uint8 (same values, several times faster on CPU)."""
    if t.dtype == torch.bool and dtype != torch.bool:
        t = t.view(torch.uint8)
    return t.to(device=device, dtype=dtype)


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
        labels = None
    else:
        logp = torch.log_softmax(x, 1)
        labels = target.long() if not target.dtype == torch.long else target
        if ignored is not None:
            labels = torch.where(ignored, torch.zeros((), dtype=torch.long, device=x.device), labels)
    m = None if ignored is None else as_dtype(~ignored, x.dtype)
    return Prepared(x=x, logp=logp, labels=labels, ignored=ignored, m=m, sigmoid=sigmoid,
                    target=target if sigmoid else None)


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


#: added (negated) to the log-probability of excluded classes: exp(-1e30 - m) is exactly 0 in float32/64
_EXCLUDED = 1e30


def _log_sum_p_excluding(logp: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """``log sum_{c not excluded} p_c`` per voxel, (B, 1, *sp), as a logsumexp of ``logp`` (no
    cancellation, no underflow for logits of 1e4). ``excluded`` is a 0/1 float (B, C, *sp) with at
    least one 0 per voxel. Products instead of ``torch.where``/``scatter``: much faster on CPU."""
    shifted = logp - excluded * _EXCLUDED
    m = shifted.detach().amax(1, keepdim=True)
    return torch.log((shifted - m).exp().sum(1, keepdim=True)) + m


def log1m_softmax(x: torch.Tensor, logp: Optional[torch.Tensor] = None, p: Optional[torch.Tensor] = None
                  ) -> torch.Tensor:
    """``log(1 - softmax(x)_c)`` for every class, stably (SPEC 3.2).

    At most one class per voxel has ``p_c > 1/2``. Every other class has ``log1p(-p_c)`` accurate
    with a gradient bounded by 2. For that class ``1 - p_c`` is the probability sum of the other
    classes, so ``log(1 - p_c) = logsumexp_{j != c} log p_j``: no cancellation, finite values and
    gradients for logits of 1e4. ``logp`` / ``p`` (log-softmax / softmax of ``x``) are reused when given.
    """
    if logp is None:
        logp = torch.log_softmax(x, 1)
    if x.shape[1] == 2:  # two classes: 1 - p_c is the other class's probability
        return logp.flip(1)
    if p is None:
        p = logp.exp()
    big = as_dtype(p > 0.5, p.dtype)
    return torch.log1p(-(p * (1.0 - big))) + big * _log_sum_p_excluding(logp, big)


def sum_log1m_p_other_classes(prep: Prepared) -> torch.Tensor:
    """``sum_{c != y} log(1 - p_c)`` per voxel, (B, 1, *sp) (softmax mode): :func:`log1m_softmax`
    summed over the classes other than the label, without building the (B, C, *sp) result."""
    if prep.x.shape[1] == 2:  # two classes: the other class c has 1 - p_c = p_y
        return prep.logp.gather(1, prep.labels)
    p, g = prep.p, prep.g
    with torch.no_grad():  # 0/1 weights
        big = as_dtype(p > 0.5, p.dtype)
        not_label = 1.0 - g
        minus_small = (big - 1.0) * not_label  # -1 on the classes with p <= 1/2 other than the label, else 0
        use = (big * not_label).sum(1, keepdim=True)  # 1 where the class with p > 1/2 is not the label
    rest = torch.log1p(p * minus_small).sum(1, keepdim=True)  # log(1 - p_c) on those classes (0 elsewhere)
    return rest + use * _log_sum_p_excluding(prep.logp, big)


def log1m_p_of_label(prep: Prepared) -> torch.Tensor:
    """``log(1 - p_y)`` at the true label, (B, 1, *sp): logsumexp over the other classes of log p
    (``1 - p_y`` is their probability sum; no cancellation, finite for logits of 1e4)."""
    if prep.x.shape[1] == 2:  # two classes: the other class's log-probability
        return prep.logp.gather(1, 1 - prep.labels)
    return _log_sum_p_excluding(prep.logp, prep.g)


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
