"""nnunet_losses_compare end to end: tiny 2D (PNG) and 3D (NIfTI) datasets, the real console command,
numbers checked against hand computation."""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image")
sitk = pytest.importorskip("SimpleITK")
pytest.importorskip("nnunetv2")

from nnunet_losses.nnunet.tools.compare.cli import entry_point, main  # noqa: E402
from nnunet_losses.nnunet.tools.compare.reading import parse_labels  # noqa: E402

CLI = os.path.join(os.path.dirname(sys.executable), "nnunet_losses_compare")


def _run(args, env=None):
    if not os.path.isfile(CLI):
        pytest.fail(f"{CLI} missing: run `pip install -e .` so that the console scripts exist")
    e = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", **(env or {}))
    return subprocess.run([CLI, *args, "--no-progress"], capture_output=True, text=True, env=e, timeout=120)


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _dice(p, r):
    """Plain Dice from counts, the test's own computation."""
    tp, n = np.sum(p & r), np.sum(p) + np.sum(r)
    return float("nan") if n == 0 else 2 * tp / n


# ------------------------------------------------------------------------------------------- 2D
def _write_png(path, arr):
    PIL.fromarray(arr.astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def tiny2d(tmp_path_factory):
    """3 cases 32 x 40: class 1 square, class 2 rectangle, ignore label 3 in the bottom rows."""
    root = tmp_path_factory.mktemp("tiny2d")
    ref_dir, a_dir, b_dir, img_dir = (root / n for n in ("labelsTs", "A", "B", "imagesTs"))
    for d in (ref_dir, a_dir, b_dir, img_dir):
        d.mkdir()
    refs, preds_a, preds_b = {}, {}, {}
    for i in range(3):
        ref = np.zeros((32, 40), np.uint8)
        ref[4:12, 4:12] = 1
        if i != 2:
            ref[16:24, 20:32] = 2  # case 2 has no class 2
        ref[28:, :] = 3
        a, b = ref.copy(), ref.copy()
        if i == 0:  # B: class 1 moved down by 2 rows, plus a class-1 blob inside the ignored rows
            b[4:12, 4:12] = 0
            b[6:14, 4:12] = 1
            b[29:31, 0:4] = 1
        if i == 1:  # A misses class 2
            a[a == 2] = 0
        if i == 2:  # B invents class 2
            b[16:18, 0:2] = 2
        for arr, d, store in ((ref, ref_dir, refs), (a, a_dir, preds_a), (b, b_dir, preds_b)):
            _write_png(d / f"case{i}.png", arr)
            store[i] = arr
        rgb = np.random.default_rng(i).integers(0, 255, (32, 40, 3))
        _write_png(img_dir / f"case{i}_0000.png", rgb)
    dj = {"channel_names": {"0": "R", "1": "G", "2": "B"},
          "labels": {"background": 0, "square": 1, "rect": 2, "ignore": 3}, "numTraining": 3, "file_ending": ".png"}
    (root / "dataset.json").write_text(json.dumps(dj))
    return root, refs, preds_a, preds_b


def test_compare_2d_console_command(tiny2d, tmp_path):
    root, refs, pa, pb = tiny2d
    out = tmp_path / "cmp"
    r = _run(["-i", f"A={root / 'A'}", f"B={root / 'B'}", "-ref", str(root / "labelsTs"),
              "--dataset-json", str(root / "dataset.json"), "--images", str(root / "imagesTs"),
              "-o", str(out), "--metrics", "dice", "--overlays", "1", "--lesions", "--empty", "nan"])
    assert r.returncode == 0, r.stderr
    # --empty nan: the numbers of the tool before empty masks were scored (both empty = NaN, left out), exactly
    # per case: our numbers against the test's own Dice (ignore label removed by hand)
    rows = {(x["method_name"], x["case"], x["class"]): x for x in _csv(out / "per_case.csv")}
    for i in range(3):
        valid = refs[i] != 3
        for name, preds in (("A", pa), ("B", pb)):
            for c in (1, 2):
                expected = _dice((preds[i] == c) & valid, (refs[i] == c) & valid)
                got = float(rows[(name, f"case{i}", str(c))]["dice"])
                assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected)
    assert float(rows[("B", "case0", "1")]["dice"]) == pytest.approx(2 * 48 / 128)  # 6 of 8 rows overlap
    assert float(rows[("B", "case0", "1")]["fp"]) == 16  # the blob in the ignored rows does not count
    assert float(rows[("A", "case1", "2")]["hd95"]) == pytest.approx(math.hypot(31, 39))  # missed: the diagonal
    assert float(rows[("A", "case0", "1")]["hd95"]) == 0.0
    assert float(rows[("B", "case2", "2")]["lesion_fpr"]) == 1.0
    # aggregation: mean +- sample std over cases, NaN cases left out; the mean row averages classes per case
    summ = {(x["method_name"], x["class"], x["metric"]): x for x in _csv(out / "summary.csv")}
    s = summ[("A", "2", "dice")]
    assert float(s["mean"]) == pytest.approx(0.5) and float(s["std"]) == pytest.approx(np.std([1, 0], ddof=1))
    assert int(s["n"]) == 2
    assert float(summ[("B", "2", "dice")]["mean"]) == pytest.approx(2 / 3)
    assert float(summ[("A", "mean", "dice")]["mean"]) == pytest.approx(np.mean([1, 0.5, 1]))
    assert float(summ[("B", "mean", "dice")]["mean"]) == pytest.approx(np.mean([0.875, 1, 0.5]))
    # the table: best of each row in bold
    md = (out / "summary.md").read_text()
    assert "| square | **1.0000 ± 0.0000** | 0.9167 ± 0.1443 |" in md
    assert "| rect | 0.5000 ± 0.7071 | **0.6667 ± 0.5774** |" in md
    assert "| **mean** | **0.8333 ± 0.2887** | 0.7917 ± 0.2602 |" in md
    assert md.split("## Dice")[1].split("##")[0] in r.stdout  # printed as well
    for f in ("plots/dice_bars.png", "plots/dice_box.png", "plots/lesion_fpr_box.png"):
        with PIL.open(out / f) as im:
            assert im.size[0] > 100
    overlays = os.listdir(out / "overlays")
    assert len(overlays) == 1 and overlays[0] in {"case1.png", "case2.png"}  # where A and B differ most


