"""scripts/budget_curve.py on hand-made study records: the per-budget Dice, the paired differences, the refusals."""
import csv
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from nnunetv2_dbce.tools.evaluate import CASE_METRICS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "budget_curve.py"
SETTINGS = {"dataset": "Dataset004_Hippocampus", "configuration": "2d", "plans": "p", "iterations": 50,
            "val_iterations": 5, "disable_tta": True, "labels": {"1": "Anterior"}}


def write_study(folder: Path, epochs: int, dice: dict, **changed):
    """A study folder with ``dice[(trainer, fold)]`` = the Dice of cases c0..c5 of that fold."""
    (folder / "runs").mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({**SETTINGS, "epochs": epochs, **changed}))
    for (trainer, fold), values in dice.items():
        with open(folder / "runs" / f"{trainer}__fold{fold}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["case", "label", *CASE_METRICS])
            writer.writeheader()
            for case, value in enumerate(values):
                writer.writerow({"case": f"f{fold}c{case}", "label": "1", **{m: 1 for m in CASE_METRICS},
                                 "Dice": value, "ref_volume": 10 + case})
        (folder / "runs" / f"{trainer}__fold{fold}.json").write_text(json.dumps({"trainer": trainer, "fold": fold}))


def run(*arguments):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, arguments)], capture_output=True, text=True)


def test_dice_and_paired_differences_per_budget(tmp_path):
    base = [0.70, 0.72, 0.74, 0.76, 0.78, 0.80]
    write_study(tmp_path / "x4", 8, {("nnUNetTrainer", 0): base, ("nnUNetTrainer", 1): base,
                                     ("nnUNetTrainerDBCE_R3", 0): [v + 0.05 for v in base],
                                     ("nnUNetTrainerDBCE_R3", 1): [v + 0.01 for v in base]})
    write_study(tmp_path / "x1", 2, {("nnUNetTrainer", 0): base, ("nnUNetTrainer", 1): base,
                                     ("nnUNetTrainerDBCE_R3", 0): [v - 0.10 for v in base],
                                     ("nnUNetTrainerDBCE_R3", 1): [v - 0.10 for v in base],
                                     ("nnUNetTrainerDBCE_R3", 2): [0.0] * 6})  # fold 2 not asked for
    result = run(tmp_path / "x4", tmp_path / "x1", "-tr", "nnUNetTrainer", "nnUNetTrainerDBCE_R3", "-f", 0, 1,
                 "--png", tmp_path / "budget.png")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "| iterations | trainer | Anterior Dice (folds) | Anterior vs Dice+CE (default) |"
    # fewest iterations first; fold means; the DBCE rows pair 12 cases with Dice+CE (p Holm-adjusted over 2 tests)
    assert lines[2] == "| 100 | Dice+CE (default) | 0.750 (0.750 0.750) |  |"
    assert lines[3].startswith("| 100 | DBCE_R3 | 0.650 (0.650 0.650) | -0.100 [-0.100, -0.100] p ")
    assert lines[4] == "| 400 | Dice+CE (default) | 0.750 (0.750 0.750) |  |"
    assert lines[5].startswith("| 400 | DBCE_R3 | 0.780 (0.800 0.760) | +0.030 [+0.010, +0.050] p ")
    assert "Holm-adjusted over the 2 tests" in result.stdout
    assert Image.open(tmp_path / "budget.png").size[0] > 300


def test_studies_must_differ_only_in_their_budget(tmp_path):
    write_study(tmp_path / "a", 2, {("nnUNetTrainer", 0): [0.5] * 6})
    write_study(tmp_path / "b", 8, {("nnUNetTrainer", 0): [0.5] * 6}, plans="other")
    result = run(tmp_path / "a", tmp_path / "b", "-tr", "nnUNetTrainer", "-f", 0)
    assert result.returncode == 1 and "differs from" in result.stderr and "plans" in result.stderr
    missing = run(tmp_path / "a", "-tr", "nnUNetTrainer", "-f", 0, 1)
    assert missing.returncode == 1 and "has no record of nnUNetTrainer fold 1" in missing.stderr


def test_one_fold_one_budget(tmp_path):
    write_study(tmp_path / "a", 2, {("nnUNetTrainer", 0): [0.5] * 6, ("nnUNetTrainerDBCE_R3", 0): [0.5] * 6})
    result = run(tmp_path / "a", "-tr", "nnUNetTrainer", "nnUNetTrainerDBCE_R3", "-f", 0)
    assert "| 100 | DBCE_R3 | 0.500 (0.500) | +0.000 [+0.000, +0.000] p 1 |" in result.stdout  # no difference: p 1
