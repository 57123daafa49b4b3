"""What a map kind is: :class:`MapKind` and its :class:`Param` declarations, and what one kind
resolves to for a dataset (:class:`ResolvedMap`). The registry of kinds is :mod:`.registry`.

A *map kind* is a per-voxel map a loss needs besides the logits and the target (the contours and
boundary band of CWCE / SDL / CWCD, the offset band of Offset Curves, the U-Net weight map of
DWCE). Its :class:`MapKind` declaration holds

* its parameters (:class:`Param`: default, validation, command-line flag, help). Defaults of
  parameters a loss also has are read from that loss's constructor, so the command
  ``nnunet_losses_precompute`` and the trainers cannot drift apart;
* the NumPy computation for one case (``compute``; what ``nnunet_losses_precompute`` stores),
  where the loss cannot derive the map itself the torch computation per batch (``online``), and,
  for binary kinds that can follow the augmentation by being recomputed, the computation on the
  augmented patch in the data-loader workers (``loader``: the trainers' ``maps="loader"``);
* what it depends on in the dataset (``resolve``: the element, the spacing) and its channels;
* how it is stored and resampled: ``binary`` maps are bit-packed uint8 and follow the patch by
  nearest-neighbour resampling, the others are float16 and resample linearly;
* the loss keywords it feeds (``loss_keywords``) and how a trainer asks for it (``request``: the
  parameters that match a loss instance and the trainer's option values).

Every consumer reads the declaration: the precompute command (its flags and defaults), the
manifest (the fingerprint of the resolved parameters), the dataset and transforms (channels,
packing, resampling), the trainers (which kind a loss needs, its options, the request) and
docs/trainers.md. Adding a kind = one :class:`MapKind` + its compute functions +
:func:`.registry.register_map_kind` (see docs/ARCHITECTURE.md).

A request (``{parameter: value}``) becomes a :class:`ResolvedMap` in :meth:`MapKind.resolve`, after
``"auto"`` values were replaced by numbers (:func:`.request.resolve_map` does both); the resolved
map is what the compute functions receive, what the manifest stores (:meth:`ResolvedMap.record`)
and what decides staleness (:attr:`ResolvedMap.fingerprint`).
"""
from __future__ import annotations

import argparse
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

from .fingerprints import fingerprint

#: the value of a parameter set per dataset (see :attr:`Param.auto`)
AUTO = "auto"

__all__ = ["AUTO", "Param", "MapKind", "ResolvedMap", "Values", "loss_default", "whole_number", "positive_number",
           "non_negative_number", "one_of"]


# ----------------------------------------------------------------------------- parameter checks
def whole_number(name: str, low: int = 1) -> Callable[[Any], int]:
    """Check: a whole number >= ``low`` (``3`` and ``3.0`` pass, ``True`` and ``2.5`` do not)."""
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or int(v) != v or v < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {v!r}")
        return int(v)
    return check


def _number(name: str, ok: Callable[[float], bool], what: str) -> Callable[[Any], float]:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not ok(float(v)):
            raise ValueError(f"{name} must be {what}, got {v!r}")
        return float(v)
    return check


def positive_number(name: str) -> Callable[[Any], float]:
    """Check: a finite number > 0."""
    return _number(name, lambda x: 0 < x < float("inf"), "a finite number > 0")


def non_negative_number(name: str) -> Callable[[Any], float]:
    """Check: a finite number >= 0."""
    return _number(name, lambda x: 0 <= x < float("inf"), "a finite number >= 0")


def one_of(name: str, choices: Sequence[str]) -> Callable[[Any], str]:
    """Check: one of ``choices``."""
    def check(v):
        if v not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {v!r}")
        return v
    return check


def loss_default(loss_class: type, argument: str) -> Any:
    """The default of ``argument`` in ``loss_class``'s constructor (the one source of a map default)."""
    p = inspect.signature(loss_class.__init__).parameters[argument]
    if p.default is inspect.Parameter.empty:
        raise ValueError(f"{loss_class.__name__}.{argument} has no default")
    return p.default