# ------------------------------------------------------------------------------------------- 3D
def _write_nii(path, arr, spacing_xyz):
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(spacing_xyz)
    sitk.WriteImage(im, str(path))


@pytest.fixture(scope="module")
def results3d(tmp_path_factory):
    """nnU-Net results layout: 2 trainers x folds 0 (cases t0, t1) and 1 (case t2); spacing z, y, x = 2, 1, 0.5 mm."""
    root = tmp_path_factory.mktemp("tiny3d")
    name = "Dataset900_Tiny"
    raw, pre, res = root / "raw", root / "pre", root / "res"
    dj = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "organ": 1, "lesion": 2}, "numTraining": 3,
          "file_ending": ".nii.gz"}
    (raw / name / "imagesTr").mkdir(parents=True)
    (pre / name / "gt_segmentations").mkdir(parents=True)
    sp = (0.5, 1.0, 2.0)  # SimpleITK order x, y, z; nnU-Net's array order is z, y, x = (2, 1, 0.5)
    ref = np.zeros((10, 12, 12), np.uint8)
    ref[2:6, 3:9, 3:9] = 1
    ref[8:10, 0:2, 0:2] = 2
    ref[8:10, 10:12, 10:12] = 2
    t1_shift = ref.copy()
    t1_shift[ref == 1] = 0
    t1_shift[3:7, 3:9, 3:9] = 1                  # organ moved by one slice = 2 mm
    t1_shift[8:10, 10:12, 10:12] = 0             # one lesion missed
    t2 = ref.copy()
    t2[0:2, 10:12, 0:2] = 2                      # one false positive lesion
    folds = {"0": ["t0", "t1"], "1": ["t2"]}
    for case in ("t0", "t1", "t2"):
        _write_nii(pre / name / "gt_segmentations" / f"{case}.nii.gz", ref, sp)
        _write_nii(raw / name / "imagesTr" / f"{case}_0000.nii.gz", ref.astype(np.float32) * 100, sp)
    for trainer, pred in (("nnUNetTrainer", t1_shift), ("nnUNetTrainerCWCD", t2)):
        out = res / name / f"{trainer}__nnUNetPlans__3d_fullres"
        for fold, cases in folds.items():
            (out / f"fold_{fold}" / "validation").mkdir(parents=True)
            for case in cases:
                p = ref if (trainer == "nnUNetTrainer" and case == "t2") else pred  # t2: the baseline is perfect
                _write_nii(out / f"fold_{fold}" / "validation" / f"{case}.nii.gz", p, sp)
        (out / "dataset.json").write_text(json.dumps(dj))
    env = {"nnUNet_raw": str(raw), "nnUNet_preprocessed": str(pre), "nnUNet_results": str(res)}
    return root, env


