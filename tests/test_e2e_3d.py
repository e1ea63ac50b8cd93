"""The real nnU-Net command-line tools on a 3D dataset with anisotropic spacing: 3d_fullres, 3d_lowres and the
cascade, trained, predicted."""
import json
from pathlib import Path

import pytest
import torch

from helpers import DATASET_3D_ID, run_cli, training_log_with_finite_losses
from nnunetv2_dbce.tools.nnunet import nnunet_command

pytestmark = pytest.mark.e2e


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
