"""nnU-Net trainers with PM Dice: alone, with CE (nnU-Net's 1:1 weighting) and with DBCE."""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_dbce.losses.compound import DiceAndDBCELoss
from nnunetv2_dbce.losses.pm_dice import PMDiceLoss, check_gamma
from nnunetv2_dbce.losses.pm_dice_ce import PMDiceCELoss
from nnunetv2_dbce.trainers.dbce import nnUNetTrainerDBCE
from nnunetv2_dbce.trainers.deep_supervision import innermost, with_innermost
from nnunetv2_dbce.trainers.lost_labels import LostLabelWarning
from nnunetv2_dbce.trainers.settings import CheckpointedLossSettings
from nnunetv2_dbce.trainers.soft_dice import nnunet_dice_settings, nnunet_soft_dice


class PMDiceGamma(CheckpointedLossSettings):
    """Mixin for trainers: the class attribute ``pm_dice_gamma`` (one value, or one per output channel,
    background included), checked against the number of output channels when the trainer is built, kept in
    the checkpoints; ``build_pm_dice`` makes the PM Dice with nnU-Net's own Dice settings. Default gamma 1: the
    value the study in docs/results.md supports (gamma 2, the focal-loss convention, trained worse)."""

    pm_dice_gamma = 1.0

    def validate_loss_settings(self) -> None:
        super().validate_loss_settings()
        self.pm_dice_gamma = check_gamma(self.pm_dice_gamma, self.label_manager.num_segmentation_heads)

    def loss_settings(self) -> dict:
        return {**super().loss_settings(), "pm_dice_gamma": self.pm_dice_gamma}

    def describe_loss_settings(self) -> list:
        return [*super().describe_loss_settings(), f"PM Dice: gamma {list(self.pm_dice_gamma)}"]

    def build_pm_dice(self) -> PMDiceLoss:
        """PM Dice with the settings nnU-Net's ``_build_loss`` gives its soft Dice (``nnunet_soft_dice``)."""
        return nnunet_soft_dice(self, PMDiceLoss, gamma=self.pm_dice_gamma)

    def build_pm_dice_ce(self) -> PMDiceCELoss:
        """PM Dice + CE (label maps) from one softmax, PM Dice with nnU-Net's Dice settings, the ignore label
        left out of both terms as nnU-Net's ``DC_and_CE_loss`` leaves it out."""
        return PMDiceCELoss(self.pm_dice_gamma, ignore_index=self.label_manager.ignore_label,
                            **nnunet_dice_settings(self))


class nnUNetTrainerPMDiceCE(PMDiceGamma, LostLabelWarning, nnUNetTrainer):
    """PM Dice + CE, weighted 1:1 as nnU-Net's Dice+CE, inside nnU-Net's deep-supervision wrapper: label maps
    train with ``PMDiceCELoss`` (both terms from one softmax, the ignore label left out of both); region-based
    datasets with nnU-Net's own Dice+BCE, its soft Dice swapped for PM Dice of the same settings.
    """

    def _build_loss(self):
        loss = super()._build_loss()
        if self.label_manager.has_regions:
            innermost(loss).dc = self.build_pm_dice()
            return loss
        return with_innermost(loss, self.build_pm_dice_ce())


class nnUNetTrainerPMDice(nnUNetTrainerPMDiceCE):
    """PM Dice alone: nnUNetTrainerPMDiceCE with a CE weight of 0."""

    def _build_loss(self):
        loss = super()._build_loss()
        innermost(loss).weight_ce = 0
        return loss


class nnUNetTrainerPMDice_gamma1(nnUNetTrainerPMDice):
    pm_dice_gamma = 1.0


class nnUNetTrainerPMDice_gamma2(nnUNetTrainerPMDice):
    pm_dice_gamma = 2.0


class nnUNetTrainerPMDice_gamma3(nnUNetTrainerPMDice):
    pm_dice_gamma = 3.0


class nnUNetTrainerDBCEPMDice(PMDiceGamma, nnUNetTrainerDBCE):
    """DBCE (class imbalance) + PM Dice (difficulty imbalance), weighted 1:1, PM Dice on nnU-Net's Dice settings
    (batch Dice from the plans, background excluded for labels, included for regions, smoothing 1e-5)."""

    def build_voxel_map_loss(self):
        """``PMDiceCELoss`` with the weight maps (label maps), ``DiceAndDBCELoss`` with PM Dice (regions)."""
        if self.label_manager.has_regions:
            return DiceAndDBCELoss(self.build_pm_dice(), self.label_manager.ignore_label, regions=True)
        return self.build_pm_dice_ce()


class nnUNetTrainerPMDiceCE_gamma2(nnUNetTrainerPMDiceCE):
    pm_dice_gamma = 2.0


class nnUNetTrainerDBCEPMDice_R5_gamma2(nnUNetTrainerDBCEPMDice):
    """DBCE + PM Dice with the earlier defaults (R = 5, gamma = 2), as compared in docs/results.md."""

    dilation_radius = 5
    pm_dice_gamma = 2.0
