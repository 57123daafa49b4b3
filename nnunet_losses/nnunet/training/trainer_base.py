"""The base of every nnunet-losses trainer: nnU-Net's ``nnUNetTrainer`` with another loss, nothing else.

A trainer sets :attr:`nnUNetTrainerLossBase.loss_class` (and, for losses with maps, how to get
them); :meth:`nnUNetTrainerLossBase._build_loss` then does exactly what ``nnUNetTrainer._build_loss``
does for its default loss (nnunetv2 2.8.1):

* label training: softmax, ``ignore_index`` = the dataset's ignore label, background excluded
  from Dice terms (nnU-Net's ``do_bg=False``; our losses' default ``include_background=False``);
* region training (e.g. BraTS): sigmoid per region, every region counts (nnU-Net's ``do_bg=True``);
  nnU-Net appends the ignore label as an extra last target channel: it becomes the loss's ``mask``;
* ``batch_dice`` from the plans (``configuration_manager.batch_dice``); under DDP the batch-Dice
  sums are gathered across ranks (``ddp=self.is_ddp``);
* deep supervision with nnU-Net's weights (:mod:`nnunet_losses.nnunet.training.deep_supervision`);
* ``torch.compile`` of the loss when nnU-Net compiles (``self._do_i_compile()``: CUDA, not
  disabled by ``nnUNet_compile``).

Hyper-parameters come from ``NNUNET_LOSSES_OPTIONS`` and are saved to
``<output_folder>/loss_options.json`` (see :mod:`nnunet_losses.nnunet.training.options`); ``--c`` and
``--val`` restore the saved values.

Maps (SPEC section 4), trainer option ``maps``: ``"online"`` (the loss computes its contours / bands
by max-pool morphology from the augmented target at every deep-supervision scale) or ``"stored"``
(maps from ``nnunet_losses_precompute``, built at training start when missing or stale; they are
loaded with each case by :mod:`.map_data`, follow the patch through :mod:`.map_transforms` and reach
the loss as extra target channels, split off by ``NnUNetLoss``). The validation loader and cascade
stages always use online maps.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Dict, Optional

import torch
from torch import nn

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from ... import __version__
from . import options as opt
from .deep_supervision import DeepSupervisionLoss, nnunet_deep_supervision_weights

__all__ = ["nnUNetTrainerLossBase", "NnUNetLoss", "split_region_ignore"]


def split_region_ignore(target: torch.Tensor):
    """nnU-Net region target with the ignore channel last -> (regions, mask with 1 = counts).

    Same convention as nnU-Net's ``DC_and_BCE_loss(use_ignore_label=True)``.
    """
    ignore = target[:, -1:]
    mask = ~ignore if ignore.dtype == torch.bool else (ignore == 0)
    return target[:, :-1], mask


class NnUNetLoss(nn.Module):
    """What the trainer calls as ``self.loss(output, target)``: nnU-Net's target conventions in,
    one ``nnunet_losses`` loss (per deep-supervision scale) out.

    Args:
        loss: the loss module (possibly ``torch.compile``-d).
        weights: deep-supervision weights, or None without deep supervision.
        region_ignore: the target carries nnU-Net's ignore channel last (region training).
        map_fn: None or ``map_fn(targets, masks) -> {name: [tensor per scale]}`` for losses with
            maps that must be provided (DWCE's ``weight_map``).
        stored: None or a :class:`nnunet_losses.nnunet.maps.transforms.StoredMapSplit`: the target
            carries stored maps as extra channels (training loader with ``maps="stored"``); a target
            without them (the validation loader) falls back to ``map_fn`` / the loss's own maps.
    """

    def __init__(self, loss: nn.Module, weights: Optional[tuple] = None, region_ignore: bool = False,
                 map_fn=None, stored=None):
        super().__init__()
        self.loss = loss
        self.ds = None if weights is None else DeepSupervisionLoss(loss, weights)
        self.region_ignore = region_ignore
        self.map_fn = map_fn
        self.stored = stored

    @property
    def weight_factors(self):
        return None if self.ds is None else self.ds.weight_factors

    def forward(self, output, target) -> torch.Tensor:
        multi = isinstance(output, (list, tuple))
        outputs = list(output) if multi else [output]
        targets = list(target) if isinstance(target, (list, tuple)) else [target]
        masks, maps = None, {}
        if self.stored is not None:
            targets, maps = self.stored(targets)
        if self.region_ignore:
            split = [split_region_ignore(t) for t in targets]
            targets, masks = [s[0] for s in split], [s[1] for s in split]
        if not maps and self.map_fn is not None:
            maps = self.map_fn(targets, masks)
        if multi and self.ds is not None:
            return self.ds(outputs, targets, mask=masks, **maps)
        return self.loss(outputs[0], targets[0], mask=None if masks is None else masks[0],
                         **{k: v[0] for k, v in maps.items()})


class nnUNetTrainerLossBase(nnUNetTrainer):
    """nnUNetTrainer whose ``_build_loss`` builds :attr:`loss_class` (see the module docstring).

    Subclass attributes:
        loss_class: an ``nnunet_losses`` loss class.
        loss_defaults: defaults that differ from the loss constructor's (still user-settable).
        trainer_options: options of the trainer rather than of the loss (name -> default),
            e.g. DWCE's ``w0`` and ``sigma``; validated by :meth:`check_trainer_options`.
    """

    loss_class: type = None
    loss_defaults: Dict[str, Any] = {}
    trainer_options: Dict[str, Any] = {}

    _nnunet_losses_restoring = False

    # ------------------------------------------------------------------ options
    @classmethod
    def tunable_options(cls) -> Dict[str, Any]:
        """Every option a user may set, with its default."""
        return opt.tunable_defaults(cls.loss_class, cls.trainer_options, cls.loss_defaults)

    def check_trainer_options(self, values: Dict[str, Any]) -> None:
        """Validate :attr:`trainer_options` values (ValueError); override where there are any."""

    def fixed_loss_arguments(self) -> Dict[str, Any]:
        """Arguments decided by the dataset, the plans and the launch (not by the user)."""
        regions = self.label_manager.has_regions
        params = inspect.signature(self.loss_class.__init__).parameters
        fixed = {"sigmoid": regions, "ignore_index": None if regions else self.label_manager.ignore_label}
        if "ddp" in params:
            fixed["ddp"] = bool(self.is_ddp)
        return fixed

    def plans_loss_defaults(self) -> Dict[str, Any]:
        """Defaults taken from the plans: ``batch_dice``."""
        params = inspect.signature(self.loss_class.__init__).parameters
        return {"batch_dice": bool(self.configuration_manager.batch_dice)} if "batch_dice" in params else {}

    def resolve_loss_options(self):
        """(loss instance, trainer option values); writes ``loss_options.json`` on rank 0."""
        allowed = self.tunable_options()
        owner = f"{type(self).__name__} ({self.loss_class.__name__})"
        folder = self.output_folder
        saved = opt.load_options(folder) if (self._nnunet_losses_restoring and folder) else None
        user = opt.resolve_options(os.environ.get(opt.ENV_VAR), saved, self._nnunet_losses_restoring, allowed, owner)
        if self._nnunet_losses_restoring and saved is None:
            self.print_to_log_file(f"WARNING: no {opt.OPTIONS_FILE} in {folder}: continuing with "
                                   f"{opt.ENV_VAR}={os.environ.get(opt.ENV_VAR)!r} (or the defaults)")
        values = dict(allowed)
        values.update({k: v for k, v in self.plans_loss_defaults().items() if k not in self.loss_defaults})
        values.update(user)
        extra = {k: values.pop(k) for k in list(values) if k in self.trainer_options}
        if "maps" in extra:
            extra["maps"] = self._maps_mode(extra["maps"], "maps" in user)
        fixed = self.fixed_loss_arguments()
        try:
            self.check_trainer_options(extra)
            loss = self.loss_class(**values, **fixed)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{opt.ENV_VAR}: invalid loss option for {owner}: {e}. Allowed options (defaults): "
                             + ", ".join(f"{k}={v!r}" for k, v in allowed.items())) from None
        record = {"trainer": type(self).__name__, "loss": f"{self.loss_class.__module__}.{self.loss_class.__name__}",
                  "options": user, "resolved": opt.normalise({**values, **extra}), "fixed": fixed,
                  "nnunet_losses_version": __version__}
        if self.local_rank == 0 and folder:
            opt.save_options(folder, record)
        self.print_to_log_file(f"loss: {self.loss_class.__name__}, options {record['resolved']}, fixed {fixed}")
        return loss, extra

    # ------------------------------------------------------------------ maps
    def make_map_fn(self, trainer_option_values: Dict[str, Any]):
        """None, or ``map_fn(targets, masks) -> {name: [tensor per scale]}`` (see :class:`NnUNetLoss`)."""
        return None

    # ------------------------------------------------------------------ stored maps (SPEC section 4)
    _map_specs: tuple = ()

    @property
    def stored_map(self) -> Optional[str]:
        """precompute's map for the loss's map arguments ("contour", "osc", "dwce"), or None."""
        names = set(getattr(self.loss_class, "map_names", ()) or ())
        if names & {"band", "contour"}:
            return "contour"
        return "osc" if "offset_band" in names else ("dwce" if "weight_map" in names else None)

    def stored_map_params(self, loss: nn.Module, values: Dict[str, Any]) -> Dict[str, Any]:
        """precompute's parameters of :attr:`stored_map` matching ``loss`` (trainer options ``values``)."""
        if self.stored_map == "contour":
            k = loss.kernel_size
            k = k if isinstance(k, int) else (k[0] if len(set(k)) == 1 else None)
            if k is None:
                raise ValueError(f"{opt.ENV_VAR}: maps=\"stored\" needs a cubic kernel_size, got {loss.kernel_size!r}; "
                                 f"use maps=\"online\" for other elements")
            return {"kernel_size": int(k), "iterations": int(loss.iterations), "element": "cube"}
        if self.stored_map == "osc":
            return {"band": int(loss.band)}
        if self.stored_map == "dwce":
            return {"w0": float(values["w0"]), "sigma": float(values["sigma"])}
        raise ValueError(f"unknown stored map {self.stored_map!r}")

    def _maps_mode(self, mode: str, user_set: bool) -> str:
        """The ``maps`` option in effect: "stored" or "online". Cascade stages (``seg_prev``) do not
        carry stored maps: a default "stored" becomes "online" (log line), an explicit one is an error."""
        if mode not in ("stored", "online"):
            raise ValueError(f"{opt.ENV_VAR}: maps must be \"stored\" or \"online\", got {mode!r}")
        if mode == "stored" and self.stored_map is not None and self.folder_with_segs_from_previous_stage:
            if user_set:
                raise ValueError(f"{opt.ENV_VAR}: maps=\"stored\" is not supported for cascade stages "
                                 f"({self.configuration_name}); use maps=\"online\"")
            self.print_to_log_file(f"maps: cascade stage {self.configuration_name}: stored maps are not supported, "
                                   f"the maps are computed online")
            mode = "online"
        return mode

    def _setup_stored_maps(self, loss, extra):
        """The :class:`StoredMapSplit` for the loss when ``maps="stored"``, else None."""
        if extra.get("maps", "online") != "stored" or self.stored_map is None:
            self._map_specs = ()
            return None
        from ..maps.dataset import MapSpec
        from ..maps.transforms import StoredMapSplit
        from ..maps.build import MapContext, resolve_params
        self._map_ctx = MapContext.from_nnunet(self.plans_manager, self.configuration_name, self.dataset_json,
                                               folder=self.preprocessed_dataset_folder)
        self._map_request = {self.stored_map: self.stored_map_params(getattr(loss, "_orig_mod", loss), extra)}
        rp = resolve_params(self._map_ctx, self.stored_map, self._map_request[self.stored_map])
        self._map_specs = (MapSpec.from_rp(rp),)
        lm = self.label_manager
        n_target = len(lm.foreground_regions) + int(lm.has_ignore_label) if lm.has_regions else 1
        self.print_to_log_file(f"maps: stored {self.stored_map} {self._map_request[self.stored_map]} from "
                               f"{self._map_ctx.maps_dir}")
        return StoredMapSplit(self._map_specs, n_target, lm.has_regions, self.loss_class.map_names)

    def get_dataloaders(self):
        if self._map_specs:
            from ..maps.dataset import ensure_maps
            from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
            barrier = None
            if self.is_ddp:
                import torch.distributed as dist
                barrier = dist.barrier
            ensure_maps(self._map_ctx, self._map_request, log=self.print_to_log_file, is_rank0=self.local_rank == 0,
                        barrier=barrier, num_processes=max(1, get_allowed_n_proc_DA()))
        return super().get_dataloaders()

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        if self._map_specs:
            from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
            from ..maps.dataset import nnUNetDatasetBlosc2WithMaps
            if not isinstance(dataset_tr, nnUNetDatasetBlosc2):
                raise ValueError(f"maps=\"stored\" needs nnU-Net's blosc2 preprocessed data (.b2nd), found "
                                 f"{type(dataset_tr).__name__}: re-run nnUNetv2_preprocess with nnunetv2 >= 2.6")
            dataset_tr = nnUNetDatasetBlosc2WithMaps(self.preprocessed_dataset_folder, dataset_tr.identifiers,
                                                     self.folder_with_segs_from_previous_stage, self._map_specs)
        return dataset_tr, dataset_val

    def get_training_transforms(self, *args, **kwargs):
        transforms = nnUNetTrainer.get_training_transforms(*args, **kwargs)
        if self._map_specs:
            from ..maps.transforms import with_maps
            transforms = with_maps(transforms, self._map_specs)
        return transforms

    # ------------------------------------------------------------------ nnU-Net hooks
    def load_checkpoint(self, filename_or_checkpoint) -> None:
        if not self.was_initialized:  # --c or --val: the loss is built now, from the saved options
            self._nnunet_losses_restoring = True
        super().load_checkpoint(filename_or_checkpoint)

    def _build_loss(self):
        if self.loss_class is None:
            raise TypeError(f"{type(self).__name__} must set loss_class")
        loss, extra = self.resolve_loss_options()
        stored = self._setup_stored_maps(loss, extra)
        if self._do_i_compile():
            loss = torch.compile(loss)
        weights = None
        if self.enable_deep_supervision:
            weights = nnunet_deep_supervision_weights(len(self._get_deep_supervision_scales()), self.is_ddp,
                                                      self._do_i_compile())
        region_ignore = self.label_manager.has_regions and self.label_manager.has_ignore_label
        return NnUNetLoss(loss, weights, region_ignore, self.make_map_fn(extra), stored)