def test_compare_3d_trainers_console_command(results3d, tmp_path):
    root, env = results3d
    out = tmp_path / "cmp3d"
    r = _run(["-d", "900", "-c", "3d_fullres", "-tr", "nnUNetTrainer", "nnUNetTrainerCWCD", "-o", str(out),
              "--metrics", "dice", "--lesions", "--overlays", "1"], env)
    assert r.returncode == 0, r.stderr
    summ = {(x["method_name"], x["class"], x["metric"]): x for x in _csv(out / "summary.csv")}
    base = lambda c, m: summ[("nnUNetTrainer", c, m)]  # noqa: E731
    # organ Dice: shifted by one of four slices -> 2 * 3 * 36 / (2 * 144) = 0.75 in t0, t1; perfect in t2
    assert float(base("1", "dice")["mean"]) == pytest.approx(np.mean([0.75, 0.75, 1]))
    assert float(base("1", "dice")["std"]) == pytest.approx(np.std([0.75, 0.75, 1], ddof=1))
    assert float(base("1", "dice")["std_folds"]) == pytest.approx(np.std([0.75, 1.0], ddof=1))  # fold means
    assert int(base("1", "dice")["n_folds"]) == 2
    # HD95 in mm: one slice along the 2 mm axis (a third of the surface is 2 mm away) -> 2.0; needs the right
    # spacing order (0.5 mm if x, y, z were mixed up)
    per_case = {(x["method_name"], x["case"], x["class"]): x for x in _csv(out / "per_case.csv")}
    assert float(per_case[("nnUNetTrainer", "t0", "1")]["hd95"]) == pytest.approx(2.0)
    assert float(per_case[("nnUNetTrainer", "t0", "2")]["lesion_tpr"]) == 0.5
    assert float(per_case[("nnUNetTrainerCWCD", "t1", "2")]["lesion_fpr"]) == pytest.approx(1 / 3)
    assert per_case[("nnUNetTrainer", "t2", "1")]["fold"] == "1"
    md = (out / "summary.md").read_text()
    assert "| organ | 0.8333 ± 0.1443 | **1.0000 ± 0.0000** |" in md
    assert "| lesion |" in md and "Lesion FPR" in md
    assert len(os.listdir(out / "overlays")) == 1
    with PIL.open(out / "plots" / "dice_box.png") as im:
        assert im.size[0] > 100


