"""scripts/paired_difference.py on hand-made study records: several pairs and metrics, Holm-adjusted together."""
import subprocess
import sys
from pathlib import Path

from scipy.stats import wilcoxon
from test_budget_curve import write_study

from nnunetv2_dbce.tools.statistics import holm

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "paired_difference.py"


def run(*arguments):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, arguments)], capture_output=True, text=True)


def test_pairs_are_holm_adjusted_over_every_printed_test(tmp_path):
    base = [0.60, 0.64, 0.66, 0.70, 0.71, 0.75, 0.78, 0.80]
    better = [v + d for v, d in zip(base, (0.02, 0.03, 0.01, 0.04, 0.02, 0.05, 0.03, 0.02))]
    mixed = [v + d for v, d in zip(base, (0.01, -0.02, 0.03, -0.01, 0.02, -0.03, 0.01, 0.0))]
    write_study(tmp_path, 2, {("nnUNetTrainer", 0): base, ("nnUNetTrainerDBCE_R3", 0): better,
                              ("nnUNetTrainerDBCE_R5", 0): mixed})
    result = run(tmp_path, "nnUNetTrainerDBCE_R3", "nnUNetTrainer", "nnUNetTrainerDBCE_R5", "nnUNetTrainer")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2 tests, Holm-adjusted together"
    p = [wilcoxon([b - a for a, b in zip(base, values)]).pvalue for values in (better, mixed)]
    adjusted = holm(p)
    assert lines[1].startswith("nnUNetTrainerDBCE_R3 vs nnUNetTrainer, Anterior: n = 8, median Dice difference +0.025 ")
    assert lines[1].endswith(f"Wilcoxon p = {p[0]:.2g}, Holm {adjusted[0]:.2g}")
    assert lines[2].endswith(f"Wilcoxon p = {p[1]:.2g}, Holm {adjusted[1]:.2g}")
    assert adjusted[0] == min(1.0, 2 * p[0])  # the smaller p is doubled: two tests in the family


def test_refusals(tmp_path):
    write_study(tmp_path, 2, {("nnUNetTrainer", 0): [0.5] * 6})
    odd = run(tmp_path, "nnUNetTrainer", "nnUNetTrainer", "nnUNetTrainerDBCE_R3")
    assert odd.returncode == 2 and "trainers come in pairs" in odd.stderr
    missing = run(tmp_path, "nnUNetTrainerDBCE_R3", "nnUNetTrainer")
    assert missing.returncode == 1 and "has no record of nnUNetTrainerDBCE_R3" in missing.stderr
