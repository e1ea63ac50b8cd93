"""nnU-Net's multi-GPU (DDP) path with our trainers, on CPU: two gloo processes.

nnU-Net's DDP path assumes CUDA (``setup_ddp`` uses nccl, ``run_ddp`` calls ``torch.cuda.set_device``, the
trainer moves itself to ``cuda:rank`` and wraps the network with ``DDP(device_ids=[rank])``). ``cpu_ddp``
swaps exactly those four CUDA-only calls for CPU ones, inside the spawned processes; everything else
(batch split over ranks, DDP-wrapped network, the ``ddp`` flag of the Dice losses, all-gathered epoch
logging, validation cases split over ranks) is nnU-Net's own code.
"""
import copy
import json
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import DATASET_ID

WORLD_SIZE = 2
TRAINER = "nnUNetTrainerDBCEPMDice_tiny"


def cpu_ddp(init_file: str) -> ExitStack:
    """Patches that let nnU-Net's DDP code run on CPU with gloo (see the module docstring)."""
    from nnunetv2.run import run_training
    from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as trainer_module
    from torch.nn.parallel import DistributedDataParallel

    def setup_gloo(rank, world_size):
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)

    def trainer_on_cpu(*args, **kwargs):
        trainer = get_trainer(*args, **kwargs)
        trainer.device, trainer.grad_scaler = torch.device("cpu"), None
        return trainer

    get_trainer = run_training.get_trainer_from_args
    stack = ExitStack()
    stack.enter_context(mock.patch.object(run_training, "setup_ddp", setup_gloo))
    stack.enter_context(mock.patch.object(torch.cuda, "set_device", lambda device: None))
    stack.enter_context(mock.patch.object(run_training, "get_trainer_from_args", trainer_on_cpu))
    stack.enter_context(mock.patch.object(trainer_module, "DDP",
                                          lambda module, device_ids: DistributedDataParallel(module)))
    return stack


def gathered(value):
    values = [None] * WORLD_SIZE
    dist.all_gather_object(values, value)
    return values


def checks_worker(rank, init_file, out_folder):
    """Same case on both ranks: identical weight maps, losses and updated weights. Different cases per rank:
    the PM Dice term equals one process's PM Dice over both cases (its batch-Dice sums are all-gathered)."""
    from nnunetv2.run import run_training

    from nnunetv2_dbce import PMDiceLoss
    from nnunetv2_dbce.trainers.deep_supervision import innermost

    with cpu_ddp(init_file):
        run_training.setup_ddp(rank, WORLD_SIZE)
        try:
            trainer = run_training.get_trainer_from_args(str(DATASET_ID), "2d", 0, TRAINER)
            trainer.initialize()
            transforms = trainer.get_validation_transforms(
                trainer._get_deep_supervision_scales(), foreground_labels=trainer.label_manager.foreground_labels)
            dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder)

            def batch_of(case):
                data, seg, _, _ = dataset.load_case(case)
                sample = transforms(image=torch.from_numpy(np.asarray(data)[:, 0]).float(),
                                    segmentation=torch.from_numpy(np.asarray(seg)[:, 0]).to(torch.int16))
                return {"data": sample["image"][None], "target": [s[None] for s in sample["segmentation"]],
                        "voxel_map": [w[None] for w in sample["voxel_map"]]}

            same = batch_of("demo_000")
            validation = trainer.validation_step(same)["loss"]
            training = trainer.train_step(same)["loss"]
            parameters = torch.cat([p.detach().flatten() for p in trainer.network.parameters()])

            own = batch_of(f"demo_00{rank + 1}")
            pm_dice = copy.copy(innermost(trainer.loss))  # the trainer's PM Dice + DBCE, its PM Dice term alone
            pm_dice.weight_ce = 0
            target = own["target"][0]
            # outputs chosen, not trained, so that the check below does not depend on chance: rank 0 predicts
            # class 2 exactly and class 1 as background, rank 1 the other way round. Each rank alone: one class
            # right, one wrong (PM Dice ~0.5); both together: each class wrong where it counts (~1)
            labels = target[:, 0].long()
            predicted = torch.where(labels == 2 - rank, labels, 0)
            output = 20 * torch.nn.functional.one_hot(predicted, trainer.label_manager.num_segmentation_heads) \
                .movedim(-1, 1).float() - 10
            gathered_term = pm_dice(output, target).item()
            single = PMDiceLoss(lambda x: torch.softmax(x, 1), pm_dice.gamma, pm_dice.batch_dice, pm_dice.do_bg,
                                pm_dice.smooth, ddp=False)
            everything = gathered((output, target))
            torch.save({
                "is_ddp": trainer.is_ddp, "batch_size": trainer.batch_size, "ddp_flag": pm_dice.ddp,
                "network": type(trainer.network).__name__, "voxel_map": [w.clone() for w in same["voxel_map"]],
                "validation": float(validation), "training": float(training), "parameters": parameters,
                "gathered_term": gathered_term, "local_term": single(output, target).item(),
                "whole_batch_term": single(torch.cat([o for o, _ in everything]),
                                           torch.cat([t for _, t in everything])).item(),
            }, f"{out_folder}/rank{rank}.pt")
        finally:
            dist.destroy_process_group()


@pytest.mark.e2e
def test_two_gloo_processes_agree_and_gather_dice_sums(preprocessed_dataset, nnunet_env, monkeypatch, tmp_path):
    for key, value in nnunet_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    mp.spawn(checks_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    plans = json.loads((Path(nnunet_env["nnUNet_preprocessed"]) / preprocessed_dataset.name / "nnUNetPlans.json")
                       .read_text())
    planned_batch = plans["configurations"]["2d"]["batch_size"]
    for result in ranks:
        assert result["is_ddp"] and result["ddp_flag"] and result["network"] == "DistributedDataParallel"
    assert sum(r["batch_size"] for r in ranks) == planned_batch  # nnU-Net splits the batch over the ranks
    zero, one = ranks
    for w0, w1 in zip(zero["voxel_map"], one["voxel_map"]):
        torch.testing.assert_close(w0, w1, rtol=0, atol=0)
    assert zero["validation"] == one["validation"] and zero["training"] == one["training"]
    torch.testing.assert_close(zero["parameters"], one["parameters"])
    for result in ranks:
        assert result["local_term"] == pytest.approx(0.5, abs=0.01)
        assert result["gathered_term"] == pytest.approx(result["whole_batch_term"], rel=1e-5)
        assert result["gathered_term"] > 0.9  # not the rank's own value: the sums came from both ranks
    assert zero["gathered_term"] == pytest.approx(one["gathered_term"], rel=1e-6)


def training_worker(rank, init_file):
    """nnU-Net's own ``run_ddp``: a tiny training, then validation with the cases split over the ranks."""
    from nnunetv2.run import run_training
    with cpu_ddp(init_file):
        run_training.run_ddp(rank, str(DATASET_ID), "2d", 1, TRAINER, "nnUNetPlans", False, False, False, None,
                             False, False, WORLD_SIZE)


@pytest.mark.e2e
def test_nnunet_run_ddp_trains_and_validates(preprocessed_dataset, nnunet_env, monkeypatch, tmp_path):
    for key, value in nnunet_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    mp.spawn(training_worker, args=(str(tmp_path / "init"),), nprocs=WORLD_SIZE, join=True)
    fold = Path(nnunet_env["nnUNet_results"]) / preprocessed_dataset.name / f"{TRAINER}__nnUNetPlans__2d" / "fold_1"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    losses = checkpoint["logging"]["train_losses"] + checkpoint["logging"]["val_losses"]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 2  # both validation cases, predicted by one rank each
