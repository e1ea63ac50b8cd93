"""nnU-Net trainers with PM Dice: alone, with CE (nnU-Net's 1:1 weighting) and with DBCE."""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunetv2_dbce.losses.compound import DiceAndDBCELoss
from nnunetv2_dbce.losses.pm_dice import Gamma, PMDiceLoss, check_gamma
from nnunetv2_dbce.losses.pm_dice_ce import PMDiceCELoss
from nnunetv2_dbce.trainers.dbce import nnUNetTrainerDBCE
from nnunetv2_dbce.trainers.deep_supervision import with_innermost
from nnunetv2_dbce.trainers.lost_labels import LostLabelWarning
from nnunetv2_dbce.trainers.settings import CheckpointedLossSettings
from nnunetv2_dbce.trainers.soft_dice import nnunet_dice_ce, nnunet_dice_settings, nnunet_soft_dice


class PMDiceGamma(CheckpointedLossSettings):
    """Mixin for trainers: the class attribute ``pm_dice_gamma`` (one value, or one per output channel,
    background included), checked against the number of output channels when the trainer is built, kept in
    the checkpoints; ``build_pm_dice`` makes the PM Dice with nnU-Net's own Dice settings. Default gamma 1: the
    value the study in docs/results.md supports (gamma 2, the focal-loss convention, trained worse)."""

    pm_dice_gamma: Gamma = 1.0

    def validate_loss_settings(self) -> None:
        super().validate_loss_settings()
        self.pm_dice_gamma = check_gamma(self.pm_dice_gamma, self.label_manager.num_segmentation_heads)

    def loss_settings(self) -> dict:
        return {**super().loss_settings(), "pm_dice_gamma": self.pm_dice_gamma}

    def describe_loss_settings(self) -> list:
        return [*super().describe_loss_settings(), f"PM Dice: gamma {list(check_gamma(self.pm_dice_gamma))}"]

    def build_pm_dice(self) -> nn.Module:
        """PM Dice with the settings nnU-Net's ``_build_loss`` gives its soft Dice (``nnunet_soft_dice``)."""
        return nnunet_soft_dice(self, PMDiceLoss, gamma=self.pm_dice_gamma)


class nnUNetTrainerPMDiceCE(PMDiceGamma, LostLabelWarning, nnUNetTrainer):
    """PM Dice + CE, weighted 1:1 as nnU-Net's Dice+CE, inside nnU-Net's deep-supervision wrapper: label maps
    train with ``PMDiceCELoss`` (both terms from one softmax, the ignore label left out of both); region-based
    datasets with nnU-Net's own ``DC_and_BCE_loss`` built with ``PMDiceLoss`` as its Dice class (sigmoid).
    ``pm_dice_ce_weight`` is the CE's (or BCE's) weight.
    """

    pm_dice_ce_weight = 1

    def _build_loss(self):
        labels = self.label_manager
        if labels.has_regions:
            loss = nnunet_dice_ce(self, PMDiceLoss, self.pm_dice_ce_weight, gamma=self.pm_dice_gamma)
        else:
            loss = PMDiceCELoss(self.pm_dice_gamma, ignore_index=labels.ignore_label,
                                weight_ce=self.pm_dice_ce_weight, **nnunet_dice_settings(self))
        return with_innermost(super()._build_loss(), loss)


class nnUNetTrainerPMDice(nnUNetTrainerPMDiceCE):
    """PM Dice alone: nnUNetTrainerPMDiceCE with a CE weight of 0."""

    pm_dice_ce_weight = 0


class nnUNetTrainerPMDice_gamma1(nnUNetTrainerPMDice):
    pm_dice_gamma = 1.0


class nnUNetTrainerPMDice_gamma2(nnUNetTrainerPMDice):
    pm_dice_gamma = 2.0


class nnUNetTrainerPMDice_gamma3(nnUNetTrainerPMDice):
    pm_dice_gamma = 3.0


class nnUNetTrainerDBCEPMDice(PMDiceGamma, nnUNetTrainerDBCE):
    """DBCE (class imbalance) + PM Dice (difficulty imbalance), weighted 1:1, PM Dice on nnU-Net's Dice settings
    (batch Dice from the plans, background excluded for labels, included for regions, smoothing 1e-5)."""

    def build_voxel_map_loss(self) -> nn.Module:
        """``PMDiceCELoss`` with the weight maps (label maps), ``DiceAndDBCELoss`` with PM Dice (regions)."""
        labels = self.label_manager
        if labels.has_regions:
            return DiceAndDBCELoss(self.build_pm_dice(), labels.ignore_label, regions=True)
        return PMDiceCELoss(self.pm_dice_gamma, ignore_index=labels.ignore_label, **nnunet_dice_settings(self))


class nnUNetTrainerPMDiceCE_gamma2(nnUNetTrainerPMDiceCE):
    pm_dice_gamma = 2.0


class nnUNetTrainerDBCEPMDice_R5_gamma2(nnUNetTrainerDBCEPMDice):
    """DBCE + PM Dice with the earlier defaults (R = 5, gamma = 2), as compared in docs/results.md."""

    dilation_radius = 5
    pm_dice_gamma = 2.0
