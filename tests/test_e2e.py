"""The real nnU-Net command-line tools: train a small DBCE subclass, predict, evaluate."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import DATASET_3D_ID, DATASET_ID, run_cli
from nnunetv2_dbce.tools.nnunet import nnunet_command
from nnunetv2_dbce.tools.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.e2e


def training_log_with_finite_losses(fold: Path) -> str:
    """The run's (newest) training log, after checking it logged finite train and validation losses of two epochs."""
    log = max(fold.glob("training_log_*.txt"), key=lambda path: path.stat().st_mtime).read_text()
    losses = [float(v) for v in re.findall(r"(?:train|val)_loss (\S+)", log)]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    return log


# Training ends with nnU-Net's own validation (prediction of the held-out fold and its evaluation) for every
# trainer; nnUNetv2_predict and nnUNetv2_evaluate_folder on the test images run for a DBCE and a Dice+DBCE trainer
# (prediction never calls the loss, so the other trainers, whose networks are nnU-Net's own, predict as these do;
# Skeleton Recall and clDice predict in the 3D test below). PM Dice+CE and DBCE+PM Dice go through the CLI on the
# region dataset below.
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


@pytest.mark.parametrize("trainer, logged", [
    ("nnUNetTrainerDBCEPMDice_tiny", "DBCE: dilation radius 3 voxels of the finest axis, spacing [2.5, 1.0, 1.0]"),
    ("nnUNetTrainerSkeletonRecall_tiny", "Skeleton Recall: weight 1"),
    ("nnUNetTrainerclDice_tiny", "clDice: weight 0.5")])
def test_3d_fullres_with_anisotropic_spacing(trainer, logged, preprocessed_3d_dataset, nnunet_env, tmp_path):
    run_cli([nnunet_command("nnUNetv2_train"), str(DATASET_3D_ID), "3d_fullres", "0", "-tr", trainer,
             "-device", "cpu"], nnunet_env)
    fold = Path(nnunet_env["nnUNet_results"]) / preprocessed_3d_dataset.name / f"{trainer}__nnUNetPlans__3d_fullres" \
        / "fold_0"
    assert logged in training_log_with_finite_losses(fold)

    predictions = tmp_path / "predictions"
    run_cli([nnunet_command("nnUNetv2_predict"), "-i", str(preprocessed_3d_dataset / "imagesTs"), "-o",
             str(predictions), "-d", str(DATASET_3D_ID), "-c", "3d_fullres", "-f", "0", "-tr", trainer,
             "-device", "cpu", "-npp", "1", "-nps", "1"], nnunet_env)
    assert [p.name for p in predictions.glob("*.nii.gz")] == ["case_08.nii.gz"]


