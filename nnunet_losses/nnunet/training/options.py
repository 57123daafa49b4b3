"""Loss hyper-parameters without writing code: ``NNUNET_LOSSES_OPTIONS``, validated and saved.

Set the environment variable before ``nnUNetv2_train``, either as ``name=value`` pairs separated
by commas or as a JSON object::

    NNUNET_LOSSES_OPTIONS='beta=2.0' nnUNetv2_train 1 3d_fullres 0 -tr nnUNetTrainerAsymFbeta
    NNUNET_LOSSES_OPTIONS='{"k": 5, "weight_ce": 0.5}' nnUNetv2_train 1 2d 0 -tr nnUNetTrainerCETopKDice

Values are Python/JSON literals (``2``, ``0.5``, ``true``, ``none``, ``[3, 3, 1]``) or bare words for
string options (``maps=stored``). An option whose default is a boolean takes exactly ``true``/``false``,
``1``/``0`` or ``yes``/``no`` (any case); numbers must be finite (``1e400`` is refused by name). The allowed
names are the arguments of the trainer's loss constructor (and a few trainer options, e.g. ``w0``
and ``sigma`` of DWCE's weight map) except those nnU-Net decides (``sigmoid`` and ``ignore_index``
from the dataset, ``ddp`` from the launch). An unknown name or a value the loss rejects stops the
training with a message listing the allowed names and defaults.

The values used are written to ``<output_folder>/loss_options.json``. ``--c`` (resume) and ``--val``
restore them from that file; an ``NNUNET_LOSSES_OPTIONS`` that contradicts the saved values is an
error (start a new output folder, or unset the variable, to change them).

Options a loss renamed (``cls.renamed_arguments``, e.g. ``iterations`` -> ``contour_width``) are
accepted under their old names for one release (DeprecationWarning and a log line), and
``loss_options.json`` files of older runs are read with the new names (:func:`rename_record`).
"""
from __future__ import annotations

import ast
import inspect
import json
import math
import os
import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple

from nnunet_losses._io import atomic_write_json

ENV_VAR = "NNUNET_LOSSES_OPTIONS"
OPTIONS_FILE = "loss_options.json"
#: constructor arguments the trainer sets from the dataset and the launch, never from the user
FIXED_ARGUMENTS = ("sigmoid", "ignore_index", "ddp")

