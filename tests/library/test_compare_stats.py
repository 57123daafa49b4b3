"""The compare tool's statistics (paired comparison against a baseline, ranking) against independent
NumPy/SciPy computations and hand-worked numbers. No nnU-Net needed: the per-case tables are built here."""
import math

import numpy as np
import pytest
from scipy import stats

pd = pytest.importorskip("pandas")

from nnunet_losses.nnunet.tools.compare.paired import (PAIRED_COLUMNS, bootstrap_ci, holds_lines, holm,  # noqa: E402
                                                       paired_comparison, paired_section, verdict)
from nnunet_losses.nnunet.tools.compare.ranking import ranking_section, ranking_table  # noqa: E402
from nnunet_losses.nnunet.tools.compare.reading import Method  # noqa: E402


def _table(values, folds=None, metric="dice", cls="1"):
    """Per-case DataFrame as table.evaluate builds it: values[method] = list of per-row values; one class plus
    the "mean" row (equal to the class here); ``folds``: (case, fold) of each row (default: one fold per case)."""
    rows = []
    for mi, vals in enumerate(values):
        keys = folds or [(f"c{i:02d}", "0") for i in range(len(vals))]
        for (case, fold), v in zip(keys, vals):
            for c in (cls, "mean"):
                rows.append({"method": mi, "fold": fold, "case": case, "class": c, metric: v})
    return pd.DataFrame(rows)


def _methods(n):
    return [Method(name) for name in ["base", "A", "B", "C"][:n]]


# ----------------------------------------------------------------------------------- paired: numbers
def test_bootstrap_ci_and_wilcoxon_match_an_independent_computation():
    # 7 cases; cases c0..c2 are predicted by two folds (each fold's model on the same case), c3..c6 by one
    keys = [("c0", "0"), ("c0", "1"), ("c1", "0"), ("c1", "1"), ("c2", "0"), ("c2", "1"), ("c3", "0"),
            ("c4", "0"), ("c5", "0"), ("c6", "0")]
    # c2 is worse in both folds by less than c3 is better, but by more in sum: the test must use per-case means
    base = [0.70, 0.72, 0.65, 0.60, 0.80, 0.82, 0.75, 0.50, 0.66, 0.71]
    meth = [0.74, 0.73, 0.64, 0.66, 0.77, 0.80, 0.79, 0.58, 0.65, 0.78]
    df = _table([base, meth], keys)
    draws, seed = 3000, 7
    got = paired_comparison(df, ["dice"], _methods(2), 0, ["1", "mean"], draws=draws, seed=seed)
    assert list(got.columns) == PAIRED_COLUMNS
    row = got[(got["class"] == "1") & (got.method == "A")].iloc[0]

    # independent computation: pairs grouped by case; draws of case ids; all pairs of each drawn case
    diffs = {}
    for (case, _), b, m in zip(keys, base, meth):
        diffs.setdefault(case, []).append(m - b)
    cases = sorted(diffs)
    idx = np.random.default_rng(seed).integers(0, len(cases), size=(draws, len(cases)))
    boot = [np.mean(np.concatenate([diffs[cases[i]] for i in draw])) for draw in idx]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    per_case = np.array([np.mean(diffs[c]) for c in cases])
    assert row["n"] == 7
    assert row["mean_diff"] == pytest.approx(np.mean(np.subtract(meth, base)), abs=1e-12)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert row["p_value"] == pytest.approx(stats.wilcoxon(per_case).pvalue, abs=1e-12)
    assert (row["wins"], row["ties"], row["losses"]) == (
        int(np.sum(per_case > 0)), int(np.sum(per_case == 0)), int(np.sum(per_case < 0)))
    # the bootstrap helper on its own, with the per-case sums and counts
    s = [np.sum(diffs[c]) for c in cases]
    c = [len(diffs[c]) for c in cases]
    assert bootstrap_ci(s, c, draws, seed) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_holm_by_hand():
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to 0.06 (step-down is monotone)
    assert np.allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    got = holm([0.5, np.nan, 0.2])  # NaN is no test: two tests in the family
    assert math.isnan(got[1]) and np.allclose(got[[0, 2]], [0.5, 0.4])
    assert np.allclose(holm([0.6, 0.9]), [1.0, 1.0])  # capped at 1