# -------------------------------------------------------------------------------- errors, labels
def test_clear_errors_and_overwrite(tiny2d, tmp_path, monkeypatch):
    root = tiny2d[0]
    base = ["-ref", str(root / "labelsTs"), "--dataset-json", str(root / "dataset.json"), "--no-progress",
            "--metrics", "dice", "--overlays", "0"]
    with pytest.raises(ValueError, match="does not exist"):
        main(["-i", str(tmp_path / "nope"), "-o", str(tmp_path / "o1"), *base])
    with pytest.raises(ValueError, match="not both|either"):
        main(["-i", str(root / "A"), "-tr", "X", "-o", str(tmp_path / "o1"), *base])
    partial = tmp_path / "partial"
    partial.mkdir()
    _write_png(partial / "case0.png", np.zeros((32, 40)))
    with pytest.raises(ValueError, match="different cases"):
        main(["-i", str(root / "A"), str(partial), "-o", str(tmp_path / "o1"), *base])
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    _write_png(wrong / "case0.png", np.zeros((30, 40)))
    with pytest.raises(ValueError, match="shape"):
        main(["-i", str(wrong), "-o", str(tmp_path / "o1"), "--allow-missing", *base])
    assert not (tmp_path / "o1").exists()  # nothing half-written
    out = tmp_path / "o2"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="--overwrite"):
        main(["-i", str(root / "A"), "-o", str(out), *base])
    before = (out / "mine.txt").stat().st_mtime_ns
    monkeypatch.setattr(sys, "argv", ["nnunet_losses_compare", "-i", str(root / "A"), "-o", str(out), *base])
    with pytest.raises(SystemExit) as e:  # the console entry point: one clear line, no traceback
        entry_point()
    assert "error:" in str(e.value) and "--overwrite" in str(e.value)
    assert not (out / "summary.md").exists() and (out / "mine.txt").stat().st_mtime_ns == before
    main(["-i", str(root / "A"), "-o", str(out), "--overwrite", *base])
    assert (out / "mine.txt").read_text() == "user data" and (out / "summary.md").is_file()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no staging folder left behind


def test_parse_labels_matches_nnunet_label_manager():
    lh = pytest.importorskip("nnunetv2.utilities.label_handling.label_handling")
    cases = [({"background": 0, "a": 1, "b": 2, "ignore": 3}, None),
             ({"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enh": 3}, [1, 2, 3])]
    for labels, order in cases:
        lm = lh.LabelManager(labels, order)
        classes, names, ignore = parse_labels({"labels": labels})
        expected = lm.foreground_regions if lm.has_regions else lm.foreground_labels
        assert [tuple(c) if isinstance(c, (list, tuple)) else int(c) for c in expected] == classes
        assert ignore == lm.ignore_label


def test_table_bolds_the_best_and_no_cell_when_all_tie():
    import pandas as pd
    from nnunet_losses.nnunet.tools.compare.reading import Method
    from nnunet_losses.nnunet.tools.compare.table import markdown_table

    methods = [Method(name="A"), Method(name="B")]
    summary = pd.DataFrame([
        {"class": "1", "method": 0, "metric": "dice", "mean": 0.5, "std": 0.1},
        {"class": "1", "method": 1, "metric": "dice", "mean": 0.7, "std": 0.1},
        {"class": "2", "method": 0, "metric": "dice", "mean": 0.0, "std": 0.0},
        {"class": "2", "method": 1, "metric": "dice", "mean": 0.0, "std": 0.0},
    ])
    md = markdown_table(summary, "dice", methods, ["1", "2"], {"1": "big", "2": "tiny"})
    assert "| big | 0.5000 ± 0.1000 | **0.7000 ± 0.1000** |" in md
    assert "| tiny | 0.0000 ± 0.0000 | 0.0000 ± 0.0000 |" in md  # a tie of all is not bold


