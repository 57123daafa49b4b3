"""docs/quality.md and README's "Which loss?" are what the committed study data gives
(benchmarks/studies/quality.py), and their sentences say "holds" only with a corrected p below 0.05."""
from __future__ import annotations

import csv
import json
import os

import pytest

from benchmarks.studies import quality

ARMS = {"nnU-Net": {"trainer": "nnUNetTrainer"}, "CWCD": {"trainer": "nnUNetTrainerCWCD"},
        "Combo": {"trainer": "nnUNetTrainerCombo"}, "OsC": {"trainer": "nnUNetTrainerOsC"}}


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _fake_root(tmp_path, p_holm_cwcd=0.012, stop_scores=False):
    """A repository with the two pages (only their generated markers) and one study's data: 3 arms against
    nnU-Net over 10 runs; CWCD's difference holds, Combo's does not, OsC was stopped by halving."""
    root = tmp_path / "repo"
    d = root / quality.DATA / "hippocampus_every_trainer"
    d.mkdir(parents=True)
    (root / "docs").mkdir(exist_ok=True)
    for page in quality.PAGES:
        keys = {"docs/quality.md": ["which-loss"] + [f"study {s.name}" for s in quality.STUDIES] + ["pilots"],
                "README.md": ["which-loss"]}.get(page, ["width-evidence", "recall-weighted-evidence"])
        (root / page).write_text("# page\n\n" + "".join(f"<!-- generated: {k} -->\nSTALE TEXT\n<!-- /generated: {k} -->\n\n"
                                                        for k in keys) + "hand-written tail\n")
    json.dump({"definition": {"arms": ARMS, "baseline": "nnU-Net", "folds": [0, 1, 2, 3, 4], "seeds": [0, 1],
                              "epochs": 20, "iterations": 50, "configuration": "2d", "plans": "nnUNetPilotPlans"},
               "versions": {"nnunet-losses": "0.1.0", "nnunetv2": "2.8.1", "torch": "2.14.1", "commit": "abcdef0123"},
               "collected": "2026-12-05 23:00 UTC", "report": True}, open(d / "study.json", "w"))
    runs = []
    for arm in ARMS:
        for fold in range(5):
            for seed in (0, 1):
                stopped = arm == "OsC"
                runs.append({"arm": arm, "fold": fold, "seed": seed, "status": "stopped" if stopped else "done",
                             "epochs": 5 if stopped else 20, "val_dice": 0.2 if stopped else 0.8,
                             "val_ema_dice": 0.1 if stopped else 0.7,
                             "test_dice": "" if stopped else {"nnU-Net": 0.80, "CWCD": 0.83, "Combo": 0.79}[arm]})
    _write_csv(d / "per_run.csv", runs)
    _write_csv(d / "run_level.csv", [
        {"evaluation": "test", "metric": "dice", "arm": "CWCD", "baseline": "nnU-Net", "n_runs": 10, "mean_diff": 0.03,
         "better": 10, "equal": 0, "worse": 0, "p_value": 0.002, "p_holm": p_holm_cwcd, "smallest_p": 0.002},
        {"evaluation": "test", "metric": "dice", "arm": "Combo", "baseline": "nnU-Net", "n_runs": 10,
         "mean_diff": -0.01, "better": 3, "equal": 0, "worse": 7, "p_value": 0.04, "p_holm": 0.08, "smallest_p": 0.002},
        {"evaluation": "cv", "metric": "dice", "arm": "CWCD", "baseline": "nnU-Net", "n_runs": 10, "mean_diff": 9.0,
         "better": 10, "equal": 0, "worse": 0, "p_value": 0.002, "p_holm": 0.004, "smallest_p": 0.002}]
        + ([] if not stop_scores else [
            {"evaluation": "test_epoch5", "metric": "dice", "arm": "OsC", "baseline": "nnU-Net", "n_runs": 10,
             "mean_diff": -0.2, "better": 0, "equal": 0, "worse": 10, "p_value": 0.002, "p_holm": 0.002,
             "smallest_p": 0.002}]))
    if stop_scores:  # the stopped arm and the baseline scored at the stop; OsC paints background there
        for r in runs:
            r["test_epoch5_dice"] = {"nnU-Net": 0.6, "OsC": 0.4}.get(r["arm"], "")
        _write_csv(d / "per_run.csv", runs)
        _write_csv(d / "screen.csv", [
            {"evaluation": w, "arm": arm, "fold": f, "seed": seed, "class": "1", "volume_ratio": v, "precision": p,
             "false_components": 0, "flag": flag}
            for f in range(5) for seed in (0, 1)
            for w, arm, v, p, flag in (("test", "CWCD", 1.0, 0.9, ""), ("test_epoch5", "nnU-Net", 0.9, 0.8, ""),
                                       ("test_epoch5", "OsC", 3.0, 0.3, "volume ratio 3.00 outside [0.5, 2]"))])
    json.dump({"5": {"scores": {"nnU-Net": 0.3, "CWCD": 0.35, "Combo": 0.31, "OsC": 0.1}, "stopped": ["OsC"]}},
              open(d / "halving.json", "w"))
    return root


