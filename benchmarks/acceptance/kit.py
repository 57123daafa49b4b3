"""The GPU kit: everything the acceptance run needs on a lent GPU machine that its image lacks, in parts
that each travel with the working tree under the size limit, and the exact sequence of calls.

A lent machine (the workplace's ``device`` tool) has Python 3.12 with torch and the packages listed in
``device_packages.txt``, no network, and takes the working tree plus the carried folders of one call up to
64 MiB. So the kit, on this machine:

1. resolves the run's dependencies (this package with its ``nnunet`` extra) for CPython 3.12 on
   manylinux x86_64 with a Python 3.12 interpreter, the device's known versions pinned (``build``);
2. keeps every distribution reachable from this package without passing through a package the device
   has (:func:`carried`), downloads its wheel, and builds one here for a source-only package;
3. splits the wheels into parts so that each part plus the tree stays under :data:`LIMIT_BYTES`
   (:func:`split_parts`, first-fit decreasing), in ``.gpu_kit/part<N>/`` (ignored by git);
4. writes the manifest ``benchmarks/acceptance/gpu_kit.json`` (wheels, sizes, parts, calls) and prints the
   plan (``plan``): one call per part, each carrying its folder and installing it with
   ``pip install --no-index --no-deps``; the last one also installs this package from the tree and runs
   the acceptance run. The installs live on the machine only while it stays warm (30 s after a call),
   so the calls go back to back; ``verify`` (first in the last call) stops early when a part is missing.

Usage::

    python -m benchmarks.acceptance.kit build [--python PATH_TO_PYTHON3.12]   # then prints the plan
    python -m benchmarks.acceptance.kit plan                                  # the plan of the manifest
    python -m benchmarks.acceptance.kit split                                 # split again: the tree grew
    python3 -m benchmarks.acceptance.kit verify                               # on the machine

``python -m benchmarks.acceptance.dry_run`` plays the plan here in a fresh Python 3.12 virtual environment
(docs/benchmarks.md, "On the first GPU").
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Sequence

from benchmarks.worker import REPO

HERE = os.path.dirname(os.path.abspath(__file__))
DEVICE_PACKAGES = os.path.join(HERE, "device_packages.txt")
MANIFEST = os.path.join(HERE, "gpu_kit.json")
KIT_DIR = ".gpu_kit"  # relative to the repository root; ignored by git
MIB = 1 << 20
#: each part plus the working tree must stay under this (the device takes 64 MiB; 4 MiB to spare)
LIMIT_BYTES = 60 * MIB
#: room left for the tree to grow between building the kit and using it (the manifest itself, a commit)
TREE_MARGIN_BYTES = 2 * MIB
#: marker environment of the device's interpreter (CPython 3.12.3, Linux x86_64)
DEVICE_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
              "implementation_version": "3.12.3", "platform_python_implementation": "CPython",
              "platform_system": "Linux", "platform_machine": "x86_64", "sys_platform": "linux", "os_name": "posix",
              "platform_release": "", "platform_version": ""}
#: the acceptance run's arguments on the device; the dry run replaces them by DRY_RUN_ARGS
DEVICE_ARGS = '--out "$OUT"'
DRY_RUN_ARGS = '--device cpu --smoke --out "$OUT"'
#: expected seconds of a call: a part's (the machine's start counted in the first) and the last one's
#: (installs, then the acceptance run's default budget of 420 s)
PART_CALL_S, FIRST_CALL_EXTRA_S, LAST_CALL_S = 60, 120, 480


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``Scikit_Image`` -> ``scikit-image``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_device_packages(path: str = DEVICE_PACKAGES) -> Dict[str, Optional[str]]:
    """``{normalized name: version or None}`` from the device's package list (``name`` or ``name==version``)."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, version = line.partition("==")
                out[normalize(name)] = version.strip() or None
    return out


