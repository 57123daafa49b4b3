"""What every loss shares: one softmax/sigmoid, the one-hot target, the counted-voxel mask and CE.

Conventions (docs/losses.md, "Conventions shared by every loss"):

* ``logits`` (B, C, *spatial), 2D or 3D. Computation runs in float32 (float64 if the logits are
  float64, so ``torch.autograd.gradcheck`` works); autocast is switched off inside the loss.
* softmax mode: ``p = softmax(logits)``, ``target`` holds labels 0..C-1 as (B, 1, *spatial) or (B, *spatial).
* sigmoid (region) mode: ``p = sigmoid(logits)``, ``target`` is (B, C, *spatial) binary.
* ``ignore_index``: voxels with that label (sigmoid mode: with that value in any channel) count in
  no term. ``mask`` (B, 1, *spatial), 1 = counts, can be passed as well; both combine.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_data, check_ignore_index, check_logits, check_mask, normalise_target, rename_keywords

#: softmax mode, above this many classes the sums with g of SDL / CWCD and the top-K losses use per-voxel
#: values at the label and ``scatter_add`` (no one-hot copy, two C-wide products instead of four); below,
#: the one-hot products are cheaper on CPU
LABEL_SUMS_MIN_CLASSES = 4


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
        self._p_fg: Optional[torch.Tensor] = None

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
    def p_fg(self) -> torch.Tensor:
        """``p[:, fg]``, one view shared by every term: their gradients add up on it before one copy into ``p``'s."""
        if self._p_fg is None:
            self._p_fg = self.p[:, self.fg]
        return self._p_fg

    def p_channels(self, channels: slice) -> torch.Tensor:
        """``p[:, channels]`` (the shared :attr:`p_fg` view when ``channels`` are the foreground ones)."""
        return self.p_fg if channels == self.fg else self.p[:, channels]

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
    check_logits(logits, sigmoid, data=False)
    target = normalise_target(target, logits, sigmoid, ignore_index, data=False)
    check_data(logits, target, sigmoid, ignore_index)  # NaN/inf logits, label range: one fused host sync
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
    """``log(1 - softmax(x)_c)`` for every class, stably (docs/losses.md, section 3.2).

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
    big = _step(p, 0.5)
    return torch.log1p(-(p * (1.0 - big))) + big * _log_sum_p_excluding(logp, big)


#: below this sum of the non-dominant probabilities, ``log(1 - p_max)`` is taken from the logsumexp of
#: their log-probabilities instead (their probabilities may have underflowed); keeps ``1 / s`` far from overflow
_S_FLOOR = {torch.float32: 1e-20, torch.float64: 1e-200}


def _fallback_needed(flags: torch.Tensor) -> bool:
    """Whether the exact logsumexp path must run: always while compiling or off the CPU (no host sync, one
    fused graph); on CPU only if some voxel needs it (reading a CPU flag costs no device sync)."""
    if flags.device.type != "cpu":
        return True
    try:
        if torch.compiler.is_compiling():
            return True
    except AttributeError:  # pragma: no cover - very old torch
        pass
    return bool(flags.any())


def _step(t: torch.Tensor, threshold: float, below: bool = False) -> torch.Tensor:
    """``1.0`` where ``t > threshold`` (``below``: ``t < threshold``) else ``0.0``, in t's dtype (no gradient): the
    comparison written straight into a float tensor (on CPU several times faster than a bool mask converted)."""
    t = t.detach()
    return (torch.lt if below else torch.gt)(t, threshold, out=torch.empty_like(t))


class _SumLog1mOthers(torch.autograd.Function):
    """``S = sum_{c != y} log(1 - p_c)`` per voxel, (B, 1, *sp), softmax mode with C > 2.

    Every class with ``p_c <= 1/2`` has ``log(1 - p_c)`` accurate from ``1 - p_c`` in [1/2, 1], so
    ``sum_c log(1 - min(p_c, 1/2))`` is ONE log of a product (in [1/8, 1]: no underflow for any C)
    instead of a log per class. At most one class M has ``p_M > 1/2``; for it (when it is not the
    label) ``log(1 - p_M) = log s``, ``s = sum_{j: p_j < 1/2} p_j`` (the other classes' probability,
    no cancellation), or, where s has underflowed (wrong class ahead by > ~46 nats in float32), the
    logsumexp of their log-probabilities. The backward is written out: every C-wide step is one
    product / quotient, no one-hot copy, no per-class log; the label's share goes through ``logp_y``
    (gathered by the caller anyway), so no scatter either.
    """

    @staticmethod
    def forward(ctx, logp: torch.Tensor, p: torch.Tensor, logp_y: torch.Tensor) -> torch.Tensor:
        u = p.clamp_max(0.5).neg_().add_(1.0)  # 1 - min(p, 1/2), in [1/2, 1]
        t = torch.log(u.prod(1, keepdim=True))
        small = _step(p, 0.5, below=True)  # 1.0 where p < 1/2
        s = (p * small).sum(1, keepdim=True)
        p_y = logp_y.exp()
        u_y = p_y.clamp_max(0.5).neg_().add_(1.0)
        small_y = _step(p_y, 0.5, below=True)
        use = _step(p.amax(1, keepdim=True), 0.5).mul_(small_y)  # a class other than the label has p > 1/2
        floor = _S_FLOOR.get(p.dtype, 1e-20)
        s = s.clamp_min(floor)
        l1m = torch.log(s)
        under = s <= floor
        use_ok, fb, lse_w = use, None, None
        if _fallback_needed(under):
            fb = use * as_dtype(under, use.dtype)
            use_ok = use - fb
            shifted = logp.detach() - (1.0 - small) * _EXCLUDED  # log p of the classes with p < 1/2 only
            m = shifted.amax(1, keepdim=True)
            lse = torch.log((shifted - m).exp().sum(1, keepdim=True)) + m
            l1m = l1m + fb * (lse - l1m)
            lse_w = (shifted - lse).exp()  # d lse / d log p_j: softmax over those classes
        out = t - torch.log(u_y) + use * (l1m - math.log(0.5))
        ctx.save_for_backward(u, small, s, use_ok, p_y, u_y, small_y, fb, lse_w)
        ctx.has_fallback = lse_w is not None
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, small, s, use_ok, p_y, u_y, small_y, fb, lse_w = ctx.saved_tensors
        # d S / d p_j = -1 / (1 - p_j) (classes with p_j < 1/2 other than the label) + [use] / s (classes with p_j < 1/2)
        a = grad * use_ok / s
        g_p = torch.div(grad, u).neg_().add_(a).mul_(small)
        # g_p holds -1 / (1 - p_y) at the label too; the label is not in the sum: add it back through log p_y
        g_logp_y = grad * small_y * p_y / u_y
        g_logp = lse_w * (grad * fb) if ctx.has_fallback else None
        return g_logp, g_p, g_logp_y


def sum_log1m_p_other_classes(prep: Prepared, logp_y: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``sum_{c != y} log(1 - p_c)`` per voxel, (B, 1, *sp) (softmax mode): :func:`log1m_softmax`
    summed over the classes other than the label, without building the (B, C, *sp) result.
    ``logp_y`` (log p at the label, (B, 1, *sp)) is reused when the caller has it."""
    logp_y = prep.logp.gather(1, prep.labels) if logp_y is None else logp_y
    if prep.x.shape[1] == 2:  # two classes: the other class c has 1 - p_c = p_y
        return logp_y
    return _SumLog1mOthers.apply(prep.logp, prep.p, logp_y)


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
        if self.renamed_maps:
            rename_keywords(type(self).__name__, maps, self.renamed_maps, "map keyword")
        unknown = set(maps) - set(self.map_names)
        if unknown:
            allowed = ", ".join(self.map_names) or "none"
            raise ValueError(f"{type(self).__name__} got unknown map argument(s) {sorted(unknown)}; it accepts: {allowed}")
        device_type = logits.device.type if isinstance(logits, torch.Tensor) else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            prep = prepare(logits, target, self.sigmoid, self.ignore_index, mask)
            loss = self.compute(prep, **maps)
        return loss if loss.dtype == torch.float64 else loss.float()

    #: map keywords renamed in this release (old -> new): accepted for one release with a DeprecationWarning
    renamed_maps: dict = {}

    #: names of the precomputed maps ``forward`` accepts as keyword arguments
    map_names: tuple = ()

    def compute(self, prep: Prepared, **maps) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"sigmoid={self.sigmoid}, ignore_index={self.ignore_index}"
