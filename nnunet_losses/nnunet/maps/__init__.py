"""Loss maps for nnU-Net: one registry of map kinds, stored next to nnU-Net's preprocessed data or
computed online.

* :mod:`.registry` / :mod:`.kinds`: what a map kind is (parameters, computations, storage,
  resampling, loss keywords), one declaration per kind;
* :mod:`.context`: what a dataset/configuration's maps depend on, from nnU-Net's plans;
* :mod:`.packing`, :mod:`.store`, :mod:`.check`, :mod:`.build`, :mod:`.cli`: the stored files, their
  manifest and checksums, staleness, the build (``nnunet_losses_precompute``);
* :mod:`.dataset`, :mod:`.transforms`: stored maps through nnU-Net's own loader and augmentation;
* :mod:`.loader`: maps computed in the loader workers from the augmented patch (``maps="loader"``);
* :mod:`.online`: per-batch computations for kinds the loss cannot derive itself (DWCE).

The names below are the Python API (loaded on first use).
"""
from nnunet_losses._lazy import lazy_exports

_API = {
    "MapKind": "registry", "Param": "registry", "register_map_kind": "registry", "unregister_map_kind": "registry",
    "map_kind": "registry", "map_kinds": "registry", "map_kind_for_loss": "registry",
    "MapContext": "context", "MAPS_SUBFOLDER": "context",
    "pack_bits": "packing", "unpack_bits": "packing",
    "MapFileError": "store", "load_map": "store", "map_channels": "store", "read_manifest": "store",
    "manifest_path": "store", "array_fingerprint": "store", "fix_command": "store", "MANIFEST_FORMAT": "store",
    "find_missing_or_stale": "check",
    "precompute": "build", "compute_map": "build", "preprocessed_bytes": "build",
}

__all__ = sorted(_API) + ["resolve_params"]


def resolve_params(ctx, name: str, params=None) -> dict:
    """The resolved parameters (the manifest's fingerprinted dict) of map kind ``name`` for ``ctx``."""
    from .registry import map_kind
    return map_kind(name).resolve(ctx, params)


__getattr__, __dir__ = lazy_exports(__name__, _API)
