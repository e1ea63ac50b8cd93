"""PM Dice trainers in-process: the loss they build, its value on a real validation batch, regions, refusals."""
import numpy as np
import pytest
import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
from test_regions import weighted_bce_voxel_loop

from helpers import make_trainer, onehot, validation_loss_and_reference
from nnunetv2_dbce import PMDiceCELoss, PMDiceLoss
from nnunetv2_dbce.trainers import nnUNetTrainerDBCEPMDice, nnUNetTrainerPMDice, nnUNetTrainerPMDiceCE
from reference import reference_pm_dice, reference_weighted_ce

REGIONS = {"labels": {"background": 0, "spot_or_blob": [1, 2], "blob": 2}, "regions_class_order": [1, 2]}


def pm_dice_reference(gamma):
    return lambda out, t, w: reference_pm_dice(torch.softmax(out, 1).numpy(), onehot(t, out.shape[1]), gamma,
                                               batch_dice=True, do_bg=False, smooth=1e-5)


def ce_reference(out, t, w):
    return reference_weighted_ce(out.numpy(), t[:, 0].numpy(), np.ones(t[:, 0].shape))


def test_pm_dice_ce_is_nnunets_dice_ce_with_pm_dice(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerPMDiceCE, *plans_and_dataset_json)
    logged, expected = validation_loss_and_reference(
        trainer, lambda o, t, w: pm_dice_reference(1.0)(o, t, w) + ce_reference(o, t, w))
    compound = trainer.loss.loss
    assert isinstance(compound, PMDiceCELoss) and compound.ignore_index is None
    assert compound.weight_ce == 1 and compound.weight_dice == 1 and compound.gamma == (1.0,)
    assert compound.batch_dice == trainer.configuration_manager.batch_dice and not compound.do_bg
    assert logged == pytest.approx(expected, rel=1e-4)


def test_pm_dice_alone(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerPMDice, *plans_and_dataset_json)
    logged, expected = validation_loss_and_reference(trainer, pm_dice_reference(1.0))
    assert trainer.loss.loss.weight_ce == 0
    assert logged == pytest.approx(expected, rel=1e-4)


def test_dbce_plus_pm_dice(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerDBCEPMDice, *plans_and_dataset_json)
    logged, expected = validation_loss_and_reference(
        trainer, lambda o, t, w: pm_dice_reference(1.0)(o, t, w) +
        reference_weighted_ce(o.numpy(), t[:, 0].numpy(), w[:, 0].numpy()))
    assert isinstance(trainer.loss.loss, PMDiceCELoss) and trainer.loss.loss.weight_ce == 1
    assert logged == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("trainer_class, weight_bce", [(nnUNetTrainerPMDice, 0), (nnUNetTrainerPMDiceCE, 1)])
def test_region_based_training_uses_sigmoid_pm_dice(plans_and_dataset_json, trainer_class, weight_bce):
    """Regions: nnU-Net's Dice+BCE with a sigmoid PM Dice (background channel included) on the region targets."""
    plans, dataset_json = plans_and_dataset_json
    trainer = make_trainer(trainer_class, plans, dict(dataset_json, **REGIONS))

    def reference(out, regions, weights):
        assert regions.shape[1] == 2  # one channel per region
        value = reference_pm_dice(torch.sigmoid(out).numpy(), regions.double().numpy(), 1.0, batch_dice=True,
                                  do_bg=True, smooth=1e-5)
        return value + weight_bce * weighted_bce_voxel_loop(out.numpy(), regions.numpy(), np.ones(out.shape), None)

    logged, expected = validation_loss_and_reference(trainer, reference)
    compound = trainer.loss.loss
    assert isinstance(compound, DC_and_BCE_loss) and isinstance(compound.dc, PMDiceLoss)
    assert compound.dc.apply_nonlin is torch.sigmoid and compound.dc.do_bg
    assert logged == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("gamma, error, message", [(-1.0, ValueError, ">= 0"), ("high", TypeError, "number"),
                                                   ([1.0, 2.0], ValueError, "gamma has 2 values but there are 3")])
def test_bad_gamma_is_refused_before_training(plans_and_dataset_json, gamma, error, message, capsys):
    for base in (nnUNetTrainerPMDice, nnUNetTrainerDBCEPMDice):
        bad = type("nnUNetTrainerPMDice_bad", (base,), {"pm_dice_gamma": gamma})
        with pytest.raises(error, match=message):
            make_trainer(bad, *plans_and_dataset_json)
        stated = [line for line in capsys.readouterr().out.splitlines() if "ERROR: nnUNetTrainerPMDice_bad: " in line]
        assert len(stated) == 1 and message in stated[0]  # one line, before nnU-Net's traceback


def test_per_class_gamma_is_used(plans_and_dataset_json):
    per_class = type("nnUNetTrainerPMDice_perclass", (nnUNetTrainerPMDice,), {"pm_dice_gamma": [0.0, 1.0, 3.0]})
    trainer = make_trainer(per_class, *plans_and_dataset_json)
    logged, expected = validation_loss_and_reference(trainer, pm_dice_reference([0.0, 1.0, 3.0]))
    assert logged == pytest.approx(expected, rel=1e-4)
