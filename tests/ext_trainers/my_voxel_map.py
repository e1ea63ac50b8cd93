import numpy as np
import torch
from scipy import ndimage

from nnunetv2_dbce import nnUNetTrainerVoxelMap


def foreground_proximity(label_map: np.ndarray, spacing: tuple) -> np.ndarray:
    """1 + 4 exp(-d / 5 mm), d the distance (mm) to the nearest foreground voxel: runs in the augmentation
    workers on each augmented patch's label map (X, Y[, Z]), returns (X, Y[, Z]) or (K, X, Y[, Z])."""
    distance = ndimage.distance_transform_edt(label_map == 0, sampling=spacing)
    return (1 + 4 * np.exp(-distance / 5)).astype(np.float32)


class ProximityWeightedCE(torch.nn.Module):
    """Cross entropy in which background near a structure counts up to 5 times more."""

    def forward(self, output, target, voxel_map):  # (B, C, X, Y[, Z]), (B, 1, ...), (B, K, ...) per scale
        cross_entropy = torch.nn.functional.cross_entropy(output, target[:, 0].long(), reduction="none")
        return (voxel_map[:, 0] * cross_entropy).sum() / voxel_map[:, 0].sum()


class nnUNetTrainerProximityCE(nnUNetTrainerVoxelMap):
    voxel_map_function = staticmethod(foreground_proximity)
    voxel_map_is_continuous = True  # distances: lower deep-supervision scales get block means

    def build_voxel_map_loss(self) -> torch.nn.Module:
        return ProximityWeightedCE()
