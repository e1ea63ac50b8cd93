"""nnU-Net trainers that train with DBCE, alone or added to nnU-Net's soft Dice. Everything but the loss (and
the weight maps it needs) is nnU-Net's."""
from os.path import isdir

from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from torch import nn

from nnunetv2_dbce.losses.compound import DiceAndDBCELoss
from nnunetv2_dbce.losses.dbce import DBCELoss, RegionDBCELoss
from nnunetv2_dbce.trainers.settings import CheckpointedLossSettings
from nnunetv2_dbce.trainers.soft_dice import nnunet_soft_dice
from nnunetv2_dbce.trainers.voxel_map import nnUNetTrainerVoxelMap
from nnunetv2_dbce.voxel_maps.dbce import DBCEWeightMap
from nnunetv2_dbce.voxel_maps.dilation import check_radius
from nnunetv2_dbce.voxel_maps.structure_sizes import (
    RADIUS_PER_STRUCTURE_RADIUS,
    derived_radius,
    measured_identifiers,
    structure_radii,
)


class nnUNetTrainerDBCE(CheckpointedLossSettings, nnUNetTrainerVoxelMap):
    """Dilated balanced cross entropy alone, dilation radius ``dilation_radius`` voxels of the finest axis
    (default 3: the radius the study in docs/results.md supports).

    A voxel-map trainer: the DBCE weight map of each augmented patch is made in nnU-Net's augmentation
    workers and reaches the loss at every deep-supervision scale. Region-based datasets: one weight map per
    region channel (the region against the rest) and a weighted BCE (``RegionDBCELoss``). Subclass and set
    ``dilation_radius`` for another radius; the class name names the results folder. ``None`` derives the
    radius from the sizes of the dataset's structures (``derive_dilation_radius``).
    """

    dilation_radius: float | None = 3
    radius_derivation: str = ""

    def validate_loss_settings(self) -> None:
        super().validate_loss_settings()
        if self.dilation_radius is None:
            self.dilation_radius, self.radius_derivation = self.derive_dilation_radius()
        self.dilation_radius = check_radius(self.dilation_radius)

    def derive_dilation_radius(self) -> tuple:
        """The radius for this dataset and configuration, and a sentence saying where it comes from.

        Measures the structures (connected components of each label or region; in every slice for a 2D
        configuration) in the configuration's preprocessed label maps, of at most ``MAX_MEASURED_CASES`` cases
        spread over the dataset, as nnU-Net's planning measures all training cases (``structure_sizes``)."""
        folder = self.preprocessed_dataset_folder
        if not isdir(folder):
            raise FileNotFoundError(f"{type(self).__name__} derives its dilation radius from the preprocessed label "
                                    f"maps, but {folder} does not exist: run nnUNetv2_preprocess for this "
                                    f"configuration first")
        dataset_class = infer_dataset_class(folder)
        identifiers = measured_identifiers(dataset_class.get_identifiers(folder))
        dataset = dataset_class(folder, identifiers)
        labels = self.label_manager
        classes = labels.foreground_regions if labels.has_regions else labels.foreground_labels
        spacing = self.configuration_manager.spacing
        radii = structure_radii((dataset.load_case(i)[1][0] for i in identifiers), classes, spacing,
                                slices=len(spacing) == 2)
        radius, typical, smallest = derived_radius(radii)
        return radius, (f"derived: {RADIUS_PER_STRUCTURE_RADIUS:g} x {typical:.1f}, the median equivalent radius of "
                        f"the {len(radii[smallest])} structures of class {classes[smallest]} (the smallest median) in "
                        f"{len(identifiers)} cases")

    def loss_settings(self) -> dict:
        return {**super().loss_settings(), "dilation_radius": self.dilation_radius}

    def describe_loss_settings(self) -> list:
        derivation = f" ({self.radius_derivation})" if self.radius_derivation else ""
        return [*super().describe_loss_settings(), f"DBCE: dilation radius {self.dilation_radius:g} voxels of the "
                f"finest axis{derivation}, spacing {list(self.configuration_manager.spacing)}"]

    def get_voxel_map_function(self) -> DBCEWeightMap:
        return DBCEWeightMap(check_radius(self.dilation_radius), self.label_manager.ignore_label)

    def build_voxel_map_loss(self) -> nn.Module:
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


class nnUNetTrainerDBCE_R5(nnUNetTrainerDBCE):
    dilation_radius = 5


class nnUNetTrainerDBCE_R10(nnUNetTrainerDBCE):
    dilation_radius = 10


class nnUNetTrainerDBCE_R20(nnUNetTrainerDBCE):
    dilation_radius = 20


class nnUNetTrainerDBCE_derived(nnUNetTrainerDBCE):
    """DBCE with the radius derived from the dataset's structure sizes (``derive_dilation_radius``), logged."""

    dilation_radius = None


class nnUNetTrainerDiceDBCE(nnUNetTrainerDBCE):
    """nnU-Net's Dice+CE with DBCE in place of CE, weighted 1:1 (``DiceAndDBCELoss``): the soft Dice exactly as
    nnU-Net's ``_build_loss`` builds it (``MemoryEfficientSoftDiceLoss``, batch Dice from the plans, background
    excluded, ignore label masked), DBCE with ``dilation_radius`` (default 3). Regions: Dice on the sigmoid
    channels (background included) + ``RegionDBCELoss``, as nnU-Net's Dice+BCE with its BCE replaced."""

    def build_voxel_map_loss(self) -> DiceAndDBCELoss:
        return DiceAndDBCELoss(nnunet_soft_dice(self), self.label_manager.ignore_label,
                               regions=self.label_manager.has_regions)


class nnUNetTrainerDiceDBCE_R1(nnUNetTrainerDiceDBCE):
    dilation_radius = 1


class nnUNetTrainerDiceDBCE_R3(nnUNetTrainerDiceDBCE):
    dilation_radius = 3


class nnUNetTrainerDiceDBCE_R5(nnUNetTrainerDiceDBCE):
    dilation_radius = 5


class nnUNetTrainerDiceDBCE_R10(nnUNetTrainerDiceDBCE):
    dilation_radius = 10


class nnUNetTrainerDiceDBCE_R20(nnUNetTrainerDiceDBCE):
    dilation_radius = 20
