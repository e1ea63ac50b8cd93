"""nnU-Net trainers that train with DBCE. Everything but the loss (and the weight maps it needs) is nnU-Net's."""
from contextlib import contextmanager

import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_dbce.losses.dbce import DBCELoss
from nnunetv2_dbce.patches.weight_map_loader import raise_if_failed, use_weight_map_loader
from nnunetv2_dbce.trainers.deep_supervision import refuse_regions, with_innermost
from nnunetv2_dbce.trainers.settings import CheckpointedLossSettings
from nnunetv2_dbce.transforms.weight_maps import DilatedBalancedWeightsTransform
from nnunetv2_dbce.weight_maps import check_radius


class nnUNetTrainerDBCE(CheckpointedLossSettings, nnUNetTrainer):
    """Dilated balanced cross entropy alone, dilation radius ``dilation_radius`` voxels of the finest axis.

    Weight maps are computed per sample on the augmented patch in nnU-Net's augmentation workers (the
    last transform of the training and validation pipelines) and reach the loss as ``batch['weights']``.
    Subclass and set ``dilation_radius`` for another radius; the class name names the results folder.
    """

    dilation_radius: float = 5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.dilation_radius = check_radius(self.dilation_radius)
        refuse_regions(self, "DBCE needs one label per voxel")
        self.record_loss_settings()
        self.print_to_log_file(f"DBCE: dilation radius {self.dilation_radius:g} voxels of the finest axis, "
                               f"spacing {list(self.configuration_manager.spacing)}", also_print_to_console=False)

    def loss_settings(self) -> dict:
        return {**super().loss_settings(), "dilation_radius": self.dilation_radius}

    def _weight_map_transform(self) -> DilatedBalancedWeightsTransform:
        labels = self.label_manager
        max_label = int(max(labels.all_labels + [labels.ignore_label or 0]))
        return DilatedBalancedWeightsTransform(self.dilation_radius, self.configuration_manager.spacing,
                                               labels.ignore_label, max_label)

    def get_training_transforms(self, *args, **kwargs) -> ComposeTransforms:
        """nnU-Net's training transforms followed by the weight-map transform."""
        return ComposeTransforms([super().get_training_transforms(*args, **kwargs), self._weight_map_transform()])

    def get_validation_transforms(self, *args, **kwargs) -> ComposeTransforms:
        """nnU-Net's validation transforms followed by the weight-map transform, so validation loss is DBCE too."""
        return ComposeTransforms([super().get_validation_transforms(*args, **kwargs), self._weight_map_transform()])

    def get_dataloaders(self):
        with use_weight_map_loader():
            return super().get_dataloaders()

    def _build_loss(self):
        """nnU-Net's loss with its deep-supervision weighting, the Dice+CE inside replaced by DBCE."""
        return with_innermost(super()._build_loss(), DBCELoss(ignore_index=self.label_manager.ignore_label))

    @contextmanager
    def _loss_with_batch_weights(self, batch: dict):
        """Bind the batch's weight maps to ``self.loss`` for one step.

        nnU-Net's ``train_step`` and ``validation_step`` call ``self.loss(output, target)``; rather than
        copying them, the loss is temporarily replaced by ``loss(output, target, weights)``.
        """
        raise_if_failed(batch)
        if "weights" not in batch:
            raise KeyError(f"{type(self).__name__}: the batch has no 'weights'. DBCE needs the weight maps of "
                           f"DilatedBalancedWeightsTransform, carried by WeightMapDataLoader (get_dataloaders)")
        weights = batch["weights"]
        weights = [w.to(self.device, non_blocking=True) for w in weights] if isinstance(weights, list) \
            else weights.to(self.device, non_blocking=True)
        loss = self.loss
        self.loss = lambda output, target: loss(output, target, weights)
        try:
            yield
        finally:
            self.loss = loss

    def train_step(self, batch: dict) -> dict:
        with self._loss_with_batch_weights(batch):
            return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        with self._loss_with_batch_weights(batch):
            return super().validation_step(batch)


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