# ----------------------------------------------------------------------------- what to carry
def carried(items: Sequence[dict], roots: Iterable[str], device: Dict[str, Optional[str]],
            env: Optional[dict] = None) -> List[str]:
    """Names of the distributions to carry: reachable from ``roots`` through requirements that apply on the
    device (markers evaluated with ``env``, the extras asked for), not through a package the device has.

    ``items``: pip's installation report (``pip install --dry-run --report``), ``install`` entries.

    >>> items = [{"metadata": {"name": "a", "requires_dist": ["b", "torch", "c; extra == 'x'"]}},
    ...          {"metadata": {"name": "b", "requires_dist": ["d; python_version < '3.8'"]}},
    ...          {"metadata": {"name": "torch", "requires_dist": ["e"]}},
    ...          {"metadata": {"name": "c"}}, {"metadata": {"name": "d"}}, {"metadata": {"name": "e"}}]
    >>> carried(items, ["a"], {"torch": "2.11.0"})
    ['a', 'b']
    """
    from packaging.requirements import Requirement
    env = dict(DEVICE_ENV if env is None else env)
    meta = {normalize(i["metadata"]["name"]): i["metadata"] for i in items}
    todo = [(Requirement(r).name, frozenset(Requirement(r).extras)) for r in roots]
    seen, out = set(), []
    while todo:
        name, extras = todo.pop(0)
        name = normalize(name)
        if name in device or (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name not in meta:
            raise ValueError(f"{name} is needed but missing from the resolution report")
        if name not in out:
            out.append(name)
        for spec in meta[name].get("requires_dist") or []:
            req = Requirement(spec)
            applies = req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras))
            if applies:
                todo.append((normalize(req.name), frozenset(normalize(e) for e in req.extras)))
    return out


# ----------------------------------------------------------------------------- parts
def split_parts(sizes: Dict[str, int], capacity: int) -> List[List[str]]:
    """Group files (``{name: bytes}``) into as few parts of at most ``capacity`` bytes as first-fit
    decreasing finds, largest part first; a file larger than ``capacity`` is an error.

    >>> split_parts({"big": 50, "a": 5, "b": 8, "c": 3}, capacity=60)
    [['big', 'b'], ['a', 'c']]
    """
    too_big = {n: s for n, s in sizes.items() if s > capacity}
    if too_big:
        raise ValueError(f"{', '.join(sorted(too_big))} alone exceed(s) the {capacity / MIB:.1f} MiB a part may take "
                         f"beside the working tree: make the tree smaller or carry the file on its own machine")
    parts: List[List[str]] = []
    room: List[int] = []
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        for i, r in enumerate(room):
            if sizes[name] <= r:
                parts[i].append(name)
                room[i] -= sizes[name]
                break
        else:
            parts.append([name])
            room.append(capacity - sizes[name])
    return parts


def size_problems(part_bytes: Dict[str, int], tree: int, limit: int = LIMIT_BYTES) -> List[str]:
    """Every part whose size plus the tree's reaches ``limit``, said in MiB (empty: all fit)."""
    return [f"{name}: {b / MIB:.1f} MiB + tree {tree / MIB:.1f} MiB = {(b + tree) / MIB:.1f} MiB, not under "
            f"{limit / MIB:.0f} MiB" for name, b in part_bytes.items() if b + tree >= limit]


def tree_bytes(repo: str = REPO) -> int:
    """Bytes of what the device tool sends as the working tree: tracked files and untracked files git does
    not ignore (what ``git ls-files --cached --others --exclude-standard`` lists), plus ``shared/`` if the
    checkout has one inside."""
    out = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout.decode()
    total = sum(os.path.getsize(os.path.join(repo, p)) for p in out.split("\0")
                if p and os.path.isfile(os.path.join(repo, p)) and not os.path.islink(os.path.join(repo, p)))
    shared = os.path.join(repo, "shared")
    if os.path.isdir(shared) and not os.path.islink(shared):
        total += sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(shared) for f in fs
                     if os.path.isfile(os.path.join(d, f)))
    return total


