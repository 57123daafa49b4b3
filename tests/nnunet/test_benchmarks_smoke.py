"""Smoke test of the benchmark entry point (``python -m benchmarks.speed.run``) on tiny sizes, so it cannot rot.

No timing is asserted anywhere: only that every section runs, produces complete, well-formed numbers,
that the precomputed maps equal the naive SciPy reference the benchmark compares against, and that the
document keeps its hand-written blocks. One subprocess run (about half a minute: nnU-Net plans and
preprocesses a 5-case synthetic dataset in a temporary folder) is shared by the tests.
"""
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    json_path, doc = out / "cpu.json", out / "benchmarks.md"
    doc.write_text("# old\n<!-- keep:intro -->\nHAND-WRITTEN INTRO\n<!-- /keep:intro -->\n"
                   "<!-- keep:notes -->\nHAND-WRITTEN NOTES\n<!-- /keep:notes -->\n")
    cmd = [sys.executable, "-m", "benchmarks.speed.run", "--sizes", "tiny", "--classes", "2", "3", "--repeats", "2",
           "--warmup", "0", "--maps-source", "synthetic", "--maps-cases", "5", "--maps-repeats", "1",
           "--loader-batches", "1", "--scaling-shape", "12", "12", "12", "--out-json", str(json_path),
           "--doc", str(doc), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env.pop(k, None)  # the entry point must not need them (the maps worker sets its own, in a temp folder)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_path.read_text()), doc.read_text()


def test_every_loss_row_is_measured_against_nnunet(run):
    from benchmarks.speed.loss import BASELINE, ROWS
    res, _ = run
    problems = res["loss"]
    assert {(p["dim"], p["num_classes"]) for p in problems} == {(2, 2), (2, 3), (3, 2), (3, 3)}
    for p in problems:
        keys = [e["key"] for e in p["rows"]]
        assert keys == [BASELINE] + [r.key for r in ROWS]
        assert abs(sum(p["ds_weights"]) - 1.0) < 1e-9 and p["ds_weights"][-1] == 0.0  # nnU-Net's weights
        assert len(p["scale_shapes"]) == len(p["ds_weights"])
        for e in p["rows"]:
            assert e["error"] is None, (p["dim"], p["num_classes"], e["key"], e["error"])
            assert len(e["times_s"]) == 2 and all(t > 0 for t in e["times_s"])
            assert e["ratio"] is not None and math.isfinite(e["ratio"]) and e["ratio"] > 0
            if e["key"] != BASELINE and e["target"] is not None:
                assert e["status"] == ("met" if e["ratio"] <= e["target"] else "missed")


def test_maps_match_the_naive_reference_and_sizes_are_reported(run):
    res, _ = run
    m = res["maps"]
    assert "error" not in m, m.get("error")
    pc = m["precompute"]
    assert pc["cases"] == 5 and pc["preprocessed_bytes"] > 0
    assert set(pc["maps"]) == {"contour", "dwce", "osc"}
    for name, e in pc["maps"].items():
        assert e["agree_with_naive"], name
        assert e["bytes"] > 0 and e["precompute_s"] > 0 and e["compute_s"] > 0 and e["naive_s"] > 0
    assert all(e["agree_with_naive"] for e in m["scaling"]["maps"].values())
    assert m["nnunet_preprocess"]["seconds"] > 0
    rows = m["loader"]["rows"]
    # nnU-Net's loader, then with stored maps, then Skeleton Recall's skeleton stored and computed in the loader
    assert [(r["map"], r["mode"]) for r in rows] == [(None, None), ("contour", "stored"), ("dwce", "stored"),
                                                     ("osc", "stored"), ("skeleton", "stored"), ("skeleton", "loader")]
    assert 0 < m["loader"]["skeleton_dice"]["mean"] <= 1 and m["loader"]["skeleton_dice"]["n"] > 0
    assert all(r.get("batches_per_s", 0) > 0 and r.get("vs_nnunet", 0) > 0 for r in rows), rows
    assert m["precompute"]["all_maps"]["share_of_preprocessing"] > 0


def test_document_is_rendered_and_keeps_hand_written_blocks(run):
    _, doc = run
    assert "HAND-WRITTEN INTRO" in doc and "HAND-WRITTEN NOTES" in doc
    assert "# old" not in doc
    for heading in ("## Runs", "## Summary against the targets", "## Loss forward + backward with deep supervision",
                    "## Map precompute", "## Data loader", "## Training step against nnU-Net's trainer",
                    "## GPU acceptance run", "## Closing note"):
        assert heading in doc
    assert "No GPU was available" in doc  # CPU-only results
    assert "has not run on a GPU yet" in doc and "bash benchmarks/acceptance/gpu.sh" in doc
    assert "python -m benchmarks.speed.run --sizes tiny" in doc  # the exact command
    assert "stored contour maps (nnUNetTrainerCWCD)" in doc and "all three, one run" in doc


def test_training_step_of_every_trainer_against_nnunet(run):
    import nnunet_losses_trainers
    res, doc = run
    st = res["step"]
    assert "error" not in st, st.get("error")
    rows = {r["trainer"]: r for r in st["rows"]}
    assert list(rows) == ["nnUNetTrainer"] + list(nnunet_losses_trainers.TRAINERS)
    assert st["same_batches"] and rows["nnUNetTrainer"]["ratio"] == 1.0
    assert rows["nnUNetTrainerDWCE"]["maps"] == "stored" and rows["nnUNetTrainerCWCD"]["maps"] == "online"
    for r in rows.values():
        assert len(r["times_s"]) == st["repeats"] and all(t > 0 for t in r["times_s"])
        assert r["status"] == (None if r["trainer"] == "nnUNetTrainer" else "met" if r["ratio"] <= 1.02 else "missed")
        assert f"| {r['trainer']} | {r['loss']} | {r['maps']} |" in doc


def test_update_replaces_only_the_sections_run(tmp_path):
    from benchmarks.speed.run import updated_results
    meta = {"date_utc": "new", "command": "c", "git": "g", "wall_s": 1.0, "load_avg_start": None,
            "load_avg_end": None, "torch_threads": 1}
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps({"meta": {"date_utc": "old"}, "loss": ["old loss"], "maps": {"old": 1}}))
    out = updated_results(str(path), {"meta": meta, "step": {"rows": []}, "loss": ["not run"]}, ["step"])
    assert out["loss"] == ["old loss"] and out["maps"] == {"old": 1} and out["step"] == {"rows": []}
    assert out["meta"]["date_utc"] == "old" and out["meta"]["section_runs"]["step"]["date_utc"] == "new"


def test_profile_of_a_missed_row(run):
    """The profiler path runs only for rows that miss a target: force one."""
    import torch

    from benchmarks.speed import loss as lb
    from benchmarks.speed.run import profile_misses
    res, _ = run
    p = json.loads(json.dumps(next(x for x in res["loss"] if x["dim"] == 2 and x["num_classes"] == 3)))
    for e in p["rows"]:
        e["status"] = "missed" if e["key"] == "CWCD on the fly" else "met"
    prof = profile_misses(p, lb.ROWS, 2, (32, 32), torch.device("cpu"), 0)
    assert set(prof) == {"CWCD on the fly", lb.BASELINE}  # the baseline's profile is shown for comparison
    assert prof["CWCD on the fly"]["ops"] and prof["CWCD on the fly"]["total_us_per_call"] > 0
