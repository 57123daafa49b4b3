"""Learning curves of study runs: nnU-Net's per-epoch log to a CSV, and the CSV to a plot.

    # one CSV row per (dataset, epoch), from nnU-Net's training_log_*.txt of each pilot run
    python -m benchmarks.studies.pilot_curve extract \\
        Hippocampus=/work/evidence_runs/hippo/pilot/results/nnU-Net/seed_0/Dataset504_Hippocampus/nnUNetTrainer_study__nnUNetPilotPlans__2d/fold_0 \\
        -o docs/data/pilot_curves.csv
    python -m benchmarks.studies.pilot_curve plot docs/data/pilot_curves.csv -o docs/img/pilot_curves.png

Columns: ``dataset, epoch, train_loss, val_loss, pseudo_dice`` (nnU-Net's pseudo Dice of the epoch, mean over the
foreground classes), ``ema_pseudo_dice`` (nnU-Net's exponential moving average, ``0.9 ema + 0.1 x``, the value
it picks ``checkpoint_best`` by and ``--halving`` screens by), ``epoch_time_s`` and ``pseudo_dice_per_class``.
Beside it, ``<out>_final.csv``: nnU-Net's final validation Dice of each run that has one (``validation/summary.json``:
``foreground_mean`` and per class).
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
from typing import Dict, List

COLUMNS = ["dataset", "epoch", "train_loss", "val_loss", "pseudo_dice", "ema_pseudo_dice", "epoch_time_s",
           "pseudo_dice_per_class"]
_EPOCH = re.compile(r": Epoch (\d+)\s*$")
_VALUE = re.compile(r": (train_loss|val_loss) (-?[\d.]+(?:e-?\d+)?)")
_DICE = re.compile(r": Pseudo dice \[(.*)\]")
_TIME = re.compile(r": Epoch time: ([\d.]+) s")
_NUMBER = re.compile(r"(?:np\.float32\()?(-?[\d.]+(?:e-?\d+)?|nan)\)?")


def parse_log(text: str) -> List[Dict[str, float]]:
    """One dict per epoch that finished (has its epoch time) in an nnU-Net training log."""
    rows, cur = [], None
    for line in text.splitlines():
        if m := _EPOCH.search(line):
            cur = {"epoch": int(m.group(1))}
        elif cur is None:
            continue
        elif m := _VALUE.search(line):
            cur[m.group(1)] = float(m.group(2))
        elif m := _DICE.search(line):
            cur["per_class"] = [float(x) for x in _NUMBER.findall(m.group(1))]
        elif m := _TIME.search(line):
            cur["epoch_time_s"] = float(m.group(1))
            rows.append(cur)
            cur = None
    ema = None
    for r in rows:
        per = r.get("per_class", [])
        r["pseudo_dice"] = sum(per) / len(per) if per else float("nan")
        ema = r["pseudo_dice"] if ema is None else 0.9 * ema + 0.1 * r["pseudo_dice"]
        r["ema_pseudo_dice"] = ema
    return rows


def fold_log(fold_dir: str) -> str:
    """The text of a run's training logs (all of them, in order: a resumed run writes one per start)."""
    logs = sorted(glob.glob(os.path.join(fold_dir, "training_log_*.txt")))
    if not logs:
        raise ValueError(f"no training_log_*.txt in {fold_dir}: give nnU-Net's fold folder of a run")
    return "\n".join(open(p).read() for p in logs)


def final_validation(fold_dir: str):
    """nnU-Net's final validation Dice of a run: (foreground mean, {class: Dice}), or None before it has run."""
    path = os.path.join(fold_dir, "validation", "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return summary["foreground_mean"]["Dice"], {k: v["Dice"] for k, v in summary["mean"].items()}


def extract(runs: Dict[str, str], out: str) -> int:
    finals = []
    for name, fold_dir in runs.items():
        final = final_validation(fold_dir)
        if final is not None:
            finals.append({"dataset": name, "validation_dice": f"{final[0]:.4f}",
                           "validation_dice_per_class": " ".join(f"{k}:{v:.4f}" for k, v in sorted(final[1].items()))})
    if finals:
        with open(os.path.splitext(out)[0] + "_final.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["dataset", "validation_dice", "validation_dice_per_class"])
            w.writeheader()
            w.writerows(finals)
    rows = []
    for name, fold_dir in runs.items():
        for r in parse_log(fold_log(fold_dir)):
            rows.append({"dataset": name, "epoch": r["epoch"], "train_loss": r.get("train_loss", ""),
                         "val_loss": r.get("val_loss", ""), "pseudo_dice": f"{r['pseudo_dice']:.4f}",
                         "ema_pseudo_dice": f"{r['ema_pseudo_dice']:.4f}", "epoch_time_s": r["epoch_time_s"],
                         "pseudo_dice_per_class": " ".join(f"{x:.4f}" for x in r.get("per_class", []))})
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def plot(csv_path: str, out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        e = [int(r["epoch"]) + 1 for r in mine]
        line, = ax.plot(e, [float(r["pseudo_dice"]) for r in mine], "o", ms=3, alpha=0.5)
        ax.plot(e, [float(r["ema_pseudo_dice"]) for r in mine], "-", color=line.get_color(), label=f"{name} (EMA)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation pseudo Dice (foreground mean)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Pilot: nnU-Net's default trainer, fold 0, seed 0 (dots: per epoch)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.studies.pilot_curve", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="nnU-Net training logs -> CSV")
    e.add_argument("runs", nargs="+", help="NAME=FOLD_DIR (nnU-Net's fold folder of a run)")
    e.add_argument("-o", "--out", required=True)
    q = sub.add_parser("plot", help="CSV -> PNG")
    q.add_argument("csv")
    q.add_argument("-o", "--out", required=True)
    a = p.parse_args(argv)
    if a.cmd == "extract":
        bad = [r for r in a.runs if "=" not in r]
        if bad:
            p.error(f"give each run as NAME=FOLD_DIR, not {bad}")
        print(extract(dict(r.split("=", 1) for r in a.runs), a.out), "epochs ->", a.out)
    else:
        plot(a.csv, a.out)
        print(a.out)


if __name__ == "__main__":
    main()