# ----------------------------------------------------------------------------- calls
def install_command(part: str) -> str:
    return f"python3 -m pip install -q --no-index --no-deps --no-cache-dir {KIT_DIR}/{part}/*.whl"


def plan_calls(parts: Sequence[str], acceptance_args: str = DEVICE_ARGS) -> List[dict]:
    """One call per part (carry its folder, install it); the last also installs this package from the tree
    (``--no-build-isolation``: setuptools is on the device), checks the installs, and runs the acceptance run
    with its output under ``$OUT``."""
    calls = []
    for i, part in enumerate(parts):
        if i < len(parts) - 1:
            cmd = f"{install_command(part)} && echo '{part} installed: make the next call now'"
            expected = PART_CALL_S + (FIRST_CALL_EXTRA_S if i == 0 else 0)
        else:
            cmd = (f"set -o pipefail; {install_command(part)} && python3 -m pip install -q --no-index --no-deps "
                   f"--no-build-isolation --no-cache-dir . && python3 -m benchmarks.acceptance.kit verify && "
                   f"PYTHONUNBUFFERED=1 python3 -m benchmarks.acceptance.gpu {acceptance_args} 2>&1 "
                   f"| tee \"$OUT/acceptance.log\"")
            expected = LAST_CALL_S + (FIRST_CALL_EXTRA_S if i == 0 else 0)
        calls.append({"carry": [f"{KIT_DIR}/{part}"], "command": cmd, "expected_s": expected,
                      "timeout_s": 600 if i == len(parts) - 1 else 240})
    return calls


