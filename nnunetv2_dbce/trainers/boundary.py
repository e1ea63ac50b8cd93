"""Two losses that nnU-Net users asked for, as instances of the per-voxel map extension point."""
from nnunetv2_dbce.losses.boundary import BorderWeightedCELoss, BoundaryLoss, RegionAndBoundaryLoss
from nnunetv2_dbce.trainers.deep_supervision import innermost
from nnunetv2_dbce.trainers.labels_only import LabelsOnly
from nnunetv2_dbce.trainers.soft_dice import nnunet_dice_ce
from nnunetv2_dbce.trainers.voxel_map import nnUNetTrainerVoxelMap
from nnunetv2_dbce.voxel_maps.distance import SignedDistanceMaps, UNetBorderWeights


class nnUNetTrainerBoundaryLoss(LabelsOnly, nnUNetTrainerVoxelMap):
    """nnU-Net's Dice + alpha x boundary loss (Kervadec et al., MIDL 2019 / MedIA 2021).

    Signed distance maps in mm of each foreground class are made in the augmentation workers (continuous
    maps: averaged at lower deep-supervision scales). ``alpha`` rises linearly: ``boundary_alpha_start`` in
    the first epoch, ``+ boundary_alpha_step`` per epoch (the paper's 0.01 and 0.01), at most
    ``boundary_alpha_max`` (1 here, since nnU-Net trains for 1000 epochs). The Dice is nnU-Net's own
    (batch Dice from the plans, background excluded, ignore label masked).
    """

    voxel_map_is_continuous = True
    boundary_alpha_start = 0.01
    boundary_alpha_step = 0.01
    boundary_alpha_max = 1.0
    labels_only_because = "the boundary loss here takes softmax outputs over labels"

    def get_voxel_map_function(self) -> SignedDistanceMaps:
        return SignedDistanceMaps(self.label_manager.num_segmentation_heads)

    def build_voxel_map_loss(self) -> RegionAndBoundaryLoss:
        dice_only = nnunet_dice_ce(self, weight_ce=0)  # nnU-Net's Dice, with its handling of the ignore label
        return RegionAndBoundaryLoss(dice_only, BoundaryLoss(self.label_manager.ignore_label),
                                     self.boundary_alpha(0))

    def boundary_alpha(self, epoch: int) -> float:
        return min(self.boundary_alpha_max, self.boundary_alpha_start + self.boundary_alpha_step * epoch)

    def on_train_epoch_start(self) -> None:
        innermost(self.loss).alpha = self.boundary_alpha(self.current_epoch)
        self.print_to_log_file(f"boundary loss weight alpha {innermost(self.loss).alpha:.4g}")
        super().on_train_epoch_start()


class nnUNetTrainerUNetBorderWeightedCE(LabelsOnly, nnUNetTrainerVoxelMap):
    """Cross entropy weighted by Ronneberger et al.'s U-Net border weights (MICCAI 2015): class balancing plus
    ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` between objects (``border_w0 = 10``, ``border_sigma = 5`` voxels of
    the finest axis, as in the paper)."""

    border_w0 = 10.0
    border_sigma = 5.0

    labels_only_because = "U-Net border weights need one label per voxel"

    def get_voxel_map_function(self) -> UNetBorderWeights:
        return UNetBorderWeights(self.border_w0, self.border_sigma, self.label_manager.ignore_label)

    def build_voxel_map_loss(self) -> BorderWeightedCELoss:
        return BorderWeightedCELoss(self.label_manager.ignore_label)
