"""The base of every nnunet-losses trainer: nnU-Net's ``nnUNetTrainer`` with another loss, nothing else.

A trainer sets :attr:`nnUNetTrainerLossBase.loss_class` (and, for a loss with maps, where they come
from by default: :attr:`~nnUNetTrainerLossBase.default_maps`); :meth:`_build_loss` then does
exactly what ``nnUNetTrainer._build_loss`` does for its default loss (nnunetv2 2.8.1):

* label training: softmax, ``ignore_index`` = the dataset's ignore label, background excluded
  from Dice terms (nnU-Net's ``do_bg=False``; our losses' default ``include_background=False``);
* region training (e.g. BraTS): sigmoid per region, every region counts (nnU-Net's ``do_bg=True``);
  nnU-Net appends the ignore label as an extra last target channel: it becomes the loss's ``mask``;
* ``batch_dice`` from the plans (``configuration_manager.batch_dice``); under DDP the batch-Dice
  sums are gathered across ranks (``ddp=self.is_ddp``);
* deep supervision with nnU-Net's weights (:mod:`.deep_supervision`);
* ``torch.compile`` of the loss when nnU-Net compiles (``self._do_i_compile()``: CUDA, not
  disabled by ``nnUNet_compile``).

Hyper-parameters come from ``NNUNET_LOSSES_OPTIONS`` and are saved to
``<output_folder>/loss_options.json`` (:mod:`.options`); ``--c`` and ``--val`` restore them.

Maps (docs/trainers.md, "Maps"): the map kind a loss needs is found in the registry
(:func:`nnunet_losses.nnunet.maps.registry.map_kind_for_loss`), which also gives the trainer's map
options (e.g. DWCE's ``w0``, ``sigma``) and the parameters it asks for. Option ``maps``: ``"online"``
(the loss computes contours / bands by max-pool morphology from the augmented target at every
deep-supervision scale; a kind with an ``online`` computation, DWCE's weight map, is computed per
batch) or ``"stored"`` (maps of ``nnunet_losses_precompute``, built at training start when missing,
stale or damaged; they follow the patch through nnU-Net's own loader and augmentation and reach the
loss as extra target channels) or, for kinds with a ``loader`` computation (the tubed skeleton),
``"loader"`` (computed in the loader workers from the augmented target before nnU-Net's
deep-supervision downsampling, :mod:`..maps.loader`; same extra target channels). The validation
loader uses online maps, and so do cascade stages instead of stored ones.

Every override calls ``super()``, so a loss trainer combines with nnU-Net's trainer variants::

    class nnUNetTrainerCWCD_DA5(nnUNetTrainerCWCD, nnUNetTrainerDA5): pass
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Dict

import torch
from torch import nn

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from ... import __version__
from ..maps.auto_width import fill_auto
from ..maps.context import MapContext
from ..maps.registry import AUTO, map_kind_for_loss, map_kinds
from . import options as opt
from .deep_supervision import nnunet_deep_supervision_weights
from .loss_wrapper import NnUNetLoss, split_region_ignore

__all__ = ["nnUNetTrainerLossBase", "NnUNetLoss", "split_region_ignore"]

MAPS_MODES = ("stored", "online", "loader")


class nnUNetTrainerLossBase(nnUNetTrainer):
    """nnUNetTrainer whose ``_build_loss`` builds :attr:`loss_class` (see the module docstring).

    Subclass attributes:
        loss_class: an ``nnunet_losses`` loss class.
        loss_defaults: defaults that differ from the loss constructor's (still user-settable).
        default_maps: for a loss with maps, ``"online"``, ``"stored"`` or ``"loader"`` (the ``maps`` option's
            default; ``"loader"`` only for a kind with a loader computation).
        auto_options: options whose default is ``"auto"``, set per dataset: ``{option: rule}`` with a rule
            of :mod:`nnunet_losses.nnunet.maps.auto_width` (e.g. ``{"contour_width": "contour_iterations"}``).
    """

    loss_class: type = None
    loss_defaults: Dict[str, Any] = {}
    default_maps: str = "online"
    #: options whose default is ``"auto"``: option name -> rule of :mod:`.auto_width` (set per dataset)
    auto_options: Dict[str, str] = {}

    _nnunet_losses_restoring = False
    _map_specs: tuple = ()
    _loader_map: tuple = ()  # maps="loader": (kind name, resolved parameters)

    # ------------------------------------------------------------------ options
    @classmethod
    def map_kind(cls):
        """The registry's map kind of :attr:`loss_class`, or None."""
        return map_kind_for_loss(cls.loss_class)

    @classmethod
    def maps_modes(cls) -> tuple:
        """The values of the ``maps`` option for this trainer's map kind (``"loader"`` where the kind has a
        loader computation)."""
        kind = cls.map_kind()
        return tuple(m for m in MAPS_MODES if m != "loader" or (kind is not None and kind.loader is not None))

    @classmethod
    def trainer_options(cls) -> Dict[str, Any]:
        """Options of the trainer rather than of the loss (name -> default): the map kind's
        trainer options and ``maps``; empty for a loss without maps."""
        kind = cls.map_kind()
        if kind is None:
            return {}
        if cls.default_maps not in MAPS_MODES or (cls.default_maps == "loader" and kind.loader is None):
            raise TypeError(f"{cls.__name__}.default_maps must be one of {cls.maps_modes()}, got {cls.default_maps!r}")
        return {**kind.trainer_options(), "maps": cls.default_maps}

    @classmethod
    def tunable_options(cls) -> Dict[str, Any]:
        """Every option a user may set, with its default."""
        auto = {name: AUTO for name in cls.auto_options}
        return opt.tunable_defaults(cls.loss_class, cls.trainer_options(), {**auto, **cls.loss_defaults})

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

    def _check_trainer_options(self, extra: Dict[str, Any], user_set: set) -> Dict[str, Any]:
        kind = self.map_kind()
        if kind is None:
            return extra
        checked = kind.check_params({k: v for k, v in extra.items() if k != "maps"})
        out = {k: checked[k] for k in extra if k != "maps"}
        out["maps"] = self._maps_mode(extra["maps"], "maps" in user_set)
        return out

    def resolve_loss_options(self):
        """(loss instance, trainer option values); writes ``loss_options.json`` on rank 0."""
        allowed = self.tunable_options()
        owner = f"{type(self).__name__} ({self.loss_class.__name__})"
        folder = self.output_folder
        renames = getattr(self.loss_class, "renamed_arguments", {})
        saved = opt.load_options(folder) if (self._nnunet_losses_restoring and folder) else None
        if saved is not None:  # a record of an older run: renamed options under their new names
            saved = opt.rename_record(saved, renames)
        old = [n for n in opt.parse_options(os.environ.get(opt.ENV_VAR)) if n in renames]
        if old:
            self.print_to_log_file(f"WARNING: {opt.ENV_VAR}: " + ", ".join(f"{n!r} is now called {renames[n]!r}"
                                                                       for n in old)
                                   + "; the old names will be removed in the next release")
        user = opt.resolve_options(os.environ.get(opt.ENV_VAR), saved, self._nnunet_losses_restoring, allowed, owner,
                                   renames)
        if self._nnunet_losses_restoring and saved is None:
            self.print_to_log_file(f"WARNING: no {opt.OPTIONS_FILE} in {folder}: continuing with "
                                   f"{opt.ENV_VAR}={os.environ.get(opt.ENV_VAR)!r} (or the defaults)")
        values = dict(allowed)
        values.update({k: v for k, v in self.plans_loss_defaults().items() if k not in self.loss_defaults})
        values.update(user)
        sources = self._resolve_auto_options(values, user, saved)
        extra = {k: values.pop(k) for k in list(values) if k in self.trainer_options()}
        fixed = self.fixed_loss_arguments()
        try:
            extra = self._check_trainer_options(extra, set(user))
            loss = self.loss_class(**values, **fixed)
            self.try_loss(self.loss_class(**values, **{**fixed, "ddp": False}) if fixed.get("ddp") else loss, extra)
        except (ValueError, TypeError, ArithmeticError, RuntimeError) as e:
            raise ValueError(f"{opt.ENV_VAR}: invalid loss option for {owner}: {e}. Allowed options (defaults): "
                             + ", ".join(f"{k}={v!r}" for k, v in allowed.items())) from None
        record = {"trainer": type(self).__name__, "loss": f"{self.loss_class.__module__}.{self.loss_class.__name__}",
                  "options": user, "resolved": opt.normalise({**values, **extra, **sources}), "fixed": fixed,
                  "nnunet_losses_version": __version__}
        if self.local_rank == 0 and folder:
            opt.save_options(folder, record)
        self.print_to_log_file(f"loss: {self.loss_class.__name__}, options {record['resolved']}, fixed {fixed}")
        return loss, extra

    def try_loss(self, loss: nn.Module, extra: Dict[str, Any]) -> None:
        """Run ``loss`` once on a small made-up batch of this dataset's layout (classes or regions, the
        configuration's 2 or 3 axes), so that an option only the first step would refuse
        (``kernel_size=[3, 3]`` for 3D data, one Focal ``alpha`` for three classes) stops the training
        before any file is written."""
        lm = self.label_manager
        shape = (2, *[min(int(p), 12) for p in self.configuration_manager.patch_size])
        inner = tuple(slice(2, 6) for _ in shape[1:])
        if lm.has_regions:
            target = torch.zeros((shape[0], len(lm.foreground_regions), *shape[1:]))
            target[(slice(None), slice(None), *inner)] = 1
            channels = target.shape[1]
        else:
            target = torch.zeros((shape[0], 1, *shape[1:]))
            for c in range(1, lm.num_segmentation_heads):  # a small block of every class
                target[(slice(None), slice(None), *(slice(2 * c, 2 * c + 4) for _ in shape[1:]))] = c
            channels = lm.num_segmentation_heads
        logits = torch.linspace(-1, 1, channels * int(torch.tensor(shape[1:]).prod())).reshape(1, channels, *shape[1:])
        map_fn = self.make_map_fn(extra)
        maps = {k: v[0] for k, v in map_fn([target]).items()} if map_fn is not None else {}
        with torch.no_grad():
            loss(logits.expand(shape[0], -1, *shape[1:]).contiguous(), target, **maps)

    def _resolve_auto_options(self, values: Dict[str, Any], user: Dict[str, Any], saved) -> Dict[str, str]:
        """Replace ``"auto"`` values of :attr:`auto_options` in ``values`` by the dataset's
        (:func:`..maps.auto_width.fill_auto`); return ``{name + "_source": where the value came from}``.
        When restoring (``--c``, ``--val``), the value saved in ``loss_options.json`` is reused."""
        sources, todo = {}, {}
        previous = (saved or {}).get("resolved", {}) if self._nnunet_losses_restoring else {}
        for name, rule in self.auto_options.items():
            if values.get(name) != AUTO:
                sources[f"{name}_source"] = opt.ENV_VAR if name in user else f"{type(self).__name__} default"
                continue
            prev_source = str(previous.get(f"{name}_source", ""))
            if prev_source.startswith(AUTO) and isinstance(previous.get(name), int):
                values[name], sources[f"{name}_source"] = previous[name], prev_source
                continue
            todo[name] = rule
        if todo:
            ctx = MapContext.from_nnunet(self.plans_manager, self.configuration_name, self.dataset_json,
                                         folder=self.preprocessed_dataset_folder)
            found = fill_auto(values, todo, ctx, log=self.print_to_log_file)
            sources.update({f"{name}_source": text for name, text in found.items()})
        return sources

    # ------------------------------------------------------------------ maps
    def _maps_mode(self, mode: str, user_set: bool) -> str:
        """The ``maps`` option in effect. Cascade stages (``seg_prev``) do not carry stored maps: a
        default "stored" becomes "online" (log line), an explicit one is an error."""
        if mode not in self.maps_modes():
            hint = (f" (\"loader\": only for map kinds with a loader computation, "
                    f"{[k.name for k in map_kinds().values() if k.loader is not None]}; map kind "
                    f"{self.map_kind().name!r} has none)" if mode == "loader" else "")
            raise ValueError(f"maps must be one of {list(self.maps_modes())}, got {mode!r}{hint}")
        if mode == "stored" and self.folder_with_segs_from_previous_stage:
            if user_set:
                raise ValueError(f"maps=\"stored\" is not supported for cascade stages ({self.configuration_name}); "
                                 f"use maps=\"online\"")
            self.print_to_log_file(f"maps: cascade stage {self.configuration_name}: stored maps are not supported, "
                                   f"the maps are computed online")
            mode = "online"
        return mode

    def make_map_fn(self, trainer_option_values: Dict[str, Any]):
        """None, or the map kind's per-batch computation (see :class:`NnUNetLoss`)."""
        kind = self.map_kind()
        if kind is None or kind.online is None:
            return None
        return kind.online(self.label_manager, trainer_option_values)

    def stored_map_request(self, loss: nn.Module, values: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        """``{kind: params}`` matching ``loss`` and the trainer option ``values`` (the registry's request)."""
        kind = self.map_kind()
        return {kind.name: kind.check_params(kind.request(loss, values))}

    def _setup_stored_maps(self, loss, extra):
        """The :class:`StoredMapSplit` for the loss when ``maps="stored"`` or ``"loader"``, else None."""
        kind = self.map_kind()
        mode = extra.get("maps", "online") if kind is not None else "online"
        self._map_specs, self._loader_map = (), ()
        if mode == "online":
            return None
        from ..maps.dataset import MapSpec
        from ..maps.request import resolve_map
        from ..maps.transforms import StoredMapSplit
        self._map_ctx = MapContext.from_nnunet(self.plans_manager, self.configuration_name, self.dataset_json,
                                               folder=self.preprocessed_dataset_folder)
        self._map_request = self.stored_map_request(getattr(loss, "_orig_mod", loss), extra)
        spec = MapSpec.from_resolved(resolve_map(self._map_ctx, kind.name, self._map_request[kind.name]))
        lm = self.label_manager
        n_target = len(lm.foreground_regions) + int(lm.has_ignore_label) if lm.has_regions else 1
        if mode == "loader":
            self._loader_map = (kind.name, spec.resolved)
            self.print_to_log_file(f"maps: {kind.name} {self._map_request[kind.name]} computed in the data loader")
        else:
            self._map_specs = (spec,)
            self.print_to_log_file(f"maps: stored {kind.name} {self._map_request[kind.name]} from "
                                   f"{self._map_ctx.maps_dir}")
        return StoredMapSplit((spec,), n_target, lm.has_regions, self.loss_class.map_names)

    # ------------------------------------------------------------------ nnU-Net hooks (all cooperative)
    def get_dataloaders(self):
        if self._map_specs:
            from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

            from ..maps.dataset import ensure_maps
            barrier = None
            if self.is_ddp:
                import torch.distributed as dist
                barrier = dist.barrier
            self._maps_use = ensure_maps(self._map_ctx, self._map_request, log=self.print_to_log_file,
                                         is_rank0=self.local_rank == 0, barrier=barrier,
                                         num_processes=max(1, get_allowed_n_proc_DA()))
        return super().get_dataloaders()

    def on_train_end(self):
        try:
            super().on_train_end()
        finally:      # the stored maps are no longer in use: --prune may remove them now
            use, self._maps_use = getattr(self, "_maps_use", None), None
            if use is not None:
                use.release()

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
        # nnU-Net declares this a staticmethod and calls it as self.get_training_transforms(...): as an
        # instance method here, super() reaches the next class of the MRO (e.g. nnUNetTrainerDA5's).
        transforms = super().get_training_transforms(*args, **kwargs)
        if self._map_specs:
            from ..maps.transforms import with_maps
            transforms = with_maps(transforms, self._map_specs)
        elif self._loader_map:
            from ..maps.loader import with_loader_maps
            transforms = with_loader_maps(transforms, *self._loader_map)
        return transforms

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
