"""Shared fixtures: tiny generated 2D and 3D datasets, planned and preprocessed by nnU-Net's own CLI once per
test run (the first xdist worker that needs one makes it, the others copy it)."""
import json
import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from helpers import (
    DATASET_3D_ID,
    DATASET_3D_NAME,
    DATASET_ID,
    DATASET_NAME,
    STUDY,
    TINY_STUDY,
    USER_TRAINER_FOLDER,
    run_cli,
)
from nnunetv2_dbce.tools.nnunet import nnunet_command
from nnunetv2_dbce.tools.synthetic import write_synthetic_dataset


@pytest.fixture(scope="session")
def nnunet_env(tmp_path_factory):
    """nnU-Net folders in a temporary directory, the user's own trainer folder on nnUNet_extTrainer."""
    root = tmp_path_factory.mktemp("nnunet")
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(root / "results"), nnUNet_extTrainer=str(USER_TRAINER_FOLDER),
               nnUNet_n_proc_DA="2", nnUNet_def_n_proc="1", OMP_NUM_THREADS="2")
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir()
    return env


def made_once(tmp_path_factory, nnunet_env, dataset_name, make) -> Path:
    """Copies raw and preprocessed folders of ``dataset_name`` into this worker's nnU-Net folders; ``make(env)``
    writes them into a cache shared by the test run's workers, under a lock, the first time. Returns the raw
    folder."""
    run_folder = tmp_path_factory.getbasetemp()  # under xdist: this worker's folder in the run's folder
    cache = (run_folder.parent if os.environ.get("PYTEST_XDIST_WORKER") else run_folder) / "dataset_cache"
    cache.mkdir(exist_ok=True)
    with FileLock(cache / f"{dataset_name}.lock"):
        made = cache / f"{dataset_name}.made"
        if not made.is_file():
            make(dict(nnunet_env, nnUNet_raw=str(cache / "raw"), nnUNet_preprocessed=str(cache / "preprocessed")))
            made.touch()
    for key in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.copytree(cache / key.removeprefix("nnUNet_") / dataset_name, Path(nnunet_env[key]) / dataset_name)
    return Path(nnunet_env["nnUNet_raw"]) / dataset_name


@pytest.fixture(scope="session")
def preprocessed_dataset(nnunet_env, tmp_path_factory):
    """Dataset991: 10 training and 2 test PNG images of 48x48, planned and preprocessed (2d) by nnU-Net."""
    def make(env):
        write_synthetic_dataset(Path(env["nnUNet_raw"]), DATASET_ID, num_train=10, num_test=2, size=48)
        run_cli([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "2d", "-np", "2"], env)

    return made_once(tmp_path_factory, nnunet_env, DATASET_NAME, make)


@pytest.fixture(scope="session")
def local_tiny_study(preprocessed_dataset, nnunet_env, tmp_path_factory):
    """The tiny study (DBCE and Dice+CE, fold 0, seed 7) run locally, one run after another: ``(command, records
    folder, work folder, completed process)``."""
    folder = tmp_path_factory.mktemp("local_study")
    command = [STUDY, str(DATASET_ID), *TINY_STUDY, "-tr", "nnUNetTrainerDBCE_tiny", "nnUNetTrainer_tiny", "--seed",
               "7", "-o", str(folder / "study"), "--work", str(folder / "work")]
    return command, folder / "study", folder / "work", run_cli(command, nnunet_env)


@pytest.fixture
def plans_and_dataset_json(preprocessed_dataset, nnunet_env, monkeypatch):
    """Plans and dataset.json of the preprocessed dataset, nnU-Net's folders set for in-process trainers."""
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(key, nnunet_env[key])
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # single-threaded augmenter: batches come from this process
    preprocessed = Path(nnunet_env["nnUNet_preprocessed"]) / preprocessed_dataset.name
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    return plans, dataset_json


@pytest.fixture(scope="session")
def preprocessed_3d_dataset(nnunet_env, tmp_path_factory):
    """Dataset993: 8 training and 1 test 3D NIfTI volumes (16x24x20 voxels, spacing 2.5 x 1 x 1 mm) with a
    large ellipsoid (label 1) and a small sphere (label 2), planned and preprocessed (3d_fullres) by nnU-Net."""
    return made_once(tmp_path_factory, nnunet_env, DATASET_3D_NAME, write_3d_dataset)


def write_3d_dataset(env):
    """Writes and preprocesses the dataset of ``preprocessed_3d_dataset`` in ``env``'s nnU-Net folders."""
    import numpy as np
    import SimpleITK as sitk

    folder = Path(env["nnUNet_raw"]) / DATASET_3D_NAME
    rng = np.random.default_rng(0)
    grid = np.indices((16, 24, 20)).astype(np.float32)
    for i in range(9):
        split = "Tr" if i < 8 else "Ts"
        label = np.zeros((16, 24, 20), np.uint8)
        centre = rng.uniform([6, 9, 8], [10, 15, 12])
        label[(((grid - centre[:, None, None, None]) / np.array([3, 6, 5])[:, None, None, None]) ** 2).sum(0) <= 1] = 1
        spot = rng.uniform([3, 3, 3], [13, 21, 17])
        label[(((grid - spot[:, None, None, None]) * np.array([2.5, 1, 1])[:, None, None, None]) ** 2).sum(0) <= 4] = 2
        image = np.array([20.0, 120.0, 200.0])[label] + rng.normal(0, 15, label.shape)
        for array, sub, name in ((image.astype(np.float32), f"images{split}", f"case_{i:02d}_0000"),
                                 (label, f"labels{split}", f"case_{i:02d}")):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            itk = sitk.GetImageFromArray(array)
            itk.SetSpacing((1.0, 1.0, 2.5))  # SimpleITK order is x, y, z: the numpy array's first axis is 2.5 mm
            sitk.WriteImage(itk, str(folder / sub / f"{name}.nii.gz"))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "synthetic"}, "labels": {"background": 0, "blob": 1, "spot": 2},
        "numTraining": 8, "file_ending": ".nii.gz"}))
    run_cli([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_3D_ID), "-c", "3d_fullres",
             "-np", "2"], env)