# ------------------------------------------------------------------------ statistics, topology, conventions
def test_compare_2d_statistics_and_topology(tiny2d, tmp_path):
    from scipy import stats

    root = tiny2d[0]
    out = tmp_path / "stats"
    r = _run(["-i", f"A={root / 'A'}", f"B={root / 'B'}", "-ref", str(root / "labelsTs"),
              "--dataset-json", str(root / "dataset.json"), "-o", str(out), "--overlays", "0",
              "--metrics", "dice", "hd95", "cldice", "betti0_error", "betti1_error",
              "--baseline", "A", "--ranking", "--bootstrap", "500", "--rank-bootstrap", "200"])
    assert r.returncode == 0, r.stderr
    paired = _csv(out / "paired.csv")
    with open(out / "paired.csv") as f:
        assert f.readline().strip() == ("metric,class,method,baseline,n,n_nonzero,mean_diff,ci_low,ci_high,hl,"
                                        "hl_ci_low,hl_ci_high,p_value,p_holm,wins,ties,losses,note")
    rows = {(x["metric"], x["class"]): x for x in paired}
    assert {x["method"] for x in paired} == {"B"} and {x["baseline"] for x in paired} == {"A"}
    assert len(paired) == 5 * 3  # metrics x (2 classes + mean)
    # rect Dice: case0 both 1, case1 A 0 / B 1, case2 no rect: A predicts none (both empty: 1), B invents one (0)
    d = rows[("dice", "2")]
    assert int(d["n"]) == 3 and float(d["mean_diff"]) == pytest.approx(0.0)
    assert (d["wins"], d["ties"], d["losses"]) == ("1", "1", "1") and int(d["n_nonzero"]) == 2
    assert float(d["p_value"]) == pytest.approx(stats.wilcoxon([1.0, -1.0], method="exact").pvalue)
    assert d["note"].startswith("n_nonzero < 6")
    # square HD95: B is 2 px off in case0 (lower is better: a loss for B), equal elsewhere
    h = rows[("hd95", "1")]
    assert (h["wins"], h["ties"], h["losses"]) == ("0", "2", "1") and float(h["mean_diff"]) > 0
    # topology columns, by hand: B invents a 2x2 rect in case2 (one component too many, no centreline matched)
    per_case = {(x["method_name"], x["case"], x["class"]): x for x in _csv(out / "per_case.csv")}
    assert float(per_case[("B", "case2", "2")]["betti0_error"]) == 1
    assert float(per_case[("B", "case2", "2")]["cldice"]) == 0
    assert float(per_case[("B", "case0", "1")]["betti1_error"]) == 0
    assert float(per_case[("A", "case2", "2")]["betti0_error"]) == 0  # both empty: perfect
    assert float(per_case[("A", "case2", "2")]["cldice"]) == 1 and per_case[("A", "case2", "2")]["empty"] == "both"
    assert per_case[("B", "case2", "2")]["empty"] == "reference" and per_case[("B", "case0", "1")]["empty"] == ""
    with open(out / "ranking.csv") as f:
        assert f.readline().strip() == ("metric,class,method,n_cases,mean_rank,rank,rank_q025,rank_median,rank_q975,"
                                        "kendall_tau_mean,kendall_tau_q025,p_rank_1,p_rank_2")
    ranking = _csv(out / "ranking.csv")
    assert {x["metric"] for x in ranking} == {"dice", "hd95", "cldice", "betti0_error", "betti1_error"}
    assert {x["class"] for x in ranking} == {"1", "2", "mean"} and {x["n_cases"] for x in ranking} == {"3"}
    with open(out / "pairwise.csv") as f:
        assert f.readline().strip() == "metric,method,other,n,n_nonzero,p_value,p_holm,better"
    assert len(_csv(out / "pairwise.csv")) == 5 * 2  # metrics x ordered pairs
    consensus = _csv(out / "consensus.csv")
    assert [x["method"] for x in consensus] == sorted([x["method"] for x in consensus],
                                                      key=lambda m: [c["consensus_rank"] for c in consensus
                                                                     if c["method"] == m][0])
    md = (out / "summary.md").read_text()
    assert "## Paired differences: Dice (method − A; higher is better)" in md
    assert "## Ranking: Betti-0 error" in md and "## clDice (higher is better)" in md
    assert "B vs A: no difference holds" in r.stdout  # 3 cases cannot make a difference hold
    assert "## Consensus ranking over the metrics shown (one choice among several)" in md
    assert "## Pairwise: Dice" in md and "95% interval" in md
    for f in ("plots/ranking_dice.png", "plots/significance_dice.png", "plots/cldice_box.png"):
        with PIL.open(out / f) as im:
            assert im.size[0] > 100
    settings = json.loads((out / "settings.json").read_text())
    assert settings["baseline"] == "A" and settings["ranking"] and settings["surface_convention"] == "monai"