def test_the_committed_pages_agree_with_the_committed_data():
    stale = quality.write_pages(quality.ROOT, check=True)
    assert not stale, f"{stale} differ from docs/data: run python -m benchmarks.studies.quality page"


def test_blocks_say_holds_only_below_the_corrected_threshold(tmp_path):
    root = _fake_root(tmp_path)
    assert quality.write_pages(str(root)) == list(quality.PAGES)
    page = (root / "docs" / "quality.md").read_text()
    readme = (root / "README.md").read_text()
    assert "STALE TEXT" not in page and page.endswith("hand-written tail\n")
    # the held difference: level, n, test, the corrected p, in one sentence; on both pages
    sentence = ("Hippocampus, at the end of the schedule: training with CWCD gives a higher mean test Dice than "
                "nnU-Net (+0.030; runs, n = 10, two-sided Wilcoxon signed-rank, Holm over 2 arms: p = 0.012).")
    assert sentence in page and sentence in readme
    assert "no loss here is established as better" not in readme  # CWCD is, at the end
    # Combo's raw p 0.04 is not significant after Holm: not established, never "holds"
    assert "| Combo | 10 | 0.790 | -0.0100 | 3 / 0 / 7 | 0.040 | 0.080 | 0.002 | not established |" in page
    assert "training with Combo" not in page
    # the cross-validation row is not the test-set table's
    assert "+9.0" not in page
    # the arm halving stopped: its screen score, no test-set comparison
    assert "| OsC | 0.100 (stopped) |" in page
    assert "| OsC | stopped by successive halving after epoch 5; not scored there yet |" in readme
    assert "| CWCD | +0.030, n = 10, p (Holm) = 0.012: higher, holds |" in readme
    # nothing of an unstarted study is invented
    assert "**Not started**: no data in `docs/data/studies/drive_every_trainer/`" in page
    assert quality.write_pages(str(root), check=True) == []
    # how far the grid is: a stopped run is not finished before its stop is scored
    assert ("Hippocampus grid: 30 of 40 runs finished (30 trained to the end, 0 stopped by successive halving and "
            "scored at their stop, 10 stopped and waiting for their stop's test-set score).") in readme


def test_an_arm_stopped_by_halving_is_reported_at_its_stop(tmp_path):
    root = _fake_root(tmp_path, stop_scores=True)
    quality.write_pages(str(root))
    page = (root / "docs" / "quality.md").read_text()
    readme = (root / "README.md").read_text()
    assert "**Arms stopped after epoch 5 of 20, scored at their stop**" in page
    assert "| nnU-Net | 10 | 0.600 | (baseline at epoch 5) | | | |" in page
    assert "| OsC | 10 | 0.400 | -0.2000 | 0 / 0 / 10 | 0.002 | lower, holds |" in page
    assert "| at epoch 5 | OsC | 10 | 10 | 3.00 | 0.300 | volume ratio 3.00 outside [0.5, 2] |" in page
    assert "| after training | CWCD | 10 | 0 | 1.00 | 0.900 |  |" in page
    assert ("| OsC | stopped by successive halving after epoch 5; there: -0.200, n = 10, p (Holm) = 0.002: "
            "lower, holds |") in readme
    # the stop's comparison is not the finished arms' one: no "Training with OsC" sentence
    assert "training with OsC" not in page and "training with OsC" not in readme
    # part-way through the grid a test over fewer runs than the arm has says so
    level = root / quality.DATA / "hippocampus_every_trainer" / "run_level.csv"
    rows = quality.read_csv(str(level))
    for r in rows:
        r["n_runs"] = "3" if r["arm"] == "OsC" else r["n_runs"]
    _write_csv(level, rows)
    block = quality.which_loss_block(str(root))
    assert "there: -0.200, n = 3 (of 10 so far), p (Holm) = 0.002" in block
    assert "+0.030, n = 10, p (Holm) = 0.012" in block
    # scored at their stop, stopped runs are finished too
    assert ("Hippocampus grid: finished (30 trained to the end, 10 stopped by successive halving and scored at "
            "their stop).") in readme
    data = quality.StudyData(str(root), quality.STUDIES[0])
    data.per_run[0]["status"] = "paused"
    assert quality._grid_progress(data) == ("Hippocampus grid: 39 of 40 runs finished (29 trained to the end, "
                                            "10 stopped by successive halving and scored at their stop).")


