"""Trainers for thin structures: nnU-Net's Dice+CE plus Skeleton Recall (a voxel-map trainer: the tubed skeletons
are made in nnU-Net's augmentation workers) or plus soft clDice (computed on the outputs, no map)."""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import softmax_helper_dim1

from nnunetv2_dbce.losses.compound import WithAddedTerm
from nnunetv2_dbce.losses.topology import ClDiceLoss, SkeletonRecallLoss
from nnunetv2_dbce.trainers.deep_supervision import with_innermost
from nnunetv2_dbce.trainers.lost_labels import LostLabelWarning
from nnunetv2_dbce.trainers.settings import CheckpointedLossSettings
from nnunetv2_dbce.trainers.soft_dice import nnunet_dice_ce
from nnunetv2_dbce.trainers.voxel_map import nnUNetTrainerVoxelMap
from nnunetv2_dbce.voxel_maps.skeletons import TUBE_RADIUS, TubedSkeletons


class nnUNetTrainerSkeletonRecall(CheckpointedLossSettings, nnUNetTrainerVoxelMap):
    """nnU-Net's Dice+CE + ``skeleton_recall_weight`` x soft skeleton recall (Kirchhoff et al., ECCV 2024), as
    their official code sets it up: weight 1, skeletons tubed by 2 voxels (``skeleton_tube_radius``), smoothing
    1e-5, batch Dice from the plans. The tubed skeleton of each foreground class (region) of every augmented patch
    is made in nnU-Net's augmentation workers and sampled to every deep-supervision scale like the segmentation.
    Regions: one skeleton per region channel, recall on the sigmoid outputs. Ignore label: left out of all terms."""

    skeleton_recall_weight = 1.0
    skeleton_tube_radius = TUBE_RADIUS

    def loss_settings(self) -> dict:
        return {**super().loss_settings(), "skeleton_recall_weight": self.skeleton_recall_weight,
                "skeleton_tube_radius": self.skeleton_tube_radius}

    def describe_loss_settings(self) -> list:
        return [*super().describe_loss_settings(), f"Skeleton Recall: weight {self.skeleton_recall_weight:g}, "
                f"skeletons tubed by {self.skeleton_tube_radius} voxels"]

    def get_voxel_map_function(self) -> TubedSkeletons:
        labels = self.label_manager
        return TubedSkeletons(None if labels.has_regions else labels.foreground_labels, self.skeleton_tube_radius)

    def build_voxel_map_loss(self) -> WithAddedTerm:
        labels = self.label_manager
        recall = SkeletonRecallLoss(torch.sigmoid if labels.has_regions else softmax_helper_dim1,
                                    self.configuration_manager.batch_dice, 1e-5, labels.has_regions,
                                    labels.ignore_label)
        return WithAddedTerm(nnunet_dice_ce(self), recall, self.skeleton_recall_weight)


class nnUNetTrainerclDice(CheckpointedLossSettings, LostLabelWarning, nnUNetTrainer):
    """nnU-Net's Dice+CE + ``cldice_weight`` x soft clDice (Shit et al., CVPR 2021; MONAI's ``SoftclDiceLoss``,
    ``cldice_iterations`` soft-skeleton steps). Weight 0.5: clDice's and MONAI's ``SoftDiceclDiceLoss`` mix of
    soft Dice and clDice, 1:1 (alpha 0.5). Regions: sigmoid channels. Ignore label: masked in both terms."""

    cldice_weight = 0.5
    cldice_iterations = 3

    def loss_settings(self) -> dict:
        return {**super().loss_settings(), "cldice_weight": self.cldice_weight,
                "cldice_iterations": self.cldice_iterations}

    def describe_loss_settings(self) -> list:
        return [*super().describe_loss_settings(), f"clDice: weight {self.cldice_weight:g}, "
                f"{self.cldice_iterations} soft-skeleton iterations"]

    def _build_loss(self):
        labels = self.label_manager
        cldice = ClDiceLoss(self.cldice_iterations, labels.has_regions, labels.ignore_label)
        return with_innermost(super()._build_loss(), WithAddedTerm(nnunet_dice_ce(self), cldice, self.cldice_weight))
