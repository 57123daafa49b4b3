"""The GPU acceptance script in its CPU smoke mode (``bash benchmarks/acceptance/gpu.sh --device cpu --smoke``),
so that it is known to work before it ever meets a GPU.

One run (about two minutes on two cores) is shared by the tests: every trainer trains, resumes and
predicts, the loss and step benchmarks run, the results file and the summary name every trainer, and
nothing is written into the repository. No timing is asserted.
"""
import json
import os
import subprocess
import sys

import pytest

nnunet_losses_trainers = pytest.importorskip("nnunet_losses_trainers")
pytest.importorskip("nnunetv2")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINERS = ["nnUNetTrainer"] + list(nnunet_losses_trainers.TRAINERS)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "NNUNET_LOSSES_OPTIONS"):
        env.pop(k, None)  # the script makes its own folders
    return env


def res_date(path) -> str:
    """The run's date (UTC) from its results file: the file is named after it."""
    return json.loads(path.read_text())["meta"]["date_utc"][:10]


def _results_listing():
    folder = os.path.join(REPO, "benchmarks", "results")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("acceptance")
    before = _results_listing()
    proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "acceptance", "gpu.sh"), "--device", "cpu", "--smoke",
                           "--out", str(out)], cwd=str(out), env=_env(), capture_output=True, text=True, timeout=900)
    stem = next((f[:-5] for f in os.listdir(out) if f.startswith("cpu-") and f.endswith(".json")), None)
    return {"proc": proc, "out": out, "stem": stem, "repo_untouched": _results_listing() == before}


def test_exit_code_and_files(smoke):
    proc, out = smoke["proc"], smoke["out"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert smoke["stem"] == "cpu-" + res_date(out / (smoke["stem"] + ".json"))
    assert sorted(os.listdir(out)) == [smoke["stem"] + ".json", smoke["stem"] + ".md"]
    assert "| section | check | result | detail |" in proc.stdout  # the printed pass/fail table
    assert "PASS" in proc.stdout and "FAIL" not in proc.stdout
    assert smoke["repo_untouched"], "the smoke run wrote into benchmarks/results"


def test_every_trainer_trains_resumes_predicts_and_is_timed(smoke):
    res = json.loads((smoke["out"] / (smoke["stem"] + ".json")).read_text())
    assert res["kind"] == "acceptance" and res["settings"]["smoke"] and res["checks"]
    assert all(c["ok"] for c in res["checks"]), [c for c in res["checks"] if not c["ok"]]
    jobs = res["e2e"]["jobs"]
    labels = {j["trainer"] for j in jobs if j["dataset"].endswith("Labels3D") and not j["options"] and j["ok"]}
    assert labels == set(TRAINERS)
    assert any(j["dataset"].endswith("Regions2D") for j in jobs)
    assert any(j["trainer"] == "nnUNetTrainerCWCD" and j["options"] == "maps=stored" and j["ok"] for j in jobs)
    for j in jobs:
        assert j["checks"] == {"resumed to epoch 2": True, "losses finite": True, "prediction shape": True,
                               "prediction values": True}, j
        assert len(j["train_losses"]) == 2
    step = res["step"]
    assert step["same_batches"]
    rows = {r["trainer"]: r for r in step["rows"]}
    assert set(TRAINERS) <= set(rows) and rows["nnUNetTrainer"]["ratio"] == 1.0
    assert rows["nnUNetTrainerCWCD:maps=stored"]["maps"] == "stored" and rows["nnUNetTrainerCWCD"]["maps"] == "online"
    assert all(len(r["times_s"]) == step["repeats"] and r["median_s"] > 0 for r in rows.values())
    assert {p["num_classes"] for p in res["loss"]["problems"]} == {2, 4}
    assert {c["loss"] for c in res["contours"]["loss"]} == {"CWCE", "SDL", "CWCD"} and res["contours"]["step"] > 0


def test_summary_names_every_trainer(smoke):
    md = (smoke["out"] / (smoke["stem"] + ".md")).read_text()
    assert md.startswith("# Acceptance run") and "**PASS**" in md
    for name in TRAINERS:
        assert f"| {name} |" in md, name  # its row in the training-step table
        assert f"| {name} on " in md, name  # its e2e check


def test_a_failed_check_exits_non_zero(tmp_path):
    """The contour comparison alone has nothing to compare: a failed check, exit code 1, files still written."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.acceptance.gpu", "--device", "cpu", "--smoke",
                           "--sections", "contours", "--out", str(tmp_path)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "**FAIL**" in proc.stdout and "FAIL: 1 of 1 checks" in proc.stdout
    assert len(list(tmp_path.iterdir())) == 2
