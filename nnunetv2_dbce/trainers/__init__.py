"""nnU-Net trainers, selected with ``nnUNetv2_train ... -tr <name>``."""
from nnunetv2_dbce.trainers.baselines import nnUNetTrainerFocalLoss, nnUNetTrainerFocalTversky
from nnunetv2_dbce.trainers.boundary import nnUNetTrainerBoundaryLoss, nnUNetTrainerUNetBorderWeightedCE
from nnunetv2_dbce.trainers.dbce import (
                                         nnUNetTrainerBalancedCE,
                                         nnUNetTrainerDBCE,
                                         nnUNetTrainerDBCE_derived,
                                         nnUNetTrainerDBCE_R1,
                                         nnUNetTrainerDBCE_R3,
                                         nnUNetTrainerDBCE_R5,
                                         nnUNetTrainerDBCE_R10,
                                         nnUNetTrainerDBCE_R20,
                                         nnUNetTrainerDiceDBCE,
                                         nnUNetTrainerDiceDBCE_R1,
                                         nnUNetTrainerDiceDBCE_R3,
                                         nnUNetTrainerDiceDBCE_R5,
                                         nnUNetTrainerDiceDBCE_R10,
                                         nnUNetTrainerDiceDBCE_R20,
)
from nnunetv2_dbce.trainers.pm_dice import (
                                         nnUNetTrainerDBCEPMDice,
                                         nnUNetTrainerDBCEPMDice_R5_gamma2,
                                         nnUNetTrainerPMDice,
                                         nnUNetTrainerPMDice_gamma1,
                                         nnUNetTrainerPMDice_gamma2,
                                         nnUNetTrainerPMDice_gamma3,
                                         nnUNetTrainerPMDiceCE,
                                         nnUNetTrainerPMDiceCE_gamma2,
)
from nnunetv2_dbce.trainers.topology import nnUNetTrainerclDice, nnUNetTrainerSkeletonRecall
from nnunetv2_dbce.trainers.voxel_map import nnUNetTrainerVoxelMap

__all__ = ["nnUNetTrainerBalancedCE", "nnUNetTrainerBoundaryLoss", "nnUNetTrainerDBCE", "nnUNetTrainerDBCE_derived",
           "nnUNetTrainerDBCE_R1", "nnUNetTrainerDBCE_R3", "nnUNetTrainerDBCE_R5", "nnUNetTrainerDBCE_R10",
           "nnUNetTrainerDBCE_R20", "nnUNetTrainerDBCEPMDice", "nnUNetTrainerDBCEPMDice_R5_gamma2",
           "nnUNetTrainerDiceDBCE", "nnUNetTrainerDiceDBCE_R1", "nnUNetTrainerDiceDBCE_R3", "nnUNetTrainerDiceDBCE_R5",
           "nnUNetTrainerDiceDBCE_R10", "nnUNetTrainerDiceDBCE_R20", "nnUNetTrainerFocalLoss",
           "nnUNetTrainerFocalTversky", "nnUNetTrainerPMDice", "nnUNetTrainerPMDice_gamma1",
           "nnUNetTrainerPMDice_gamma2", "nnUNetTrainerPMDice_gamma3", "nnUNetTrainerPMDiceCE",
           "nnUNetTrainerPMDiceCE_gamma2", "nnUNetTrainerSkeletonRecall", "nnUNetTrainerUNetBorderWeightedCE",
           "nnUNetTrainerVoxelMap", "nnUNetTrainerclDice"]