def test_a_change_in_the_data_makes_the_pages_stale(tmp_path):
    root = _fake_root(tmp_path)
    quality.write_pages(str(root))
    _fake_root(tmp_path / "again", p_holm_cwcd=0.2)  # same study, CWCD's corrected p no longer below 0.05
    src = tmp_path / "again" / "repo" / quality.DATA / "hippocampus_every_trainer" / "run_level.csv"
    (root / quality.DATA / "hippocampus_every_trainer" / "run_level.csv").write_text(src.read_text())
    # the every-trainer grid's data is in docs/quality.md and README, not in the decisions losses.md repeats
    assert quality.write_pages(str(root), check=True) == ["docs/quality.md", "README.md"]
    quality.write_pages(str(root))
    page = (root / "docs" / "quality.md").read_text()
    assert "training with CWCD" not in page
    assert ("Hippocampus, at the end of the schedule: no arm's mean test Dice differs from nnU-Net's at run level "
            "(n = 10 runs per arm") in page
    assert "smallest corrected p = 0.080" in page
    readme = (root / "README.md").read_text()
    assert "So far **no loss here is established as better than nnU-Net's default** at the end" in readme


def test_too_few_runs_at_the_end_say_so_instead_of_no_difference(tmp_path):
    """1 run per arm at the end of the schedule: no test can reach 0.05, so the page says that, not "no arm
    differs"; the stop results keep their own caveat."""
    root = _fake_root(tmp_path)
    path = root / quality.DATA / "hippocampus_every_trainer" / "run_level.csv"
    rows = quality.read_csv(str(path))
    for r in rows:
        if r["evaluation"] == "test":
            r.update(n_runs="1", p_value="nan", p_holm="nan", smallest_p="1")
    from nnunet_losses.nnunet.tools.study.report import write_csv

    write_csv(str(path), rows, list(rows[0]))
    quality.write_pages(str(root))
    readme = (root / "README.md").read_text()
    assert ("Hippocampus, at the end of the schedule: only 1 run(s) per arm are finished so far, too few for a "
            "run-level difference to hold (the smallest two-sided Wilcoxon p with n runs is 2/2^n = 1.000)") in readme
    assert "differs from nnU-Net's" not in readme
    assert "A result at a halving stop compares both trainings at that early epoch" in readme


@pytest.mark.parametrize("n,stops,family,reachable", [(6, 0, 2, 0.0625), (6, 8, 14, 0.1875), (8, 8, 14, 0.046875),
                                                       (10, 8, 14, 14 / 2 ** 9)])
def test_runs_too_few_for_holm_say_so_until_the_smallest_p_can_hold(tmp_path, n, stops, family, reachable):
    """Two arms at the end of the schedule and ``stops`` arms at halving stops with p = 0.002, in a family of
    ``family`` planned tests (the rest not compared yet: p = 1). With n runs the best an end arm can reach is
    Holm's multiplier at its rank times 2/2^n (6 x 1/32 behind the 8 stops of 14; 14 x 1/512 ahead of them):
    below 0.05 the page says no arm differs, above it says the runs are too few (never "no arm differs")."""
    root = _fake_root(tmp_path)
    data = quality.StudyData(str(root), quality.STUDIES[0])
    for r in data.run_level:
        r.update(n_runs=str(n), p_value="0.5", p_holm="1", family_size=str(family))
    data.run_level = data.run_level[:2]
    data.stop_level = {5: [{"arm": f"S{i}", "n_runs": "10", "p_value": "0.002", "p_holm": "0.02",
                            "family_size": str(family), "mean_diff": "-0.1"} for i in range(stops)]}
    assert quality.best_reachable_holm(data) == pytest.approx(reachable, abs=1e-4)
    (text,) = quality.run_level_sentences(data)
    if reachable < 0.05:
        assert "no arm's mean test Dice differs" in text and "too few" not in text
    else:
        assert f"only {n} runs per arm are finished so far, too few" in text and "differs" not in text
        assert f"becomes at best {reachable:.3f} after Holm over {family} arms" in text


