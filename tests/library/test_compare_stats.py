"""The compare tool's statistics (paired comparison against a baseline, ranking) against independent
NumPy/SciPy computations and hand-worked numbers. No nnU-Net needed: the per-case tables are built here."""
import math

import numpy as np
import pytest
from scipy import stats

pd = pytest.importorskip("pandas")

from nnunet_losses.nnunet.tools.compare.paired import (PAIRED_COLUMNS, bootstrap_ci, holds_lines, holm,  # noqa: E402
                                                       paired_comparison, paired_section, verdict, wilcoxon_p)
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
    assert row["p_value"] == pytest.approx(stats.wilcoxon(per_case, method="exact").pvalue, abs=1e-12)
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


def test_holm_family_is_methods_x_foreground_classes_and_the_mean_row_its_own():
    # one foreground class, 8 cases: the per-case differences put ranks 1 and 2 below zero -> T- = 3, exact
    # two-sided p = 2 * #{subsets of 1..8 with sum <= 3} / 2^8 = 2 * 5 / 256 = 0.0390625. The "mean" row repeats
    # the class row; counting both in one family doubled every p (0.078: "no difference holds")
    base = np.linspace(0.5, 0.8, 8)
    diff = np.array([-0.01, -0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08])
    got = paired_comparison(_table([base, base + diff]), ["dice"], _methods(2), 0, ["1", "mean"], draws=2000)
    assert np.allclose(got.p_value, 10 / 256) and np.allclose(got.p_holm, 10 / 256)
    assert (got.ci_low > 0).all() and [verdict(r) for _, r in got.iterrows()] == [1, 1]
    # two classes, two methods: the class rows are one family of 4, the mean rows one family of 2
    rng = np.random.default_rng(0)
    rows = []
    for mi, shift in enumerate([0.0, 0.02, 0.01]):
        for i in range(10):
            v = {"1": 0.6 + 0.02 * i + shift + rng.normal(0, 0.02), "2": 0.5 + shift + rng.normal(0, 0.03)}
            for cls, x in [*v.items(), ("mean", (v["1"] + v["2"]) / 2)]:
                rows.append({"method": mi, "fold": "0", "case": f"c{i}", "class": cls, "dice": x,
                             "hd95": 10 * (1 - x)})
    df = pd.DataFrame(rows)
    got = paired_comparison(df, ["dice", "hd95"], _methods(3), 0, ["1", "2", "mean"], draws=200)
    for metric in ("dice", "hd95"):
        cls_rows = (got.metric == metric) & (got["class"] != "mean")
        mean_rows = (got.metric == metric) & (got["class"] == "mean")
        assert cls_rows.sum() == 4 and mean_rows.sum() == 2
        assert np.allclose(got.p_holm[cls_rows], holm(got.p_value[cls_rows]))
        assert np.allclose(got.p_holm[mean_rows], holm(got.p_value[mean_rows]))
    # --holm-across-metrics: one family of 8 class rows and one of 4 mean rows over both metrics
    across = paired_comparison(df, ["dice", "hd95"], _methods(3), 0, ["1", "2", "mean"], draws=200,
                               across_metrics=True)
    is_mean = (across["class"] == "mean").to_numpy()
    assert np.allclose(across.p_holm[~is_mean], holm(across.p_value[~is_mean]))
    assert np.allclose(across.p_holm[is_mean], holm(across.p_value[is_mean]))
    assert (across.p_holm >= got.p_holm - 1e-15).all() and (across.p_holm > got.p_holm).any()


