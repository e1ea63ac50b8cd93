"""Whole training iteration of this package's trainers against nnU-Net's default ``nnUNetTrainer``.

Generates a 2D dataset (the demo's images at ``--size``), plans and preprocesses it with nnU-Net's own
CLI (default plans: batch size, patch size and network are nnU-Net's), then times ``train_step`` of each
trainer on the same batches (drawn once through ``nnUNetTrainerDBCE``'s data loader, so they carry
weight maps; other trainers ignore them) from the same initial network weights, the trainers taking
turns batch by batch. Data loading runs in
nnU-Net's background workers during training; its cost is measured separately by
``benchmark_weight_maps.py``.

    python scripts/benchmark_iteration.py [--device cpu] [--iterations 8] [--size 256]
"""
import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch

from nnunetv2_dbce.tools.nnunet import nnunet_command
from nnunetv2_dbce.tools.synthetic import write_synthetic_dataset

TRAINERS = ["nnUNetTrainer", "nnUNetTrainerDBCE", "nnUNetTrainerPMDice", "nnUNetTrainerPMDiceCE",
            "nnUNetTrainerDBCEPMDice"]
DATASET_ID = 992


def prepare(root: Path, size: int) -> tuple:
    """Plans and dataset.json of a freshly generated, planned and preprocessed 2D dataset under ``root``."""
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[key] = str(root / key)
        (root / key).mkdir(parents=True, exist_ok=True)
    folder = write_synthetic_dataset(root / "nnUNet_raw", DATASET_ID, num_train=20, num_test=0, size=size)
    subprocess.run([nnunet_command("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "2d", "-np", "2"],
                   check=True, stdout=subprocess.DEVNULL)
    preprocessed = root / "nnUNet_preprocessed" / folder.name
    return json.loads((preprocessed / "nnUNetPlans.json").read_text()), \
        json.loads((preprocessed / "dataset.json").read_text())


def build(trainer_name: str, plans: dict, dataset_json: dict, device: torch.device):
    """The trainer as nnUNetv2_train finds and builds it, initialised from seed 0 (its chatter silenced)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    plans = deepcopy(plans)
    plans["continue_training"] = False
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        trainer = recursive_find_trainer_class_by_name(trainer_name)(plans, "2d", 0, dataset_json, device)
        torch.manual_seed(0)
        trainer.initialize()
    return trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=20, help="timed train_steps per trainer (after 2 warm-up)")
    parser.add_argument("--size", type=int, default=256, help="image size of the generated 2D dataset")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        plans, dataset_json = prepare(Path(folder), args.size)
        os.environ["nnUNet_n_proc_DA"] = "0"  # batches drawn in this process (only after preprocessing: it needs > 0)
        configuration = plans["configurations"]["2d"]
        print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads; nnU-Net 2d plans: "
              f"batch {configuration['batch_size']}, patch {configuration['patch_size']}; "
              f"{args.iterations} timed train_steps each, same batches, same initial weights\n")
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            loader, _ = build("nnUNetTrainerDBCE", plans, dataset_json, device).get_dataloaders()
            batches = [next(loader) for _ in range(args.iterations + 2)]
        trainers = {name: build(name, plans, dataset_json, device) for name in TRAINERS}
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            for trainer in trainers.values():
                trainer.on_train_epoch_start()
        times = {name: [] for name in TRAINERS}
        for batch in batches:  # interleaved, so that load from elsewhere hits every trainer alike
            for name, trainer in trainers.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                trainer.train_step(batch)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
        baseline = np.median(times["nnUNetTrainer"][2:])
        for name in TRAINERS:
            row = np.array(times[name][2:]) * 1000
            print(f"  {name:<26} {np.median(row):8.0f} ms per iteration (IQR {np.percentile(row, 25):.0f}-"
                  f"{np.percentile(row, 75):.0f})  {np.median(row) / baseline / 1000:5.3f}x")


if __name__ == "__main__":
    main()