# ----------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Param:
    """One parameter of a map kind.

    Args:
        name: the key in the manifest, in ``{kind: params}`` requests and in the Python API.
        default: its default (for parameters a loss also has: read from the loss, see :func:`loss_default`).
        check: validates a value and returns it normalised (ValueError with a clear message).
        flag: the command-line flag of ``nnunet_losses_precompute`` (e.g. ``--kernel-size``).
        help: one line for ``--help`` and docs/trainers.md.
        choices: allowed words (command line), or None.
        trainer_option: the trainers expose this parameter as an option of their own
            (``NNUNET_LOSSES_OPTIONS``), because no loss argument determines it (DWCE's ``w0``).
        auto: None, or the rule of :mod:`.auto_width` that turns the value ``"auto"`` into a number
            from the dataset (contour depth from the thickness of the structures).
    """

    name: str
    default: Any
    check: Callable[[Any], Any]
    flag: str
    help: str
    choices: Optional[Tuple[str, ...]] = None
    trainer_option: bool = False
    auto: Optional[str] = None

    @property
    def type(self) -> Callable[[str], Any]:
        """The command line's conversion of a value."""
        if self.auto:
            return _int_or_auto
        return type(self.default)

    def check_value(self, value: Any) -> Any:
        """``check(value)``; ``"auto"`` passes unchanged for a parameter with an :attr:`auto` rule."""
        return AUTO if (self.auto and value == AUTO) else self.check(value)


def _int_or_auto(text: str):
    """Command-line value of a parameter with an ``auto`` rule: ``auto`` or a number."""
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None


@dataclass(frozen=True)
class MapKind:
    """One kind of map (see the module docstring).

    Args:
        name: the kind's name: the ``--maps`` word, the file suffix ``<case>_<name>.b2nd``.
        description: one line for ``--help`` and the docs.
        params: its :class:`Param` declarations.
        binary: True: 0/1 channels, bit-packed (8 per byte) when stored, resampled by nearest
            neighbour with the patch; False: one continuous channel per entry of ``channels``,
            stored as float16 (float32 when a value exceeds float16's range), resampled linearly.
        loss_keywords: ``(keyword, first channel, end channel or None = to the last)`` per loss
            keyword it feeds, e.g. ``(("band", 0, 1), ("contour", 1, None))``.
        channels: ``channels(ctx) -> [channel names]`` for a dataset (:class:`MapContext`).
        compute: ``compute(label, resolved) -> array (n, *spatial)`` for one case: ``label`` the
            integer label map without channel axis (nnU-Net's -1 already turned into 0), ``resolved``
            the :class:`ResolvedMap` of :meth:`resolve` (``resolved.params.iterations``). Binary kinds
            return bool channels (packed when stored).
        resolve_extra: ``resolve_extra(ctx, params) -> dict`` what else of the dataset the map depends
            on (the element from the spacing, ...): :attr:`ResolvedMap.derived`, part of the fingerprint.
        request: ``request(loss, option_values) -> params`` the parameters that match a loss
            instance (``loss_options.json``'s resolved values in ``option_values``).
        online: None when the loss computes the map itself from the target (contours, bands);
            else ``online(label_manager, params) -> map_fn`` with
            ``map_fn(targets, masks) -> {keyword: [tensor per scale]}`` (torch, per batch).
        loader: None, or ``loader(seg, resolved) -> bool array (n, *spatial)``: the map computed in
            the data-loader workers from nnU-Net's augmented target of one sample, just before its
            deep-supervision downsampling (``seg``: (1, *sp) labels, or the region channels with the
            ignore channel last), for ``maps="loader"``; binary kinds only (the map is appended to
            the target and downsampled with it by nearest neighbour).
        version: bump when the computation changes: stored maps of an older version are stale.
    """

    name: str
    description: str
    params: Tuple[Param, ...]
    binary: bool
    loss_keywords: Tuple[Tuple[str, int, Optional[int]], ...]
    channels: Callable[[Any], list]
    compute: Callable[[np.ndarray, dict], np.ndarray]
    request: Callable[[Any, Mapping[str, Any]], dict]
    resolve_extra: Optional[Callable[[Any, dict], dict]] = None
    online: Optional[Callable[..., Callable]] = None
    loader: Optional[Callable[[np.ndarray, dict], np.ndarray]] = None
    version: int = 1
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def resample(self) -> str:
        """How augmentation and deep-supervision downsampling resample it: nearest or linear."""
        return "nearest" if self.binary else "linear"

    @property
    def keywords(self) -> Tuple[str, ...]:
        return tuple(k for k, _, _ in self.loss_keywords)

    def defaults(self) -> Dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def trainer_options(self) -> Dict[str, Any]:
        """The parameters trainers expose as options of their own, with defaults."""
        return {p.name: p.default for p in self.params if p.trainer_option}

    def check_params(self, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Defaults updated by ``params``, every value checked; ValueError for unknown names or bad values."""
        out = self.defaults()
        known = {p.name: p for p in self.params}
        for k, v in (params or {}).items():
            if k not in known:
                raise ValueError(f"unknown parameter {k!r} for map {self.name!r}; allowed: {sorted(known)}")
            out[k] = v
        return {k: known[k].check_value(v) for k, v in out.items()}

    def auto_rules(self) -> Dict[str, str]:
        """``{parameter: rule of .auto_width}`` of the parameters that accept ``"auto"``."""
        return {p.name: p.auto for p in self.params if p.auto}

    def resolve(self, ctx, params: Optional[Mapping[str, Any]] = None) -> "ResolvedMap":
        """User parameters + everything of the dataset (``ctx``, a :class:`MapContext`) the map depends on.

        ``"auto"`` values must already be numbers (:func:`.request.resolve_map` replaces them)."""
        p = self.check_params(params)
        left = sorted(k for k, v in p.items() if v == AUTO)
        if left:
            raise ValueError(f"map {self.name!r}: {left} = \"auto\" must be resolved for the dataset first "
                             f"(nnunet_losses.nnunet.maps.request.resolve_map)")
        derived = self.resolve_extra(ctx, p) if self.resolve_extra is not None else {}
        return ResolvedMap(kind=self.name, params=Values(p), algorithm=self.version, slicewise=ctx.slicewise,
                           num_classes=ctx.num_classes,
                           regions=tuple(tuple(x) for x in ctx.regions) if ctx.regions else None,
                           ignore_label=ctx.ignore_label, derived=Values(derived),
                           channels=tuple(self.channels(ctx)))

    def command_flags(self, params: Mapping[str, Any]) -> str:
        """The flags that give ``params`` on the command line (only those that differ from the defaults)."""
        out = ""
        for p in self.params:
            if p.name in params and params[p.name] != p.default:
                out += f" {p.flag} {params[p.name]}"
        return out


class Values(Mapping):
    """A read-only ``{name: value}`` whose entries are also attributes: ``resolved.params.iterations``.

    >>> v = Values({"iterations": 2})
    >>> v.iterations, v["iterations"], dict(v)
    (2, 2, {'iterations': 2})
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] = ()):
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"no value {name!r}; values: {sorted(self._items)}") from None

    def __setattr__(self, name, value):
        raise AttributeError("Values are read-only")

    def __reduce__(self):
        return Values, (self._items,)

    def __hash__(self) -> int:
        return hash(json.dumps(self._items, sort_keys=True, default=str))

    def __repr__(self) -> str:
        return repr(self._items)


