"""Building stored maps: ``precompute`` computes the missing or stale maps of every case.

What each map is comes from the registry (:mod:`.registry`, :mod:`.kinds`) and :func:`.request.resolve_map`;
files from :mod:`.map_files`, the manifest from :mod:`.manifest`; what is missing or stale from :mod:`.check`. The command line is :mod:`.cli`
(``nnunet_losses_precompute``).

Safety: an interrupted run never leaves a file that passes as valid (entries about to be rebuilt
leave the manifest first; a file enters it only once it is on disk). A run holds the lock of the
maps folder (:mod:`.lock`: a process that waits for it says for which PID, and gives up after a
timeout). Up-to-date maps are skipped; ``force`` rebuilds everything requested; ``verify``
decompresses and hashes every stored file and rebuilds the ones that fail. Parameter sets of one
kind are stored side by side; :func:`prune` removes the ones no longer asked for that no running
training uses (:mod:`.usage`).

Worker processes die with the build: they ask the kernel for SIGKILL when their parent ends
(Linux ``prctl(PR_SET_PDEATHSIG)``), SIGTERM of the build ends it like Ctrl-C (finished maps are
recorded, running workers are ended), so no orphan keeps computing.

A maps folder that cannot be written (a read-only ``nnUNet_preprocessed``) is checked without the
lock: intact maps are used as they are, maps to build give one :class:`MapsFolderNotWritable`
naming the folder, the command to run where it is writable, ``NNUNET_LOSSES_MAPS_DIR`` and
``maps=online``.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import blosc2
import numpy as np

from nnunet_losses._io import TMP_MARK

from .check import check_cases
from .context import MapContext
from .declaration import ResolvedMap
from .errors import MapFileError, MapsFolderNotWritable, fix_command
from .fingerprints import array_fingerprint
from .lock import LOCK_NAME, maps_lock
from .manifest import empty_manifest, map_entries, pop_entry, read_manifest, set_entry, write_manifest
from .map_files import encode, is_temporary, map_path, write_map_file
from .registry import map_kind, requested
from .request import resolve_map
from .segmentations import read_seg
from .usage import describe_use, live_uses

__all__ = ["precompute", "prune", "stored_sets", "compute_map", "preprocessed_bytes", "die_with_parent"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
        path = map_path(maps_dir, case, rp.kind, rp.fingerprint)
        file_sha = write_map_file(arr, path, patch_size, meta)
        entries[rp.kind] = {"file": os.path.basename(path), "shape": list(arr.shape), "dtype": arr.dtype.str,
                              "size": os.path.getsize(path), "file_sha": file_sha, **meta}
    return case, {"seg": seg_info, "maps": entries}


def die_with_parent(parent_pid: int) -> None:
    """In a worker process: be killed when the parent ends (Linux; elsewhere only the check below), and
    exit now if the parent is already gone; SIGTERM and SIGINT end the worker (no inherited handler)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