@pytest.mark.parametrize("diff,p,expected", [(0.03, 0.049, "higher, holds"), (-0.03, 0.01, "lower, holds"),
                                             (0.03, 0.05, "not established"), (0.0, 0.001, "not established"),
                                             (0.03, float("nan"), "not established")])
def test_verdict(diff, p, expected):
    assert quality.verdict(diff, p) == expected


def test_an_unclosed_block_is_an_error():
    with pytest.raises(ValueError, match="has no closing"):
        quality.render("<!-- generated: pilots -->\ntext", {"pilots": "x\n"}, "docs/quality.md")


def _width_data(tmp_path, i2_gain):
    """The contour-width study's per-run test Dice: auto 0.80 (+ a per-run wobble), i1 = auto (the rule picks
    width 1 there), i3 and i6 a little lower, i2 ``auto + i2_gain``."""
    d = tmp_path / quality.DATA / "hippocampus_contour_width"
    d.mkdir(parents=True)
    arms = {"nnU-Net": {"trainer": "nnUNetTrainer"}, "CWCD_i1": {}, "CWCD_i2": {}, "CWCD_i3": {}, "CWCD_i6": {},
            "CWCD_auto": {}}
    json.dump({"definition": {"arms": arms, "baseline": "nnU-Net", "folds": [0, 1, 2, 3, 4], "seeds": [0, 1],
                              "epochs": 20, "iterations": 50, "configuration": "2d", "plans": "p"},
               "versions": {}, "collected": "now", "report": True}, open(d / "study.json", "w"))
    rows = []
    for i, (fold, seed) in enumerate((f, s) for f in range(5) for s in (0, 1)):
        auto = 0.80 + 0.01 * i
        values = {"nnU-Net": auto - 0.01, "CWCD_i1": auto, "CWCD_i2": auto + i2_gain + 0.001 * i,
                  "CWCD_i3": auto - 0.002 * (i % 3), "CWCD_i6": auto - 0.003, "CWCD_auto": auto}
        rows += [{"arm": a, "fold": fold, "seed": seed, "status": "done", "test_dice": v} for a, v in values.items()]
    _write_csv(d / "per_run.csv", rows)
    return quality.StudyData(str(tmp_path), quality.STUDIES[2])


def test_the_width_rule_changes_only_when_a_fixed_width_beats_auto(tmp_path):
    lines = "\n".join(quality.width_decision(_width_data(tmp_path / "a", i2_gain=0.02)))
    assert "**Decision: change.** CWCD_i2 gives a higher test Dice than `\"auto\"` (+0.025; runs, n = 10" in lines
    assert "Holm over 4 widths: p = 0.008" in lines  # 2/2^10 x 4
    assert "| CWCD_i1 | 10 | +0.0000 | 0 / 10 / 0 | 1.000 | not established |" in lines
    data = _width_data(tmp_path / "b", i2_gain=-0.0035)
    lines = "\n".join(quality.width_decision(data))
    assert "**Decision: keep `\"auto\"`.**" in lines and "change" not in lines
    assert "Holm over 4 widths; the closest, CWCD_i2: +0.001, p = 0.551)" in lines
    assert "CWCD_i6 (-0.003, p = 0.008) gives a lower one (same level and test)." in lines
    assert "not that the width matters" not in lines
    for row in data.per_run:  # i6 level with auto: no width is lower, and the sentence says what that means
        if row["arm"] == "CWCD_i6":
            row["test_dice"] = float(row["test_dice"]) + 0.003
    lines = "\n".join(quality.width_decision(data))
    assert "gives a lower one" not in lines and "not that the width matters" in lines


def test_losses_and_trainers_pages_repeat_the_width_decision_of_the_quality_page(tmp_path):
    root = _fake_root(tmp_path)
    quality.write_pages(str(root))
    for page in ("docs/losses.md", "docs/trainers.md"):
        text = (root / page).read_text()
        assert "**The contour-width study**" in text and "not started yet" in text
        assert "**What the DRIVE grid's degenerate-solution screen found**" in text and "not started yet" in text
    _width_data(root, i2_gain=0.02)
    quality.write_pages(str(root))
    decision = next(line for line in (root / "docs" / "quality.md").read_text().splitlines()
                    if line.startswith("**Decision: change.** CWCD_i2"))
    for page in ("docs/losses.md", "docs/trainers.md"):
        assert decision in (root / page).read_text()
        assert "rests on the rule's reasoning" not in (root / page).read_text()


