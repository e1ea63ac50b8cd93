"""The real nnU-Net command-line tools: train a small DBCE subclass, predict, evaluate."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATASET_3D_ID, DATASET_ID, run_cli
from nnunetv2_dbce.demo import nnunet_command

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("trainer, logged", [
    ("nnUNetTrainerDBCE_tiny", ["DBCE: dilation radius 3 voxels"]),
    ("nnUNetTrainerPMDice_tiny", ["PM Dice: gamma [1.5]"]),
    ("nnUNetTrainerPMDiceCE_tiny", ["PM Dice: gamma [2.0]"]),
    ("nnUNetTrainerDBCEPMDice_tiny", ["DBCE: dilation radius 3 voxels", "PM Dice: gamma [2.0]"]),
])
def test_train_predict_evaluate_on_cpu(trainer, logged, preprocessed_dataset, nnunet_env, tmp_path):
    train = run_cli([nnunet_command("nnUNetv2_train"), str(DATASET_ID), "2d", "0", "-tr", trainer,
                     "-device", "cpu"], nnunet_env)
    assert f"Using trainer '{trainer}'" in train.stdout

    fold = Path(nnunet_env["nnUNet_results"]) / preprocessed_dataset.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "progress.png").is_file()
    log = next(fold.glob("training_log_*.txt")).read_text()
    assert all(line in log for line in logged)
    losses = [float(v) for v in re.findall(r"(?:train|val)_loss (\S+)", log)]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert (fold / "validation" / "summary.json").is_file()

    predictions = tmp_path / "predictions"
    run_cli([nnunet_command("nnUNetv2_predict"), "-i", str(preprocessed_dataset / "imagesTs"), "-o",
             str(predictions), "-d", str(DATASET_ID), "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu",
             "-npp", "1", "-nps", "1"], nnunet_env)
    predicted = sorted(predictions.glob("*.png"))
    assert [p.name for p in predicted] == sorted(p.name for p in (preprocessed_dataset / "labelsTs").glob("*.png"))
    for path in predicted:
        assert set(np.unique(np.asarray(Image.open(path)))) <= {0, 1, 2}

    run_cli([nnunet_command("nnUNetv2_evaluate_folder"), str(preprocessed_dataset / "labelsTs"), str(predictions),
             "-djfile", str(predictions / "dataset.json"), "-pfile", str(predictions / "plans.json")], nnunet_env)
    summary = json.loads((predictions / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}


def test_continue_training_keeps_the_runs_radius(preprocessed_dataset, nnunet_env):
    """nnUNetv2_train --c from checkpoint_latest.pth, after the class's radius changed: the run keeps its own."""
    trainer = "nnUNetTrainerDBCE_tiny"
    fold = Path(nnunet_env["nnUNet_results"]) / preprocessed_dataset.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    train = [nnunet_command("nnUNetv2_train"), str(DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu"]
    if not (fold / "checkpoint_final.pth").is_file():
        run_cli(train, nnunet_env)
    (fold / "checkpoint_final.pth").rename(fold / "checkpoint_latest.pth")  # as if stopped after epoch 2

    run_cli(train + ["--c"], dict(nnunet_env, TINY_EPOCHS="3", TINY_DILATION_RADIUS="7"))
    log = max(fold.glob("training_log_*.txt")).read_text()
    assert "Resuming with the loss settings of the checkpoint, {'dilation_radius': 3.0}" in log
    assert "Epoch 2" in log and "Epoch 0" not in log
    assert (fold / "checkpoint_final.pth").is_file()


def test_3d_fullres_with_anisotropic_spacing(preprocessed_3d_dataset, nnunet_env, tmp_path):
    trainer = "nnUNetTrainerDBCEPMDice_tiny"
    run_cli([nnunet_command("nnUNetv2_train"), str(DATASET_3D_ID), "3d_fullres", "0", "-tr", trainer,
             "-device", "cpu"], nnunet_env)
    fold = Path(nnunet_env["nnUNet_results"]) / preprocessed_3d_dataset.name / f"{trainer}__nnUNetPlans__3d_fullres" \
        / "fold_0"
    log = next(fold.glob("training_log_*.txt")).read_text()
    assert "DBCE: dilation radius 3 voxels of the finest axis, spacing [2.5, 1.0, 1.0]" in log
    losses = [float(v) for v in re.findall(r"(?:train|val)_loss (\S+)", log)]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)

    predictions = tmp_path / "predictions"
    run_cli([nnunet_command("nnUNetv2_predict"), "-i", str(preprocessed_3d_dataset / "imagesTs"), "-o",
             str(predictions), "-d", str(DATASET_3D_ID), "-c", "3d_fullres", "-f", "0", "-tr", trainer,
             "-device", "cpu", "-npp", "1", "-nps", "1"], nnunet_env)
    assert [p.name for p in predictions.glob("*.nii.gz")] == ["case_08.nii.gz"]