def _exact_two_sided(d):
    """Two-sided exact Wilcoxon p by enumerating every sign assignment of the ranks (no ties, no zeros)."""
    d = np.asarray(d, dtype=float)
    ranks = stats.rankdata(np.abs(d))
    t_plus = ranks[d > 0].sum()
    signs = (np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1
    null = signs @ ranks
    return min(1.0, 2 * min(np.mean(null <= t_plus), np.mean(null >= t_plus)))


def test_wilcoxon_method_is_explicit_whatever_the_scipy_version():
    # 12 non-zero differences and 3 zeros: SciPy's default ("auto") switched to the normal approximation when
    # zeros are present (before 1.15, and still from 14 values on); the exact p is 2 / 2^12
    d = np.r_[np.zeros(3), np.arange(1, 13) / 100]
    assert wilcoxon_p(d) == pytest.approx(2 / 2 ** 12, rel=1e-12)
    # the pattern: 5 cases better, 3 equal -> exact 2 / 32 = 0.0625 (normal approximation: 0.043)
    assert wilcoxon_p([0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(0.0625, rel=1e-12)
    rng = np.random.default_rng(3)
    for n in (6, 9, 14):
        d = rng.normal(0.3, 1, n)
        assert wilcoxon_p(d) == pytest.approx(_exact_two_sided(d), rel=1e-9)
        assert wilcoxon_p(np.r_[d, 0, 0]) == pytest.approx(_exact_two_sided(d), rel=1e-9)  # zeros dropped
    # from 50 non-zero differences on: the normal approximation, no continuity correction, tie-corrected variance
    d = np.r_[rng.normal(0.2, 1, 60), 0, 0]
    nz = d[d != 0]
    r = stats.rankdata(np.abs(nz))
    n = nz.size
    z = (r[nz > 0].sum() - n * (n + 1) / 4) / np.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    assert wilcoxon_p(d) == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert math.isnan(wilcoxon_p([0.3]))
    assert wilcoxon_p([0, 0, 0]) == 1


def test_hodges_lehmann_and_its_interval_by_hand():
    from nnunet_losses.nnunet.tools.compare.paired import hodges_lehmann, hodges_lehmann_interval

    d = np.array([0.3, -0.1, 0.5, 0.2, 0.9, 0.4, -0.2, 0.6, 0.1])
    walsh = sorted((d[i] + d[j]) / 2 for i in range(d.size) for j in range(i, d.size))  # 45 averages
    assert hodges_lehmann(d) == pytest.approx(walsh[22])  # the median of 45 values
    assert hodges_lehmann([1.0, 3.0]) == pytest.approx(2.0)  # Walsh averages 1, 2, 3
    # C: the number of T+ values t with P(T+ <= t) <= 0.025 under the null, by enumerating all 2^9 sign flips
    signs = (np.arange(2 ** 9)[:, None] >> np.arange(9)) & 1
    t_plus = signs @ np.arange(1, 10)
    c = sum(1 for t in range(46) if np.mean(t_plus <= t) <= 0.025)
    assert c == 6  # the tabulated critical value for n = 9 (two-sided 5%: T <= 5)
    assert hodges_lehmann_interval(d) == (pytest.approx(walsh[c - 1]), pytest.approx(walsh[45 - c]))
    assert all(math.isnan(v) for v in hodges_lehmann_interval(d[:5]))  # n = 5: no 95% interval exists
    # from 50 on: the normal approximation of C
    big = np.random.default_rng(0).normal(0.1, 1, 60)
    m = 60 * 61 // 2
    c = int(np.floor(m / 2 - stats.norm.ppf(0.975) * np.sqrt(60 * 61 * 121 / 24)))
    walsh = np.sort([(big[i] + big[j]) / 2 for i in range(60) for j in range(i, 60)])
    assert hodges_lehmann_interval(big) == (pytest.approx(walsh[c - 1]), pytest.approx(walsh[m - c]))


# ----------------------------------------------------------------------------------- empty cases
class _ArrayReader:
    """A stand-in for nnU-Net's reader: ``read_seg(name)`` returns the array registered under that name."""
    arrays = {}

    def read_seg(self, path):
        return self.arrays[path][None], {"spacing": (1.0, 1.0, 1.0)}


def _empty_study():
    """10 cases (3D 1 x 12 x 12 stored as 2D), 6 with an empty reference: A predicts nothing there, B a blob.
    Where the reference is not empty, B is slightly better than A."""
    from nnunet_losses.nnunet.tools.compare.table import MetricOptions, evaluate

    jobs = []
    for i in range(10):
        ref = np.zeros((1, 12, 12), np.int32)
        a, b = ref.copy(), ref.copy()
        if i >= 6:
            ref[0, 2:8, 2:8] = 1
            a[0, 2:8, 3:9] = 1   # one column off
            b[0, 2:8, 2:9] = 1   # one column too many: better Dice than A
        else:
            b[0, 9:11, 9:11] = 1  # a hallucinated blob
        for name, arr in (("ref", ref), ("A", a), ("B", b)):
            _ArrayReader.arrays[f"{name}{i}"] = arr
        jobs.append((f"c{i}", f"ref{i}", [(0, "0", f"A{i}"), (1, "0", f"B{i}")]))

    def run(empty):
        return evaluate(jobs, _ArrayReader, [1], None, MetricOptions(empty=empty), 1, False)[0]
    return run


def test_empty_references_count_in_tables_tests_and_rankings():
    run = _empty_study()
    df = run("score")
    one = df[df["class"] == "1"].set_index(["method", "case"])
    assert list(one.loc[(0, "c0"), ["dice", "iou", "precision", "recall", "nsd", "hd95"]]) == [1, 1, 1, 1, 1, 0]
    assert one.loc[(0, "c0"), "empty"] == "both" and one.loc[(1, "c0"), "empty"] == "reference"
    assert one.loc[(1, "c0"), "dice"] == 0 and one.loc[(1, "c0"), "recall"] == 0 and one.loc[(0, "c7"), "empty"] == ""
    assert one.loc[(1, "c0"), "hd95"] == pytest.approx(np.hypot(11, 11))  # the image diagonal, as before
    methods = _methods(2)
    ranks = ranking_table(df, ["dice"], methods, draws=200, class_order=["1"])
    assert list(ranks["rank"]) == [1, 2]  # A: perfect on the 6 empty cases, B: 0 there
    assert np.allclose(ranks.mean_rank, [(6 * 1 + 4 * 2) / 10, (6 * 2 + 4 * 1) / 10])
    paired = paired_comparison(df, ["dice"], methods, 0, ["1", "mean"], draws=500).iloc[0]
    assert paired["n"] == 10 and paired["wins"] == 4 and paired["losses"] == 6  # B against A
    assert paired["mean_diff"] < 0
    # --empty nan: the empty-reference cases vanish (the old behaviour): 4 cases, all in favour of B
    old = run("nan")
    assert old[(old["class"] == "1") & (old.case == "c0")].dice.isna().sum() == 1
    assert paired_comparison(old, ["dice"], methods, 0, ["1"], draws=500).iloc[0]["n"] == 4
    assert list(ranking_table(old, ["dice"], methods, draws=200, class_order=["1"])["rank"]) == [2, 1]


def test_undeclared_labels_against_numpy_unique():
    from nnunet_losses.nnunet.tools.compare.checks import undeclared_labels

    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 4])
    for seg in (rng.integers(0, 3, (5, 6)), rng.integers(0, 8, (5, 6)), rng.integers(-2, 3, (5, 6)),
                np.full((2, 2), 9)):
        found = np.unique(seg)
        assert undeclared_labels(seg.astype(np.int32), labels).tolist() == found[~np.isin(found, labels)].tolist()


def test_score_empty_by_metric():
    from nnunet_losses.nnunet.tools.compare.empty import empty_kind, score_empty

    nan = float("nan")
    both = {"dice": nan, "hd95": nan, "precision": nan, "betti1_error": nan, "lesion_fpr": nan, "n_ref": 0}
    assert score_empty(both, "both", 2) == {"dice": 1, "hd95": 0, "precision": 1, "betti1_error": 0,
                                            "lesion_fpr": 0, "n_ref": 0}
    assert math.isnan(score_empty(both, "both", 3)["betti1_error"])  # not computed in 3D
    pred_empty = {"dice": 0.0, "precision": nan, "recall": 0.0, "lesion_fpr": nan}
    assert score_empty(pred_empty, "prediction", 3) == {"dice": 0, "precision": 0, "recall": 0, "lesion_fpr": 1}
    ref_empty = {"dice": 0.0, "precision": 0.0, "recall": nan, "lesion_tpr": nan}
    assert score_empty(ref_empty, "reference", 3) == {"dice": 0, "precision": 0, "recall": 0, "lesion_tpr": 0}
    assert [empty_kind(0, 0), empty_kind(0, 3), empty_kind(3, 0), empty_kind(2, 2)] == \
        ["both", "reference", "prediction", ""]


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
    got = ranking_table(df, ["dice"], _methods(3), draws=draws, seed=seed, class_order=["mean"])
    assert list(got.columns) == ["metric", "class", "method", "n_cases", "mean_rank", "rank", "rank_q025", "rank_median",
                                 "rank_q975", "kendall_tau_mean", "kendall_tau_q025", "p_rank_1", "p_rank_2", "p_rank_3"]
    # per-case ranks (base, A, B): c0 1 2 3; c1 2 1 3; c2 3 1 2; c3 3 1.5 1.5 -> mean 2.25, 1.375, 2.375
    assert np.allclose(got.mean_rank, [2.25, 1.375, 2.375])
    assert list(got["rank"]) == [2, 1, 3]
    freq = got[["p_rank_1", "p_rank_2", "p_rank_3"]].to_numpy()
    assert np.allclose(freq.sum(axis=1), 1)
    # independent: the same draws, a loop, ranks by argsort
    ranks = np.array([[1, 2, 3], [2, 1, 3], [3, 1, 2], [3, 1.5, 1.5]])
    idx = np.random.default_rng(seed).integers(0, 4, size=(draws, 4))
    expected = np.zeros((3, 3))
    boot = []
    for draw in idx:
        mean = ranks[draw].mean(axis=0)
        boot.append([1 + int(np.sum(mean < mean[m])) for m in range(3)])  # 1 + number of strictly better methods
        for m in range(3):
            expected[m, boot[-1][m] - 1] += 1
    assert np.allclose(freq, expected / draws)
    # rank quantiles of the same draws, and Kendall's tau (SciPy's tau-b) of each bootstrap ranking to [2, 1, 3]
    boot = np.array(boot)
    for q, col in ((2.5, "rank_q025"), (50, "rank_median"), (97.5, "rank_q975")):
        assert np.allclose(got[col], [np.percentile(boot[:, m], q) for m in range(3)])
    taus = np.array([stats.kendalltau([2, 1, 3], b).statistic for b in boot])
    taus = taus[np.isfinite(taus)]
    assert np.allclose(got.kendall_tau_mean, taus.mean()) and np.allclose(got.kendall_tau_q025,
                                                                          np.percentile(taus, 2.5))
    assert (got.n_cases == 4).all()
    md = ranking_section(got, "dice")
    assert "| 1 | A | 1.38 |" in md and md.index("| 1 | A") < md.index("| 2 | base")


def test_per_class_rankings_pairwise_tests_and_consensus():
    from nnunet_losses.nnunet.tools.compare.pairwise import pairwise_section, pairwise_table
    from nnunet_losses.nnunet.tools.compare.ranking import consensus_section, consensus_table

    rng = np.random.default_rng(4)
    n = 12
    # class 1: A > base > B clearly; class 2: B best; the mean row averages the two
    v1 = {0: rng.uniform(0.6, 0.7, n)}
    v1[1], v1[2] = v1[0] + 0.1 + rng.uniform(0, 0.02, n), v1[0] - 0.1 - rng.uniform(0, 0.02, n)
    v2 = {0: rng.uniform(0.5, 0.6, n)}
    v2[1], v2[2] = v2[0] - rng.uniform(0, 0.01, n), v2[0] + 0.3 + rng.uniform(0, 0.01, n)
    rows = []
    for mi in range(3):
        for i in range(n):
            for cls, x in (("1", v1[mi][i]), ("2", v2[mi][i]), ("mean", (v1[mi][i] + v2[mi][i]) / 2)):
                rows.append({"method": mi, "fold": "0", "case": f"c{i:02d}", "class": cls, "dice": x,
                             "hd95": [5.0, 1.0, 3.0][mi] + 0.01 * i})
    df = pd.DataFrame(rows)
    methods = _methods(3)
    got = ranking_table(df, ["dice", "hd95"], methods, draws=300, class_order=["1", "2", "mean"])
    r = got.set_index(["metric", "class", "method"])["rank"]
    assert [r[("dice", "1", m)] for m in ("base", "A", "B")] == [2, 1, 3]
    assert [r[("dice", "2", m)] for m in ("base", "A", "B")] == [2, 3, 1]
    assert [r[("dice", "mean", m)] for m in ("base", "A", "B")] == [3, 2, 1]
    assert [r[("hd95", "mean", m)] for m in ("base", "A", "B")] == [3, 1, 2]  # lower is better
    # consensus: mean over metrics of the mean-row ranks: base (3+3)/2, A (2+1)/2, B (1+2)/2 -> A and B share 1
    cons = consensus_table(got, ["dice", "hd95"]).set_index("method")
    assert np.allclose(cons.mean_rank_over_metrics[["base", "A", "B"]], [3, 1.5, 1.5])
    assert list(cons.consensus_rank[["base", "A", "B"]]) == [3, 1, 1]
    assert "one choice among several" in consensus_section(consensus_table(got, ["dice", "hd95"]))
    # pairwise: one-sided exact Wilcoxon per ordered pair on the mean row, Holm over the 6 pairs, by SciPy
    pw = pairwise_table(df, ["dice"], methods)
    mean_v = {mi: (v1[mi] + v2[mi]) / 2 for mi in range(3)}
    raw = {(a, b): stats.wilcoxon(mean_v[a] - mean_v[b], alternative="greater", method="exact").pvalue
           for a in range(3) for b in range(3) if a != b}
    keys = list(raw)
    adjusted = holm([raw[k] for k in keys])
    names = ["base", "A", "B"]
    p = pw.set_index(["method", "other"])
    for k, adj in zip(keys, adjusted):
        row = p.loc[(names[k[0]], names[k[1]])]
        assert row["p_value"] == pytest.approx(raw[k], rel=1e-12) and row["p_holm"] == pytest.approx(adj, rel=1e-12)
        assert row["better"] == (adj < 0.05) and row["n"] == n
    assert p.loc[("B", "base"), "better"] and not p.loc[("base", "B"), "better"]
    assert "- B: significantly better than base, A" in pairwise_section(pw, "dice")


def test_ranking_respects_lower_is_better_and_skips_incomplete_cases():
    values = [[3.0, 2.0, np.nan], [1.0, 1.0, 5.0]]
    df = _table(values, metric="hd95")
    got = ranking_table(df, ["hd95"], _methods(2), draws=50, class_order=["mean"])
    assert list(got["rank"]) == [2, 1] and np.allclose(got.mean_rank, [2.0, 1.0]) and (got.n_cases == 2).all()
    assert np.allclose(got.p_rank_1, [0, 1])
