"""``nnunet_losses_demo``: the generated dataset, the output-folder guard, and the whole demo in --quick mode.

The quick run is the real pipeline (nnUNetv2_plan_and_preprocess, nnunet_losses_precompute,
nnUNetv2_train of nnU-Net's default trainer and nnUNetTrainerCWCD as 1-epoch subclasses,
nnUNetv2_predict, nnunet_losses_compare) on 6 + 2 images of 64x64: about 85 CPU-seconds (about a minute
on two free cores; 3-5 minutes on the shared two-core machine at load average 7-11).
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from nnunet_losses.nnunet.tools import workflow_demo as demo


def _png(path):
    from PIL import Image
    return np.asarray(Image.open(path))


def test_dataset_is_imbalanced_and_deterministic(tmp_path):
    folder = demo.make_imbalance_dataset_2d(str(tmp_path / "a"), num_train=5, num_test=2, size=64)
    again = demo.make_imbalance_dataset_2d(str(tmp_path / "b"), num_train=5, num_test=2, size=64)
    with open(os.path.join(folder, "dataset.json")) as f:
        ds = json.load(f)
    assert ds["labels"] == {"background": 0, "organ": 1, "nodule": 2, "lesion": 3} and ds["numTraining"] == 5
    names = {s: sorted(os.listdir(os.path.join(folder, s))) for s in ("imagesTr", "labelsTr", "imagesTs", "labelsTs")}
    assert len(names["labelsTr"]) == 5 and len(names["labelsTs"]) == 2
    assert [n.replace("_0000", "") for n in names["imagesTs"]] == names["labelsTs"]
    segs = np.stack([_png(os.path.join(folder, s, n)) for s in ("labelsTr", "labelsTs") for n in names[s]])
    assert segs.shape == (7, 64, 64)
    frac = [(segs == k).mean() for k in range(4)]
    assert 0.1 < frac[1] < 0.35 and 0.003 < frac[2] < 0.03 and 0.0005 < frac[3] < 0.01, frac  # 64x64: lesions ~0.6 %
    assert frac[1] > 10 * frac[2] and frac[2] > frac[3], "organ >> nodule > lesions (class imbalance)"
    assert all((s == 3).any() and (s == 2).any() for s in segs), "every case has a nodule and lesions"
    for s in ("imagesTr", "labelsTs"):
        for n in names[s]:
            np.testing.assert_array_equal(_png(os.path.join(folder, s, n)), _png(os.path.join(again, s, n)))
    tr = segs[:5]  # the fractions the demo prints: labelsTr only
    np.testing.assert_allclose(demo.label_fractions(os.path.join(folder, "labelsTr"), 4),
                               [100 * (tr == k).mean() for k in range(4)], rtol=1e-12)
    with pytest.raises(ValueError, match="already exists"):
        demo.make_imbalance_dataset_2d(str(tmp_path / "a"))


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="not empty.*--overwrite"):
        demo.main(["-o", str(tmp_path), "--quick"])
    assert (tmp_path / "mine.txt").read_text() == "user data"
    with pytest.raises(ValueError, match="unknown trainer"):
        demo.main(["-o", str(tmp_path / "new"), "--trainers", "nnUNetTrainerNope"])
    assert not (tmp_path / "new").exists()


def test_overwrite_removes_only_the_demos_own_entries(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "old.log").write_text("old demo log")
    (tmp_path / "demo_summary.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("user file")
    demo._prepare_output(str(tmp_path), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_run_logs_both_streams_relays_progress_and_names_the_log_on_failure(tmp_path, capfd):
    run = demo._Run(str(tmp_path))
    code = "import sys; sys.stderr.write('bar 1/2\\rbar 2/2\\n'); print('line one'); print('line two')"
    seen = []
    run("ok", [sys.executable, "-c", code], dict(os.environ), on_line=seen.append, show_progress=True)
    log = (tmp_path / "ok.log").read_bytes().decode()  # read_text() would turn \r into \n
    # the two pipes are read side by side, so the streams may interleave; each keeps its own order
    assert "bar 1/2\rbar 2/2\n" in log and "line one\n" in log and "line two\n" in log
    assert log.index("line one") < log.index("line two")
    assert seen == ["line one\n", "line two\n"]
    assert "bar 1/2\rbar 2/2" in capfd.readouterr().err  # the progress bar reached the terminal
    run("quiet", [sys.executable, "-c", code], dict(os.environ))
    assert capfd.readouterr().err == "" and "bar 2/2" in (tmp_path / "quiet.log").read_text()
    with pytest.raises(RuntimeError, match=r"step 'bad' failed \(exit code 3\)(.|\n)*bad\.log(.|\n)*boom"):
        run("bad", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], dict(os.environ))


def test_md_sections_picks_the_printed_tables():
    md = "# title\n\nintro\n\n## Dice (higher is better)\n\n| a |\n\n## HD95 (mm) (lower is better)\n\n| b |\n\n" \
         "## Recall (higher is better)\n\n| c |\n"
    assert demo._md_sections(md, ("Dice", "Recall")) == ["## Dice (higher is better)\n\n| a |",
                                                         "## Recall (higher is better)\n\n| c |"]
    assert demo._md_sections(md, ("HD95",)) == ["## HD95 (mm) (lower is better)\n\n| b |"]


def _printed_table(stdout: str, title: str):
    """{row: [cell means]} of a Markdown table printed under ``## <title> (``."""
    block = stdout.split(f"## {title} (", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|")]
    header, body = rows[0], rows[2:]
    return header[1:], {r[0]: [float(c.split(" ± ")[0]) if c != "n/a" else float("nan") for c in r[1:]]
                        for r in body}


def test_entry_point_declared():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "setup.py")) as f:
        assert "nnunet_losses_demo=nnunet_losses.nnunet.tools.workflow_demo:entry_point" in f.read()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("nnunetv2")
    pytest.importorskip("nnunet_losses_trainers")
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    p = subprocess.run([sys.executable, "-m", "nnunet_losses.nnunet.tools.workflow_demo", "--quick", "-o", str(out),
                        "--no-progress"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    return out, p.stdout


def test_quick_demo_end_to_end(quick_run):
    out, stdout = quick_run
    for step in range(1, 7):
        assert f"[{step}/6]" in stdout
    assert "nnUNet_extTrainer" in stdout and "final validation skipped" in stdout
    assert re.search(r"pixels: organ \d+\.\d %, nodule \d+\.\d %, lesion \d+\.\d\d %", stdout)
    assert "Total wall time" in stdout and "CPU time of all commands" in stdout
    # the Dice and recall tables were printed: one column per trainer, every class and the mean, finite numbers
    for title in ("Dice", "Recall"):
        columns, rows = _printed_table(stdout, title)
        assert columns == ["nnUNet", "CWCD"], columns
        assert list(rows) == ["organ", "nodule", "lesion", "mean"], rows
        assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for r in rows.values() for v in r), rows
    assert "## HD95" not in stdout  # the other metrics stay in summary.md
    assert str(out / "compare" / "plots") in stdout and "dice_bars.png" in stdout  # where the plots are
    cmp_dir = out / "compare"
    for f in ("summary.md", "summary.csv", "per_case.csv", "plots/dice_bars.png", "plots/dice_box.png",
              "plots/lesion_tpr_bars.png"):
        assert (cmp_dir / f).is_file() and (cmp_dir / f).stat().st_size > 0, f
    assert list((cmp_dir / "overlays").glob("*.png"))
    with open(cmp_dir / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    dice = {(r["method_name"], r["class_name"]): float(r["mean"]) for r in rows if r["metric"] == "dice"}
    assert {m for m, _ in dice} == {"nnUNet", "CWCD"}
    assert {c for _, c in dice} >= {"organ", "nodule", "lesion"}
    assert all(0.0 <= v <= 1.0 for v in dice.values())
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["trainers"] == ["nnUNetTrainer", "nnUNetTrainerCWCD"] and summary["seconds"]["total"] > 0
    assert summary["cpu_seconds"]["train"] > 0 and summary["cpu_seconds"]["total"] >= summary["cpu_seconds"]["train"]
    # the printed Dice table is the one in summary.csv
    _, printed = _printed_table(stdout, "Dice")
    for (m, c), v in dice.items():
        if c in printed:
            assert printed[c][["nnUNet", "CWCD"].index(m)] == pytest.approx(v, abs=6e-5)


def test_quick_demo_models_and_predictions(quick_run):
    import torch

    out, _ = quick_run
    raw = out / "nnUNet_raw" / "Dataset950_DemoImbalance2D"
    results = out / "nnUNet_results" / "Dataset950_DemoImbalance2D"
    for trainer, short in (("nnUNetTrainer", "nnUNet"), ("nnUNetTrainerCWCD", "CWCD")):
        fold = results / f"{trainer}_demo__nnUNetTinyPlans__2d" / "fold_0"
        ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        assert ckpt["current_epoch"] == 1 and ckpt["trainer_name"] == f"{trainer}_demo"
        log = (out / "logs" / f"train_{trainer}.log").read_text()
        assert "Found class " + trainer + "_demo" in log  # found through nnUNet_extTrainer
        if trainer == "nnUNetTrainerCWCD":
            assert "loss: CWCDLoss" in log
        # every held-out case predicted: label image of the reference's shape, values among the labels
        pred_dir = out / "predictions" / short
        refs = sorted(os.listdir(raw / "labelsTs"))
        assert sorted(p for p in os.listdir(pred_dir) if p.endswith(".png")) == refs
        for name in refs:
            pred, ref = _png(pred_dir / name), _png(raw / "labelsTs" / name)
            assert pred.shape == ref.shape and set(np.unique(pred).tolist()) <= {0, 1, 2, 3}
    # the compare tool's per-case Dice equals an independent computation on the files
    with open(out / "compare" / "per_case.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["method_name"] == "CWCD" and r["class_name"] == "organ")
    pred = _png(out / "predictions" / "CWCD" / f"{row['case']}.png") == 1
    ref = _png(raw / "labelsTs" / f"{row['case']}.png") == 1
    expected = 2 * (pred & ref).sum() / (pred.sum() + ref.sum()) if pred.sum() + ref.sum() else 1.0
    assert float(row["dice"]) == pytest.approx(expected, abs=1e-9)
    # the contour maps were stored by nnunet_losses_precompute
    maps = out / "nnUNet_preprocessed" / "Dataset950_DemoImbalance2D" / "nnUNetPlans_2d" / "nnunet_losses_maps"
    assert (maps / "manifest.json").is_file() and list(maps.glob("*_contour_*.b2nd"))
