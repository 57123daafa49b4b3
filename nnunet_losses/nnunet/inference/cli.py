"""``nnunet_losses_predict``: ``nnUNetv2_predict`` with a choice of sliding-window fusion.

Usage: every argument of ``nnUNetv2_predict`` (or, with ``-m MODEL_FOLDER``, of
``nnUNetv2_predict_from_modelfolder``), plus

- ``--fusion {gaussian,bspline,constant}`` (default ``bspline``): the importance map that weighs the
  overlapping patch predictions (see ``nnunet_losses.nnunet.inference.predictor``). ``gaussian`` gives exactly
  ``nnUNetv2_predict``'s output.
- ``--step_size S`` (same as nnU-Net's ``-step_size``, default 0.5): the stride between patches as a
  fraction of the patch size, in (0, 1]; smaller = more overlap, slower.

nnU-Net's own entry point parses and runs everything (same arguments, defaults and outputs); the only
change is that it builds an ``nnUNetFusionPredictor`` instead of an ``nnUNetPredictor``.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial

from nnunetv2.inference import predict_from_raw_data as _nnunet

from nnunet_losses.nnunet.inference.predictor import FUSIONS, nnUNetFusionPredictor, rebind_globals


def _step_size(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"is a fraction of the patch size and must lie in (0, 1], got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet_losses_predict", add_help=False, allow_abbrev=False,
        description="nnUNetv2_predict with a choice of sliding-window fusion. Takes every nnUNetv2_predict "
                    "argument (listed below), or with -m MODEL_FOLDER those of nnUNetv2_predict_from_modelfolder, "
                    "plus:")
    parser.add_argument("--fusion", choices=FUSIONS, default="bspline",
                        help="importance map weighing overlapping patch predictions: 'gaussian' (nnU-Net's, gives "
                             "exactly nnUNetv2_predict's output), 'bspline' (cubic B-spline weighted soft voting, "
                             "Hashemi et al. 2018; default), 'constant' (plain average)")
    parser.add_argument("--step_size", "-step_size", type=_step_size, default=0.5,
                        help="stride between patches as a fraction of the patch size, in (0, 1]. Default: 0.5")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    ours, rest = parser.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        parser.print_help()
        print()
    entry = _nnunet.predict_entry_point_modelfolder if "-m" in rest else _nnunet.predict_entry_point
    factory = partial(nnUNetFusionPredictor, fusion=ours.fusion)
    run = rebind_globals(entry, nnUNetPredictor=factory)
    saved = sys.argv
    sys.argv = ["nnunet_losses_predict", *rest, "-step_size", repr(ours.step_size)]
    try:
        run()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()
