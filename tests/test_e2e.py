"""The real nnU-Net command-line tools on a 2D dataset: train every kind of trainer, predict, evaluate, resume.
(3D and region-based runs: test_e2e_3d.py, test_e2e_regions.py; one file each so that xdist spreads them.)"""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import DATASET_ID, run_cli, training_log_with_finite_losses
from nnunetv2_dbce.tools.nnunet import nnunet_command

pytestmark = pytest.mark.e2e


# Training ends with nnU-Net's own validation (prediction of the held-out fold and its evaluation) for every
# trainer; nnUNetv2_predict and nnUNetv2_evaluate_folder on the test images run for a DBCE and a Dice+DBCE trainer
# (prediction never calls the loss, so the other trainers, whose networks are nnU-Net's own, predict as these do;
# Skeleton Recall and clDice predict in test_e2e_3d.py). PM Dice+CE and DBCE+PM Dice go through the CLI on the
# region dataset (test_e2e_regions.py).
@pytest.mark.parametrize("trainer, logged, predict", [
    ("nnUNetTrainerDBCE_tiny", ["DBCE: dilation radius 3 voxels"], True),
    ("nnUNetTrainerPMDice_tiny", ["PM Dice: gamma [1.5]"], False),
    ("nnUNetTrainerDiceDBCE_tiny", ["DBCE: dilation radius 3 voxels"], True),
    ("nnUNetTrainerSkeletonRecall_tiny", ["Skeleton Recall: weight 1, skeletons tubed by 2 voxels"], False),
    ("nnUNetTrainerclDice_tiny", ["clDice: weight 0.5, 3 soft-skeleton iterations"], False),
    # the example in docs/voxel_maps.md; a user's map whose loss fails unless aligned at every scale
    ("nnUNetTrainerProximityCE_tiny", ["Voxel map: foreground_proximity, made in the augmentation workers, averaged"],
     False),
    ("nnUNetTrainerAlignedMap_tiny", ["Voxel map: label_channels, made in the augmentation workers, sampled"], False),
    ("nnUNetTrainerBoundaryLoss_tiny", ["boundary loss weight alpha 0.01", "boundary loss weight alpha 0.02"], False),
    ("nnUNetTrainerUNetBorderWeightedCE_tiny", ["Voxel map: UNetBorderWeights, made in the augmentation workers"],
     False),
])
def test_train_validate_predict_on_cpu(trainer, logged, predict, preprocessed_dataset, nnunet_env, tmp_path):
    train = run_cli([nnunet_command("nnUNetv2_train"), str(DATASET_ID), "2d", "0", "-tr", trainer,
                     "-device", "cpu"], nnunet_env)
    assert f"Using trainer '{trainer}'" in train.stdout

    fold = Path(nnunet_env["nnUNet_results"]) / preprocessed_dataset.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "progress.png").is_file()
    log = training_log_with_finite_losses(fold)
    assert logged and all(line in log for line in logged)
    assert set(json.loads((fold / "validation" / "summary.json").read_text())["mean"]) == {"1", "2"}
    if not predict:
        return

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
    log = max(fold.glob("training_log_*.txt"), key=lambda path: path.stat().st_mtime).read_text()
    assert "Resuming with the loss settings of the checkpoint, {'dilation_radius': 3.0}" in log
    assert "Epoch 2" in log and "Epoch 0" not in log
    assert (fold / "checkpoint_final.pth").is_file()