def test_the_width_evidence_says_how_far_the_study_is_until_it_decides(tmp_path):
    _width_data(tmp_path, i2_gain=0.05)
    text = quality.width_evidence_block(str(tmp_path))
    assert "**Decision: change.**" in text
    (tmp_path / quality.DATA / "hippocampus_contour_width" / "per_run.csv").write_text(
        "arm,fold,seed,status,test_dice\n" + "".join(f"CWCD_auto,{f},0,done,0.8\n" for f in range(5)))
    text = quality.width_evidence_block(str(tmp_path))
    assert "not decided yet: finished runs with a test Dice: CWCD_auto 5, CWCD_i1 0" in text
    assert "Until it decides, `\"auto\"` rests on the rule's reasoning, not on a measured gain." in text


def test_the_width_rule_waits_for_ten_runs_per_arm(tmp_path):
    data = _width_data(tmp_path, i2_gain=0.05)
    data.per_run = [r for r in data.per_run if not (r["arm"] == "CWCD_i6" and r["fold"] == "4")]
    lines = "\n".join(quality.width_decision(data))
    assert "Not decided yet" in lines and "CWCD_i6 8" in lines and "Decision" not in lines


def test_the_recall_weighted_rule_counts_flagged_runs(tmp_path):
    root = _fake_root(tmp_path)
    data = quality.StudyData(str(root), quality.STUDIES[0])
    data.study = quality.STUDIES[1]
    data.definition["arms"].update({"AsymFbeta": {}, "Tversky": {}})
    screen = []
    for i, (fold, seed) in enumerate((f, s) for f in range(5) for s in (0, 1)):
        for arm, flagged in (("AsymFbeta", i < 5), ("Tversky", i < 4)):
            # a stopped run is screened at its stop; the final evaluation wins where both exist
            screen.append({"evaluation": "test_epoch5", "arm": arm, "fold": str(fold), "seed": str(seed),
                           "class": "1", "volume_ratio": "1.0", "precision": "0.8", "flag": ""})
            screen.append({"evaluation": "test", "arm": arm, "fold": str(fold), "seed": str(seed), "class": "1",
                           "volume_ratio": "2.5" if flagged else "1.1", "precision": "0.5",
                           "flag": "volume ratio 2.50 outside [0.5, 2]" if flagged else ""})
    data.screen = screen
    lines = "\n".join(quality.recall_weighted_decision(data))
    assert "| AsymFbeta | 10 | 5 | 1.80 | 0.500 | variant with CE, and a warning |" in lines
    assert "| Tversky | 10 | 4 | 1.10 | 0.500 | a note in the docs |" in lines
    # docs/losses.md and docs/trainers.md repeat the counts and the decision in one sentence
    d = tmp_path / "root" / quality.DATA / "drive_every_trainer"
    d.mkdir(parents=True)
    _write_csv(d / "per_run.csv", data.per_run)
    _write_csv(d / "screen.csv", screen)
    json.dump({"definition": data.definition, "versions": {}, "collected": "now", "report": True},
              open(d / "study.json", "w"))
    text = quality.recall_weighted_evidence_block(str(tmp_path / "root"))
    assert ("AsymFbeta: 5 of 10 runs flagged (median volume ratio 1.80, mean precision 0.500); decision: variant "
            "with CE, and a warning; Tversky: 4 of 10 runs flagged") in text
    data.screen = [r for r in screen if not (r["arm"] == "Tversky" and r["fold"] == "0")]
    assert "| Tversky | 8 | 2 |" in "\n".join(quality.recall_weighted_decision(data))
    assert "not decided yet (10 runs needed)" in "\n".join(quality.recall_weighted_decision(data))


