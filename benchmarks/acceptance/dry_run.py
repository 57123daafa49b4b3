"""Play the GPU kit's plan on this machine, as close to a lent GPU machine as we can get here.

1. a fresh Python 3.12 virtual environment with only what the device image has of the run's
   dependencies (the manifest's ``device_base``, at the versions the kit resolved: torch 2.11.0 among
   them) plus pip's build tools, which the image has too; none of the carried distributions may come in;
2. a copy of the working tree as the device tool sends it (tracked and untracked-not-ignored files);
3. the manifest's calls in order, each with its ``carry`` folders copied in, ``python3`` = the new
   environment and ``$OUT`` = a fresh folder; the last call's acceptance run with
   ``--device cpu --smoke`` in place of the device's arguments (nothing else changed).

Prints the size of each carry with the tree and the time of every step; exits with the last call's
code. Downloads the base from PyPI (a few GB: PyPI's torch wheels for Linux are the CUDA build, which
runs on a CPU), so it stays out of CI.

Usage: ``python -m benchmarks.acceptance.dry_run [--python PATH_TO_PYTHON3.12] [--keep]``, after
``python -m benchmarks.acceptance.kit build``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.acceptance import kit
from benchmarks.worker import REPO

#: the device image has these (device_packages.txt); the plan's last call builds this package with them
BUILD_TOOLS = ("pip", "setuptools", "wheel", "packaging")


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def copy_tree(dest: str) -> int:
    """Copy what the device tool sends (tracked and untracked-not-ignored files) into ``dest``; its bytes."""
    out = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = os.path.join(REPO, rel)
        if os.path.isfile(src) and not os.path.islink(src):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
    return _folder_bytes(dest)


def _run(cmd, **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.acceptance.dry_run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=None, help="a Python 3.12 interpreter (default: pyenv's or python3.12)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (environment, tree, $OUT)")
    args = ap.parse_args(argv)
    manifest = kit.load_manifest()
    problems = kit.check_parts(manifest)
    if problems:
        print("the built parts do not match the manifest (run the kit's build first): " + "; ".join(problems),
              file=sys.stderr)
        return 2
    parts = [p["name"] for p in manifest["parts"]]
    if kit.plan_calls(parts) != manifest["calls"]:
        print("the manifest's calls are not the plan this code makes: rebuild the kit", file=sys.stderr)
        return 2
    python = args.python or kit.find_python312()
    root = tempfile.mkdtemp(prefix="gpu_kit_dry_run_")
    steps = []  # (step, seconds, note)
    try:
        venv = os.path.join(root, "venv")
        steps.append(("fresh Python 3.12 venv", _run([python, "-m", "venv", venv]), python))
        vpy = os.path.join(venv, "bin", "python")
        base = [f"{n}=={manifest['resolved'][n]}" if n in manifest["resolved"] else n
                for n in sorted(set(manifest["device_base"]) | set(BUILD_TOOLS))]
        print(f"[dry run] base ({len(base)} packages the device image has): {' '.join(base)}", flush=True)
        steps.append(("base install (torch + the image's packages)",
                      _run([vpy, "-m", "pip", "install", "-q", *base]), f"{len(base)} requested"))
        listed = json.loads(subprocess.run([vpy, "-m", "pip", "list", "--format", "json"], capture_output=True,
                                           text=True, check=True).stdout)
        leaked = {kit.normalize(p["name"]) for p in listed} & {w["name"] for w in manifest["wheels"]}
        if leaked:
            print(f"the base brought in carried distributions ({', '.join(sorted(leaked))}): the dry run would not "
                  "show whether the parts are complete", file=sys.stderr)
            return 2
        tree_dir = os.path.join(root, "tree")
        t0 = time.perf_counter()
        tree = copy_tree(tree_dir)
        steps.append(("copy of the working tree", time.perf_counter() - t0, f"{tree / kit.MIB:.1f} MiB"))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("nnUNet_")
               and k not in ("VIRTUAL_ENV", "NNUNET_LOSSES_OPTIONS")}
        env.update(PATH=os.path.join(venv, "bin") + os.pathsep + env.get("PATH", ""), VIRTUAL_ENV=venv)
        calls = kit.plan_calls(parts, kit.DRY_RUN_ARGS)
        rc = 0
        for i, call in enumerate(calls, 1):
            carry = 0
            for path in call["carry"]:
                shutil.copytree(os.path.join(REPO, path), os.path.join(tree_dir, path), dirs_exist_ok=True)
                carry += _folder_bytes(os.path.join(REPO, path))
            out = os.path.join(root, f"out{i}")
            os.makedirs(out)
            print(f"[dry run] call {i}: carry {call['carry']} ({carry / kit.MIB:.1f} MiB + tree {tree / kit.MIB:.1f} "
                  f"MiB = {(carry + tree) / kit.MIB:.1f} MiB)\n    {call['command']}", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.run(["bash", "-c", call["command"]], cwd=tree_dir, env={**env, "OUT": out}).returncode
            steps.append((f"call {i} ({', '.join(call['carry'])}: {(carry + tree) / kit.MIB:.1f} MiB with the tree)",
                          time.perf_counter() - t0, f"exit {rc}; $OUT: {', '.join(sorted(os.listdir(out))) or '-'}"))
            if rc != 0:
                break
        print("\n[dry run] steps:")
        for name, seconds, note in steps:
            print(f"  {seconds:7.1f} s  {name}  [{note}]")
        print(f"[dry run] {'PASSED' if rc == 0 else f'FAILED (exit {rc})'}; folder {root}"
              + ("" if args.keep else " (removed)"))
        return rc
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
