"""The challenge path through nnU-Net's own CLIs: two folds of a DBCE trainer and of nnU-Net's default,
nnUNetv2_find_best_configuration across both, nnUNetv2_ensemble, a residual-encoder preset, and the
export that stock nnU-Net (this package hidden) installs and predicts with, voxel for voxel the same."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import DATASET_ID, run_cli
from nnunetv2_dbce.tools.cli import UserError
from nnunetv2_dbce.tools.nnunet import nnunet_command

pytestmark = pytest.mark.e2e
TRAINERS = ("nnUNetTrainerDBCE_tiny", "nnUNetTrainer_tiny")
FOLDS = ("0", "1")


def fold_folder(nnunet_env, dataset, trainer, fold, plans="nnUNetPlans"):
    return Path(nnunet_env["nnUNet_results"]) / dataset.name / f"{trainer}__{plans}__2d" / f"fold_{fold}"


@pytest.fixture(scope="module")
def two_folds(preprocessed_dataset, nnunet_env):
    """Both trainers on folds 0 and 1 with validation probabilities (--npz); runs other tests made are reused
    and only validated again."""
    for trainer in TRAINERS:
        for fold in FOLDS:
            command = [nnunet_command("nnUNetv2_train"), str(DATASET_ID), "2d", fold, "-tr", trainer, "-device", "cpu",
                       "--npz"]
            done = (fold_folder(nnunet_env, preprocessed_dataset, trainer, fold) / "checkpoint_final.pth").is_file()
            run_cli(command + (["--val"] if done else []), nnunet_env)
    return preprocessed_dataset


def test_find_best_configuration_and_ensemble(two_folds, nnunet_env, tmp_path):
    run_cli([nnunet_command("nnUNetv2_find_best_configuration"), str(DATASET_ID), "-c", "2d", "-tr", *TRAINERS,
             "-f", *FOLDS, "-np", "1"], nnunet_env)
    results = Path(nnunet_env["nnUNet_results"]) / two_folds.name
    information = json.loads((results / "inference_information.json").read_text())
    compared = {key for key in information["all_results"]}
    assert any("nnUNetTrainerDBCE_tiny" in key for key in compared)
    assert any("ensemble" in key.lower() for key in compared)  # the two trainers' ensemble was evaluated too
    assert "nnUNetv2_predict" in (results / "inference_instructions.txt").read_text()

    # the two trainers' probabilities of fold 0's validation cases (--npz), with the dataset.json and plans.json
    # that nnUNetv2_predict would have written beside them, ensembled by nnU-Net's command
    predictions = []
    for trainer in TRAINERS:
        fold = fold_folder(nnunet_env, two_folds, trainer, "0")
        folder = shutil.copytree(fold / "validation", tmp_path / trainer)
        for name in ("dataset.json", "plans.json"):
            shutil.copy(fold.parent / name, folder / name)
        predictions.append(str(folder))
    run_cli([nnunet_command("nnUNetv2_ensemble"), "-i", *predictions, "-o", str(tmp_path / "ensemble"), "-np", "1"],
            nnunet_env)
    ensembled = sorted((tmp_path / "ensemble").glob("*.png"))
    assert ensembled and [p.name for p in ensembled] == sorted(p.name for p in Path(predictions[0]).glob("*.png"))
    assert all(set(np.unique(np.asarray(Image.open(p)))) <= {0, 1, 2} for p in ensembled)


def test_dbce_trainer_on_a_residual_encoder_preset(preprocessed_dataset, nnunet_env):
    run_cli([nnunet_command("nnUNetv2_plan_experiment"), "-d", str(DATASET_ID), "-pl", "nnUNetPlannerResEncM"],
            nnunet_env)
    run_cli([nnunet_command("nnUNetv2_preprocess"), "-d", str(DATASET_ID), "-plans_name", "nnUNetResEncUNetMPlans",
             "-c", "2d", "-np", "1"], nnunet_env)
    run_cli([nnunet_command("nnUNetv2_train"), str(DATASET_ID), "2d", "0", "-tr", "nnUNetTrainerDBCE_tiny", "-p",
             "nnUNetResEncUNetMPlans", "-device", "cpu"], nnunet_env)
    fold = fold_folder(nnunet_env, preprocessed_dataset, "nnUNetTrainerDBCE_tiny", 0, "nnUNetResEncUNetMPlans")
    plans = json.loads((fold.parent / "plans.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")
    assert set(json.loads((fold / "validation" / "summary.json").read_text())["mean"]) == {"1", "2"}


def stock_nnunet_env(nnunet_env, tmp_path):
    """nnU-Net's environment without this package: its start-up hook switched off, ``nnunetv2_dbce`` shadowed by
    a module that fails to import, no external trainer folder."""
    blocker = tmp_path / "hide_nnunetv2_dbce"
    (blocker / "nnunetv2_dbce").mkdir(parents=True)
    (blocker / "nnunetv2_dbce" / "__init__.py").write_text("raise ImportError('nnunetv2_dbce is hidden here')\n")
    (blocker / "nnunetv2_dbce_autoload.py").write_text("")
    env = {k: v for k, v in nnunet_env.items() if k != "nnUNet_extTrainer"}
    env.update(PYTHONPATH=str(blocker), nnUNetv2_dbce_autoload="0", nnUNet_results=str(tmp_path / "installed"))
    (tmp_path / "installed").mkdir()
    probe = subprocess.run([sys.executable, "-c", "import importlib.util, os; print(os.environ.get("
                            "'nnUNet_extTrainer'), importlib.util.find_spec('nnunetv2_dbce').origin)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.stdout.split()[0] == "None" and "hide_nnunetv2_dbce" in probe.stdout, probe.stderr
    return env


def test_exported_model_predicts_the_same_with_stock_nnunet(two_folds, nnunet_env, tmp_path):
    trainer = "nnUNetTrainerDBCE_tiny"
    archive = tmp_path / "model.zip"
    export = run_cli([nnunet_command("nnUNetv2_dbce_export_for_inference"), "-d", str(DATASET_ID), "-o", str(archive),
                      "-c", "2d", "-tr", trainer, "-f", *FOLDS], nnunet_env)
    assert "2 checkpoint(s) now name nnUNetTrainer" in export.stdout
    predict = ["-i", str(two_folds / "imagesTs"), "-d", str(DATASET_ID), "-c", "2d", "-f", *FOLDS, "-tr", trainer,
               "-device", "cpu", "-npp", "1", "-nps", "1"]
    run_cli([nnunet_command("nnUNetv2_predict"), "-o", str(tmp_path / "with_package"), *predict], nnunet_env)

    stock = stock_nnunet_env(nnunet_env, tmp_path)
    run_cli([nnunet_command("nnUNetv2_install_pretrained_model_from_zip"), str(archive)], stock)
    run_cli([nnunet_command("nnUNetv2_predict"), "-o", str(tmp_path / "stock"), *predict], stock)
    model_folder = Path(stock["nnUNet_results"]) / two_folds.name / f"{trainer}__nnUNetPlans__2d"
    run_cli([nnunet_command("nnUNetv2_predict_from_modelfolder"), "-i", str(two_folds / "imagesTs"), "-o",
             str(tmp_path / "stock_from_folder"), "-m", str(model_folder), "-f", *FOLDS, "-device", "cpu", "-npp", "1",
             "-nps", "1"], stock)
    names = sorted(p.name for p in (two_folds / "labelsTs").glob("*.png"))
    for folder in ("stock", "stock_from_folder"):
        assert sorted(p.name for p in (tmp_path / folder).glob("*.png")) == names
        for name in names:
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / folder / name)),
                                          np.asarray(Image.open(tmp_path / "with_package" / name)))


def test_export_refuses_a_network_stock_nnunet_cannot_build():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunetv2_dbce.tools.export import stock_trainer_name
    from nnunetv2_dbce.trainers import nnUNetTrainerBoundaryLoss, nnUNetTrainerDBCEPMDice

    assert stock_trainer_name(nnUNetTrainerDBCEPMDice) == stock_trainer_name(nnUNetTrainerBoundaryLoss) == \
        "nnUNetTrainer"

    class nnUNetTrainerOwnNetwork(nnUNetTrainer):
        @staticmethod
        def build_network_architecture(*args, **kwargs):
            raise NotImplementedError

    with pytest.raises(UserError, match="nnUNetTrainerOwnNetwork.build_network_architecture, which stock nnU-Net"):
        stock_trainer_name(nnUNetTrainerOwnNetwork)