def format_plan(manifest: dict, tree: int) -> str:
    parts = {p["name"]: p["bytes"] for p in manifest["parts"]}
    total = sum(c["expected_s"] for c in manifest["calls"])
    lines = [f"GPU kit: {len(manifest['wheels'])} wheels for CPython {manifest['device_python']} "
             f"({sum(parts.values()) / MIB:.1f} MiB) in {len(parts)} part(s) under {KIT_DIR}/; working tree "
             f"{tree / MIB:.1f} MiB; limit per call {LIMIT_BYTES / MIB:.0f} MiB (tree + part).", "",
             "Make these device `run` calls back to back (the machine keeps the installs only while warm, 30 s "
             "after a call),", "in the checkout that the device tool sends, after this kit was built there:", ""]
    for i, call in enumerate(manifest["calls"], 1):
        part = call["carry"][0].rsplit("/", 1)[-1]
        lines += [f"{i}. carry {json.dumps(call['carry'])}  ({parts[part] / MIB:.1f} MiB + tree = "
                  f"{(parts[part] + tree) / MIB:.1f} MiB), timeout_s {call['timeout_s']}, about "
                  f"{call['expected_s'] / 60:.0f} min:", f"   {call['command']}", ""]
    lines += [f"Expected device time: about {total / 60:.0f} min of the 15 (the first call includes the "
              "machine's start); give the machine back right after the last call.",
              "If `verify` reports a missing part, the machine went cold between calls: make all calls again.",
              "The results (JSON, Markdown summary, log) come back from $OUT; copy them into benchmarks/results/."]
    problems = size_problems(parts, tree)
    if problems:
        lines += ["", "TOO LARGE (rebuild the kit or shrink the tree): " + "; ".join(problems)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- build
def find_python312() -> str:
    """A working Python 3.12: pyenv's installs first, then ``python3.12`` on PATH (a pyenv shim may not run)."""
    cands = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))) + \
        [shutil.which("python3.12")]
    for cand in cands:
        if cand and subprocess.run([cand, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                                   capture_output=True).returncode == 0:
            return cand
    raise SystemExit("no Python 3.12 found: install one (e.g. `pyenv install 3.12`) or pass --python PATH")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip(python: str, *args: str) -> None:
    proc = subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pip {' '.join(args[:3])} ... failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def resolve(python: str, device: Dict[str, Optional[str]], work: str) -> List[dict]:
    """pip's installation report of this package with its ``nnunet`` extra for ``python`` (3.12), the
    device's known versions as constraints."""
    constraints = os.path.join(work, "device-constraints.txt")
    with open(constraints, "w") as f:
        f.writelines(f"{n}=={v}\n" for n, v in sorted(device.items()) if v)
    report = os.path.join(work, "report.json")
    _pip(python, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", report, "-c", constraints,
         f"{REPO}[nnunet]")
    with open(report) as f:
        return json.load(f)["install"]


def fetch_wheels(python: str, items: Sequence[dict], names: Sequence[str], dest: str) -> Dict[str, str]:
    """``{name: wheel path}``: downloaded when PyPI has a wheel for ``python``, else built here from source."""
    os.makedirs(dest, exist_ok=True)
    pins = {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in items}
    out = {}
    for name in names:
        spec = f"{name}=={pins[name]}"
        before = set(os.listdir(dest))
        _pip(python, "wheel", "--no-deps", "--quiet", "--wheel-dir", dest, spec)  # downloads, or builds an sdist
        new = sorted(set(os.listdir(dest)) - before)
        found = new or [f for f in os.listdir(dest) if f.endswith(".whl")
                        and normalize(f.split("-")[0]) == name and f.split("-")[1] == pins[name]]
        if len(found) != 1:
            raise SystemExit(f"expected one wheel of {spec} in {dest}, found {found}")
        out[name] = os.path.join(dest, found[0])
    return out


def split(manifest: dict, tree: int, kit: str = os.path.join(REPO, KIT_DIR)) -> dict:
    """The manifest with its wheels split again for a working tree of ``tree`` bytes, as ``build`` splits
    them, without resolving or downloading anything: for when commits grew the tree past what the parts
    leave it (the size test says so). Parts already built here (``.gpu_kit/wheels``) are regrouped too."""
    sizes = {w["file"]: w["bytes"] for w in manifest["wheels"]}
    parts = split_parts(sizes, LIMIT_BYTES - tree - TREE_MARGIN_BYTES)
    names = [f"part{i}" for i in range(1, len(parts) + 1)]
    where = {f: n for n, files in zip(names, parts) for f in files}
    if os.path.isdir(os.path.join(kit, "wheels")):
        for old in glob.glob(os.path.join(kit, "part*")):
            shutil.rmtree(old)
        for f, n in where.items():
            os.makedirs(os.path.join(kit, n), exist_ok=True)
            shutil.copy2(os.path.join(kit, "wheels", f), os.path.join(kit, n, f))
    return {**manifest, "tree_bytes_at_build": tree,
            "wheels": [{**w, "part": where[w["file"]]} for w in manifest["wheels"]],
            "parts": [{"name": n, "bytes": sum(sizes[f] for f in files)} for n, files in zip(names, parts)],
            "calls": plan_calls(names)}


def build(python: str) -> dict:
    """Resolve, fetch, split into ``.gpu_kit/part<N>/``, write and return the manifest."""
    t0 = time.perf_counter()
    device = read_device_packages()
    kit = os.path.join(REPO, KIT_DIR)
    for old in glob.glob(os.path.join(kit, "part*")):  # only the kit's own folders are replaced
        shutil.rmtree(old)
    with tempfile.TemporaryDirectory(prefix="gpu_kit_") as work:
        print(f"[kit] resolving for {python} (pip, a minute or two) ...", flush=True)
        items = resolve(python, device, work)
    ours = normalize("nnunet-losses")
    names = [n for n in carried(items, [f"{ours}[nnunet]"], device) if n != ours]  # ours: from the tree
    print(f"[kit] {len(names)} distributions to carry: {', '.join(names)}", flush=True)
    wheels = fetch_wheels(python, items, names, os.path.join(kit, "wheels"))
    py_version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                capture_output=True, text=True, check=True).stdout.strip()
    manifest = {
        "about": "written by `python -m benchmarks.acceptance.kit build`; docs/benchmarks.md, 'On the first GPU'",
        "built_with_python": py_version, "device_python": DEVICE_ENV["python_full_version"],
        "limit_bytes": LIMIT_BYTES,
        "wheels": [{"name": n, "file": os.path.basename(p), "bytes": os.path.getsize(p), "sha256": _sha256(p)}
                   for n, p in wheels.items()],
        "device_base": sorted(n for n in {normalize(i["metadata"]["name"]) for i in items} if n in device),
        "resolved": {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in items},
    }
    manifest = split(manifest, tree_bytes(), kit)  # the parts, their folders and the calls
    write_manifest(manifest)
    print(f"[kit] built in {time.perf_counter() - t0:.0f} s; manifest {os.path.relpath(MANIFEST, REPO)}", flush=True)
    return manifest


