"""nnU-Net modes in-process: deep supervision off, ignore-labelled voxels, torch.compile."""
import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

from helpers import make_trainer
from nnunetv2_dbce import DBCELoss, PMDiceCELoss, PMDiceLoss
from nnunetv2_dbce.trainers import (
    nnUNetTrainerDBCE,
    nnUNetTrainerDBCEPMDice,
    nnUNetTrainerDiceDBCE,
    nnUNetTrainerPMDice,
    nnUNetTrainerPMDiceCE,
)
from reference import reference_pm_dice, reference_soft_dice, reference_weighted_ce

ALL_TRAINERS = [nnUNetTrainerDBCE, nnUNetTrainerPMDice, nnUNetTrainerPMDiceCE, nnUNetTrainerDBCEPMDice,
                nnUNetTrainerDiceDBCE]


class NoDeepSupervision:
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False


def reference_loss(base, logits, target, weights) -> float:
    """The trainer's loss at one scale from the slow references: (B, C, X, Y) logits, (B, 1, X, Y) target."""
    labels = target[:, 0].numpy()
    probabilities, onehot = torch.softmax(logits, 1).numpy(), np.stack([labels == c for c in range(3)], 1)
    ones = np.ones(labels.shape)
    pm_dice = reference_pm_dice(probabilities, onehot, 1.0, True, False, 1e-5)
    return {nnUNetTrainerDBCE: lambda: reference_weighted_ce(logits.numpy(), labels, weights[:, 0].numpy()),
            nnUNetTrainerPMDice: lambda: pm_dice,
            nnUNetTrainerPMDiceCE: lambda: pm_dice + reference_weighted_ce(logits.numpy(), labels, ones),
            nnUNetTrainerDBCEPMDice: lambda: pm_dice + reference_weighted_ce(logits.numpy(), labels,
                                                                             weights[:, 0].numpy()),
            nnUNetTrainerDiceDBCE: lambda: reference_soft_dice(probabilities, onehot, True, False, 1e-5) +
            reference_weighted_ce(logits.numpy(), labels, weights[:, 0].numpy())}[base]()


@pytest.mark.parametrize("base", ALL_TRAINERS, ids=lambda c: c.__name__)
def test_without_deep_supervision(plans_and_dataset_json, base):
    trainer = make_trainer(type(base.__name__ + "_noDS", (NoDeepSupervision, base), {}), *plans_and_dataset_json)
    trainer.initialize()
    loader_train, loader_val = trainer.get_dataloaders()
    batch = next(loader_train)
    assert isinstance(batch["target"], torch.Tensor)
    if issubclass(base, nnUNetTrainerDBCE):
        assert isinstance(batch["voxel_map"], torch.Tensor) and batch["voxel_map"].shape == batch["target"].shape
    trainer.on_train_epoch_start()
    assert np.isfinite(trainer.train_step(batch)["loss"])
    trainer.on_validation_epoch_start()
    batch = next(loader_val)
    with torch.no_grad():
        logits = trainer.network(batch["data"]).double()
    expected = reference_loss(base, logits, batch["target"], batch.get("voxel_map"))
    assert float(trainer.validation_step(batch)["loss"]) == pytest.approx(expected, rel=1e-4)


def with_ignored_stripe(batch, trainer):
    """The batch with rows 0-9 of every full-resolution target set to the ignore label, lower scales and
    weight maps remade the way the pipeline makes them."""
    full = batch["target"][0].clone()
    full[:, :, :10] = trainer.label_manager.ignore_label
    scales = trainer._get_deep_supervision_scales()
    per_sample = [DownsampleSegForDSTransform(scales)._apply_to_segmentation(t) for t in full]
    targets = [torch.stack([sample[k] for sample in per_sample]) for k in range(len(scales))]
    transform = trainer._voxel_map_transform()
    weights = [transform(segmentation=[sample[k] for k in range(len(scales))])["voxel_map"] for sample in per_sample]
    return dict(batch, target=targets, voxel_map=[torch.stack([w[k] for w in weights]) for k in range(len(scales))])


