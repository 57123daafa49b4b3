"""Building stored maps: ``precompute`` computes the missing or stale maps of every case.

What each map is comes from the registry (:mod:`.registry`, :mod:`.kinds`) and :func:`.request.resolve_map`;
files from :mod:`.map_files`, the manifest from :mod:`.manifest`; what is missing or stale from :mod:`.check`. The command line is :mod:`.cli`
(``nnunet_losses_precompute``).

Safety: an interrupted run never leaves a file that passes as valid (entries about to be rebuilt
leave the manifest first; a file enters it only once it is on disk). A run holds a lock on the
maps folder. Up-to-date maps are skipped; ``force`` rebuilds everything requested; ``verify``
decompresses and hashes every stored file and rebuilds the ones that fail.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import blosc2
import numpy as np

from .check import check_cases
from .context import MapContext
from .declaration import ResolvedMap
from .errors import MapFileError, fix_command
from .fingerprints import array_fingerprint
from .lock import maps_lock
from .manifest import empty_manifest, read_manifest, write_manifest
from .map_files import encode, is_temporary, map_path, write_map_file
from .registry import map_kind, requested
from .request import resolve_map
from .segmentations import read_seg

__all__ = ["precompute", "compute_map", "preprocessed_bytes"]


def compute_map(seg: np.ndarray, rp: ResolvedMap) -> np.ndarray:
    """The array stored for one case: ``seg`` (1, *sp) nnU-Net segmentation, ``rp`` the resolved map
    (:func:`.request.resolve_map`). nnU-Net marks voxels outside the nonzero crop mask with -1 and its
    training transforms turn them into background (``RemoveLabelTansform(-1, 0)``): so do the maps."""
    lab = np.asarray(seg)[0]
    lab = np.where(lab < 0, 0, lab)
    return encode(rp.kind, map_kind(rp.kind).compute(lab, rp))


def fsync_files(paths: Sequence[str]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def build_case(folder: str, maps_dir: str, case: str, rps: List[ResolvedMap], patch_size: Sequence[int]) -> Tuple[str, dict]:
    """Worker: compute and write the requested maps of one case; returns the manifest entries."""
    blosc2.set_nthreads(1)
    seg, seg_info = read_seg(folder, case)
    entries = {}
    for rp in rps:
        arr = compute_map(seg, rp)
        meta = {"map": rp.kind, "params_sha": rp.fingerprint, "seg_sha": seg_info["sha"],
                "sha": array_fingerprint(arr)}
        path = map_path(maps_dir, case, rp.kind)
        file_sha = write_map_file(arr, path, patch_size, meta)
        entries[rp.kind] = {"file": os.path.basename(path), "shape": list(arr.shape), "dtype": arr.dtype.str,
                              "size": os.path.getsize(path), "file_sha": file_sha, **meta}
    return case, {"seg": seg_info, "maps": entries}


def _mp_context():
    """fork is cheap (workers need no torch); spawn once CUDA is initialised in this process (a trainer)."""
    import multiprocessing as mp
    torch = sys.modules.get("torch")
    cuda = torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_initialized()
    if cuda or "fork" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    return mp.get_context("fork")


def precompute(ctx: MapContext, maps: Union[str, Iterable[str], Mapping[str, Optional[dict]]],
               num_processes: int = 1, force: bool = False, verify: bool = False, progress: bool = True,
               identifiers: Optional[Sequence[str]] = None, mp_context=None, log=print) -> dict:
    """Compute the missing or stale maps of every case; returns a summary.

    ``maps``: names or ``{name: params}``; ``force`` rebuilds everything requested; ``verify`` also
    decompresses and hashes every existing file and rebuilds the ones that fail. Workers:
    ``num_processes`` (1 = in this process). If a worker dies the finished cases are recorded and a
    ``RuntimeError`` says to re-run.
    """
    from tqdm import tqdm
    t0 = time.perf_counter()
    req = requested(maps)
    rps = {n: resolve_map(ctx, n, p) for n, p in req.items()}
    ids = ctx.identifiers() if identifiers is None else list(identifiers)
    os.makedirs(ctx.maps_dir, exist_ok=True)
    with maps_lock(ctx.maps_dir):
        for f in os.listdir(ctx.maps_dir):       # leftovers of an interrupted run
            if is_temporary(f):
                os.remove(os.path.join(ctx.maps_dir, f))
        try:
            man = read_manifest(ctx.folder)
        except MapFileError as e:               # our own index: rebuild it (every map is recomputed)
            log(f"nnunet_losses_precompute: {e}; starting a new manifest")
            man = empty_manifest()
        if man.get("_previous_format") is not None:
            log(f"nnunet_losses_precompute: the maps in {ctx.maps_dir} were made by an older nnunet-losses "
                f"(manifest format {man['_previous_format']}); rebuilding them")
        todo, touched = check_cases(ctx, rps, man, ids, verify)
        if force:
            todo = {n: dict.fromkeys(ids, "forced") for n in req}
        for c, info in touched.items():           # same content, new mtime: remember the new stat
            man["cases"][c]["seg"] = info
        if identifiers is None:                   # cases gone from the preprocessed folder: drop their maps
            for c in [c for c in man["cases"] if c not in set(ids)]:
                for e in man["cases"].pop(c).get("maps", {}).values():
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(ctx.maps_dir, e["file"]))
        for n, rp in rps.items():
            man["params"][rp.fingerprint] = rp.record()
        # forget what is about to be rebuilt before touching any file
        for n, cases in todo.items():
            for c in cases:
                man["cases"].get(c, {}).get("maps", {}).pop(n, None)
        keep = [rp.fingerprint for rp in rps.values()]
        write_manifest(ctx, man, keep)
        jobs: Dict[str, List[dict]] = {}
        for n, cases in todo.items():
            for c in cases:
                jobs.setdefault(c, []).append(rps[n])
        problems = {n: {c: r for c, r in cs.items() if not r.startswith("missing") and r != "forced"}
                    for n, cs in todo.items()}
        for n, cs in problems.items():
            for c, r in cs.items():
                if r.startswith("corrupt"):
                    log(f"nnunet_losses_precompute: {map_path(ctx.maps_dir, c, n)} {r}; rebuilding")
        n_skipped = sum(len(ids) - len(todo[n]) for n in req)
        done: List[str] = []
        last_flush = time.monotonic()
        # a file enters the manifest only once it is on disk (fsync), in a thread, off the critical path
        syncer = ThreadPoolExecutor(1, thread_name_prefix="nnunet_losses_fsync")
        pending: List[tuple] = []

        def record(case, entry):
            paths = [os.path.join(ctx.maps_dir, e["file"]) for e in entry["maps"].values()]
            pending.append((syncer.submit(fsync_files, paths), case, entry))
            if time.monotonic() - last_flush > 2.0:
                flush()

        def flush():
            nonlocal last_flush
            while pending:
                fut, case, entry = pending.pop(0)
                fut.result()
                apply(case, entry)
            write_manifest(ctx, man, keep)
            last_flush = time.monotonic()

        def apply(case, entry):
            c = man["cases"].setdefault(case, {"maps": {}})
            c["seg"] = entry["seg"]
            c.setdefault("maps", {})
            for n, e in list(c["maps"].items()):     # maps built against an older segmentation
                if e["seg_sha"] != entry["seg"]["sha"]:
                    c["maps"].pop(n)
            c["maps"].update(entry["maps"])
            done.append(case)

        order = sorted(jobs)
        desc = f"nnunet_losses_precompute {','.join(req)}"
        bar = None
        try:
            if num_processes <= 1 or len(order) <= 1:
                bar = tqdm(total=len(order), desc=desc, disable=not progress, unit="case")
                for c in order:
                    record(*build_case(ctx.folder, ctx.maps_dir, c, jobs[c], ctx.patch_size))
                    bar.update()
            else:
                ex = ProcessPoolExecutor(min(num_processes, len(order)), mp_context=mp_context or _mp_context())
                try:
                    futs = [ex.submit(build_case, ctx.folder, ctx.maps_dir, c, jobs[c], ctx.patch_size) for c in order]
                    bar = tqdm(total=len(order), desc=desc, disable=not progress, unit="case")
                    for fut in as_completed(futs):
                        record(*fut.result())
                        bar.update()
                except BrokenProcessPool as e:
                    raise RuntimeError(
                        f"nnunet_losses_precompute was interrupted: a worker process died (killed or out of "
                        f"memory) after {len(done) + len(pending)} of {len(order)} cases. Finished maps are recorded, nothing "
                        f"half-written is ever used. Re-run to finish: "
                        f"{fix_command(ctx.dataset_name, ctx.configuration, ctx.plans_identifier, req)}") from e
                finally:
                    ex.shutdown(wait=True, cancel_futures=True)
        finally:
            if bar is not None:
                bar.close()
            try:
                flush()
            finally:
                syncer.shutdown(wait=True)
    sizes = {n: sum(man["cases"].get(c, {}).get("maps", {}).get(n, {}).get("size", 0) for c in ids) for n in req}
    return {"built": {n: sorted(todo[n]) for n in req}, "skipped": n_skipped, "problems": problems,
            "bytes": sizes, "seconds": time.perf_counter() - t0, "cases": len(ids)}


def preprocessed_bytes(ctx: MapContext, identifiers: Optional[Sequence[str]] = None) -> int:
    """Size of nnU-Net's own files (data + seg + pkl) of the configuration folder."""
    ids = ctx.identifiers() if identifiers is None else identifiers
    return sum(os.path.getsize(os.path.join(ctx.folder, c + s)) for c in ids for s in (".b2nd", "_seg.b2nd", ".pkl")
               if os.path.isfile(os.path.join(ctx.folder, c + s)))