def test_holm_runs_over_methods_and_classes_of_one_metric():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, 10)
    df = _table([base, base + rng.normal(0.02, 0.03, 10), base + rng.normal(0.01, 0.05, 10)])
    got = paired_comparison(df, ["dice"], _methods(3), 0, ["1", "mean"], draws=500)
    assert np.allclose(got.p_holm, holm(got.p_value))  # 2 methods x 2 classes = one family of 4


# ----------------------------------------------------------------------------------- paired: verdicts
def test_identical_method_differs_by_nothing_and_is_not_marked():
    base = list(np.linspace(0.5, 0.9, 8))
    df = _table([base, list(base)])
    got = paired_comparison(df, ["dice"], _methods(2), 0, ["1", "mean"], draws=500)
    for _, r in got.iterrows():
        assert r["mean_diff"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0
        assert r["p_value"] == 1 and r["p_holm"] == 1
        assert (r["wins"], r["ties"], r["losses"]) == (0, 8, 0)
        assert verdict(r) == 0
    md = paired_section(got, "dice", _methods(2), 0, ["1", "mean"], {"1": "organ"})
    assert "▲" not in md.split("in favour of")[1] and "▼" not in md.split("in favour of")[1]
    assert "| organ | +0.0000 [+0.0000, +0.0000], p 1, 0/8/0 |" in md
    assert holds_lines(got, _methods(2), 0, {"1": "organ"}) == [
        "A vs base: no difference holds (95% CI excluding 0 and Holm p < 0.05)"]


def test_clearly_better_method_is_marked_in_both_directions():
    rng = np.random.default_rng(1)
    base_dice = rng.uniform(0.6, 0.8, 12)
    base_hd = rng.uniform(5, 9, 12)
    dice = _table([base_dice, base_dice + 0.1 + rng.uniform(0, 0.01, 12),
                   base_dice - 0.1 - rng.uniform(0, 0.01, 12)])
    hd = _table([base_hd, base_hd - 2 - rng.uniform(0, 0.1, 12), base_hd + 2], metric="hd95")
    df = dice.merge(hd, on=["method", "fold", "case", "class"])
    methods = _methods(3)
    got = paired_comparison(df, ["dice", "hd95"], methods, 0, ["1", "mean"], draws=1000)
    r = got.set_index(["metric", "class", "method"])
    # dice: higher is better; hd95: lower is better, so a lower HD95 is a win
    assert (r.loc[("dice", "1", "A"), ["wins", "losses"]] == [12, 0]).all() and verdict(
        r.loc[("dice", "1", "A")].to_dict() | {"metric": "dice"}) == 1
    assert (r.loc[("hd95", "1", "A"), ["wins", "losses"]] == [12, 0]).all()
    assert r.loc[("hd95", "1", "A"), "mean_diff"] < 0 and r.loc[("hd95", "1", "A"), "ci_high"] < 0
    assert r.loc[("hd95", "1", "A"), "p_holm"] < 0.05
    assert (r.loc[("hd95", "1", "B"), ["wins", "losses"]] == [0, 12]).all()
    verdicts = {k: verdict(row.to_dict() | {"metric": k[0]}) for k, row in r.iterrows()}
    assert verdicts[("hd95", "1", "A")] == 1 and verdicts[("dice", "1", "B")] == -1
    assert verdicts[("hd95", "1", "B")] == -1
    md = paired_section(got, "hd95", methods, 0, ["1", "mean"], {"1": "organ"})
    line = [x for x in md.splitlines() if x.startswith("| organ")][0]
    cells = line.rstrip(" |").split(" | ")
    assert cells[1].startswith("**-2.") and cells[1].endswith("▲**")  # A: lower HD95, in its favour
    assert cells[2].startswith("**+2.00") and cells[2].endswith("▼**")
    lines = holds_lines(got, methods, 0, {"1": "organ"})
    assert lines[0].startswith("A vs base: better in dice organ (+0.1") and "hd95 organ (-2." in lines[0]
    assert "worse in" not in lines[0]
    assert lines[1].startswith("B vs base: worse in dice organ (-0.1")


def test_single_prediction_is_paired_with_every_fold():
    # "observer" has one prediction per case, the baseline two folds per case: each observer row pairs with both
    keys2 = [("c0", "0"), ("c0", "1"), ("c1", "0"), ("c1", "1"), ("c2", "0"), ("c2", "1")]
    rows = []
    for (case, fold), v in zip(keys2, [0.5, 0.7, 0.6, 0.6, 0.8, 0.4]):
        rows.append({"method": 0, "fold": fold, "case": case, "class": "1", "dice": v})
    for case, v in (("c0", 0.9), ("c1", 0.9), ("c2", 0.9)):
        rows.append({"method": 1, "fold": "0", "case": case, "class": "1", "dice": v})
    got = paired_comparison(pd.DataFrame(rows), ["dice"], _methods(2), 0, ["1"], draws=200).iloc[0]
    assert got["n"] == 3 and got["mean_diff"] == pytest.approx(0.9 - np.mean([0.5, 0.7, 0.6, 0.6, 0.8, 0.4]))


def test_nan_values_leave_the_pair_out():
    df = _table([[0.5, np.nan, 0.7, 0.6], [0.6, 0.9, np.nan, 0.8]])
    got = paired_comparison(df, ["dice"], _methods(2), 0, ["1"], draws=200).iloc[0]
    assert got["n"] == 2 and got["mean_diff"] == pytest.approx(0.15)


# ----------------------------------------------------------------------------------- ranking
def test_ranking_by_hand_and_against_an_independent_bootstrap():
    # 4 cases x 3 methods (Dice: higher is better); in case c3, A and B tie for the best value
    values = [[0.9, 0.8, 0.7, 0.6],   # base
              [0.8, 0.9, 0.9, 0.7],   # A
              [0.7, 0.7, 0.8, 0.7]]   # B
    df = _table(values)
    draws, seed = 400, 5
    got = ranking_table(df, ["dice"], _methods(3), draws=draws, seed=seed)
    assert list(got.columns) == ["metric", "method", "mean_rank", "rank", "p_rank_1", "p_rank_2", "p_rank_3"]
    # per-case ranks (base, A, B): c0 1 2 3; c1 2 1 3; c2 3 1 2; c3 3 1.5 1.5 -> mean 2.25, 1.375, 2.375
    assert np.allclose(got.mean_rank, [2.25, 1.375, 2.375])
    assert list(got["rank"]) == [2, 1, 3]
    freq = got[["p_rank_1", "p_rank_2", "p_rank_3"]].to_numpy()
    assert np.allclose(freq.sum(axis=1), 1)
    # independent: the same draws, a loop, ranks by argsort
    ranks = np.array([[1, 2, 3], [2, 1, 3], [3, 1, 2], [3, 1.5, 1.5]])
    idx = np.random.default_rng(seed).integers(0, 4, size=(draws, 4))
    expected = np.zeros((3, 3))
    for draw in idx:
        mean = ranks[draw].mean(axis=0)
        for m in range(3):
            expected[m, int(np.sum(mean < mean[m]))] += 1  # rank = 1 + number of strictly better methods
    assert np.allclose(freq, expected / draws)
    md = ranking_section(got, "dice")
    assert "| 1 | A | 1.38 |" in md and md.index("| 1 | A") < md.index("| 2 | base")


def test_ranking_respects_lower_is_better_and_skips_incomplete_cases():
    values = [[3.0, 2.0, np.nan], [1.0, 1.0, 5.0]]
    df = _table(values, metric="hd95")
    got = ranking_table(df, ["hd95"], _methods(2), draws=50)
    assert list(got["rank"]) == [2, 1] and np.allclose(got.mean_rank, [2.0, 1.0])
    assert np.allclose(got.p_rank_1, [0, 1])
