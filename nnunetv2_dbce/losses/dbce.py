"""Dilated balanced cross entropy: a voxel-weighted CE, plain torch."""

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_dbce.losses.precision import at_least_fp32


class DBCELoss(nn.Module):
    """``sum(w * CE) / sum(w)`` over every voxel of the batch, voxels with ``ignore_index`` left out.

    The weights ``w`` are DBCE weight maps (see ``dbce_weight_map``); with all weights 1 this
    is plain CE. A batch whose weights sum to 0 (all ignored) gives a loss of 0 with zero gradient.

    Raises:
        ValueError: target or weights not of shape (B, 1, X, Y[, Z]) for logits (B, C, X, Y[, Z]).

    Example (weight maps of R = 3 from the labels; with weights 1 everywhere DBCE is plain CE)::

        >>> from nnunetv2_dbce.voxel_maps.dbce import dbce_weight_map
        >>> logits, target = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 1, 32, 32))
        >>> weights = torch.stack([torch.from_numpy(dbce_weight_map(t[0].numpy(), 3))[None] for t in target])
        >>> value = DBCELoss()(logits, target, weights)
        >>> ce = F.cross_entropy(logits, target[:, 0])
        >>> torch.allclose(DBCELoss()(logits, target, torch.ones_like(weights)), ce)
        True

    S. M. Hosseini, M. Soleymani Baghshah, *Dilated Balanced Cross Entropy Loss for Medical Image
    Segmentation*, arXiv:2412.06045, 2024; BMC Medical Imaging, 2026.
    """

    def __init__(self, ignore_index: int | None = None):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """
        :param logits: network output, shape (B, C, X, Y[, Z]).
        :param target: integer labels as nnU-Net shapes them, (B, 1, X, Y[, Z]), any numeric dtype.
        :param weights: voxel weights, (B, 1, X, Y[, Z]).
        :return: scalar loss.
        """
        expected = (logits.shape[0], 1, *logits.shape[2:])
        if tuple(target.shape) != expected or tuple(weights.shape) != expected:
            raise ValueError(f"{type(self).__name__} expects target and weights of shape {expected} for logits of "
                             f"shape {tuple(logits.shape)}, got {tuple(target.shape)} and {tuple(weights.shape)}")
        labels = target[:, 0].long()
        ignore_index = -100 if self.ignore_index is None else self.ignore_index
        # fp16 logits: CE in fp32, as autocast does for cross_entropy, and sums that cannot overflow
        cross_entropy = F.cross_entropy(at_least_fp32(logits), labels, reduction="none", ignore_index=ignore_index)
        weights = weights[:, 0].to(cross_entropy.dtype)
        annotated = None if self.ignore_index is None else labels != self.ignore_index
        if annotated is not None:
            weights = weights * annotated
        return (weights * cross_entropy).sum() / self.normaliser(weights, annotated)

    def normaliser(self, weights: torch.Tensor, annotated: torch.Tensor | None) -> torch.Tensor:
        """What the weighted CE sum is divided by: DBCE's ``sum_i w_i`` over the annotated voxels (which
        ``weights`` (B, X, Y[, Z]) already holds at 0 elsewhere; ``annotated``: None when every voxel is)."""
        return weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)


class RegionDBCELoss(nn.Module):
    """DBCE for region-based training (sigmoid outputs): ``sum_{r,i} w[r,i] BCE[r,i] / sum_{r,i} w[r,i]`` over
    region channels and voxels, ``w`` the per-channel weight maps of ``region_dbce_weight_maps``.

    With ``ignore_channel`` the target's last channel is nnU-Net's ignore mask (its layout for datasets with an
    ignore label): those voxels are left out of both sums.

    Raises:
        ValueError: region target (without the ignore channel) or weights not of the logits' shape.

    Example (per-region weight maps of R = 3; with weights 1 everywhere, plain BCE)::

        >>> from nnunetv2_dbce.voxel_maps.dbce import region_dbce_weight_maps
        >>> logits, regions = torch.randn(2, 2, 32, 32), torch.randint(0, 2, (2, 2, 32, 32))
        >>> weights = torch.stack([torch.from_numpy(region_dbce_weight_maps(r.numpy(), 3)) for r in regions])
        >>> value = RegionDBCELoss()(logits, regions, weights)
        >>> bce = F.binary_cross_entropy_with_logits(logits, regions.float())
        >>> torch.allclose(RegionDBCELoss()(logits, regions, torch.ones_like(weights)), bce)
        True
    """

    def __init__(self, ignore_channel: bool = False):
        super().__init__()
        self.ignore_channel = ignore_channel

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """
        :param logits: (B, R, X, Y[, Z]).
        :param target: (B, R, ...) region masks, or (B, R + 1, ...) with the ignore mask last.
        :param weights: (B, R, ...).
        :return: scalar loss.
        """
        regions = target[:, :-1] if self.ignore_channel else target
        if regions.shape != logits.shape or weights.shape != logits.shape:
            raise ValueError(f"RegionDBCELoss expects region targets and weights of shape {tuple(logits.shape)}"
                             f"{' (+1 ignore channel in the target)' if self.ignore_channel else ''}, got "
                             f"{tuple(target.shape)} and {tuple(weights.shape)}")
        logits = at_least_fp32(logits)
        bce = F.binary_cross_entropy_with_logits(logits, regions.to(logits.dtype), reduction="none")
        weights = weights.to(bce.dtype)
        if self.ignore_channel:
            weights = weights * (target[:, -1:] == 0)
        return (weights * bce).sum() / weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)
