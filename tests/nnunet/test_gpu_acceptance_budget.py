"""The acceptance run's budget and partial results (benchmarks/acceptance/gpu.py, budget.py, e2e.py), with
stand-in sections, jobs and loss problems and a made-up clock: what is skipped and why, what is cut, and
that the results files exist after every section. No timing is asserted.
"""
import json
import os
import time
from types import SimpleNamespace

import pytest

from benchmarks.acceptance import e2e, gpu
from benchmarks.acceptance.budget import Budget, BudgetExceeded, time_limit


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_budget_limit_reserves_the_later_sections():
    clock = FakeClock()
    b = Budget(420.0, clock=clock)
    clock.t = 100.0
    assert b.left() == 320.0 and b.limit(reserve=105.0) == 215.0
    assert Budget(None).left() is None and Budget(None).limit(50.0) is None
    with pytest.raises(ValueError, match="positive number of seconds"):
        Budget(0.0)


def test_time_limit_stops_python_work_and_restores_the_alarm():
    with pytest.raises(BudgetExceeded):
        with time_limit(0.2):
            for _ in range(200):  # would take 10 s
                time.sleep(0.05)
    with time_limit(None):
        pass
    with time_limit(5.0):
        pass  # finished in time: no exception, and the alarm is off again
    time.sleep(0.01)
    with pytest.raises(BudgetExceeded, match="no time left"):
        with time_limit(-1.0):
            pass


def test_e2e_worker_starts_no_job_that_would_end_after_the_deadline(tmp_path):
    clock = FakeClock()

    def run(job, device, out_dir):
        clock.t += 10.0  # every job takes 10 s
        return {**job, "ok": True}

    jobs = [{"trainer": f"T{i}"} for i in range(4)]
    path = tmp_path / "results.jsonl"
    res = e2e.run_jobs(jobs, None, str(tmp_path), deadline=25.0, results_path=str(path), clock=clock, run=run)
    assert [r.get("ok") for r in res] == [True, True, None, None]  # at 20 s a 10-s job would end at 30 > 25
    assert res[2]["skipped"] == "not started: about 10 s needed, 5 s of the budget left"
    assert [json.loads(line) for line in path.read_text().splitlines()] == res  # each written as it came
    assert all(r.get("ok") for r in e2e.run_jobs(jobs, None, str(tmp_path), clock=clock, run=run))  # no deadline


def _loss_args(**kw):
    return SimpleNamespace(**{"smoke": True, "classes": [2, 4, 16], "no_compile": False, **kw})


def test_loss_problems_eager_first_compiled_skipped_when_they_would_not_fit():
    clock = FakeClock()
    ran = []

    def run_problem(dim, c, batch, patch, device, variants, repeats, warmup, rows):
        ran.append((variants[0].name, c))
        clock.t += 30.0
        return [{"variant": variants[0].name, "num_classes": c, "batch": batch, "patch": patch, "rows": []}]

    res = gpu.run_loss(_loss_args(), SimpleNamespace(type="cuda"), limit=100.0, clock=clock, run_problem=run_problem)
    assert ran == [("amp", 2), ("amp", 4), ("amp", 16)]  # at 90 s a compiled problem is guessed at 3 x 30 s
    assert [s["problem"].split(",")[0] for s in res["skipped"]] == ["compile-amp"] * 3
    assert res["skipped"][0]["reason"] == "not started: about 90 s needed, 10 s left"
    checks = gpu.loss_checks(res, SimpleNamespace(type="cuda"))
    assert [c["ok"] for c in checks] == [True] * 3 + [None] * 3
    ran.clear()
    gpu.run_loss(_loss_args(), SimpleNamespace(type="cuda"), limit=None, clock=clock, run_problem=run_problem)
    assert len(ran) == 6  # no budget: everything


def test_a_loss_problem_that_overruns_is_cut():
    def slow(*args):
        for _ in range(200):
            time.sleep(0.05)

    res = gpu.run_loss(_loss_args(classes=[2]), SimpleNamespace(type="cpu"), limit=0.3, run_problem=slow)
    assert res["problems"] == [] and res["skipped"][0]["reason"].startswith("cut by the budget after")


def test_contours_skip_rather_than_fail_when_the_loss_gave_way_to_the_budget():
    empty = {"loss": [], "step": None}
    assert [c["ok"] for c in gpu.contour_checks(empty, loss_skipped=True)] == [None]
    assert [c["ok"] for c in gpu.contour_checks(empty, loss_skipped=False)] == [False]


@pytest.fixture
def nnunet_env(monkeypatch, tmp_path):
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):  # main() sets them when missing
        monkeypatch.setenv(k, os.environ.get(k, str(tmp_path / k)))


def test_sections_that_would_not_fit_are_skipped_and_results_are_written_after_each(tmp_path, monkeypatch,
                                                                                     nnunet_env, capsys):
    out = tmp_path / "out"
    seen = {}

    def files():
        (j,) = [f for f in os.listdir(out) if f.endswith(".json")]
        return json.loads((out / j).read_text()), (out / j.replace(".json", ".md")).read_text()

    def fake_loss(run, limit):
        seen["limit"] = limit
        seen["before_loss"] = files()  # the e2e section's outcome is already on disk
        return [{"section": "loss", "check": "problem", "ok": True, "detail": ""}]

    def fake_step(run, limit):
        seen["before_step"] = files()
        return [{"section": "step", "check": "steps", "ok": True, "detail": ""}]

    monkeypatch.setitem(gpu.RUNNERS, "loss", fake_loss)
    monkeypatch.setitem(gpu.RUNNERS, "step", fake_step)
    monkeypatch.setitem(gpu.MIN_SECTION_S, "cpu", {"e2e": 50.0, "loss": 80.0, "step": 10.0, "contours": 0.0})
    rc = gpu.main(["--device", "cpu", "--sections", "e2e", "loss", "step", "--budget", "100", "--out", str(out),
                   "--trainers", "nnUNetTrainer"])
    printed = capsys.readouterr().out
    assert rc == 0
    # e2e may spend 100 - (80 + 10) s, less than the 50 s it needs: skipped, and said so
    assert "[e2e] skipped: about 50 s needed, 10 s of the budget left for it" in printed
    partial, md = seen["before_loss"]
    assert partial["complete"] is False and partial["skipped_sections"] == ["e2e"]
    assert partial["checks"] == [gpu.skipped("e2e", "section", "about 50 s needed, 10 s of the budget left for it")]
    assert "**partial**" in md and "| e2e | section | skipped |" in md
    assert 80.0 <= seen["limit"] <= 90.0  # what is left minus the step section's 10 s
    assert [c["section"] for c in seen["before_step"][0]["checks"]] == ["e2e", "loss"]
    final, md = files()
    assert final["complete"] is True and final["sections_done"] == ["loss", "step"]
    assert "**PASS, 1 skipped for the budget**" in md and "partial" not in md
    assert "PASS, 1 skipped for the budget" in printed


def test_budget_must_not_be_negative(nnunet_env, capsys):
    assert gpu.main(["--device", "cpu", "--budget", "-5", "--sections", "contours"]) == 2
    assert "--budget must be >= 0" in capsys.readouterr().err
