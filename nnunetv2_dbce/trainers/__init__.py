"""nnU-Net trainers, selected with ``nnUNetv2_train ... -tr <name>``."""
from nnunetv2_dbce.trainers.dbce import (nnUNetTrainerBalancedCE, nnUNetTrainerDBCE, nnUNetTrainerDBCE_R1,
                                         nnUNetTrainerDBCE_R3, nnUNetTrainerDBCE_R10, nnUNetTrainerDBCE_R20)

__all__ = ["nnUNetTrainerBalancedCE", "nnUNetTrainerDBCE", "nnUNetTrainerDBCE_R1", "nnUNetTrainerDBCE_R3",
           "nnUNetTrainerDBCE_R10", "nnUNetTrainerDBCE_R20"]