def test_3d_lowres_then_cascade(preprocessed_3d_dataset, nnunet_env, tmp_path):
    """3d_lowres, then 3d_cascade_fullres (previous stage's segmentation as an input channel), with DBCE +
    PM Dice. The tiny volumes get no lowres stage from nnU-Net's planner, so a plans variant adds one the
    way nnU-Net writes it (inherits_from, previous_stage / next_stage). Fold 'all' makes the lowres run
    export next-stage segmentations of every training case, which the cascade trains on."""
    trainer, plans_name = "nnUNetTrainerDBCEPMDice_tiny", "nnUNetPlansCascade"
    preprocessed = Path(nnunet_env["nnUNet_preprocessed"]) / preprocessed_3d_dataset.name
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["plans_name"] = plans_name
    plans["configurations"]["3d_lowres"] = {
        "inherits_from": "3d_fullres", "data_identifier": f"{plans_name}_3d_lowres", "spacing": [2.5, 2.0, 2.0],
        "next_stage": ["3d_cascade_fullres"]}
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    (preprocessed / f"{plans_name}.json").write_text(json.dumps(plans))
    run_cli([nnunet_command("nnUNetv2_preprocess"), "-d", str(DATASET_3D_ID), "-plans_name", plans_name, "-c",
             "3d_lowres", "-np", "1"], nnunet_env)

    results = Path(nnunet_env["nnUNet_results"]) / preprocessed_3d_dataset.name
    for configuration, fold in (("3d_lowres", "all"), ("3d_cascade_fullres", "0")):
        run_cli([nnunet_command("nnUNetv2_train"), str(DATASET_3D_ID), configuration, fold, "-tr", trainer, "-p",
                 plans_name, "-device", "cpu"], nnunet_env)
        run = results / f"{trainer}__{plans_name}__{configuration}" / f"fold_{fold}"
        assert "DBCE: dilation radius 3 voxels of the finest axis" in training_log_with_finite_losses(run)
        checkpoint = torch.load(run / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        first_conv = next(w for k, w in checkpoint["network_weights"].items() if k.endswith("conv.weight"))
        # input channels: the image, plus for the cascade the previous stage's one-hot labels 1 and 2
        assert first_conv.shape[1] == (1 if configuration == "3d_lowres" else 3)
        if configuration == "3d_lowres":
            next_stage = results / f"{trainer}__{plans_name}__3d_lowres" / "predicted_next_stage" / "3d_cascade_fullres"
            assert len(list(next_stage.glob("case_*"))) == 8

    lowres, cascade = tmp_path / "lowres", tmp_path / "cascade"
    common = ["-d", str(DATASET_3D_ID), "-tr", trainer, "-p", plans_name, "-device", "cpu", "-npp", "1", "-nps", "1"]
    run_cli([nnunet_command("nnUNetv2_predict"), "-i", str(preprocessed_3d_dataset / "imagesTs"), "-o", str(lowres),
             "-c", "3d_lowres", "-f", "all", *common], nnunet_env)
    run_cli([nnunet_command("nnUNetv2_predict"), "-i", str(preprocessed_3d_dataset / "imagesTs"), "-o", str(cascade),
             "-c", "3d_cascade_fullres", "-f", "0", "-prev_stage_predictions", str(lowres), *common], nnunet_env)
    assert [p.name for p in cascade.glob("*.nii.gz")] == ["case_08.nii.gz"]


REGION_DATASET_ID = 992


@pytest.fixture(scope="module")
def region_dataset(nnunet_env):
    """A region-based dataset (overlapping regions 'spot or blob' and 'blob', sigmoid outputs), preprocessed."""
    folder = write_synthetic_dataset(Path(nnunet_env["nnUNet_raw"]), REGION_DATASET_ID, num_train=8, num_test=2,
                                     size=48)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    dataset_json.update(labels={"background": 0, "spot_or_blob": [1, 2], "blob": 2}, regions_class_order=[1, 2])
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    run_cli([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(REGION_DATASET_ID), "-c", "2d", "-np", "1"],
            nnunet_env)
    return folder


@pytest.mark.parametrize("trainer, logged, predict", [
    ("nnUNetTrainerDBCE_tiny", "DBCE: dilation radius 3 voxels", True),
    ("nnUNetTrainerDBCEPMDice_tiny", "DBCE: dilation radius 3 voxels", False),
    ("nnUNetTrainerPMDiceCE_tiny", "PM Dice: gamma [1.0]", False),
    ("nnUNetTrainerSkeletonRecall_tiny", "Skeleton Recall: weight 1", False),
])
def test_region_based_dataset_through_the_cli(trainer, logged, predict, region_dataset, nnunet_env, tmp_path):
    """Each trainer trains and validates on regions (nnU-Net predicts the held-out fold and evaluates it per
    region); DBCE also predicts the test images as label maps, evaluated per region by nnUNetv2_dbce_evaluate.
    Balanced CE is DBCE with R = 0 on the same code path (trained on regions in tests/test_regions.py)."""
    run_cli([nnunet_command("nnUNetv2_train"), str(REGION_DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu"],
            nnunet_env)
    fold = Path(nnunet_env["nnUNet_results"]) / region_dataset.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    assert logged in training_log_with_finite_losses(fold)
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"(1, 2)", "2"}  # nnU-Net evaluates regions, not labels
    if not predict:
        return

    predictions = tmp_path / "predictions"
    run_cli([nnunet_command("nnUNetv2_predict"), "-i", str(region_dataset / "imagesTs"), "-o", str(predictions),
             "-d", str(REGION_DATASET_ID), "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1",
             "-nps", "1"], nnunet_env)
    for prediction in predictions.glob("*.png"):
        assert set(np.unique(np.asarray(Image.open(prediction)))) <= {0, 1, 2}
    assert len(list(predictions.glob("*.png"))) == 2
    run_cli([nnunet_command("nnUNetv2_dbce_evaluate"), str(region_dataset / "labelsTs"), str(predictions),
             "-djfile", str(region_dataset / "dataset.json"), "-o", str(tmp_path / "evaluation.json"), "-np", "1"],
            nnunet_env)
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(evaluation["lesion_wise"]) == {"(1, 2)", "2"} and len(evaluation["metric_per_case"]) == 2
