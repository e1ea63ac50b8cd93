"""A soft Dice + DBCE on the same logits: nnU-Net's Dice+CE with DBCE in place of CE. Plain torch."""

import torch
from torch import nn

from nnunetv2_dbce.losses.dbce import DBCELoss, RegionDBCELoss


class DiceAndDBCELoss(nn.Module):
    """``weight_dice * Dice + weight_dbce * DBCE``, 1:1 by default like nnU-Net's Dice+CE.

    ``dice`` is any soft Dice module called as nnU-Net calls its own, ``dice(logits, target, loss_mask=mask)``:
    nnU-Net's ``MemoryEfficientSoftDiceLoss`` (``nnUNetTrainerDiceDBCE``) or ``PMDiceLoss``
    (``nnUNetTrainerDBCEPMDice``). Label maps: voxels labelled ``ignore_index`` are left out of both terms,
    exactly as nnU-Net's ``DC_and_CE_loss`` masks its Dice. Regions (``regions=True``: sigmoid outputs,
    (B, R, ...) region targets, ``RegionDBCELoss``): with ``ignore_index`` set, the target's last channel is
    nnU-Net's ignore mask, left out of both terms, as in nnU-Net's ``DC_and_BCE_loss``.

    Example (with weights 1 everywhere DBCE is plain CE, so the loss is the Dice plus CE)::

        >>> import torch
        >>> from nnunetv2_dbce import PMDiceLoss
        >>> dice = PMDiceLoss(lambda x: torch.softmax(x, 1), gamma=1.0, do_bg=False)
        >>> logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))
        >>> weights = torch.ones(2, 1, 8, 8)  # DBCE weight maps, (B, 1, X, Y[, Z]) like the target
        >>> ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
        >>> torch.allclose(DiceAndDBCELoss(dice)(logits, target, weights), dice(logits, target) + ce)
        True
    """

    def __init__(self, dice: nn.Module, ignore_index: int | None = None, weight_dbce: float = 1,
                 weight_dice: float = 1, regions: bool = False):
        super().__init__()
        self.dbce = RegionDBCELoss(ignore_index is not None) if regions else DBCELoss(ignore_index)
        self.dice = dice
        self.ignore_index = ignore_index
        self.regions = regions
        self.weight_dbce = weight_dbce
        self.weight_dice = weight_dice

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
            self.weight_dice * self.dice(logits, target_dice, loss_mask=mask)


class WithAddedTerm(nn.Module):
    """``base(output, target) + weight * term(output, target, *maps)``: a loss added to another, e.g. to nnU-Net's
    Dice+CE (Skeleton Recall, clDice). ``maps`` are the per-voxel maps of a voxel-map trainer, if any."""

    def __init__(self, base: nn.Module, term: nn.Module, weight: float = 1.0):
        super().__init__()
        self.base, self.term, self.weight = base, term, weight

    def forward(self, output: torch.Tensor, target: torch.Tensor, *maps: torch.Tensor) -> torch.Tensor:
        return self.base(output, target) + self.weight * self.term(output, target, *maps)
