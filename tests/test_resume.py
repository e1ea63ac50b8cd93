"""Loss settings travel with checkpoints: resuming keeps the run's radius and gamma; a checkpoint of
another trainer with other settings is refused."""
import pytest

from helpers import make_trainer
from nnunetv2_dbce import PMDiceCELoss
from nnunetv2_dbce.trainers import nnUNetTrainerDBCE, nnUNetTrainerDBCEPMDice, nnUNetTrainerPMDice
from nnunetv2_dbce.trainers.settings import SETTINGS_KEY


def saved_checkpoint(trainer_class, plans_and_dataset_json, path):
    trainer = make_trainer(trainer_class, *plans_and_dataset_json)
    trainer.initialize()
    trainer.save_checkpoint(str(path))
    return trainer


def test_resume_restores_radius_and_gamma_of_the_checkpoint(plans_and_dataset_json, tmp_path):
    trainer_class = type("nnUNetTrainerDBCEPMDice_resume", (nnUNetTrainerDBCEPMDice,),
                         {"dilation_radius": 3, "pm_dice_gamma": 1.5})
    saved_checkpoint(trainer_class, plans_and_dataset_json, tmp_path / "checkpoint.pth")
    trainer_class.dilation_radius, trainer_class.pm_dice_gamma = 8, 0.5  # "the defaults changed since"

    resumed = make_trainer(trainer_class, *plans_and_dataset_json)
    assert resumed.dilation_radius == 8
    resumed.load_checkpoint(str(tmp_path / "checkpoint.pth"))
    assert resumed.dilation_radius == 3 and resumed.pm_dice_gamma == (1.5,)
    assert resumed._voxel_map_transform().map_function.function.radius == 3
    assert isinstance(resumed.loss.loss, PMDiceCELoss) and resumed.loss.loss.gamma == (1.5,)
    assert resumed.my_init_kwargs[SETTINGS_KEY]["dilation_radius"] == 3
    assert "Resuming with the loss settings of the checkpoint" in open(resumed.log_file).read()


def test_same_settings_load_silently(plans_and_dataset_json, tmp_path):
    saved_checkpoint(nnUNetTrainerPMDice, plans_and_dataset_json, tmp_path / "checkpoint.pth")
    trainer = make_trainer(nnUNetTrainerPMDice, *plans_and_dataset_json)
    trainer.load_checkpoint(str(tmp_path / "checkpoint.pth"))
    assert trainer.pm_dice_gamma == (1.0,)
    assert "Resuming with" not in open(trainer.log_file).read()


def test_checkpoint_of_another_trainer_with_other_settings_is_refused(plans_and_dataset_json, tmp_path):
    saved_checkpoint(nnUNetTrainerDBCE, plans_and_dataset_json, tmp_path / "checkpoint.pth")
    other = type("nnUNetTrainerDBCE_R9", (nnUNetTrainerDBCE,), {"dilation_radius": 9})
    with pytest.raises(ValueError, match="Refusing to load a checkpoint of nnUNetTrainerDBCE"):
        make_trainer(other, *plans_and_dataset_json).load_checkpoint(str(tmp_path / "checkpoint.pth"))
    same_settings = type("nnUNetTrainerDBCE_renamed", (nnUNetTrainerDBCE,), {})
    make_trainer(same_settings, *plans_and_dataset_json).load_checkpoint(str(tmp_path / "checkpoint.pth"))


def test_checkpoint_without_settings_keeps_the_current_ones(plans_and_dataset_json, tmp_path):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    saved_checkpoint(nnUNetTrainer, plans_and_dataset_json, tmp_path / "checkpoint.pth")
    trainer = make_trainer(nnUNetTrainerDBCE, *plans_and_dataset_json)
    trainer.load_checkpoint(str(tmp_path / "checkpoint.pth"))
    default = nnUNetTrainerDBCE.dilation_radius
    assert trainer.dilation_radius == default and trainer.my_init_kwargs[SETTINGS_KEY]["dilation_radius"] == default


def test_resumed_settings_pass_the_checks_of_the_class(plans_and_dataset_json, tmp_path, capsys):
    import torch
    saved_checkpoint(nnUNetTrainerPMDice, plans_and_dataset_json, tmp_path / "checkpoint.pth")
    checkpoint = torch.load(tmp_path / "checkpoint.pth", weights_only=False)
    checkpoint["init_args"][SETTINGS_KEY]["pm_dice_gamma"] = (-2.0,)  # edited, or written by a buggy version
    torch.save(checkpoint, tmp_path / "edited.pth")
    trainer = make_trainer(nnUNetTrainerPMDice, *plans_and_dataset_json)
    with pytest.raises(ValueError, match=">= 0"):
        trainer.load_checkpoint(str(tmp_path / "edited.pth"))
    assert "ERROR: nnUNetTrainerPMDice (loss settings of the checkpoint): " in capsys.readouterr().out
