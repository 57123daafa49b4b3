"""What a study is: arms, the grid (arms x folds x seeds), the schedule, where the test set is.

A study definition is a JSON object (a file in the repository, or built from the command line)::

    {"dataset": 4, "configuration": "3d_fullres", "plans": "nnUNetPlans",
     "arms": {"nnU-Net": {"trainer": "nnUNetTrainer"},
              "CWCD": {"trainer": "nnUNetTrainerCWCD"},
              "CWCD_i2": {"trainer": "nnUNetTrainerCWCD", "options": {"contour_width": 2}}},
     "baseline": "nnU-Net", "folds": [0, 1, 2, 3, 4], "seeds": [0],
     "epochs": null, "iterations": null}

An arm is a trainer plus loss options (the options ``NNUNET_LOSSES_OPTIONS`` takes, docs/trainers.md). The
first arm is the baseline unless ``baseline`` names another. ``epochs`` / ``iterations`` (per epoch)
shorten nnU-Net's schedule (1000 x 250) for every arm alike; ``null`` keeps it.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["Arm", "StudyDefinition", "parse_arm", "load_definition"]

_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Arm:
    """One arm: a trainer class name and its loss options."""

    name: str
    trainer: str
    options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not _ARM_NAME.match(self.name):
            raise ValueError(f"arm name {self.name!r}: use letters, digits and _ . + - (it names folders)")
        if not self.trainer.isidentifier():
            raise ValueError(f"arm {self.name!r}: trainer {self.trainer!r} is not a trainer class name")
        if not isinstance(self.options, dict):
            raise ValueError(f"arm {self.name!r}: options must be a JSON object, got {self.options!r}")


def parse_arm(text: str) -> Arm:
    """``[NAME=]TRAINER[:JSON]`` -> :class:`Arm`; the name defaults to the trainer without ``nnUNetTrainer``.

    >>> parse_arm('CWCD_i2=nnUNetTrainerCWCD:{"contour_width": 2}')
    Arm(name='CWCD_i2', trainer='nnUNetTrainerCWCD', options={'contour_width': 2})
    >>> parse_arm("nnUNetTrainer").name
    'nnU-Net'
    """
    name, _, rest = text.partition("=") if "=" in text.split(":", 1)[0] else ("", "", text)
    trainer, _, options = rest.partition(":")
    try:
        opts = json.loads(options) if options.strip() else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"arm {text!r}: the options after ':' are not JSON ({e}); e.g. "
                         f"'CWCD_i2=nnUNetTrainerCWCD:{{\"contour_width\": 2}}'") from None
    trainer = trainer.strip()
    if not name:
        name = "nnU-Net" if trainer == "nnUNetTrainer" else trainer.replace("nnUNetTrainer", "") or trainer
    return Arm(name.strip(), trainer, opts)


def _whole(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class StudyDefinition:
    """The grid and everything a run needs besides the executor (stored as ``study.json``)."""

    dataset: str
    configuration: str
    arms: List[Arm]
    plans: str = "nnUNetPlans"
    baseline: Optional[str] = None
    folds: List[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    seeds: List[int] = field(default_factory=lambda: [0])
    epochs: Optional[int] = None
    iterations: Optional[int] = None
    val_iterations: Optional[int] = None
    test_images: Optional[str] = None
    test_labels: Optional[str] = None
    metrics: List[str] = field(default_factory=lambda: ["dice", "iou", "hd95", "nsd", "precision", "recall"])
    tta: bool = True
    threads: Optional[int] = None
    description: str = ""

    def __post_init__(self):
        if not self.arms:
            raise ValueError("a study needs at least one arm (two to compare)")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ: {names}; name arms of one trainer apart with NAME=TRAINER")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not an arm; arms: {names}")
        for f in self.folds:
            _whole(f, "a fold", 0)
        for s in self.seeds:
            _whole(s, "a seed", 0)
        if len(set(self.folds)) != len(self.folds) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"folds {self.folds} and seeds {self.seeds} must not repeat")
        if not self.folds or not self.seeds:
            raise ValueError("a study needs at least one fold and one seed")
        for name in ("epochs", "iterations", "val_iterations", "threads"):
            if getattr(self, name) is not None:
                _whole(getattr(self, name), name, 1)

    @property
    def baseline_arm(self) -> str:
        return self.baseline or self.arms[0].name

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def runs(self) -> List[tuple]:
        """(arm, fold, seed) of every run, seed-major (a study cut short has whole seeds)."""
        return [(a.name, f, s) for s in self.seeds for f in self.folds for a in self.arms]

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        d["arms"] = {a.name: {"trainer": a.trainer, "options": a.options} for a in self.arms}
        return d

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "StudyDefinition":
        d = dict(d)
        unknown = set(d) - {f for f in cls.__dataclass_fields__} - {"prepare"}
        if unknown:
            raise ValueError(f"unknown keys in the study definition: {sorted(unknown)}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        d.pop("prepare", None)
        for key in ("dataset", "configuration", "arms"):
            if key not in d:
                raise ValueError(f"the study definition needs {key!r}")
        arms = d.pop("arms")
        if not isinstance(arms, dict):
            raise ValueError('"arms" must be an object {"name": {"trainer": ..., "options": {...}}}')
        d["arms"] = [Arm(n, v["trainer"], v.get("options") or {}) if isinstance(v, dict) else parse_arm(f"{n}={v}")
                     for n, v in arms.items()]
        d["dataset"] = str(d["dataset"])
        return cls(**d)


def load_definition(path: str) -> tuple:
    """(definition, its ``prepare`` section or None) from a JSON file."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    return StudyDefinition.from_json(raw), raw.get("prepare")


def same_grid(a: StudyDefinition, b: StudyDefinition, ignore: Sequence[str] = ()) -> List[str]:
    """Names of the fields in which two definitions differ."""
    ja, jb = a.to_json(), b.to_json()
    return [k for k in ja if k not in ignore and ja[k] != jb.get(k)]
