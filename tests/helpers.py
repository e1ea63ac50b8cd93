"""Helpers the tests share: dataset ids, the user's trainer folder, running nnU-Net's commands, building trainers."""
import math
import re
import subprocess
from copy import deepcopy
from pathlib import Path

import torch

from nnunetv2_dbce.tools.nnunet import nnunet_command

TESTS = Path(__file__).parent
USER_TRAINER_FOLDER = TESTS / "ext_trainers"
DATASET_ID = 991
DATASET_3D_ID = 993
DATASET_NAME = f"Dataset{DATASET_ID}_DBCEDemo"  # the folder write_synthetic_dataset writes
DATASET_3D_NAME = f"Dataset{DATASET_3D_ID}_DBCE3D"  # the folder write_3d_dataset (conftest.py) writes
# A study of one fold, one epoch of 2 iterations, batch 2 and 8 first-stage features: a minute per run.
TINY_STUDY = ["-c", "2d", "-f", "0", "--epochs", "1", "--iterations", "2", "--val-iterations", "1", "--batch-size",
              "2", "--features", "8", "--disable-tta"]


STUDY = nnunet_command("nnUNetv2_dbce_study")


def run_cli(command, env, timeout=900):
    """Run an nnU-Net console script; on failure show the end of its output."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-4000:]}\n" \
                                   f"{result.stderr[-4000:]}"
    return result


def make_trainer(trainer_class, plans, dataset_json, fold=0):
    """A CPU trainer of the 2d configuration, built the way nnUNetv2_train builds it."""
    plans = deepcopy(plans)
    plans["continue_training"] = False
    return trainer_class(plans, "2d", fold, dataset_json, torch.device("cpu"))


def onehot(target, classes):
    return torch.nn.functional.one_hot(target[:, 0].long(), classes).movedim(-1, 1).numpy()


def validation_loss_and_reference(trainer, terms):
    """Loss logged by nnU-Net's validation_step on one batch, and the same from the reference losses."""
    trainer.initialize()
    _, loader_val = trainer.get_dataloaders()
    return logged_and_reference(trainer, next(loader_val), terms)


def logged_and_reference(trainer, batch, terms):
    """Loss nnU-Net's validation_step logs on ``batch`` (initialized trainer), and the sum over deep-supervision
    scales, with nnU-Net's scale weights, of ``terms(output, target, voxel_map)`` (float64 outputs)."""
    trainer.on_validation_epoch_start()
    logged = float(trainer.validation_step(batch)["loss"])
    with torch.no_grad():
        outputs = trainer.network(batch["data"])
    weights = batch.get("voxel_map", [None] * len(outputs))
    expected = sum(factor * terms(out.double(), t, w) for factor, out, t, w in
                   zip(trainer.loss.weight_factors, outputs, batch["target"], weights) if factor != 0)
    return logged, expected


def training_log_with_finite_losses(fold: Path) -> str:
    """The run's (newest) training log, after checking it logged finite train and validation losses of two epochs."""
    log = max(fold.glob("training_log_*.txt"), key=lambda path: path.stat().st_mtime).read_text()
    losses = [float(v) for v in re.findall(r"(?:train|val)_loss (\S+)", log)]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    return log