_WORDS = {"true": True, "false": False, "none": None, "null": None}
#: the values a boolean option accepts (strings compared case-insensitively)
_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def _split_pairs(text: str):
    """Split ``a=1,b=[2,3]`` at the commas outside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _parse_value(name: str, raw: str) -> Any:
    raw = raw.strip()
    if raw.lower() in _WORDS:
        return _WORDS[raw.lower()]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if raw.isidentifier():  # a bare word is a string: maps=stored
            return raw
        raise ValueError(f"{ENV_VAR}: the value of {name!r} must be a number, a word, true/false, none or a list, "
                         f"got {raw!r}")
    return list(value) if isinstance(value, tuple) else value


def _check_finite(name: str, value: Any) -> None:
    """ValueError naming the option for an infinite or NaN number (also inside lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{ENV_VAR}: option {name!r} must be a finite number, got {value!r}")
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_finite(name, v)


def parse_options(text: Optional[str]) -> Dict[str, Any]:
    """Parse the content of ``NNUNET_LOSSES_OPTIONS`` (``'a=1,b=2'`` or a JSON object) into a dict."""
    options = _parse_options(text)
    for name, value in options.items():
        _check_finite(name, value)
    return options


def _parse_options(text: Optional[str]) -> Dict[str, Any]:
    if text is None or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{ENV_VAR} looks like JSON but does not parse: {e}") from None
        if not isinstance(value, dict):
            raise ValueError(f"{ENV_VAR} must be a JSON object, got {text!r}")
        return {str(k): (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}
    options = {}
    for pair in _split_pairs(text):
        if "=" not in pair:
            raise ValueError(f"{ENV_VAR}: expected name=value pairs separated by commas (e.g. 'beta=2.0,k=5'), "
                             f"got {pair!r}")
        name, raw = pair.split("=", 1)
        name = name.strip()
        if not name.isidentifier():
            raise ValueError(f"{ENV_VAR}: {name!r} is not an option name")
        if name in options:
            raise ValueError(f"{ENV_VAR}: option {name!r} given twice")
        options[name] = _parse_value(name, raw)
    return options


def tunable_defaults(loss_class: type, extra: Optional[Mapping[str, Any]] = None,
                     defaults: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Names the user may set, with their defaults: the loss constructor's arguments minus
    :data:`FIXED_ARGUMENTS`, plus ``extra`` (trainer options); ``defaults`` overrides defaults."""
    out = {}
    for name, p in inspect.signature(loss_class.__init__).parameters.items():
        if name == "self" or name in FIXED_ARGUMENTS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[name] = None if p.default is inspect.Parameter.empty else p.default
    out.update(extra or {})
    out.update(defaults or {})
    return out


def coerce_booleans(options: Mapping[str, Any], allowed: Mapping[str, Any]) -> Dict[str, Any]:
    """Options whose default is a boolean as booleans: ``True``/``False``, ``1``/``0`` and the words
    true/false/yes/no/1/0 (any case); anything else is a ValueError naming the option.

    >>> coerce_booleans({"batch_dice": "No", "k": 5}, {"batch_dice": True, "k": 10})
    {'batch_dice': False, 'k': 5}
    """
    out = dict(options)
    for name, value in options.items():
        if not isinstance(allowed.get(name), bool) or isinstance(value, bool):
            continue
        key = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if key not in _BOOLEANS:
            raise ValueError(f"{ENV_VAR}: option {name!r} is true or false (also 1/0, yes/no), got {value!r}")
        out[name] = _BOOLEANS[key]
    return out


def rename_options(options: Mapping[str, Any], renames: Mapping[str, str]) -> Tuple[Dict[str, Any], List[str]]:
    """Options given under an old name (``renames``: old -> new) under the new one; returns (options, the
    old names used). Both names at once is a ValueError.

    >>> rename_options({"iterations": 2, "lam": 0.5}, {"iterations": "contour_width"})
    ({'contour_width': 2, 'lam': 0.5}, ['iterations'])
    """
    out, used = {}, []
    for name, value in options.items():
        new = renames.get(name)
        if new is None:
            out[name] = value
            continue
        if new in options:
            raise ValueError(f"{ENV_VAR}: give {new!r} only ({name!r} is its deprecated old name)")
        out[new] = value
        used.append(name)
    for name in used:
        warnings.warn(f"{ENV_VAR}: the option {name!r} is now called {renames[name]!r}; the old name will be removed "
                      f"in the next release", DeprecationWarning, stacklevel=2)
    return out, used


def rename_record(record: Mapping[str, Any], renames: Mapping[str, str]) -> Dict[str, Any]:
    """A ``loss_options.json`` record of an older run with renamed options under their new names (its
    ``options``, and in ``resolved`` also the ``<name>_source`` entries)."""
    if not renames:
        return dict(record)
    out = dict(record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out["options"] = rename_options(record.get("options", {}), renames)[0]
        if isinstance(record.get("resolved"), dict):
            sources = {f"{old}_source": f"{new}_source" for old, new in renames.items()}
            out["resolved"] = rename_options(record["resolved"], {**renames, **sources})[0]
    return out


def check_option_names(options: Mapping[str, Any], allowed: Mapping[str, Any], owner: str) -> None:
    """Unknown names -> ValueError listing the allowed ones (with defaults)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        fixed = [n for n in unknown if n in FIXED_ARGUMENTS]
        listing = ", ".join(f"{k}={v!r}" for k, v in allowed.items())
        msg = f"{ENV_VAR}: unknown option(s) {unknown} for {owner}; allowed options (defaults): {listing}"
        if fixed:
            msg += (f". {fixed} are set by nnU-Net (sigmoid and ignore_index from dataset.json, ddp from the "
                    "launch) and cannot be changed")
        raise ValueError(msg)


def normalise(options: Mapping[str, Any]) -> Dict[str, Any]:
    """JSON round trip (tuples become lists), so saved and given options compare equal."""
    return json.loads(json.dumps(dict(options), sort_keys=True))


def save_options(folder: str, record: Mapping[str, Any]) -> str:
    """Write ``record`` to ``<folder>/loss_options.json`` atomically; return the path."""
    os.makedirs(folder, exist_ok=True)
    return atomic_write_json(os.path.join(folder, OPTIONS_FILE), dict(record), indent=2, sort_keys=True)


def load_options(folder: str) -> Optional[Dict[str, Any]]:
    """Read ``<folder>/loss_options.json``; None if absent; ValueError naming the file if unreadable."""
    path = os.path.join(folder, OPTIONS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it or delete it to train with new options") from None
    if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
        raise ValueError(f"{path} has no 'options' object; restore it or delete it to train with new options")
    return record


def resolve_options(env_text: Optional[str], saved: Optional[Mapping[str, Any]], restoring: bool,
                    allowed: Mapping[str, Any], owner: str, renames: Optional[Mapping[str, str]] = None
                    ) -> Dict[str, Any]:
    """The user options to use: the saved ones when restoring (``--c``/``--val``), else the environment's.
    Old names of renamed options (``renames``) are read as the new ones (saved records: pass them through
    :func:`rename_record` first).

    Raises ValueError for unknown names, or when restoring and the environment contradicts the
    saved options.
    """
    given = rename_options(parse_options(env_text), renames or {})[0]
    check_option_names(given, allowed, owner)
    given = coerce_booleans(given, allowed)
    if restoring and saved is not None:
        previous = normalise(saved["options"])
        check_option_names(previous, allowed, owner)
        if env_text is not None and env_text.strip() and normalise(given) != previous:
            raise ValueError(
                f"{ENV_VAR}={env_text!r} contradicts the options this training was started with ({previous}, "
                f"saved in {OPTIONS_FILE}). Unset {ENV_VAR} (or set it to the saved values) to continue, or train "
                "into a new output folder to change them")
        return previous
    return normalise(given)
