"""What the maps of one preprocessed dataset/configuration depend on, read from nnU-Net's plans."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = ["MapContext", "MAPS_SUBFOLDER", "MAPS_DIR_ENV", "maps_dir_for", "cache_dir_for"]

#: the maps live in this subfolder of nnU-Net's preprocessed configuration folder: nnU-Net's
#: ``nnUNetDatasetBlosc2.get_identifiers`` would take ``<case>_contour.b2nd`` for a case, and
#: ``infer_dataset_class`` rejects a folder holding a ``.json`` file
MAPS_SUBFOLDER = "nnunet_losses_maps"
#: a writable folder for the maps and caches when nnUNet_preprocessed is read-only (shared clusters)
MAPS_DIR_ENV = "NNUNET_LOSSES_MAPS_DIR"


def cache_dir_for(folder: str) -> str:
    """Where the maps and caches of the preprocessed configuration ``folder`` of a dataset live:
    ``nnUNet_preprocessed/<Dataset>``, or ``$NNUNET_LOSSES_MAPS_DIR/<Dataset>`` when that is set."""
    folder = os.path.normpath(folder)
    root = os.environ.get(MAPS_DIR_ENV, "").strip()
    return os.path.join(root, os.path.basename(os.path.dirname(folder))) if root else os.path.dirname(folder)


def maps_dir_for(folder: str) -> str:
    """The maps folder of the preprocessed configuration ``folder``:
    ``<folder>/nnunet_losses_maps``, or ``$NNUNET_LOSSES_MAPS_DIR/<Dataset>/<data identifier>``."""
    folder = os.path.normpath(folder)
    if os.environ.get(MAPS_DIR_ENV, "").strip():
        return os.path.join(cache_dir_for(folder), os.path.basename(folder))
    return os.path.join(folder, MAPS_SUBFOLDER)


@dataclass
class MapContext:
    """Everything about one preprocessed dataset/configuration that the maps depend on."""

    folder: str                                  # nnUNet_preprocessed/DatasetXXX/<data_identifier>
    dataset_name: str
    plans_identifier: str
    configuration: str
    spacing: Tuple[float, ...]                   # the configuration's target spacing
    patch_size: Tuple[int, ...]                  # the configuration's patch size (2 or 3 axes)
    num_classes: int                             # softmax heads (labels incl. background, excl. ignore)
    regions: Optional[List[Tuple[int, ...]]] = None
    ignore_label: Optional[int] = None
    labels: Dict[str, object] = field(default_factory=dict)

    @property
    def maps_dir(self) -> str:
        """Where the stored maps of this configuration live (:func:`maps_dir_for`)."""
        return maps_dir_for(self.folder)

    @property
    def slicewise(self) -> bool:
        """2d configuration: maps are computed per slice of axis 0."""
        return len(self.patch_size) == 2

    @classmethod
    def from_nnunet(cls, plans, configuration: str, dataset_json, folder: Optional[str] = None,
                    dataset_name: Optional[str] = None) -> "MapContext":
        """Build from nnU-Net objects or files: ``plans`` (PlansManager, dict or path), ``dataset_json``
        (dict or path), ``folder`` (default: ``nnUNet_preprocessed/<dataset>/<data_identifier>``)."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        if isinstance(plans, str):
            with open(plans) as f:
                plans = json.load(f)
        pm = plans if isinstance(plans, PlansManager) else PlansManager(plans)
        if isinstance(dataset_json, str):
            with open(dataset_json) as f:
                dataset_json = json.load(f)
        if configuration not in pm.available_configurations:
            raise ValueError(f"configuration {configuration!r} is not in the plans {pm.plans_name!r}; available: "
                             f"{pm.available_configurations}")
        cm = pm.get_configuration(configuration)
        lm = pm.get_label_manager(dataset_json)
        dataset_name = dataset_name or pm.dataset_name
        if folder is None:
            from nnunetv2.paths import nnUNet_preprocessed
            if nnUNet_preprocessed is None:
                raise ValueError("nnUNet_preprocessed is not set: export it or pass folder=")
            folder = os.path.join(nnUNet_preprocessed, dataset_name, cm.data_identifier)
        regions = None
        if lm.has_regions:
            regions = [tuple(int(i) for i in np.atleast_1d(r)) for r in lm.foreground_regions]
        return cls(folder=str(folder), dataset_name=dataset_name, plans_identifier=pm.plans_name,
                   configuration=configuration, spacing=tuple(float(s) for s in cm.spacing),
                   patch_size=tuple(int(p) for p in cm.patch_size), num_classes=int(lm.num_segmentation_heads)
                   if not lm.has_regions else len(lm.all_labels), regions=regions,
                   ignore_label=lm.ignore_label, labels=dict(dataset_json["labels"]))

    @classmethod
    def from_ids(cls, dataset: Union[int, str], configuration: str, plans: str = "nnUNetPlans") -> "MapContext":
        """Resolve ``-d``/``-c``/``-p`` like nnU-Net's commands (uses ``nnUNet_preprocessed``)."""
        from nnunetv2.paths import nnUNet_preprocessed
        from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
        if nnUNet_preprocessed is None:
            raise ValueError("nnUNet_preprocessed is not set: export it as for nnU-Net's own commands")
        name = maybe_convert_to_dataset_name(dataset)
        base = os.path.join(nnUNet_preprocessed, name)
        plans_file = os.path.join(base, plans + ".json")
        if not os.path.isfile(plans_file):
            raise ValueError(f"plans file {plans_file} not found: run nnUNetv2_plan_and_preprocess -d {dataset} first")
        ctx = cls.from_nnunet(plans_file, configuration, os.path.join(base, "dataset.json"), dataset_name=name)
        if not os.path.isdir(ctx.folder):
            raise ValueError(f"preprocessed folder {ctx.folder} not found: run nnUNetv2_plan_and_preprocess -d "
                             f"{dataset} -c {configuration} -p {plans} first")
        return ctx

    def identifiers(self) -> List[str]:
        """Cases of the preprocessed folder (nnU-Net's blosc2 layout)."""
        if not os.path.isdir(self.folder):
            raise ValueError(f"preprocessed folder {self.folder} does not exist")
        ids = sorted(f[:-5] for f in os.listdir(self.folder) if f.endswith(".b2nd") and not f.endswith("_seg.b2nd"))
        if not ids and any(f.endswith(".npz") for f in os.listdir(self.folder)):
            raise ValueError(f"{self.folder} holds .npz files (an older nnU-Net format); re-run "
                             f"nnUNetv2_preprocess with nnU-Net >= 2.6 to get blosc2 (.b2nd) files")
        return ids
