"""DBCE + PM Dice: one term for class imbalance, one for difficulty imbalance. Plain torch."""
from typing import Optional

import torch
from torch import nn

from nnunetv2_dbce.losses.dbce import DBCELoss, RegionDBCELoss
from nnunetv2_dbce.losses.pm_dice import PMDiceLoss


class DBCEAndPMDiceLoss(nn.Module):
    """``weight_dbce * DBCE + weight_pm_dice * PM Dice`` on the same logits, 1:1 by default like nnU-Net's Dice+CE.

    Label maps: voxels labelled ``ignore_index`` are left out of both terms. Regions (``regions=True``:
    sigmoid outputs, (B, R, ...) region targets, ``RegionDBCELoss``): with ``ignore_index`` set, the target's
    last channel is nnU-Net's ignore mask, left out of both terms.
    """

    def __init__(self, pm_dice: PMDiceLoss, ignore_index: Optional[int] = None, weight_dbce: float = 1,
                 weight_pm_dice: float = 1, regions: bool = False):
        super().__init__()
        self.dbce = RegionDBCELoss(ignore_index is not None) if regions else DBCELoss(ignore_index)
        self.pm_dice = pm_dice
        self.ignore_index = ignore_index
        self.regions = regions
        self.weight_dbce = weight_dbce
        self.weight_pm_dice = weight_pm_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """logits (B, C, ...); target and weights as for ``DBCELoss`` (labels) or ``RegionDBCELoss`` (regions)."""
        if self.ignore_index is None:
            target_dice, mask = target, None
        elif self.regions:
            target_dice, mask = target[:, :-1], target[:, -1:] == 0
        else:
            mask = target != self.ignore_index
            target_dice = torch.where(mask, target, 0)
        return self.weight_dbce * self.dbce(logits, target, weights) + \
            self.weight_pm_dice * self.pm_dice(logits, target_dice, loss_mask=mask)
