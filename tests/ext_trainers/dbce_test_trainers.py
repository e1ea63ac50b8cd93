"""A user's own trainer folder, listed in nnUNet_extTrainer by the end-to-end tests: subclasses of the
package's trainers with a handful of iterations, as the README tells users to write them. The resume
test changes the epochs and the radius between runs through TINY_EPOCHS and TINY_DILATION_RADIUS."""
import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_dbce.trainers import (
    nnUNetTrainerBalancedCE,
    nnUNetTrainerclDice,
    nnUNetTrainerDBCE,
    nnUNetTrainerDBCEPMDice,
    nnUNetTrainerDiceDBCE,
    nnUNetTrainerPMDice,
    nnUNetTrainerPMDiceCE,
    nnUNetTrainerSkeletonRecall,
)


class FewIterations:
    """Mixin: 2 epochs (TINY_EPOCHS) of 3 training and 2 validation iterations (keeps nnU-Net's constructor
    signature)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("TINY_EPOCHS", 2))
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 2


class nnUNetTrainerDBCE_tiny(FewIterations, nnUNetTrainerDBCE):
    dilation_radius = float(os.environ.get("TINY_DILATION_RADIUS", 3))


class nnUNetTrainerPMDice_tiny(FewIterations, nnUNetTrainerPMDice):
    pm_dice_gamma = 1.5


class nnUNetTrainerPMDiceCE_tiny(FewIterations, nnUNetTrainerPMDiceCE):
    pass


class nnUNetTrainerDBCEPMDice_tiny(FewIterations, nnUNetTrainerDBCEPMDice):
    dilation_radius = 3


class nnUNetTrainerDiceDBCE_tiny(FewIterations, nnUNetTrainerDiceDBCE):
    pass


class nnUNetTrainerSkeletonRecall_tiny(FewIterations, nnUNetTrainerSkeletonRecall):
    pass


class nnUNetTrainerclDice_tiny(FewIterations, nnUNetTrainerclDice):
    pass


class nnUNetTrainerBalancedCE_tiny(FewIterations, nnUNetTrainerBalancedCE):
    pass


class nnUNetTrainer_tiny(FewIterations, nnUNetTrainer):
    """nnU-Net's default trainer (Dice+CE), with as few iterations as the others."""


class nnUNetTrainerFails_tiny(FewIterations, nnUNetTrainer):
    """Fails when training starts: how the study reports a failing run while the others go on."""

    def on_train_start(self):
        raise RuntimeError("deliberate failure of a test trainer")
