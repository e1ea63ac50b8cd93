"""scripts/benchmark_gpu.py on the CPU (--tiny): every trainer started as nnUNetv2_train starts it and timed on
real train_steps (2d: 3d_fullres differs only in the generated data, and would double the test's minutes); without
CUDA, --device cuda says so in one line."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_gpu.py"
TRAINERS = ["nnUNetTrainer", "nnUNetTrainerDBCE", "nnUNetTrainerDiceDBCE", "nnUNetTrainerPMDice",
            "nnUNetTrainerPMDiceCE"]
ROW = re.compile(r"^  (nnUNetTrainer\w*) +([\d.]+) ms per iteration \(min ([\d.]+), max ([\d.]+)\) +([\d.]+)x +"
                 r"memory n/a \(CPU\)$")


@pytest.mark.e2e
def test_every_trainer_is_timed_on_the_cpu(tmp_path):
    environment = {**os.environ, "nnUNet_n_proc_DA": "1", "nnUNet_preprocessed": str(tmp_path / "none")}
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--configurations", "2d"],
                            env=environment,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data: generated vessel trees" in result.stdout
    sections = result.stdout.split("\nDataset")[1:]
    assert [section.split("\n")[0] for section in sections] == ["996_Vessels2D 2d"]
    for section in sections:
        rows = [ROW.match(line) for line in section.split("\n")[1:] if line.strip()]
        assert all(rows) and [row.group(1) for row in rows] == TRAINERS
        for row in rows:
            median, low, high = (float(row.group(k)) for k in (2, 3, 4))
            assert 0 < low <= median <= high
        assert float(rows[0].group(5)) == 1.0
        assert float(rows[1].group(5)) == pytest.approx(float(rows[1].group(2)) / float(rows[0].group(2)), abs=0.01)


def test_cuda_without_a_gpu_is_one_line():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--configurations", "2d"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "benchmark_gpu.py: no CUDA device; --device cpu runs the same path on the CPU"]
