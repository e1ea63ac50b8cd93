"""Voxel-map trainers for the end-to-end tests: the README's example (my_voxel_map.py, a user's own file),
a two-channel map whose loss checks at every deep-supervision scale that the map is aligned with the
target, and the package's two instances, each with a handful of iterations."""
import numpy as np
import torch
from dbce_test_trainers import FewIterations
from my_voxel_map import nnUNetTrainerProximityCE

from nnunetv2_dbce import nnUNetTrainerVoxelMap
from nnunetv2_dbce.trainers import nnUNetTrainerBoundaryLoss, nnUNetTrainerUNetBorderWeightedCE


def label_channels(label_map: np.ndarray, spacing: tuple) -> np.ndarray:
    """(2, X, Y): 1 where the label is 1, 2 where it is 2."""
    return np.stack([label_map == 1, 2 * (label_map == 2)]).astype(np.float32)


class AlignmentCheckingCE(torch.nn.Module):
    """CE that fails the run unless the map at this scale is exactly label_channels of this scale's target."""

    def forward(self, output, target, voxel_map):
        labels = target[:, 0]
        expected = torch.stack([labels == 1, 2 * (labels == 2)], 1).to(voxel_map.dtype)
        if voxel_map.shape != expected.shape or not torch.equal(voxel_map, expected):
            raise AssertionError(f"voxel map {tuple(voxel_map.shape)} not aligned with target {tuple(target.shape)}")
        return torch.nn.functional.cross_entropy(output, labels.long())


class nnUNetTrainerAlignedMap_tiny(FewIterations, nnUNetTrainerVoxelMap):
    voxel_map_function = staticmethod(label_channels)

    def build_voxel_map_loss(self):
        return AlignmentCheckingCE()


class nnUNetTrainerProximityCE_tiny(FewIterations, nnUNetTrainerProximityCE):
    pass


class nnUNetTrainerBoundaryLoss_tiny(FewIterations, nnUNetTrainerBoundaryLoss):
    pass


class nnUNetTrainerUNetBorderWeightedCE_tiny(FewIterations, nnUNetTrainerUNetBorderWeightedCE):
    pass