@dataclass(frozen=True)
class ResolvedMap:
    """One map kind resolved for one dataset/configuration: what its computation receives, what the
    manifest stores (:meth:`record`) and what decides staleness (:attr:`fingerprint`).

    Args:
        kind: the map kind's name.
        params: the kind's parameters, checked, ``"auto"`` replaced by numbers (``params.iterations``).
        algorithm: the kind's :attr:`MapKind.version`.
        slicewise: 2d configuration (maps per slice of axis 0).
        num_classes, regions, ignore_label: nnU-Net's labels of the dataset.
        derived: what else of the dataset the map depends on (:attr:`MapKind.resolve_extra`: the
            contour element ``derived.kernel``, DWCE's ``derived.spacing``).
        channels: the channel names.
    """

    kind: str
    params: Values
    algorithm: int
    slicewise: bool
    num_classes: int
    regions: Optional[Tuple[Tuple[int, ...], ...]]
    ignore_label: Optional[int]
    derived: Values
    channels: Tuple[str, ...]

    def label_kwargs(self) -> dict:
        """``num_classes``, ``regions`` (lists) and ``ignore_label`` as the NumPy map functions take them."""
        return dict(num_classes=self.num_classes, regions=[list(r) for r in self.regions] if self.regions else None,
                    ignore_label=self.ignore_label)

    def record(self) -> dict:
        """The JSON dict stored in the manifest (its hash is :attr:`fingerprint`)."""
        out = {"map": self.kind, "params": dict(self.params), "algorithm": self.algorithm,
               "slicewise": self.slicewise, "num_classes": self.num_classes,
               "regions": [list(r) for r in self.regions] if self.regions else None,
               "ignore_label": self.ignore_label, **dict(self.derived), "channels": list(self.channels)}
        return json.loads(json.dumps(out))

    @property
    def fingerprint(self) -> str:
        """The key of this parameter set in the manifest."""
        return fingerprint(self.record())