def test_rescore_from_per_case_rows_gives_the_compare_runs_own_tables(tiny2d, tmp_path):
    """The statistics computed again from per_case.csv alone are the compare run's, to the last digit; the
    rows of two runs merged are scored as one run over both."""
    import pandas as pd

    from nnunet_losses.nnunet.tools.compare import rescore

    root, metrics = tiny2d[0], ["dice", "hd95", "betti0_error"]
    out, again = tmp_path / "compare", tmp_path / "rescored"
    r = _run(["-i", f"A={root / 'A'},{root / 'A'}", f"B={root / 'B'},{root / 'A'}", "-ref", str(root / "labelsTs"),
              "--dataset-json", str(root / "dataset.json"), "-o", str(out), "--overlays", "0", "--metrics", *metrics,
              "--baseline", "A", "--ranking", "--bootstrap", "300", "--rank-bootstrap", "100"])
    assert r.returncode == 0, r.stderr
    result = rescore(str(out / "per_case.csv"), str(again), metrics=metrics, baseline="A", ranking=True,
                     bootstrap=300, rank_bootstrap=100, source="test")
    for name in ("per_case.csv", "summary.csv", "paired.csv", "ranking.csv", "pairwise.csv", "consensus.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(again / name), check_exact=True,
                                      obj=name)
    assert "## Paired differences: Dice (method − A; higher is better)" in (again / "summary.md").read_text()
    assert result.holds and all(line in r.stdout for line in result.holds)  # the console lines of compare
    # two runs' rows merged: fold 1 of the second run is its own fold, scored with the first's
    rows = pd.read_csv(out / "per_case.csv", dtype={"class": str})
    first, second = rows[rows.fold == 0], rows[rows.fold == 1]
    merged = pd.concat([first[first["class"] != "mean"], second[second["class"] != "mean"]])
    rescore(merged, str(tmp_path / "merged"), metrics=metrics, baseline="A", bootstrap=300)
    pd.testing.assert_frame_equal(pd.read_csv(out / "paired.csv"), pd.read_csv(tmp_path / "merged" / "paired.csv"),
                                  check_exact=False, rtol=1e-12, obj="paired.csv of the merged rows")
    with pytest.raises(ValueError, match="baseline 'C' is not one of the methods"):
        rescore(merged, str(tmp_path / "bad"), metrics=metrics, baseline="C")
    with pytest.raises(ValueError, match=r"method\(s\) \['B'\] not in"):
        rescore(merged, str(tmp_path / "bad"), metrics=metrics, methods_order=["A"])


def test_compare_3d_deepmind_convention_with_workers(results3d, tmp_path):
    sd = pytest.importorskip("surface_distance", reason="test-only dependency surface-distance (requirements-test.txt)")
    root, env = results3d
    out = tmp_path / "dm"
    r = _run(["-d", "900", "-c", "3d_fullres", "-tr", "nnUNetTrainer", "nnUNetTrainerCWCD", "-o", str(out),
              "--metrics", "hd95", "nsd", "cldice", "--surface-convention", "deepmind", "--overlays", "0",
              "-np", "2"], env)
    assert r.returncode == 0, r.stderr
    read = lambda p: sitk.GetArrayFromImage(sitk.ReadImage(str(p)))  # noqa: E731
    ref = read(root / "pre" / "Dataset900_Tiny" / "gt_segmentations" / "t0.nii.gz")
    pred = read(root / "res" / "Dataset900_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0" / "validation"
                / "t0.nii.gz")
    d = sd.compute_surface_distances(ref == 1, pred == 1, (2.0, 1.0, 0.5))  # z, y, x spacing in mm
    per_case = {(x["method_name"], x["case"], x["class"]): x for x in _csv(out / "per_case.csv")}
    row = per_case[("nnUNetTrainer", "t0", "1")]
    assert float(row["hd95"]) == pytest.approx(sd.compute_robust_hausdorff(d, 95), abs=1e-6)
    assert float(row["nsd"]) == pytest.approx(sd.compute_surface_dice_at_tolerance(d, 1.0), abs=1e-6)
    assert float(row["cldice"]) > 0 and "HD95 in mm (DeepMind's surfel convention)" in (out / "summary.md").read_text()


