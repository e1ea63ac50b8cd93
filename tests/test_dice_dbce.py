"""Dice+DBCE: nnU-Net's Dice+CE with DBCE in place of CE, against slow references of its two terms."""

import pytest
import torch
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1
from test_regions import weighted_bce_voxel_loop

from helpers import make_trainer, onehot, validation_loss_and_reference
from nnunetv2_dbce import DiceAndDBCELoss, dbce_weight_map
from nnunetv2_dbce.trainers import nnUNetTrainerDiceDBCE, nnUNetTrainerDiceDBCE_R5
from reference import reference_soft_dice, reference_weighted_ce


def nnunet_dice(regions=False, batch_dice=True):
    return MemoryEfficientSoftDiceLoss(torch.sigmoid if regions else softmax_helper_dim1, batch_dice=batch_dice,
                                       do_bg=regions, smooth=1e-5, ddp=False)


@pytest.mark.parametrize("ignore_label, batch_dice", [(None, True), (None, False), (3, True)])
def test_dice_and_dbce_is_the_sum_of_nnunets_dice_and_dbce(ignore_label, batch_dice):
    generator = torch.Generator().manual_seed(11)
    logits = 2 * torch.randn((2, 3, 7, 6), generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3 if ignore_label is None else 4, (2, 1, 7, 6), generator=generator)
    weights = torch.stack([torch.from_numpy(dbce_weight_map(t[0].numpy(), 1, ignore_label=ignore_label))[None]
                           for t in target]).double()
    loss = DiceAndDBCELoss(nnunet_dice(batch_dice=batch_dice), ignore_label)
    labels = target[:, 0].numpy()
    kept = None if ignore_label is None else labels != ignore_label
    expected = reference_weighted_ce(logits.numpy(), labels, weights[:, 0].numpy(), ignore_label) + \
        reference_soft_dice(torch.softmax(logits, 1).numpy(), onehot(torch.where(target == 3, 0, target), 3),
                            batch_dice, False, 1e-5, kept)
    assert loss(logits, target, weights).item() == pytest.approx(expected, rel=1e-6)  # nnU-Net's Dice sums in fp32


def test_dice_and_dbce_on_regions_with_an_ignore_channel():
    generator = torch.Generator().manual_seed(12)
    logits = torch.randn((2, 2, 6, 5), generator=generator, dtype=torch.float64)
    target = (torch.rand((2, 3, 6, 5), generator=generator) > 0.5).to(torch.int16)  # last channel: ignore mask
    weights = torch.rand((2, 2, 6, 5), generator=generator, dtype=torch.float64) + 0.5
    value = DiceAndDBCELoss(nnunet_dice(regions=True), ignore_index=3, regions=True)(logits, target, weights)
    ignored = target[:, -1].bool().numpy()
    expected = weighted_bce_voxel_loop(logits.numpy(), target[:, :2].numpy(), weights.numpy(), ignored) + \
        reference_soft_dice(torch.sigmoid(logits).numpy(), target[:, :2].numpy(), True, True, 1e-5, ~ignored)
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("trainer_class, radius", [(nnUNetTrainerDiceDBCE, 3), (nnUNetTrainerDiceDBCE_R5, 5)])
def test_trainer_logs_nnunets_dice_plus_dbce_at_every_scale(plans_and_dataset_json, trainer_class, radius):
    trainer = make_trainer(trainer_class, *plans_and_dataset_json)
    logged, expected = validation_loss_and_reference(trainer, lambda o, t, w: (
        reference_weighted_ce(o.numpy(), t[:, 0].numpy(), w[:, 0].numpy()) +
        reference_soft_dice(torch.softmax(o, 1).numpy(), onehot(t, o.shape[1]), True, False, 1e-5)))
    compound = trainer.loss.loss
    assert isinstance(compound, DiceAndDBCELoss) and isinstance(compound.dice, MemoryEfficientSoftDiceLoss)
    assert compound.weight_dice == compound.weight_dbce == 1 and trainer.dilation_radius == radius
    assert compound.dice.batch_dice == trainer.configuration_manager.batch_dice and not compound.dice.do_bg
    assert logged == pytest.approx(expected, rel=1e-4)


def test_trainer_on_a_region_dataset(plans_and_dataset_json):
    """Regions: nnU-Net's soft Dice on the sigmoid channels (background included) + RegionDBCELoss, checked by the
    validation loss against the references, one weight map per region channel at every scale."""
    plans, dataset_json = plans_and_dataset_json
    regions = dict(dataset_json, labels={"background": 0, "spot_or_blob": [1, 2], "blob": 2},
                   regions_class_order=[1, 2])
    trainer = make_trainer(nnUNetTrainerDiceDBCE, plans, regions)

    def reference(out, target, weights):
        assert target.shape[1] == 2 and weights.shape == target.shape
        return reference_soft_dice(torch.sigmoid(out).numpy(), target.double().numpy(), True, True, 1e-5) + \
            weighted_bce_voxel_loop(out.numpy(), target.numpy(), weights.numpy(), None)

    logged, expected = validation_loss_and_reference(trainer, reference)
    compound = trainer.loss.loss
    assert compound.regions and compound.dice.apply_nonlin is torch.sigmoid and compound.dice.do_bg
    assert logged == pytest.approx(expected, rel=1e-4)
