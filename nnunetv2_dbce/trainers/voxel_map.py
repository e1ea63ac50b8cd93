"""The per-voxel map extension point: a map made from the augmented label in nnU-Net's augmentation workers,
given to the loss at every deep-supervision scale. DBCE, the boundary loss and U-Net border weights are
instances of it; so is any user trainer that sets a map function and a loss."""
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunetv2_dbce.trainers.deep_supervision import with_innermost
from nnunetv2_dbce.trainers.lost_labels import LostLabelWarning
from nnunetv2_dbce.voxel_maps.loader import FAILED_KEY, raise_if_failed, voxel_map_loader_in_nnunet
from nnunetv2_dbce.voxel_maps.transform import VOXEL_MAP_KEY, VoxelMapTransform


class nnUNetTrainerVoxelMap(LostLabelWarning, nnUNetTrainer):
    """nnU-Net's trainer whose loss also receives a per-voxel map made from the label.

    Subclass and set:
    - ``voxel_map_function = staticmethod(f)``, ``f(labels: np.ndarray, spacing: tuple) -> np.ndarray``: runs
      in the augmentation workers on the augmented full-resolution label map (X, Y[, Z]) (for region-based
      training: the (R, X, Y[, Z]) region masks) with the configuration's spacing, returns float32
      (X, Y[, Z]) or (K, X, Y[, Z]). It must be picklable: a module-level function, or override
      ``get_voxel_map_function`` to return a picklable callable object with settings.
    - ``build_voxel_map_loss(self)``: a module whose ``forward(output, target, voxel_map)`` takes one
      deep-supervision scale: output (B, C, X, Y[, Z]), target (B, 1, X, Y[, Z]) as nnU-Net gives it,
      voxel_map (B, K, X, Y[, Z]) aligned with the target.
    - ``voxel_map_is_continuous = True`` for maps such as distances: lower scales then get the mean of the
      full-resolution voxels they cover instead of nnU-Net's nearest-exact sampling of the segmentation.

    The map is made in the training and validation pipelines (so logged losses compare), sampled to every
    deep-supervision scale, and the loss sits inside nnU-Net's deep-supervision weighting. A sample whose map
    fails stops training in the main process with the case and the worker's traceback.
    """

    voxel_map_function: Callable = None  # type: ignore[assignment]  # each subclass sets it (checked when built)
    voxel_map_is_continuous: bool = False
    loss: Callable  # nnU-Net builds it in initialize(); bound to the batch's maps for one step below

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if type(self).get_voxel_map_function is nnUNetTrainerVoxelMap.get_voxel_map_function and \
                not callable(type(self).voxel_map_function):
            raise TypeError(f"{type(self).__name__} sets no voxel_map_function: set it to staticmethod(f), "
                            f"f(labels, spacing) -> np.ndarray, or override get_voxel_map_function")

    def get_voxel_map_function(self) -> Callable:
        """The map function the augmentation workers run (default: the class attribute ``voxel_map_function``)."""
        return type(self).voxel_map_function

    def build_voxel_map_loss(self) -> nn.Module:
        """The loss ``forward(output, target, voxel_map)`` of one deep-supervision scale."""
        raise NotImplementedError(f"{type(self).__name__} must define build_voxel_map_loss()")

    def _voxel_map_transform(self) -> VoxelMapTransform:
        labels = self.label_manager
        max_label = None if labels.has_regions else int(max(labels.all_labels + [labels.ignore_label or 0]))
        return VoxelMapTransform(self.get_voxel_map_function(), self.configuration_manager.spacing,
                                 self.voxel_map_is_continuous, max_label)

    def get_training_transforms(self, *args: Any, **kwargs: Any) -> ComposeTransforms:
        """nnU-Net's training transforms followed by the voxel-map transform."""
        return ComposeTransforms([super().get_training_transforms(*args, **kwargs), self._voxel_map_transform()])

    def get_validation_transforms(self, *args: Any, **kwargs: Any) -> ComposeTransforms:
        """nnU-Net's validation transforms followed by the voxel-map transform, so validation loss is the same loss."""
        return ComposeTransforms([super().get_validation_transforms(*args, **kwargs), self._voxel_map_transform()])

    def on_train_start(self) -> None:
        super().on_train_start()
        function = self.get_voxel_map_function()
        name = getattr(function, "__name__", type(function).__name__)
        scales = len(self._get_deep_supervision_scales()) if self.enable_deep_supervision else 1
        sampling = "averaged" if self.voxel_map_is_continuous else "sampled nearest-exact"
        self.print_to_log_file(f"Voxel map: {name}, made in the augmentation workers, {sampling} to {scales} "
                               f"deep-supervision scale(s)", also_print_to_console=True)

    def get_dataloaders(self) -> tuple:
        with voxel_map_loader_in_nnunet():
            return super().get_dataloaders()

    def _build_loss(self):
        """nnU-Net's loss with its deep-supervision weighting, the loss inside replaced by the voxel-map loss."""
        return with_innermost(super()._build_loss(), self.build_voxel_map_loss())

    @contextmanager
    def _loss_with_batch_voxel_maps(self, batch: dict):
        """Bind the batch's voxel maps to ``self.loss`` for one step.

        nnU-Net's ``train_step`` and ``validation_step`` call ``self.loss(output, target)``; rather than
        copying them, the loss is replaced for the step by ``loss(output, target, voxel_map)``.
        """
        if FAILED_KEY in batch:
            self._stop_data_loaders()  # else their threads report dead workers at exit, after the real cause
            raise_if_failed(batch)
        if VOXEL_MAP_KEY not in batch:
            raise KeyError(f"{type(self).__name__}: the batch has no '{VOXEL_MAP_KEY}'; the maps of VoxelMapTransform "
                           f"are carried by VoxelMapDataLoader (get_dataloaders)")
        voxel_maps = batch[VOXEL_MAP_KEY]
        voxel_maps = [m.to(self.device, non_blocking=True) for m in voxel_maps] if isinstance(voxel_maps, list) \
            else voxel_maps.to(self.device, non_blocking=True)
        loss: Callable = self.loss
        self.loss = lambda output, target: loss(output, target, voxel_maps)
        try:
            yield
        finally:
            self.loss = loss

    def _stop_data_loaders(self) -> None:
        """Stop the augmentation workers and their threads, as nnU-Net's ``on_train_end`` does."""
        for loader in (self.dataloader_train, self.dataloader_val):
            if isinstance(loader, (NonDetMultiThreadedAugmenter, MultiThreadedAugmenter)):
                loader._finish()

    def train_step(self, batch: dict) -> dict:
        with self._loss_with_batch_voxel_maps(batch):
            return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        with self._loss_with_batch_voxel_maps(batch):
            return super().validation_step(batch)
