"""Loss maps for nnU-Net: one registry of map kinds, stored next to nnU-Net's preprocessed data or
computed online.

* :mod:`.declaration` / :mod:`.kinds` / :mod:`.registry`: what a map kind is (parameters, computations,
  storage, resampling, loss keywords), the built-in declarations, the registry of kinds;
* :mod:`.context`: what a dataset/configuration's maps depend on, from nnU-Net's plans;
  :mod:`.auto_width`: ``"auto"`` widths from the dataset's thickness; :mod:`.request`: a request
  resolved for a dataset (:class:`ResolvedMap`);
* :mod:`.segmentations`: nnU-Net's preprocessed segmentations; :mod:`.fingerprints`: hashes;
* :mod:`.packing`, :mod:`.map_files`, :mod:`.manifest`, :mod:`.errors`, :mod:`.lock`, :mod:`.check`,
  :mod:`.build`, :mod:`.cli`: the stored files, their manifest and checksums, the errors naming the
  fix, the folder lock, staleness, the build (``nnunet_losses_precompute``);
* :mod:`.dataset`, :mod:`.transforms`: stored maps through nnU-Net's own loader and augmentation;
* :mod:`.loader`: maps computed in the loader workers from the augmented patch (``maps="loader"``);
* :mod:`.online`: per-batch computations for kinds the loss cannot derive itself (DWCE).

The names below are the Python API (loaded on first use).
"""
from nnunet_losses._lazy import lazy_exports

_API = {
    "MapKind": "registry", "Param": "registry", "register_map_kind": "registry", "unregister_map_kind": "registry",
    "map_kind": "registry", "map_kinds": "registry", "map_kind_for_loss": "registry", "ResolvedMap": "declaration",
    "MapContext": "context", "MAPS_SUBFOLDER": "context", "resolve_map": "request",
    "pack_bits": "packing", "unpack_bits": "packing",
    "MapFileError": "errors", "fix_command": "errors", "load_map": "map_files", "map_channels": "map_files",
    "read_manifest": "manifest", "manifest_path": "manifest", "MANIFEST_FORMAT": "manifest",
    "array_fingerprint": "fingerprints",
    "find_missing_or_stale": "check",
    "precompute": "build", "compute_map": "build", "preprocessed_bytes": "build",
}

__all__ = sorted(_API) + ["resolve_params"]


def resolve_params(ctx, name: str, params=None) -> dict:
    """The resolved parameters (the manifest's fingerprinted dict) of map kind ``name`` for ``ctx``."""
    from .request import resolve_map
    return resolve_map(ctx, name, params).record()


__getattr__, __dir__ = lazy_exports(__name__, _API)
