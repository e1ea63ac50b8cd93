"""Shared fixtures: a tiny generated 2D dataset, planned and preprocessed once by nnU-Net's own CLI."""
import json
import os
import subprocess
from copy import deepcopy
from pathlib import Path

import pytest
import torch

from nnunetv2_dbce.demo import nnunet_command, write_synthetic_dataset

TESTS = Path(__file__).parent
USER_TRAINER_FOLDER = TESTS / "ext_trainers"
DATASET_ID = 991


def run_cli(command, env, timeout=900):
    """Run an nnU-Net console script; on failure show the end of its output."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-4000:]}\n" \
                                   f"{result.stderr[-4000:]}"
    return result


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


@pytest.fixture(scope="session")
def preprocessed_dataset(nnunet_env):
    """Dataset991: 10 training and 2 test PNG images of 48x48, planned and preprocessed (2d) by nnU-Net."""
    folder = write_synthetic_dataset(Path(nnunet_env["nnUNet_raw"]), DATASET_ID, num_train=10, num_test=2, size=48)
    run_cli([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "2d", "-np", "2"],
            nnunet_env)
    return folder


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


def make_trainer(trainer_class, plans, dataset_json, fold=0):
    """A CPU trainer of the 2d configuration, built the way nnUNetv2_train builds it."""
    plans = deepcopy(plans)
    plans["continue_training"] = False
    return trainer_class(plans, "2d", fold, dataset_json, torch.device("cpu"))