def test_a_superseded_halving_decision_is_shown_beside_the_one_that_counts(tmp_path):
    """A decision made again with the screen keeps the first one (nnU-Net's EMA) in ``halving.json``; the page
    shows both, and the arm the first one stopped is marked only in its column."""
    root = _fake_root(tmp_path)
    d = root / quality.DATA / "hippocampus_every_trainer"
    json.dump({"5": {"scores": {"nnU-Net": 0.3, "CWCD": 0.35, "Combo": 0.31, "OsC": 0.1}, "stopped": ["OsC"],
                     "screen": "validation pseudo Dice, mean of the last 2 epochs up to the pause",
                     "superseded": {"scores": {"nnU-Net": 0.06, "CWCD": 0.02, "Combo": 0.2, "OsC": 0.1},
                                    "stopped": ["CWCD"]}}}, open(d / "halving.json", "w"))
    quality.write_pages(str(root))
    page = (root / "docs" / "quality.md").read_text()
    assert "| arm | after epoch 5, first decision (nnU-Net's EMA; superseded) | after epoch 5 |" in page
    assert "| CWCD | 0.020 (stopped) | 0.350 |" in page
    assert "| OsC | 0.100 | 0.100 (stopped) |" in page
    assert "A first decision was taken with nnU-Net's EMA" in page


def test_arms_flagged_in_half_their_runs_get_a_warning_beside_the_baseline_there(tmp_path):
    """OsC is flagged at its halving stop in all 10 screened runs, nnU-Net in none there; CWCD in none after
    training. Only OsC is listed, in the study's block and in docs/trainers.md's warning; with 4 of 10 runs
    flagged it is not, and with 3 of its 10 runs screened the warning waits. On DRIVE the recall-weighted
    losses have their own rule and are left to it."""
    root = _fake_root(tmp_path, stop_scores=True)
    data = quality.StudyData(str(root), quality.STUDIES[0])
    (row,) = quality.flagged_arms(data)
    assert (row["arm"], row["evaluated"], row["flagged"], row["runs"], row["baseline"]) == \
        ("OsC", "at its stop after epoch 5", 10, 10, (0, 10))
    table = "\n".join(quality.flagged_decision(data))
    assert "| OsC | at its stop after epoch 5 | 10 of 10 | 3.00 | 0.300 | 0 of 10 |" in table
    assert "not trained further" in table and "| CWCD |" not in table
    text = quality.flagged_evidence_block(str(root))
    assert "Hippocampus: OsC at its stop after epoch 5, 10 of 10 runs flagged (median volume ratio 3.00" in text
    assert "nnU-Net's runs there: 0 of 10" in text and "DRIVE: not screened yet" in text
    # a grid part-way: 3 of OsC's 10 runs screened, all flagged; shown as such, no warning yet
    screen = quality.read_csv(str(root / quality.DATA / "hippocampus_every_trainer" / "screen.csv"))
    _write_csv(root / quality.DATA / "hippocampus_every_trainer" / "screen.csv",
               [r for r in screen if r["arm"] != "OsC" or int(r["fold"]) < 2 and r["seed"] == "0" or
                r["fold"] == "2" and r["seed"] == "1"])
    partial = quality.StudyData(str(root), quality.STUDIES[0])
    assert "| OsC | at its stop after epoch 5 | 3 of 3 (3 of 10 runs screened so far) |" in \
        "\n".join(quality.flagged_decision(partial))
    text = quality.flagged_evidence_block(str(root))
    assert "Hippocampus: no warning yet; not decided yet: OsC (3 of 3 runs flagged, 3 of 10 screened)" in text
    assert "OsC at its stop" not in text
    for r in data.screen:
        if r["arm"] == "OsC" and int(r["fold"]) >= 2:
            r["flag"] = ""
    assert quality.flagged_arms(data) == [] and "None so far." in "\n".join(quality.flagged_decision(data))
    data.study = quality.STUDIES[1]
    for r in data.screen:
        r["flag"] = "precision low" if r["arm"] == "OsC" else r["flag"]
    data.definition["arms"]["AsymFbeta"] = {}
    data.screen += [{**r, "arm": "AsymFbeta"} for r in data.screen if r["arm"] == "OsC"]
    assert [r["arm"] for r in quality.flagged_arms(data)] == ["OsC"]
    assert "besides the recall-weighted losses" in quality.flagged_decision(data)[0]


