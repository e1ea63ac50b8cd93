"""nnU-Net trainers with PM Dice: alone, with CE (nnU-Net's 1:1 weighting) and with DBCE."""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import softmax_helper_dim1

from nnunetv2_dbce.losses.compound import DBCEAndPMDiceLoss
from nnunetv2_dbce.losses.pm_dice import PMDiceLoss, check_gamma
from nnunetv2_dbce.trainers.dbce import nnUNetTrainerDBCE
from nnunetv2_dbce.trainers.deep_supervision import innermost, with_innermost
from nnunetv2_dbce.trainers.settings import CheckpointedLossSettings


class PMDiceGamma(CheckpointedLossSettings):
    """Mixin for trainers: the class attribute ``pm_dice_gamma``, validated against the number of output
    channels when the trainer is built (before training starts), written to the training log and kept in
    the checkpoints."""

    pm_dice_gamma = 2.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.pm_dice_gamma = check_gamma(self.pm_dice_gamma, self.label_manager.num_segmentation_heads)
        self.record_loss_settings()
        self.print_to_log_file(f"PM Dice: gamma {list(self.pm_dice_gamma)}", also_print_to_console=False)

    def loss_settings(self) -> dict:
        return {**super().loss_settings(), "pm_dice_gamma": self.pm_dice_gamma}


class nnUNetTrainerPMDiceCE(PMDiceGamma, nnUNetTrainer):
    """PM Dice + CE, weighted 1:1: nnU-Net's own Dice+CE (or Dice+BCE for regions) with its soft Dice
    swapped for PM Dice of the same settings (batch Dice, background, smoothing, DDP, nonlinearity), so
    ignore labels, region-based training and deep supervision work exactly as in nnU-Net.

    ``pm_dice_gamma``: one value, or one per output channel (background included).
    """

    def _build_loss(self):
        loss = super()._build_loss()
        compound = innermost(loss)
        soft_dice = getattr(compound.dc, "_orig_mod", compound.dc)  # nnU-Net compiles it when compiling is on
        pm_dice = PMDiceLoss(soft_dice.apply_nonlin, self.pm_dice_gamma, soft_dice.batch_dice, soft_dice.do_bg,
                             soft_dice.smooth, soft_dice.ddp)
        compound.dc = torch.compile(pm_dice) if self._do_i_compile() else pm_dice
        return loss


class nnUNetTrainerPMDice(nnUNetTrainerPMDiceCE):
    """PM Dice alone: nnUNetTrainerPMDiceCE with a CE weight of 0."""

    def _build_loss(self):
        loss = super()._build_loss()
        innermost(loss).weight_ce = 0
        return loss


class nnUNetTrainerPMDice_gamma1(nnUNetTrainerPMDice):
    pm_dice_gamma = 1.0


class nnUNetTrainerPMDice_gamma3(nnUNetTrainerPMDice):
    pm_dice_gamma = 3.0


class nnUNetTrainerDBCEPMDice(PMDiceGamma, nnUNetTrainerDBCE):
    """DBCE (class imbalance) + PM Dice (difficulty imbalance), weighted 1:1, on nnU-Net's Dice settings
    (batch Dice from the plans, background excluded, smoothing 1e-5)."""

    def _build_loss(self):
        pm_dice = PMDiceLoss(softmax_helper_dim1, self.pm_dice_gamma, self.configuration_manager.batch_dice,
                             do_bg=False, smooth=1e-5, ddp=self.is_ddp)
        compound = DBCEAndPMDiceLoss(torch.compile(pm_dice) if self._do_i_compile() else pm_dice,
                                     self.label_manager.ignore_label)
        return with_innermost(super()._build_loss(), compound)