def write_manifest(manifest: dict, path: str = MANIFEST) -> None:
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def load_manifest(path: str = MANIFEST) -> dict:
    if not os.path.isfile(path):
        raise SystemExit(f"no kit manifest at {path}: run `python -m benchmarks.acceptance.kit build` first")
    with open(path) as f:
        return json.load(f)


def check_parts(manifest: dict, repo: str = REPO) -> List[str]:
    """Problems with the built parts on disk against the manifest (missing or altered wheels)."""
    problems = []
    for w in manifest["wheels"]:
        path = os.path.join(repo, KIT_DIR, w["part"], w["file"])
        if not os.path.isfile(path):
            problems.append(f"missing {os.path.relpath(path, repo)}")
        elif _sha256(path) != w["sha256"]:
            problems.append(f"{os.path.relpath(path, repo)} differs from the manifest (rebuild the kit)")
    return problems


# ----------------------------------------------------------------------------- verify (on the device)
def verify(manifest: dict) -> List[str]:
    """On the machine: every carried distribution and this package installed at the manifest's version, and
    their requirements that apply there satisfied by what is installed. Returns the problems."""
    from importlib import metadata

    from packaging.requirements import Requirement
    problems = []
    want = {w["name"]: w for w in manifest["wheels"]}
    for name, extra in [(n, "") for n in want] + [("nnunet-losses", "nnunet")]:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            part = want[name]["part"] if name in want else "the tree"
            problems.append(f"{name} is not installed (from {part}): the machine was given back between calls; "
                            "make all calls of the plan again, back to back")
            continue
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{name} needs {req}, which is not installed")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{name} needs {req}, installed {have}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acceptance.kit", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="resolve, fetch and split the wheelhouse, write the manifest, print the plan")
    b.add_argument("--python", default=None, help="a Python 3.12 interpreter (default: python3.12 or pyenv's)")
    sub.add_parser("plan", help="print the plan of the manifest")
    sub.add_parser("split", help="split the manifest's wheels again for the tree as it is now (no download)")
    sub.add_parser("verify", help="on the device: are the parts and this package installed and consistent")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        manifest = build(args.python or find_python312())
    else:
        manifest = load_manifest()
    if args.cmd == "verify":
        problems = verify(manifest)
        print("\n".join(["verify: " + p for p in problems]) or f"verify: {len(manifest['wheels'])} carried "
                                                                 "distributions and nnunet-losses installed, "
                                                                 "requirements met")
        return 1 if problems else 0
    tree = tree_bytes()
    built_here = os.path.isdir(os.path.join(REPO, KIT_DIR, "wheels"))
    if args.cmd == "split":
        manifest = split(manifest, tree)
        write_manifest(manifest)
    problems = check_parts(manifest) if built_here or args.cmd != "split" else []
    if problems:
        print("the built parts do not match the manifest: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(format_plan(manifest, tree))
    if not built_here and args.cmd == "split":
        print(f"(no {KIT_DIR}/ here: `kit build` fetches the wheels and builds these parts)")
    return 0 if not size_problems({p["name"]: p["bytes"] for p in manifest["parts"]}, tree) else 1

if __name__ == "__main__":
    raise SystemExit(main())
