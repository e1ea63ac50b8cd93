"""nnU-Net trainers that train with DBCE. Everything but the loss (and the weight maps it needs) is nnU-Net's."""
from nnunetv2_dbce.losses.dbce import DBCELoss, RegionDBCELoss
from nnunetv2_dbce.trainers.settings import CheckpointedLossSettings
from nnunetv2_dbce.trainers.voxel_map import nnUNetTrainerVoxelMap
from nnunetv2_dbce.weight_maps import DBCEWeightMap, check_radius


class nnUNetTrainerDBCE(CheckpointedLossSettings, nnUNetTrainerVoxelMap):
    """Dilated balanced cross entropy alone, dilation radius ``dilation_radius`` voxels of the finest axis.

    A voxel-map trainer: the DBCE weight map of each augmented patch is made in nnU-Net's augmentation
    workers and reaches the loss at every deep-supervision scale. Region-based datasets: one weight map per
    region channel (the region against the rest) and a weighted BCE (``RegionDBCELoss``). Subclass and set
    ``dilation_radius`` for another radius; the class name names the results folder.
    """

    dilation_radius: float = 5

    def validate_loss_settings(self) -> None:
        super().validate_loss_settings()
        self.dilation_radius = check_radius(self.dilation_radius)

    def loss_settings(self) -> dict:
        return {**super().loss_settings(), "dilation_radius": self.dilation_radius}

    def describe_loss_settings(self) -> list:
        return [*super().describe_loss_settings(), f"DBCE: dilation radius {self.dilation_radius:g} voxels of the "
                f"finest axis, spacing {list(self.configuration_manager.spacing)}"]

    def get_voxel_map_function(self) -> DBCEWeightMap:
        return DBCEWeightMap(self.dilation_radius, self.label_manager.ignore_label)

    def build_voxel_map_loss(self):
        """DBCE over labels, or over region channels (sigmoid outputs) for region-based datasets."""
        labels = self.label_manager
        if labels.has_regions:
            return RegionDBCELoss(ignore_channel=labels.ignore_label is not None)
        return DBCELoss(labels.ignore_label)


class nnUNetTrainerBalancedCE(nnUNetTrainerDBCE):
    """Balanced CE: the inverse-frequency weights of the undilated masks (DBCE with R = 0), the paper's baseline."""

    dilation_radius = 0


class nnUNetTrainerDBCE_R1(nnUNetTrainerDBCE):
    dilation_radius = 1


class nnUNetTrainerDBCE_R3(nnUNetTrainerDBCE):
    dilation_radius = 3


class nnUNetTrainerDBCE_R10(nnUNetTrainerDBCE):
    dilation_radius = 10


class nnUNetTrainerDBCE_R20(nnUNetTrainerDBCE):
    dilation_radius = 20
