"""nnU-Net trainers, selected with ``nnUNetv2_train ... -tr <name>``."""
from nnunetv2_dbce.trainers.baselines import nnUNetTrainerFocalLoss, nnUNetTrainerFocalTversky
from nnunetv2_dbce.trainers.dbce import (nnUNetTrainerBalancedCE, nnUNetTrainerDBCE, nnUNetTrainerDBCE_derived,
                                         nnUNetTrainerDBCE_R1, nnUNetTrainerDBCE_R3, nnUNetTrainerDBCE_R5,
                                         nnUNetTrainerDBCE_R10, nnUNetTrainerDBCE_R20)
from nnunetv2_dbce.trainers.pm_dice import (nnUNetTrainerDBCEPMDice, nnUNetTrainerPMDice, nnUNetTrainerPMDice_gamma1,
                                            nnUNetTrainerPMDice_gamma3, nnUNetTrainerPMDiceCE)
from nnunetv2_dbce.trainers.voxel_map import nnUNetTrainerVoxelMap
from nnunetv2_dbce.trainers.voxel_map_losses import nnUNetTrainerBoundaryLoss, nnUNetTrainerUNetBorderWeightedCE

__all__ = ["nnUNetTrainerBalancedCE", "nnUNetTrainerBoundaryLoss", "nnUNetTrainerDBCE", "nnUNetTrainerDBCE_derived",
           "nnUNetTrainerDBCE_R1", "nnUNetTrainerDBCE_R3", "nnUNetTrainerDBCE_R5", "nnUNetTrainerDBCE_R10",
           "nnUNetTrainerDBCE_R20", "nnUNetTrainerDBCEPMDice",
           "nnUNetTrainerFocalLoss", "nnUNetTrainerFocalTversky", "nnUNetTrainerPMDice", "nnUNetTrainerPMDice_gamma1",
           "nnUNetTrainerPMDice_gamma3", "nnUNetTrainerPMDiceCE", "nnUNetTrainerUNetBorderWeightedCE",
           "nnUNetTrainerVoxelMap"]
