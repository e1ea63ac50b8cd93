"""nnunetv2-dbce: dilated balanced cross entropy (DBCE) and pixel-wise modulated Dice (PM Dice) for nnU-Net v2.

The losses, weight maps and transform import no nnU-Net code; the trainers (``nnunetv2_dbce.trainers``)
are found by ``nnUNetv2_train -tr <name>``.
"""
from nnunetv2_dbce.losses import DBCEAndPMDiceLoss, DBCELoss, FocalLoss, FocalTverskyLoss, PMDiceLoss
from nnunetv2_dbce.transforms import DilatedBalancedWeightsTransform
from nnunetv2_dbce.weight_maps import dilated_balanced_weights

__all__ = ["DBCEAndPMDiceLoss", "DBCELoss", "DilatedBalancedWeightsTransform", "FocalLoss", "FocalTverskyLoss",
           "PMDiceLoss",
           "dilated_balanced_weights"]
