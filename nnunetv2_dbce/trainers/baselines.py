"""Baselines from the papers' comparisons that nnU-Net does not ship: focal loss and focal Tversky loss.
nnU-Net's own ``nnUNetTrainerCELoss``, ``nnUNetTrainerDiceLoss``, ``nnUNetTrainerTopk10Loss`` and
``nnUNetTrainerDiceTopK10Loss`` complete the list."""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_dbce.losses.focal import FocalLoss, FocalTverskyLoss
from nnunetv2_dbce.trainers.deep_supervision import with_innermost
from nnunetv2_dbce.trainers.labels_only import LabelsOnly
from nnunetv2_dbce.trainers.lost_labels import LostLabelWarning


class nnUNetTrainerFocalLoss(LabelsOnly, LostLabelWarning, nnUNetTrainer):
    """Focal loss (Lin et al. 2017), gamma = 2, inside nnU-Net's deep-supervision weighting; ignore label masked."""

    focal_gamma = 2.0
    labels_only_because = "the focal loss here is a softmax loss over labels"

    def _build_loss(self):
        return with_innermost(super()._build_loss(), FocalLoss(self.focal_gamma, self.label_manager.ignore_label))


class nnUNetTrainerFocalTversky(LabelsOnly, LostLabelWarning, nnUNetTrainer):
    """Focal Tversky loss (Abraham & Khan 2019: alpha 0.7, beta 0.3, gamma 4/3) on nnU-Net's Dice settings
    (batch Dice from the plans, background excluded), inside nnU-Net's deep-supervision weighting."""

    labels_only_because = "the focal Tversky loss here is a softmax loss over labels"

    def _build_loss(self):
        loss = FocalTverskyLoss(batch_dice=self.configuration_manager.batch_dice,
                                ignore_index=self.label_manager.ignore_label)
        return with_innermost(super()._build_loss(), loss)
