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
* deep supervision with nnU-Net's weights (:mod:`nnunet_losses.nnunet.deep_supervision`);
* ``torch.compile`` of the loss when nnU-Net compiles (``self._do_i_compile()``: CUDA, not
  disabled by ``nnUNet_compile``).

Hyper-parameters come from ``NNUNET_LOSSES_OPTIONS`` and are saved to
``<output_folder>/loss_options.json`` (see :mod:`nnunet_losses.nnunet.options`); ``--c`` and
``--val`` restore the saved values.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Dict, Optional

import torch
from torch import nn

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from .. import __version__
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
    """

    def __init__(self, loss: nn.Module, weights: Optional[tuple] = None, region_ignore: bool = False,
                 map_fn=None):
        super().__init__()
        self.loss = loss
        self.ds = None if weights is None else DeepSupervisionLoss(loss, weights)
        self.region_ignore = region_ignore
        self.map_fn = map_fn

    @property
    def weight_factors(self):
        return None if self.ds is None else self.ds.weight_factors

    def forward(self, output, target) -> torch.Tensor:
        multi = isinstance(output, (list, tuple))
        outputs = list(output) if multi else [output]
        targets = list(target) if isinstance(target, (list, tuple)) else [target]
        masks = None
        if self.region_ignore:
            split = [split_region_ignore(t) for t in targets]
            targets, masks = [s[0] for s in split], [s[1] for s in split]
        maps = self.map_fn(targets, masks) if self.map_fn is not None else {}
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

    # ------------------------------------------------------------------ nnU-Net hooks
    def load_checkpoint(self, filename_or_checkpoint) -> None:
        if not self.was_initialized:  # --c or --val: the loss is built now, from the saved options
            self._nnunet_losses_restoring = True
        super().load_checkpoint(filename_or_checkpoint)

    def _build_loss(self):
        if self.loss_class is None:
            raise TypeError(f"{type(self).__name__} must set loss_class")
        loss, extra = self.resolve_loss_options()
        if self._do_i_compile():
            loss = torch.compile(loss)
        weights = None
        if self.enable_deep_supervision:
            weights = nnunet_deep_supervision_weights(len(self._get_deep_supervision_scales()), self.is_ddp,
                                                      self._do_i_compile())
        region_ignore = self.label_manager.has_regions and self.label_manager.has_ignore_label
        return NnUNetLoss(loss, weights, region_ignore, self.make_map_fn(extra))
