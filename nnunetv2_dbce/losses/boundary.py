"""The boundary loss (Kervadec et al.) and the U-Net's border-weighted cross entropy, on per-voxel maps made
from the label (``nnunetv2_dbce.voxel_maps``). Plain torch."""

import torch
from torch import nn

from nnunetv2_dbce.losses.dbce import DBCELoss
from nnunetv2_dbce.losses.precision import at_least_fp32


def annotated_mask(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """(B, 1, ...) bool: the voxels whose label is not ``ignore_index``."""
    return torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index


class BoundaryLoss(nn.Module):
    """``mean_{voxels, foreground classes} softmax(logits)_c * phi_c``, ``phi`` the signed distance maps.

    H. Kervadec et al., *Boundary loss for highly unbalanced segmentation*, MIDL 2019 / Medical Image
    Analysis 2021. Voxels labelled ``ignore_index`` are left out of the mean.

    Example (the right segmentation of a square scores lower than its opposite)::

        >>> import numpy as np
        >>> from nnunetv2_dbce.voxel_maps.distance import signed_distance_maps
        >>> label_map = np.zeros((8, 8), np.int16)
        >>> label_map[2:6, 2:6] = 1
        >>> phi = torch.from_numpy(signed_distance_maps(label_map, 2, (1.0, 1.0)))[None]
        >>> target = torch.from_numpy(label_map)[None, None]
        >>> right = 20 * nn.functional.one_hot(target[:, 0].long(), 2).movedim(-1, 1).float()
        >>> bool(BoundaryLoss()(right, target, phi) < BoundaryLoss()(-right, target, phi))
        True
    """

    def __init__(self, ignore_index: int | None = None):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor, distance_maps: torch.Tensor) -> torch.Tensor:
        """
        :param logits: (B, C, X, Y[, Z]).
        :param target: integer labels (B, 1, X, Y[, Z]) (only for the ignore label).
        :param distance_maps: (B, C - 1, X, Y[, Z]) signed distances of the foreground classes.
        :return: scalar loss (0 when every voxel is ignored).
        """
        if distance_maps.shape[1] != logits.shape[1] - 1 or distance_maps.shape[2:] != logits.shape[2:]:
            raise ValueError(f"BoundaryLoss expects (B, {logits.shape[1] - 1}, ...) distance maps for logits of shape "
                             f"{tuple(logits.shape)}, got {tuple(distance_maps.shape)}")
        probabilities = torch.softmax(at_least_fp32(logits), 1)[:, 1:]
        kept = annotated_mask(target, self.ignore_index)
        terms = probabilities * distance_maps.to(probabilities.dtype) * kept
        return terms.sum() / (kept.sum() * distance_maps.shape[1]).clamp_min(1)


class RegionAndBoundaryLoss(nn.Module):
    """``region(output, target) + alpha * boundary(output, target, distance_maps)``; ``alpha`` is set from
    outside as training goes (Kervadec et al. raise it linearly)."""

    def __init__(self, region: nn.Module, boundary: BoundaryLoss, alpha: float = 0.01):
        super().__init__()
        self.region = region
        self.boundary = boundary
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor, distance_maps: torch.Tensor) -> torch.Tensor:
        return self.region(logits, target) + self.alpha * self.boundary(logits, target, distance_maps)


class BorderWeightedCELoss(DBCELoss):
    """``mean_voxels w * CE``: the U-Net's weighted cross entropy (Ronneberger et al. 2015, the energy
    ``sum_x w(x) log p(x)`` as a mean over the annotated voxels), ``w`` the border weight map (B, 1, ...). The
    weighted CE of ``DBCELoss``, divided by the number of annotated voxels instead of the sum of the weights."""

    def normaliser(self, weights: torch.Tensor, annotated: torch.Tensor | None) -> torch.Tensor:
        count = weights.numel() if annotated is None else annotated.sum()
        return torch.as_tensor(count, dtype=weights.dtype, device=weights.device).clamp_min(1)
