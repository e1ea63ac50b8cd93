"""Dilated balanced cross entropy: a voxel-weighted CE, plain torch."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class DBCELoss(nn.Module):
    """``sum(w * CE) / sum(w)`` over every voxel of the batch, voxels with ``ignore_index`` left out.

    The weights ``w`` are DBCE weight maps (see ``dilated_balanced_weights``); with all weights 1 this
    is plain CE. A batch whose weights sum to 0 (all ignored) gives a loss of 0 with zero gradient.
    """

    def __init__(self, ignore_index: Optional[int] = None):
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
            raise ValueError(f"DBCELoss expects target and weights of shape {expected} for logits of shape "
                             f"{tuple(logits.shape)}, got {tuple(target.shape)} and {tuple(weights.shape)}")
        labels = target[:, 0].long()
        ignore_index = -100 if self.ignore_index is None else self.ignore_index
        # fp16 logits: CE in fp32, as autocast does for cross_entropy, and sums that cannot overflow
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        cross_entropy = F.cross_entropy(logits, labels, reduction="none", ignore_index=ignore_index)
        weights = weights[:, 0].to(cross_entropy.dtype)
        if self.ignore_index is not None:
            weights = weights * (labels != self.ignore_index)
        return (weights * cross_entropy).sum() / weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)
