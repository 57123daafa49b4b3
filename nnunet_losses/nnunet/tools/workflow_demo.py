"""``nnunet_losses_demo``: the whole nnU-Net workflow on a generated dataset, on the CPU, in minutes.

    nnunet_losses_demo [-o demo_output] [--trainers nnUNetTrainer nnUNetTrainerCWCD ...]
                       [--epochs 10] [--iterations 40] [--quick] [--overwrite]

Steps, all with nnU-Net's and this package's real commands, everything inside the output folder:

1. generate a 2D dataset in nnU-Net's raw format (:func:`make_imbalance_dataset_2d`): a large
   ``organ`` (about 20 % of the image), one medium ``nodule`` (about 1 %) and a few tiny
   ``lesions`` (radius 1-2 px, about 0.3 % at 96x96), training cases in ``imagesTr`` and held-out cases in
   ``imagesTs``/``labelsTs``;
2. ``nnUNetv2_plan_and_preprocess`` (2d), then the plans shrunk for the CPU
   (:mod:`nnunet_losses.nnunet.testing.tiny_plans`: ``nnUNetTinyPlans``, same preprocessed data) and a
   one-fold split;
3. ``nnunet_losses_precompute --maps contour``: the contour maps stored next to the preprocessed data;
4. ``nnUNetv2_train`` of every trainer, two at a time (two cores), as short-epoch subclasses
   ``<trainer>_demo`` written into ``<output>/trainers/`` and found through ``nnUNet_extTrainer``
   (the package's trainers themselves are unchanged; only ``num_epochs``, the iterations per
   epoch and a seed differ, so a rerun gives the same table);
5. ``nnUNetv2_predict`` of the held-out cases with each trained model;
6. ``nnunet_losses_compare`` against ``labelsTs``: Markdown, CSV and PNGs written; the Dice and
   recall tables printed with the paths of the plots.

Logs of every command are in ``<output>/logs/``. The output folder must be new or empty unless
``--overwrite`` is given (which removes only the demo's own sub-folders).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

from nnunet_losses._io import atomic_write_json
from nnunet_losses.nnunet.testing.short_schedule import Schedule, short_names, write_short_schedule_trainers
from nnunet_losses.nnunet.tools.commands import command_path
from nnunet_losses.nnunet.tools.demo_data import DATASET_ID, DATASET_NAME, label_fractions, make_imbalance_dataset_2d

__all__ = ["make_imbalance_dataset_2d", "label_fractions", "run_demo", "main", "DEFAULT_TRAINERS", "ALL_MAIN_TRAINERS"]

PLANS = "nnUNetTinyPlans"
CONFIG = "2d"
DEFAULT_TRAINERS = ["nnUNetTrainer", "nnUNetTrainerCWCD", "nnUNetTrainerCombo", "nnUNetTrainerAsymFbeta",
                    "nnUNetTrainerCETopKDice", "nnUNetTrainerOsC"]
ALL_MAIN_TRAINERS = DEFAULT_TRAINERS
QUICK_TRAINERS = ["nnUNetTrainer", "nnUNetTrainerCWCD"]
#: 400 iterations per trainer: at 200 the small structures were found by no loss in one run (seed 0) and by one or
#: two losses in unseeded runs; 6 x 400 iterations cost about 6-7 CPU-minutes in all
DEFAULT_EPOCHS, DEFAULT_ITERATIONS = 10, 40
#: tables printed at the end (summary.md holds every metric)
PRINTED_METRICS = ("Dice", "Recall")
#: sub-folders the demo owns inside the output folder (the only things --overwrite removes)
OWNED = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "trainers", "predictions", "compare", "logs",
         "demo_summary.json")
SUFFIX = "_demo"


# ------------------------------------------------------------------------------------------ helpers
def _write_stderr(chunk: bytes) -> None:
    buf = getattr(sys.stderr, "buffer", None)
    if buf is not None:
        buf.write(chunk)
    else:  # a replaced sys.stderr (e.g. captured by pytest)
        sys.stderr.write(chunk.decode(errors="replace"))
    sys.stderr.flush()


class _Run:
    """Run a command; log stdout and stderr to ``<logs>/<name>.log``; call ``on_line`` for every
    stdout line; with ``show_progress`` also relay stderr (where nnU-Net's and our tqdm bars go) to
    the terminal as it comes, so a sequential step shows its own progress bar."""

    def __init__(self, logs: str):
        self.logs = logs

    def __call__(self, name: str, cmd: Sequence[str], env: Dict[str, str], on_line=None,
                 show_progress: bool = False) -> float:
        t0 = time.time()
        log_path = os.path.join(self.logs, f"{name}.log")
        lock = threading.Lock()
        with open(log_path, "wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            proc = subprocess.Popen(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

            def relay_stderr() -> None:  # raw chunks: tqdm redraws with '\r', not '\n'
                while True:
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    if not chunk:
                        return
                    with lock:
                        log.write(chunk)
                    if show_progress:
                        _write_stderr(chunk)

            err = threading.Thread(target=relay_stderr, daemon=True)
            err.start()
            for raw in proc.stdout:
                with lock:
                    log.write(raw)
                if on_line is not None:
                    on_line(raw.decode(errors="replace"))
            rc = proc.wait()
            err.join()
        if rc != 0:
            with open(log_path, errors="replace") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"step '{name}' failed (exit code {rc}): {' '.join(cmd)}\n--- last lines of "
                               f"{log_path} ---\n{tail}")
        return time.time() - t0


def _md_sections(markdown: str, titles: Sequence[str]) -> List[str]:
    """The ``## <title> (...)`` sections of the compare tool's summary.md, in the order of ``titles``."""
    sections = {}
    for block in markdown.split("\n## ")[1:]:
        heading = block.split("\n", 1)[0]
        sections[heading.split(" (", 1)[0]] = ("## " + block).strip()
    return [sections[t] for t in titles if t in sections]


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of every finished command it ran (and their workers)."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # not available on this platform
        return None


def _prepare_output(out: str, overwrite: bool) -> None:
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise ValueError(f"{out} exists and is not empty: choose another folder with -o, or pass --overwrite "
                             f"(removes only the demo's own entries: {', '.join(OWNED)})")
        for entry in OWNED:
            p = os.path.join(out, entry)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
    elif os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{out} exists and is not a folder: choose another output folder with -o")
    os.makedirs(out, exist_ok=True)


def _short(trainer: str) -> str:
    return "nnUNet" if trainer == "nnUNetTrainer" else trainer.replace("nnUNetTrainer", "")


# --------------------------------------------------------------------------------------------- demo
def _nnunet_finds_trainer(name: str) -> bool:
    """Whether ``nnUNetv2_train -tr name`` finds the trainer: nnU-Net's default trainer, or a class of
    that name in the folders of ``nnUNet_extTrainer`` (where the nnunet-losses trainers register)."""
    if name == "nnUNetTrainer":
        return True
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    for folder in [f for f in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if f.strip()]:
        if os.path.isdir(folder) and recursive_find_python_class(folder, name, None, base_folder=folder, cleanup_imports_from_base_folder=True) is not None:
            return True
    return False


class _Steps:
    """One demo run: its folders, environment, command runner, and the wall / CPU time of each step."""

    N_STEPS = 6

    def __init__(self, out: str, progress: bool):
        self.paths = {k: os.path.join(out, k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results",
                                                       "trainers", "predictions", "compare", "logs")}
        for k, p in self.paths.items():
            if k != "compare":
                os.makedirs(p, exist_ok=True)
        self.run = _Run(self.paths["logs"])
        self.env, self.progress = _demo_environment(self.paths), progress
        self.timings: Dict[str, float] = {}
        self.cpu: Dict[str, float] = {}
        self.lock = threading.Lock()

    def start(self, i: int, text: str) -> tuple:
        print(f"\n[{i}/{self.N_STEPS}] {text}", flush=True)
        return time.time(), _cpu_seconds()

    def mark(self, key: str, t0: tuple) -> None:
        self.timings[key], self.cpu[key] = time.time() - t0[0], _cpu_seconds() - t0[1]

    def bar(self, total: int, desc: str, unit: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=not self.progress, file=sys.stdout, dynamic_ncols=True)

    @staticmethod
    def parallel(fn, items: Sequence[str], jobs: int, bar) -> Dict[str, object]:
        """``{item: fn(item)}``, ``jobs`` at a time; closes the progress bar."""
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            out = dict(zip(items, ex.map(fn, items)))
        bar.close()
        return out


def _check_arguments(trainers: Sequence[str], epochs: int, iterations: int, jobs: int) -> None:
    bad = [t for t in trainers if not _nnunet_finds_trainer(t)]
    if bad:
        raise ValueError(f"unknown trainer(s) {bad}: nnU-Net cannot find them (its own trainers and the folders in "
                         f"nnUNet_extTrainer); the demo's defaults are {DEFAULT_TRAINERS}")
    if len(set(trainers)) != len(trainers):
        raise ValueError(f"a trainer is listed twice: {trainers}")
    if epochs < 1 or iterations < 1 or jobs < 1:
        raise ValueError(f"epochs, iterations and jobs must be >= 1, got {epochs}, {iterations}, {jobs}")


def _demo_environment(paths: Dict[str, str]) -> Dict[str, str]:
    """nnU-Net's folders inside the output, augmentation in the main process, one thread, our trainers' folder."""
    env = dict(os.environ)
    env.pop("NNUNET_LOSSES_OPTIONS", None)
    env.update({"nnUNet_raw": paths["nnUNet_raw"], "nnUNet_preprocessed": paths["nnUNet_preprocessed"],
                "nnUNet_results": paths["nnUNet_results"], "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1",
                "OMP_NUM_THREADS": "1", "nnUNet_compile": "0", "PYTHONWARNINGS": "ignore",
                "nnUNet_extTrainer": os.pathsep.join([paths["trainers"]] + [
                    p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p])})
    return env


def _step_dataset(s: _Steps, num_train: int, num_test: int, size: int, seed: int) -> str:
    t = s.start(1, f"Generating Dataset{DATASET_ID:03d}_{DATASET_NAME}: {num_train} training + {num_test} held-out "
                   f"{size}x{size} images with structures of very different sizes")
    folder = make_imbalance_dataset_2d(s.paths["nnUNet_raw"], num_train=num_train, num_test=num_test, size=size,
                                       seed=seed)
    s.mark("dataset", t)
    frac = label_fractions(os.path.join(folder, "labelsTr"), 4)
    print(f"      {folder}\n      pixels: organ {frac[1]:.1f} %, nodule {frac[2]:.1f} %, lesion {frac[3]:.2f} % "
          f"(background {frac[0]:.1f} %)", flush=True)
    return folder


def _step_plan(s: _Steps, folder: str, num_train: int, size: int) -> str:
    from nnunet_losses.nnunet.testing.tiny_plans import write_tiny_plans, write_tiny_splits

    t = s.start(2, "nnUNetv2_plan_and_preprocess (2d), then CPU-sized plans nnUNetTinyPlans and a one-fold split")
    s.run("plan_and_preprocess", [command_path("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIG,
                                  "-np", "1", "-npfp", "1", "--verify_dataset_integrity"],
          {**s.env, "nnUNet_n_proc_DA": "1"}, show_progress=s.progress)
    pre = os.path.join(s.paths["nnUNet_preprocessed"], os.path.basename(folder))
    write_tiny_plans(pre, configurations=[CONFIG], n_stages=4, base_features=8, max_features=32,
                     patch_2d=min(64, size), batch_size=4)
    write_tiny_splits(pre, num_val=max(1, num_train // 5))
    s.mark("plan_and_preprocess", t)
    print(f"      {pre} ({s.timings['plan_and_preprocess']:.0f} s)", flush=True)
    return pre


def _step_precompute(s: _Steps, pre: str) -> None:
    t = s.start(3, "nnunet_losses_precompute --maps contour (contour maps stored next to the preprocessed data)")
    s.run("precompute", [command_path("nnunet_losses_precompute"), "-d", str(DATASET_ID), "-c", CONFIG, "--maps",
                         "contour",
                         "-np", "1"] + ([] if s.progress else ["--no-progress"]), s.env, show_progress=s.progress)
    s.mark("precompute", t)
    print(f"      {os.path.join(pre, 'nnUNetPlans_' + CONFIG, 'nnunet_losses_maps')} "
          f"({s.timings['precompute']:.0f} s; the trainers below compute the contours on the fly, so the stored maps "
          f"only show the tool)", flush=True)


def _step_train(s: _Steps, trainers: Sequence[str], epochs: int, iterations: int, jobs: int, seed: int,
                validate: bool) -> Dict[str, float]:
    schedule = Schedule(epochs=epochs, iterations=iterations, val_iterations=2, seed=seed,
                        threads=max(1, (os.cpu_count() or 2) // jobs), final_validation=validate,
                        note="the demo evaluates the held-out imagesTs instead; --validate keeps it")
    write_short_schedule_trainers(s.paths["trainers"], "nnunet_losses_demo_trainers", short_names(trainers, SUFFIX),
                                  schedule, writer="nnunet_losses_demo")
    t = s.start(4, f"nnUNetv2_train {DATASET_ID} {CONFIG} 0 -p {PLANS} -tr <trainer>{SUFFIX} -device cpu, {jobs} at "
                   f"a time.\n      <trainer>{SUFFIX} = the real trainer with {epochs} epochs of {iterations} "
                   f"iterations "
                   f"(nnU-Net's default: 1000 x 250){'' if validate else ', final validation skipped'},\n"
                   f"      a subclass in {s.paths['trainers']} found via nnUNet_extTrainer")
    bar = s.bar(len(trainers) * epochs, "      training (epochs)", "ep")
    dice: Dict[str, str] = {}

    def train(trainer: str) -> float:
        def on_line(line: str) -> None:
            if "Epoch time:" in line:
                with s.lock:
                    bar.update(1)
            if "Pseudo dice" in line:
                nums = re.findall(r"(?<![\d.])(\d+\.\d+|nan)", line.split("Pseudo dice", 1)[1])
                dice[trainer] = "[" + ", ".join(nums) + "]"

        seconds = s.run(f"train_{trainer}", [command_path("nnUNetv2_train"), str(DATASET_ID), CONFIG, "0", "-p", PLANS,
                                             "-tr", trainer + SUFFIX, "-device", "cpu"], s.env, on_line)
        with s.lock:
            bar.write(f"      done: {trainer} in {seconds:.0f} s; last pseudo Dice (organ, nodule, lesion) "
                      f"{dice.get(trainer, '?')}")
        return seconds

    train_s = s.parallel(train, trainers, jobs, bar)
    s.mark("train", t)
    return train_s


def _step_predict(s: _Steps, folder: str, trainers: Sequence[str], num_test: int, jobs: int) -> Dict[str, str]:
    t = s.start(5, f"nnUNetv2_predict of the {num_test} held-out cases (imagesTs) with each model")
    images_ts = os.path.join(folder, "imagesTs")
    bar = s.bar(len(trainers), "      predicting (models)", "model")

    def predict(trainer: str) -> str:
        dst = os.path.join(s.paths["predictions"], _short(trainer))
        s.run(f"predict_{trainer}", [command_path("nnUNetv2_predict"), "-i", images_ts, "-o", dst, "-d",
                                     str(DATASET_ID), "-c", CONFIG, "-f", "0", "-p", PLANS, "-tr", trainer + SUFFIX,
                                     "-device", "cpu",
                                     "-npp", "0", "-nps", "0", "--disable_progress_bar", "-chk",
                                     "checkpoint_final.pth"], s.env)
        with s.lock:
            bar.update(1)
        return dst

    preds = s.parallel(predict, trainers, jobs, bar)
    s.mark("predict", t)
    return preds


def _step_compare(s: _Steps, folder: str, trainers: Sequence[str], preds: Dict[str, str]) -> str:
    t = s.start(6, "nnunet_losses_compare against labelsTs (Dice, IoU, HD95, surface Dice, precision, recall, "
                   "lesion-wise rates)")
    cmp_dir = s.paths["compare"]
    cmd = [command_path("nnunet_losses_compare"), "-d", str(DATASET_ID), "-ref", os.path.join(folder, "labelsTs"),
           "--images", os.path.join(folder, "imagesTs"), "-o", cmp_dir, "--lesions",
           "-i", *[f"{_short(tr)}={preds[tr]}" for tr in trainers]]
    if not s.progress:
        cmd.append("--no-progress")
    s.run("compare", cmd, s.env, show_progress=s.progress)
    s.mark("compare", t)
    with open(os.path.join(cmp_dir, "summary.md")) as f:
        tables = _md_sections(f.read(), PRINTED_METRICS)
    print("\n" + "\n\n".join(tables) + "\n", flush=True)
    return cmp_dir


def _print_where(s: _Steps, folder: str, cmp_dir: str, epochs: int, iterations: int, num_train: int,
                 load_start, load_end) -> None:
    plots = sorted(os.listdir(os.path.join(cmp_dir, "plots")))
    overlays = sorted(os.listdir(os.path.join(cmp_dir, "overlays"))) if os.path.isdir(
        os.path.join(cmp_dir, "overlays")) else []
    print("Where things are:")
    print(f"  tables     {os.path.join(cmp_dir, 'summary.md')}  (also IoU, HD95, surface Dice, precision, "
          f"lesion-wise TPR/FPR; CSV: summary.csv, per_case.csv)")
    print(f"  plots      {os.path.join(cmp_dir, 'plots')}/  ({', '.join(plots)})")
    print(f"  overlays   {os.path.join(cmp_dir, 'overlays')}/  ({', '.join(overlays) or 'none'})")
    print(f"  models     {os.path.join(s.paths['nnUNet_results'], os.path.basename(folder))}/")
    print(f"  logs       {s.paths['logs']}/  (every command's full output)")
    print(f"These models trained {epochs} epochs of {iterations} iterations on {num_train} tiny images: the "
          f"numbers show the workflow, not the losses' final quality (docs/quality.md has real runs).")
    load = (f"; load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end on {os.cpu_count()} "
            f"cores" if load_start and load_end else "")
    print(f"Total wall time: {s.timings['total']:.0f} s ({s.timings['total'] / 60:.1f} min); CPU time of all "
          f"commands: {s.cpu['total']:.0f} s{load}", flush=True)


def run_demo(out: str = "demo_output", trainers: Optional[Sequence[str]] = None, epochs: int = DEFAULT_EPOCHS,
             iterations: int = DEFAULT_ITERATIONS, num_train: int = 16, num_test: int = 6, size: int = 96,
             jobs: int = 2,
             overwrite: bool = False, progress: bool = True, seed: int = 0, validate: bool = False) -> dict:
    """Run the demo (see the module docstring); return a summary dict (also ``<out>/demo_summary.json``)."""
    trainers = list(trainers or DEFAULT_TRAINERS)
    _check_arguments(trainers, epochs, iterations, jobs)
    out = os.path.abspath(out)
    _prepare_output(out, overwrite)
    t_start = time.time(), _cpu_seconds()
    s = _Steps(out, progress)
    load_start = _loadavg()
    print(f"nnunet_losses_demo: {len(trainers)} trainers x {epochs} epochs x {iterations} iterations on the CPU; "
          f"output in {out}", flush=True)
    folder = _step_dataset(s, num_train, num_test, size, seed)
    pre = _step_plan(s, folder, num_train, size)
    _step_precompute(s, pre)
    train_s = _step_train(s, trainers, epochs, iterations, jobs, seed, validate)
    preds = _step_predict(s, folder, trainers, num_test, jobs)
    cmp_dir = _step_compare(s, folder, trainers, preds)
    s.mark("total", t_start)
    load_end = _loadavg()
    summary = {"output": out, "trainers": trainers, "epochs": epochs, "iterations": iterations,
               "num_train": num_train, "num_test": num_test, "size": size, "jobs": jobs,
               "seconds": {k: round(v, 1) for k, v in s.timings.items()},
               "cpu_seconds": {k: round(v, 1) for k, v in s.cpu.items()},
               "train_seconds": {k: round(v, 1) for k, v in train_s.items()},
               "cpu_count": os.cpu_count(), "load_average_start": load_start, "load_average_end": load_end,
               "predictions": preds, "compare": cmp_dir}
    atomic_write_json(os.path.join(out, "demo_summary.json"), summary, indent=1)
    _print_where(s, folder, cmp_dir, epochs, iterations, num_train, load_start, load_end)
    return summary



def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(prog="nnunet_losses_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", default="demo_output", help="output folder, new or empty (default demo_output)")
    p.add_argument("--trainers", nargs="+", help=f"trainers (default: {' '.join(DEFAULT_TRAINERS)})")
    p.add_argument("--epochs", type=int, help=f"epochs per trainer (default {DEFAULT_EPOCHS}; --quick: 1)")
    p.add_argument("--iterations", type=int,
                   help=f"training iterations per epoch (default {DEFAULT_ITERATIONS}; --quick: 3)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {' and '.join(QUICK_TRAINERS)}, 1 epoch of 3 iterations, 6+2 images of 64x64")
    p.add_argument("-j", "--jobs", type=int, default=2, help="trainings / predictions at a time (default 2)")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty output folder (removes only the "
                                                            "demo's own sub-folders)")
    p.add_argument("--validate", action="store_true", help="keep nnU-Net's final validation of fold 0 (slower)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dataset and of the trainings (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    kw = dict(trainers=a.trainers or (QUICK_TRAINERS if a.quick else DEFAULT_TRAINERS),
              epochs=a.epochs if a.epochs is not None else (1 if a.quick else DEFAULT_EPOCHS),
              iterations=a.iterations if a.iterations is not None else (3 if a.quick else DEFAULT_ITERATIONS))
    if a.quick:
        kw.update(num_train=6, num_test=2, size=64)
    return run_demo(a.output, jobs=a.jobs, overwrite=a.overwrite, progress=not a.no_progress,
                    validate=a.validate, seed=a.seed, **kw)


def entry_point() -> None:
    try:
        main()
    except ValueError as e:  # bad input: the message says what to do
        print(f"nnunet_losses_demo: error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:  # a step failed: the message names its log
        print(f"nnunet_losses_demo: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    entry_point()
