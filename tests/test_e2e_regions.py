"""The real nnU-Net command-line tools on a region-based dataset (overlapping regions, sigmoid outputs)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli, training_log_with_finite_losses
from nnunetv2_dbce.tools.nnunet import nnunet_command
from nnunetv2_dbce.tools.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.e2e

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