def test_statistics_bad_input_fails_before_any_work(tiny2d, tmp_path, monkeypatch):
    import nnunet_losses.nnunet.tools.compare.run as run
    from nnunet_losses.nnunet.tools.compare import compare, methods_from_folders

    def no_work(*args, **kwargs):
        raise AssertionError("cases were evaluated before the input was checked")

    monkeypatch.setattr(run, "evaluate", no_work)
    root = tiny2d[0]
    out = tmp_path / "o"
    base = ["-ref", str(root / "labelsTs"), "--dataset-json", str(root / "dataset.json"), "--no-progress",
            "-o", str(out)]
    with pytest.raises(ValueError, match=r"--baseline 'C' is not one of the methods \['A', 'B'\]"):
        main(["-i", f"A={root / 'A'}", f"B={root / 'B'}", "--baseline", "C", *base])
    with pytest.raises(SystemExit):  # argparse: "invalid choice: 'surface_dice'" and the list of metrics
        main(["-i", f"A={root / 'A'}", "--metrics", "surface_dice", *base])
    methods = methods_from_folders([f"A={root / 'A'}", f"B={root / 'B'}"])
    dj = json.loads((root / "dataset.json").read_text())
    with pytest.raises(ValueError, match="unknown metric.*'surface_dice'"):
        compare(methods, str(root / "labelsTs"), dataset_json=dj, out_dir=str(out), metrics=["surface_dice"])
    one_a, one_b = tmp_path / "oneA", tmp_path / "oneB"
    for d, src in ((one_a, "A"), (one_b, "B")):
        d.mkdir()
        (d / "case0.png").write_bytes((root / src / "case0.png").read_bytes())
    with pytest.raises(ValueError, match="at least two cases that every method predicts; found 1"):
        main(["-i", f"A={one_a}", f"B={one_b}", "--baseline", "A", "--allow-missing", *base])
    with pytest.raises(ValueError, match="at least two cases"):
        main(["-i", f"A={one_a}", f"B={one_b}", "--ranking", "--allow-missing", *base])
    with pytest.raises(ValueError, match="--ranking needs at least two methods"):
        main(["-i", f"A={root / 'A'}", "--ranking", *base])
    with pytest.raises(TypeError):  # everything after methods and reference is keyword-only
        compare(methods, str(root / "labelsTs"), dj, str(out))
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".")]


# ------------------------------------------------------------------ bad input: before any metric, or a warning
def _copy_folder(src, dst, drop=(), change=None):
    """Copy the PNGs of ``src`` to ``dst`` without the cases in ``drop``; ``change[case](array)`` edits one."""
    dst.mkdir()
    for f in sorted(os.listdir(src)):
        case = f[:-4]
        if f.endswith(".png") and case not in drop:
            arr = np.array(PIL.open(src / f))
            _write_png(dst / f, change[case](arr) if change and case in change else arr)


