"""benchmarks.studies.pilot_curve: nnU-Net's training log to per-epoch rows (hand-worked EMA)."""
import csv

import pytest

from benchmarks.studies.pilot_curve import extract, parse_log

LOG = """2026-12-05 19:57:09.062171: Epoch 0 
2026-12-05 19:57:09.1: Current learning rate: 0.01 
2026-12-05 19:58:06.175260: train_loss 0.6869 
2026-12-05 19:58:06.175441: val_loss 0.3639 
2026-12-05 19:58:06.175475: Pseudo dice [np.float32(0.2), np.float32(0.4)] 
2026-12-05 19:58:06.175527: Epoch time: 57.11 s 
2026-12-05 19:58:07.238443: Epoch 1 
2026-12-05 19:58:42.323870: train_loss -0.2801 
2026-12-05 19:58:42.324087: val_loss 0.2297 
2026-12-05 19:58:42.324120: Pseudo dice [np.float32(0.5), np.float32(0.7)] 
2026-12-05 19:58:42.324170: Epoch time: 35.09 s 
2026-12-05 19:58:43.0: Epoch 2 
2026-12-05 19:58:50.0: train_loss -0.3 
"""


def test_parse_log_rows_and_ema():
    rows = parse_log(LOG)
    assert [r["epoch"] for r in rows] == [0, 1]  # epoch 2 did not finish
    assert rows[1]["train_loss"] == -0.2801 and rows[0]["val_loss"] == 0.3639
    assert rows[0]["pseudo_dice"] == pytest.approx(0.3) and rows[1]["pseudo_dice"] == pytest.approx(0.6)
    # nnU-Net's EMA: first value as is, then 0.9 * ema + 0.1 * x = 0.27 + 0.06
    assert rows[1]["ema_pseudo_dice"] == pytest.approx(0.33)
    assert rows[1]["epoch_time_s"] == 35.09


def test_extract_writes_csv_and_refuses_a_folder_without_logs(tmp_path):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    (fold / "training_log_2026_12_5_19_57_00.txt").write_text(LOG)
    out = tmp_path / "data" / "curves.csv"
    assert extract({"Hippocampus": str(fold)}, str(out)) == 2
    rows = list(csv.DictReader(open(out)))
    assert rows[1]["dataset"] == "Hippocampus" and rows[1]["pseudo_dice_per_class"] == "0.5000 0.7000"
    with pytest.raises(ValueError, match="no training_log"):
        extract({"x": str(tmp_path)}, str(out))


def test_extract_writes_the_final_validation_beside_the_curve(tmp_path):
    fold = tmp_path / "fold_0"
    (fold / "validation").mkdir(parents=True)
    (fold / "training_log_1.txt").write_text(LOG)
    (fold / "validation" / "summary.json").write_text(
        '{"foreground_mean": {"Dice": 0.25}, "mean": {"1": {"Dice": 0.5}, "2": {"Dice": 0.0}}}')
    out = tmp_path / "curves.csv"
    extract({"Hippocampus": str(fold)}, str(out))
    rows = list(csv.DictReader(open(tmp_path / "curves_final.csv")))
    assert rows == [{"dataset": "Hippocampus", "validation_dice": "0.2500",
                     "validation_dice_per_class": "1:0.5000 2:0.0000"}]