@pytest.mark.parametrize("base", [nnUNetTrainerDBCE, nnUNetTrainerDBCEPMDice, nnUNetTrainerDiceDBCE],
                         ids=lambda c: c.__name__)
def test_ignored_voxels_are_left_out_by_the_trainers(plans_and_dataset_json, base):
    plans, dataset_json = plans_and_dataset_json
    without_ignore = make_trainer(base, plans, dataset_json)  # the data was preprocessed without an ignore label
    without_ignore.initialize()
    _, loader_val = without_ignore.get_dataloaders()
    trainer = make_trainer(base, plans, dict(dataset_json, labels={**dataset_json["labels"], "ignore": 3}))
    trainer.initialize()
    batch = with_ignored_stripe(next(loader_val), trainer)
    assert torch.all(batch["voxel_map"][0][batch["target"][0] == 3] == 0)
    trainer.on_validation_epoch_start()
    with torch.no_grad():
        outputs = trainer.network(batch["data"])
    expected = 0.0  # before validation_step, which overwrites the ignore label in the target for its pseudo Dice
    for factor, out, target, weights in zip(trainer.loss.weight_factors, outputs, batch["target"], batch["voxel_map"]):
        if factor == 0:
            continue
        labels = target[:, 0].numpy()
        term = reference_weighted_ce(out.double().numpy(), labels, weights[:, 0].numpy(), ignore_index=3)
        onehot = np.stack([(np.where(labels == 3, 0, labels) == c) for c in range(3)], 1)
        probabilities = torch.softmax(out.double(), 1).numpy()
        if base is nnUNetTrainerDBCEPMDice:
            term += reference_pm_dice(probabilities, onehot, trainer.pm_dice_gamma[0], True, False, 1e-5,
                                      mask=labels != 3)
        if base is nnUNetTrainerDiceDBCE:
            term += reference_soft_dice(probabilities, onehot, True, False, 1e-5, mask=labels != 3)
        expected += factor * term
    logged = float(trainer.validation_step(batch)["loss"])
    assert logged == pytest.approx(expected, rel=1e-4)


def test_compiled_losses_equal_eager():
    """nnU-Net compiles the Dice term on GPU when nnUNet_compile is on; the losses trace and agree."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn((2, 3, 8, 8), generator=generator, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 8, 8), generator=generator)
    weights = torch.rand((2, 1, 8, 8), generator=generator)
    for loss, arguments in ((PMDiceLoss(lambda x: torch.softmax(x, 1), [0.0, 2.0, 3.0]), (target,)),
                            (DBCELoss(), (target, weights)), (PMDiceCELoss([0.0, 2.0, 3.0]), (target, weights))):
        eager = loss(logits, *arguments)
        compiled = torch.compile(loss, backend="aot_eager")(logits, *arguments)
        torch.testing.assert_close(compiled, eager)
        torch.testing.assert_close(torch.autograd.grad(compiled, logits)[0], torch.autograd.grad(eager, logits)[0])


def test_nnunet_compile_setting_on_cpu_trains(plans_and_dataset_json, monkeypatch):
    """nnUNet_compile=1: nnU-Net turns compiling off on the CPU, and the trainers follow it."""
    monkeypatch.setenv("nnUNet_compile", "1")
    trainer = make_trainer(nnUNetTrainerPMDiceCE, *plans_and_dataset_json)
    trainer.initialize()
    assert not trainer._do_i_compile() and isinstance(trainer.loss.loss, PMDiceCELoss)
    loader_train, _ = trainer.get_dataloaders()
    trainer.on_train_epoch_start()
    assert np.isfinite(trainer.train_step(next(loader_train))["loss"])


def test_missing_configuration_is_named(plans_and_dataset_json):
    plans, dataset_json = plans_and_dataset_json
    with pytest.raises(RuntimeError, match="Requested configuration 3d_lowres not found in plans"):
        nnUNetTrainerDBCE(dict(plans, continue_training=False), "3d_lowres", 0, dataset_json, torch.device("cpu"))
