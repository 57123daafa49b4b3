"""``nnunet_losses_precompute``: build the stored maps of a preprocessed dataset.

    nnunet_losses_precompute -d DATASET -c CONFIG [-p PLANS] --maps contour dwce osc [-np N] [--force] [--verify]
                             [--prune]

The kinds, their parameters, flags and defaults come from the registry (:mod:`.registry`): the
defaults are the ones the trainers use, so maps built with no parameter flag are reused as they are
by every trainer with stored maps. Several parameter sets of a kind are stored side by side;
``--verify`` also lists them (asked for, in use by a running training, or unused), ``--prune``
removes those of the given kinds that the command does not ask for and no running training uses
(:mod:`.usage`). A folder that cannot be written is verified without writing anything.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .build import precompute, preprocessed_bytes, prune, stored_sets
from .context import MapContext
from .registry import map_kinds
from .request import resolve_map
from .usage import describe_use, live_uses

__all__ = ["main", "build_parser"]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def _list_sets(ctx: MapContext, req: dict) -> None:
    """One line per stored parameter set: asked for by this command, in use by a running training (by
    whom), or unused (``--prune`` removes those of the kinds asked for)."""
    asked = {resolve_map(ctx, n, p).fingerprint for n, p in req.items()}
    in_use = live_uses(ctx.maps_dir)
    for s in stored_sets(ctx):
        marks = ["asked for"] if s["sha"] in asked else []
        if s["sha"] in in_use:
            marks.append(f"in use by {describe_use(in_use[s['sha']])}")
        if not marks:
            marks.append("unused: --prune removes it" if s["kind"] in req else "unused, other kind")
        print(f"stored: {s['kind']} {s['params']} ({s['sha']}): {s['cases']} cases, {_human(s['bytes'])} "
              f"[{'; '.join(marks)}]")


def build_parser(default_num_processes: int = 8) -> argparse.ArgumentParser:
    kinds = map_kinds()
    ap = argparse.ArgumentParser(
        prog="nnunet_losses_precompute",
        description="Precompute the loss maps (" + "; ".join(f"{k.name}: {k.description}" for k in kinds.values())
                    + ") next to nnU-Net's preprocessed data, in its blosc2 format.")
    ap.add_argument("-d", required=True, help="dataset name or id, as for nnUNetv2_train")
    ap.add_argument("-c", required=True, nargs="+", help="configuration(s), e.g. 3d_fullres 2d")
    ap.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    ap.add_argument("--maps", required=True, nargs="+", choices=list(kinds), help="maps to compute")
    ap.add_argument("-np", type=int, default=default_num_processes,
                    help=f"worker processes ({default_num_processes})")
    ap.add_argument("--force", action="store_true", help="rebuild every requested map")
    ap.add_argument("--verify", action="store_true",
                    help="decompress and hash every stored map, rebuild the ones that fail")
    ap.add_argument("--prune", action="store_true",
                    help="remove the stored parameter sets of these maps other than the ones asked for here "
                         "(e.g. of an earlier width study), except those a running training uses; other kinds "
                         "are kept")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = ap.add_argument_group("map parameters (the trainers' defaults; stored maps with other values are stale "
                              "and rebuilt)")
    for kind in kinds.values():
        for p in kind.params:
            g.add_argument(p.flag, dest=f"{kind.name}__{p.name}", type=p.type, default=p.default, choices=p.choices,
                           metavar=None if p.choices else p.name.upper(),
                           help=f"{kind.name}: {p.help} ({p.default})")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    from nnunetv2.configuration import default_num_processes
    a = build_parser(default_num_processes).parse_args(argv)
    kinds = map_kinds()
    req = {n: {p.name: getattr(a, f"{n}__{p.name}") for p in kinds[n].params} for n in dict.fromkeys(a.maps)}
    status = 0
    for config in a.c:
        try:
            ctx = MapContext.from_ids(a.d, config, a.p)
            res = precompute(ctx, req, num_processes=a.np, force=a.force, verify=a.verify, progress=not a.no_progress)
            if a.prune:
                prune(ctx, req)
        except (ValueError, RuntimeError) as e:
            print(f"nnunet_losses_precompute: error: {e}", file=sys.stderr)
            status = 1
            continue
        built = {n: len(c) for n, c in res["built"].items()}
        pre = preprocessed_bytes(ctx)
        total = sum(res["bytes"].values())
        print(f"{ctx.dataset_name} {config}: {res['cases']} cases, built {built}, {res['skipped']} up to date, "
              f"{res['seconds']:.1f} s; maps {_human(total)} = {100.0 * total / max(pre, 1):.1f}% of the "
              f"preprocessed data ({_human(pre)}) in {ctx.maps_dir}")
        if a.verify:
            bad = sum(r.startswith("corrupt") for v in res["problems"].values() for r in v.values())
            print(f"verify: {bad} map file(s) failed and were rebuilt" if bad else "verify: all map files OK")
            _list_sets(ctx, req)
    return status


if __name__ == "__main__":
    sys.exit(main())