@contextlib.contextmanager
def _sigterm_ends_the_build():
    """SIGTERM raises SystemExit(143) while building (main thread only), so the finished maps are
    recorded and the workers ended as on Ctrl-C; the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _not_writable(maps_dir: str) -> Optional[OSError]:
    """None when files can be created in ``maps_dir`` (created if needed), else the error that says why."""
    try:
        os.makedirs(maps_dir, exist_ok=True)
        os.close(os.open(os.path.join(maps_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o666))
        probe = os.path.join(maps_dir, f".probe{TMP_MARK}{os.getpid()}")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o666))
        os.remove(probe)
    except OSError as e:
        return e
    return None


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
               identifiers: Optional[Sequence[str]] = None, mp_context=None, log=print,
               on_build: Optional[Callable[[Dict[str, Dict[str, str]]], None]] = None) -> dict:
    """Compute the missing or stale maps of every case; returns a summary.

    ``maps``: names or ``{name: params}``; ``force`` rebuilds everything requested; ``verify`` also
    decompresses and hashes every existing file and rebuilds the ones that fail. Workers:
    ``num_processes`` (1 = in this process). If a worker dies the finished cases are recorded and a
    ``RuntimeError`` says to re-run. ``on_build(todo)`` is called, holding the lock, before anything is
    built (``todo``: ``{kind: {case: reason}}``, not called when nothing is to build: e.g. another
    process built the maps while this one waited for the lock). A folder that cannot be written is
    only checked (see the module docstring).
    """
    t0 = time.perf_counter()
    req = requested(maps)
    rps = {n: resolve_map(ctx, n, p, log=log) for n, p in req.items()}
    ids = ctx.identifiers() if identifiers is None else list(identifiers)
    error = _not_writable(ctx.maps_dir)
    if error is not None:
        return _check_read_only(ctx, req, rps, ids, force, verify, error, t0)
    with _sigterm_ends_the_build(), maps_lock(ctx.maps_dir, log=log):
        return _build(ctx, req, rps, ids, num_processes, force, verify, progress, identifiers is None, mp_context, log,
                      on_build, t0)


def _summary(ctx, req, man, ids, todo, problems, t0) -> dict:
    def size(c, n):
        e = man["cases"].get(c, {}).get("maps", {}).get(n, {})
        return sum(x.get("size", 0) for x in e.values())
    return {"built": {n: sorted(todo[n]) for n in req}, "skipped": sum(len(ids) - len(todo[n]) for n in req),
            "problems": problems, "bytes": {n: sum(size(c, n) for c in ids) for n in req},
            "seconds": time.perf_counter() - t0, "cases": len(ids)}


def _check_read_only(ctx, req, rps, ids, force, verify, error: OSError, t0) -> dict:
    """A folder that cannot be written: the check alone; maps to build are an error."""
    man = read_manifest(ctx.folder)
    todo = check_cases(ctx, rps, man, ids, verify)[0]
    if force:
        todo = {n: dict.fromkeys(ids, "forced") for n in req}
    n = {name: len(c) for name, c in todo.items() if c}
    if n:
        reasons = ", ".join(sorted({r for c in todo.values() for r in c.values()}))
        raise MapsFolderNotWritable(
            f"the stored maps {n} ({reasons}) must be built in {ctx.maps_dir}, which cannot be written "
            f"({error.strerror or error}). Build them where nnUNet_preprocessed is writable: "
            f"{fix_command(ctx.dataset_name, ctx.configuration, ctx.plans_identifier, req)}; or set "
            f"NNUNET_LOSSES_MAPS_DIR to a writable folder (maps and caches are then kept there); or train with "
            f"NNUNET_LOSSES_OPTIONS='maps=online' (maps computed per batch, nothing stored)")
    return _summary(ctx, req, man, ids, todo, {n: {} for n in req}, t0)


def _build(ctx, req, rps, ids, num_processes, force, verify, progress, every_case, mp_context, log, on_build,
           t0) -> dict:
    """The build, holding the lock."""
    from tqdm import tqdm
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
    if man.get("_converted_from") is not None:
        log(f"nnunet_losses_precompute: the maps in {ctx.maps_dir} have manifest format {man['_converted_from']} "
            f"of an older nnunet-losses; recognised and reused")
    todo, touched = check_cases(ctx, rps, man, ids, verify)
    if force:
        todo = {n: dict.fromkeys(ids, "forced") for n in req}
    if on_build is not None and any(todo.values()):
        on_build(todo)
    for c, info in touched.items():           # same content, new mtime: remember the new stat
        man["cases"][c]["seg"] = info
    obsolete = []                              # files of forgotten maps, removed once the manifest is written
    if every_case:                             # cases gone from the preprocessed folder: drop their maps
        for c in [c for c in man["cases"] if c not in set(ids)]:
            obsolete += [e["file"] for _, _, e in map_entries(man, c)]
            man["cases"].pop(c)
    for n, rp in rps.items():
        man["params"][rp.fingerprint] = rp.record()
    # forget what is about to be rebuilt before touching any file
    for n, cases in todo.items():
        for c, reason in cases.items():
            e = pop_entry(man, c, n, rps[n].fingerprint)
            if e is None:
                continue
            if reason.startswith("corrupt"):
                log(f"nnunet-losses: map file {os.path.join(ctx.maps_dir, e['file'])} is damaged ({reason}); "
                    f"rebuilding it")
            if e["file"] != os.path.basename(map_path(ctx.maps_dir, c, n, rps[n].fingerprint)):
                obsolete.append(e["file"])     # a file of an older manifest format, rebuilt under its new name
    keep = [rp.fingerprint for rp in rps.values()]
    write_manifest(ctx, man, keep)
    for f in obsolete:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(ctx.maps_dir, f))
    jobs: Dict[str, List[ResolvedMap]] = {}
    for n, cases in todo.items():
        for c in cases:
            jobs.setdefault(c, []).append(rps[n])
    problems = {n: {c: r for c, r in cs.items() if not r.startswith("missing") and r != "forced"}
                for n, cs in todo.items()}
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
        for n, sha, e in list(map_entries(man, case)):     # maps built against an older segmentation
            if e["seg_sha"] != entry["seg"]["sha"]:
                pop_entry(man, case, n, sha)
        for n, e in entry["maps"].items():
            set_entry(man, case, n, e)
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
            before = set(multiprocessing.active_children())
            ex = ProcessPoolExecutor(min(num_processes, len(order)), mp_context=mp_context or _mp_context(),
                                     initializer=die_with_parent, initargs=(os.getpid(),))
            try:
                futs = [ex.submit(build_case, ctx.folder, ctx.maps_dir, c, jobs[c], ctx.patch_size) for c in order]
                bar = tqdm(total=len(order), desc=desc, disable=not progress, unit="case")
                for fut in as_completed(futs):
                    record(*fut.result())
                    bar.update()
            except BrokenProcessPool as e:
                raise RuntimeError(
                    f"nnunet_losses_precompute was interrupted: a worker process died (killed or out of "
                    f"memory) after {len(done) + len(pending)} of {len(order)} cases. Finished maps are recorded, "
                    f"nothing half-written is ever used. Re-run to finish: "
                    f"{fix_command(ctx.dataset_name, ctx.configuration, ctx.plans_identifier, req)}") from e
            except BaseException:                 # Ctrl-C, SIGTERM: the running workers end now, with us
                for p in set(multiprocessing.active_children()) - before:
                    p.kill()
                raise
            finally:
                ex.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
        try:
            flush()
        finally:
            syncer.shutdown(wait=True)
    return _summary(ctx, req, man, ids, todo, problems, t0)


def stored_sets(ctx: MapContext) -> List[dict]:
    """Every parameter set stored for ``ctx`` (read-only): ``kind``, ``sha``, ``params``, ``cases``, ``bytes``."""
    man = read_manifest(ctx.folder)
    out: Dict[str, dict] = {}
    for c in man["cases"]:
        for kind, sha, e in map_entries(man, c):
            s = out.setdefault(sha, {"kind": kind, "sha": sha, "params": man["params"].get(sha, {}).get("params"),
                                     "cases": 0, "bytes": 0})
            s["cases"] += 1
            s["bytes"] += e.get("size", 0)
    return sorted(out.values(), key=lambda s: (s["kind"], json.dumps(s["params"], sort_keys=True)))


def prune(ctx: MapContext, maps: Union[str, Iterable[str], Mapping[str, Optional[dict]]], log=print) -> List[dict]:
    """Remove the stored parameter sets of the kinds in ``maps`` other than the ones ``maps`` asks for
    (and files no manifest entry lists), except the sets a live training uses (:func:`.usage.live_uses`:
    kept, with a log line naming the PID and host); returns the removed sets (:func:`stored_sets` rows)."""
    req = requested(maps)
    keep = {resolve_map(ctx, n, p).fingerprint for n, p in req.items()}
    error = _not_writable(ctx.maps_dir)
    if error is not None:
        raise MapsFolderNotWritable(f"cannot prune {ctx.maps_dir}: it cannot be written ({error.strerror or error})")
    with _sigterm_ends_the_build(), maps_lock(ctx.maps_dir, log=log):
        in_use = live_uses(ctx.maps_dir, remove_stale=True)
        unasked = [s for s in stored_sets(ctx) if s["kind"] in req and s["sha"] not in keep]
        removed = [s for s in unasked if s["sha"] not in in_use]
        gone = {s["sha"] for s in removed}
        man = read_manifest(ctx.folder)
        for c in list(man["cases"]):
            for kind, sha, _ in list(map_entries(man, c)):
                if sha in gone:
                    pop_entry(man, c, kind, sha)
        write_manifest(ctx, man)
        listed = {e["file"] for c in man["cases"] for _, _, e in map_entries(man, c)}
        for f in os.listdir(ctx.maps_dir):
            if f.endswith(".b2nd") and f not in listed:
                os.remove(os.path.join(ctx.maps_dir, f))
        for s in removed:
            log(f"nnunet_losses_precompute: removed the {s['kind']} maps {s['params']} ({s['cases']} cases, "
                f"{s['bytes']} bytes)")
        for s in unasked:
            if s["sha"] in in_use:
                log(f"nnunet_losses_precompute: kept the {s['kind']} maps {s['params']} ({s['sha']}): in use by "
                    f"{describe_use(in_use[s['sha']])}")
    return removed


def preprocessed_bytes(ctx: MapContext, identifiers: Optional[Sequence[str]] = None) -> int:
    """Size of nnU-Net's own files (data + seg + pkl) of the configuration folder."""
    ids = ctx.identifiers() if identifiers is None else identifiers
    return sum(os.path.getsize(os.path.join(ctx.folder, c + s)) for c in ids for s in (".b2nd", "_seg.b2nd", ".pkl")
               if os.path.isfile(os.path.join(ctx.folder, c + s)))