def _twin_data(tmp_path, gain, tversky_stop=10, asym_status="stopped"):
    """Hippocampus grid rows of AsymFbeta and Tversky: both stopped after epoch 10 (or Tversky at
    ``tversky_stop``), AsymFbeta's test Dice at its stop = Tversky's + ``gain`` + a small per-run wobble."""
    d = tmp_path / quality.DATA / "hippocampus_every_trainer"
    d.mkdir(parents=True)
    json.dump({"definition": {"arms": {"nnU-Net": {}, "AsymFbeta": {}, "Tversky": {}}, "baseline": "nnU-Net",
                              "folds": [0, 1, 2, 3, 4], "seeds": [0, 1], "epochs": 20},
               "versions": {}, "collected": "now", "report": True}, open(d / "study.json", "w"))
    rows = []
    for i, (fold, seed) in enumerate((f, s) for f in range(5) for s in (0, 1)):
        tversky = 0.70 + 0.01 * i
        for arm, status, stop, value in (("AsymFbeta", asym_status, 10, tversky + gain + 0.0001 * i),
                                         ("Tversky", "stopped", tversky_stop, tversky)):
            rows.append({"arm": arm, "fold": fold, "seed": seed, "status": status, "epochs": stop,
                         "test_epoch5_dice": value if stop == 5 else "", "test_epoch10_dice": value if stop == 10 else ""})
    _write_csv(d / "per_run.csv", rows)
    return quality.StudyData(str(tmp_path), quality.STUDIES[0])


def test_asymfbeta_and_tversky_are_compared_once_per_dataset_at_the_same_evaluation(tmp_path):
    text = quality.twins_sentence(_twin_data(tmp_path / "a", gain=0.01))
    assert text == ("Hippocampus: at their stop after epoch 10, mean test Dice 0.755 (AsymFbeta) and 0.745 (Tversky), "
                    "difference +0.0105, AsymFbeta higher / equal / lower in 10 / 0 / 0 runs (run level, n = 10 pairs, "
                    "two-sided exact Wilcoxon signed-rank: p = 0.002): AsymFbeta higher, holds")
    # equal losses: nothing established; the block names both datasets and says what the test is
    root = tmp_path / "b"
    _twin_data(root, gain=-0.00045)
    block = quality.twins_evidence_block(str(root))
    assert "one test per dataset, added after the Hippocampus grid's data, outside the grids' Holm families" in block
    assert ": no difference established" in block and "DRIVE" not in block  # no DRIVE data in this root
    # scored at different stops, or not finished: no test
    assert "not comparable (AsymFbeta scored at their stop after epoch 10, Tversky scored at their stop after " \
           "epoch 5)" in quality.twins_sentence(_twin_data(tmp_path / "c", gain=0.01, tversky_stop=5))
    assert "not compared yet (runs finished: AsymFbeta 0 of 10, Tversky 10 of 10)" in \
        quality.twins_sentence(_twin_data(tmp_path / "d", gain=0.01, asym_status="paused"))


def test_same_seed_reruns_say_how_far_they_moved_and_what_the_decision_would_have_been(tmp_path):
    """The epoch-5 decision (screen means nnU-Net 0.3, CWCD 0.5, Combo 0.45, OsC 0.1) stopped OsC. Combo's 10
    runs, restored without checkpoints, trained again: 0.001 lower each leaves the decision as it was; 0.5
    lower would have stopped Combo instead, which the page says without changing the recorded decision."""
    root = _fake_root(tmp_path)
    d = root / quality.DATA / "hippocampus_every_trainer"
    json.dump({"5": {"scores": {"nnU-Net": 0.3, "CWCD": 0.5, "Combo": 0.45, "OsC": 0.1}, "stopped": ["OsC"],
                     "screen": "validation pseudo Dice, mean of the last 2 epochs up to the pause"}},
              open(d / "halving.json", "w"))
    data = quality.StudyData(str(root), quality.STUDIES[0])
    assert quality.rerun_lines(data) == []  # no run trained again
    for shift, expected in ((-0.001, "stops the same arms."),
                            (-0.5, "would stop Combo instead of OsC (the recorded decision stands")):
        for i, r in enumerate(r for r in data.per_run if r["arm"] == "Combo"):
            r.update(rerun_epoch="5", lost_val_dice=str(0.45 + 0.01 * i), rerun_val_dice=str(0.45 + 0.01 * i + shift))
        (text, _) = quality.rerun_lines(data)
        assert text.startswith("**Same-seed reruns after epoch 5** (10 runs restored without their checkpoint")
        assert "descriptive, not a test" in text and expected in text
        assert f"median {shift:+.4f}, median |difference| {abs(shift):.4f}, largest {abs(shift):.4f}." in text
