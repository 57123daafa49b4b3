"""The registry of map kinds: everything about one kind of loss map, declared in one place.

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
:func:`register_map_kind` (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

#: the value of a parameter set per dataset (see :attr:`Param.auto`)
AUTO = "auto"

__all__ = ["Param", "MapKind", "register_map_kind", "map_kind", "map_kinds", "map_kind_for_loss",
           "loss_default", "markdown_table", "unregister_map_kind", "whole_number", "positive_number", "non_negative_number", "one_of"]


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
            the dict of :meth:`resolve`. Binary kinds return bool channels (packed by the store).
        resolve_extra: ``resolve_extra(ctx, params) -> dict`` what else of the dataset the map depends
            on (the element from the spacing, ...), part of the fingerprint.
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

    def resolve(self, ctx, params: Optional[Mapping[str, Any]] = None) -> dict:
        """User parameters + everything of the dataset the map depends on: the dict whose hash
        decides staleness (stored in the manifest)."""
        p = self.check_params(params)
        for prm in self.params:
            if prm.auto and p[prm.name] == AUTO:  # the same value the trainers resolve for this dataset
                from .auto_width import resolve_auto
                p[prm.name] = resolve_auto(prm.auto, ctx)[0]
        r = {"map": self.name, "params": p, "algorithm": self.version, "slicewise": ctx.slicewise,
             "num_classes": ctx.num_classes, "regions": [list(x) for x in ctx.regions] if ctx.regions else None,
             "ignore_label": ctx.ignore_label}
        if self.resolve_extra is not None:
            r.update(self.resolve_extra(ctx, p))
        r["channels"] = list(self.channels(ctx))
        return r

    def command_flags(self, params: Mapping[str, Any]) -> str:
        """The flags that give ``params`` on the command line (only those that differ from the defaults)."""
        out = ""
        for p in self.params:
            if p.name in params and params[p.name] != p.default:
                out += f" {p.flag} {params[p.name]}"
        return out


_KINDS: Dict[str, MapKind] = {}


def register_map_kind(kind: MapKind, replace: bool = False) -> MapKind:
    """Add a kind to the registry (``replace`` to redefine one, e.g. in a test)."""
    _builtin()
    if kind.loader is not None and not kind.binary:
        raise ValueError(f"map kind {kind.name!r}: a loader computation needs a binary kind (the map travels with "
                         f"the target and is downsampled with it by nearest neighbour)")
    if kind.name in _KINDS and not replace:
        raise ValueError(f"map kind {kind.name!r} is already registered")
    flags = {p.flag for k in _KINDS.values() if k.name != kind.name for p in k.params}
    clash = sorted(flags & {p.flag for p in kind.params})
    if clash:
        raise ValueError(f"map kind {kind.name!r}: command-line flags {clash} are used by another kind")
    _KINDS[kind.name] = kind
    return kind


def unregister_map_kind(name: str) -> None:
    """Remove a kind (tests)."""
    _KINDS.pop(name, None)


_LOADED = False


def _builtin() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import kinds  # noqa: F401  (registers contour, osc, dwce)


def map_kinds() -> Dict[str, MapKind]:
    """Every registered kind, by name."""
    _builtin()
    return dict(_KINDS)


def map_kind(name: str) -> MapKind:
    """The kind called ``name``; ValueError listing the known ones."""
    kinds = map_kinds()
    if name not in kinds:
        raise ValueError(f"unknown map {name!r}; choose from {tuple(kinds)}")
    return kinds[name]


def map_kind_for_loss(loss_class: type) -> Optional[MapKind]:
    """The kind that feeds ``loss_class``'s map arguments (``loss_class.map_names``), or None."""
    names = set(getattr(loss_class, "map_names", ()) or ())
    if not names:
        return None
    found = [k for k in map_kinds().values() if names & set(k.keywords)]
    if len(found) > 1:
        raise ValueError(f"{loss_class.__name__}'s maps {sorted(names)} are fed by several kinds "
                         f"{[k.name for k in found]}")
    return found[0] if found else None


def markdown_table() -> str:
    """The table of map kinds in docs/trainers.md (a test keeps the docs equal to it)."""
    rows = ["| map kind | what | stored as, resampled | `maps=loader` | loss keywords | parameters: flag = default |",
            "|---|---|---|---|---|---|"]
    for k in map_kinds().values():
        stored = "bit-packed uint8, nearest" if k.binary else "float16, linear"
        params = ", ".join(f"`{p.flag}` = `{p.default}`" + (" (trainer option)" if p.trainer_option else "")
                           for p in k.params)
        loader = "yes" if k.loader is not None else "no"
        rows.append(f"| `{k.name}` | {k.description} | {stored} | {loader} | {', '.join(f'`{w}`' for w in k.keywords)} | "
                    f"{params} |")
    return "\n".join(rows)
