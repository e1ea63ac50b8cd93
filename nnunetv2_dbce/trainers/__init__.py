"""nnU-Net trainers, selected with ``nnUNetv2_train ... -tr <name>``."""
from nnunetv2_dbce.trainers.baselines import nnUNetTrainerFocalLoss, nnUNetTrainerFocalTversky
from nnunetv2_dbce.trainers.dbce import (nnUNetTrainerBalancedCE, nnUNetTrainerDBCE, nnUNetTrainerDBCE_R1,
                                         nnUNetTrainerDBCE_R3, nnUNetTrainerDBCE_R10, nnUNetTrainerDBCE_R20)
from nnunetv2_dbce.trainers.pm_dice import (nnUNetTrainerDBCEPMDice, nnUNetTrainerPMDice, nnUNetTrainerPMDice_gamma1,
                                            nnUNetTrainerPMDice_gamma3, nnUNetTrainerPMDiceCE)

__all__ = ["nnUNetTrainerBalancedCE", "nnUNetTrainerDBCE", "nnUNetTrainerDBCE_R1", "nnUNetTrainerDBCE_R3",
           "nnUNetTrainerDBCE_R10", "nnUNetTrainerDBCE_R20",
           "nnUNetTrainerFocalLoss", "nnUNetTrainerFocalTversky", "nnUNetTrainerDBCEPMDice", "nnUNetTrainerPMDice",
           "nnUNetTrainerPMDice_gamma1", "nnUNetTrainerPMDice_gamma3", "nnUNetTrainerPMDiceCE"]