def test_bad_input_fails_before_any_metric_or_warns(tiny2d, tmp_path, monkeypatch):
    import nnunet_losses.nnunet.tools.compare.run as run

    root = tiny2d[0]
    evaluate = run.evaluate

    def no_work(*args, **kwargs):
        raise AssertionError("a metric was computed before the input was checked")

    base = ["-ref", str(root / "labelsTs"), "--dataset-json", str(root / "dataset.json"), "--no-progress",
            "--metrics", "dice", "--overlays", "0"]

    def seven(a):
        a = a.copy()
        a[0:2, 30:32] = 7
        return a

    _copy_folder(root / "A", tmp_path / "A7", change={"case1": seven})
    _copy_folder(root / "A", tmp_path / "A_two", drop=("case2",))
    monkeypatch.setattr(run, "evaluate", no_work)
    with pytest.raises(ValueError, match=r"A7/case1.png \(method A, fold 0, case case1\) holds label\(s\) \[7\] .*"
                                         r"--warn-bad-input"):
        main(["-i", f"A={tmp_path / 'A7'}", "-o", str(tmp_path / "o"), *base])
    with pytest.raises(ValueError, match=r"reference case case2 .* no prediction .* --allow-missing"):
        main(["-i", f"A={tmp_path / 'A_two'}", "-o", str(tmp_path / "o"), *base])
    with pytest.raises(ValueError, match=r"method A: fold 1 .* has no prediction of case case2"):
        main(["-i", f"A={root / 'A'},{tmp_path / 'A_two'}", "-o", str(tmp_path / "o"), *base])
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(run, "evaluate", evaluate)
    # the warning path: today's numbers (label 7 counted as background; the lone fold paired as before)
    main(["-i", f"A={tmp_path / 'A7'}", "-o", str(tmp_path / "w7"), "--warn-bad-input", *base])
    main(["-i", f"A={root / 'A'}", "-o", str(tmp_path / "ok"), *base])
    assert _csv(tmp_path / "w7" / "per_case.csv") == [
        {**x, "method_name": "A"} for x in _csv(tmp_path / "ok" / "per_case.csv")]
    md = (tmp_path / "w7" / "summary.md").read_text()
    assert "## Warnings" in md and "holds label(s) [7]" in md
    main(["-i", f"A={root / 'A'},{tmp_path / 'A_two'}", f"B={root / 'B'}", "-o", str(tmp_path / "w2"),
          "--allow-missing", "--baseline", "B", "--holm-across-metrics", *base[:-4], "--metrics", "dice", "hd95",
          "--overlays", "0"])
    from nnunet_losses.nnunet.tools.compare.paired import holm
    paired = _csv(tmp_path / "w2" / "paired.csv")
    rows = [x for x in paired if x["class"] != "mean"]  # one family: 2 classes x 2 metrics
    assert len(rows) == 4 and np.allclose([float(x["p_holm"]) for x in rows],
                                          holm([float(x["p_value"]) for x in rows]), equal_nan=True)
    assert json.loads((tmp_path / "w2" / "settings.json").read_text())["holm_across_metrics"] is True
    rows = [x for x in _csv(tmp_path / "w2" / "per_case.csv") if x["method_name"] == "A" and x["class"] == "1"]
    assert len(rows) == 5  # 3 cases of fold 0, 2 of fold 1: compared as they are
    assert "fold 1" in (tmp_path / "w2" / "summary.md").read_text().split("## Warnings")[1]


def test_prediction_elsewhere_in_space_is_refused(tmp_path, monkeypatch):
    import nnunet_losses.nnunet.tools.compare.run as run

    ref = np.zeros((6, 8, 8), np.uint8)
    ref[2:4, 2:6, 2:6] = 1
    for d in ("ref", "pred"):
        (tmp_path / d).mkdir()
    for case in ("c0", "c1"):
        _write_nii(tmp_path / "ref" / f"{case}.nii.gz", ref, (1.0, 1.0, 2.0))
        im = sitk.GetImageFromArray(ref)
        im.SetSpacing((1.0, 1.0, 2.0))
        if case == "c1":
            im.SetOrigin((50.0, 0.0, 0.0))  # the same voxels, 50 mm away
        sitk.WriteImage(im, str(tmp_path / "pred" / f"{case}.nii.gz"))
    dj = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(dj))
    args = ["-i", f"P={tmp_path / 'pred'}", "-ref", str(tmp_path / "ref"), "--dataset-json",
            str(tmp_path / "dataset.json"), "--no-progress", "--metrics", "dice", "--overlays", "0"]
    monkeypatch.setattr(run, "evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))
    with pytest.raises(ValueError, match=r"c1.nii.gz \(method P, fold 0, case c1\) has origin \[50.0, 0.0, 0.0\]"):
        main([*args, "-o", str(tmp_path / "o")])
    monkeypatch.undo()
    main([*args, "-o", str(tmp_path / "o"), "--warn-bad-input"])
    assert "has origin [50.0, 0.0, 0.0]" in (tmp_path / "o" / "summary.md").read_text()
