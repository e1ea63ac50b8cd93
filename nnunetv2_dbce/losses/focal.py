"""Losses for hard pixels that the papers compare against: focal loss and focal Tversky loss. Plain torch."""

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_dbce.losses.precision import at_least_fp32


class FocalLoss(nn.Module):
    """Softmax focal loss: mean over voxels of ``-(1 - p_t)^gamma * log(p_t)``, ``p_t`` the probability of the
    voxel's class; voxels labelled ``ignore_index`` left out. ``gamma = 0`` is plain CE.

    T.-Y. Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017 (gamma = 2, the paper's best).

    Raises:
        ValueError: a negative or NaN ``gamma``.

    Example (gamma = 0 is nnU-Net's CE; a larger gamma discounts the easy voxels)::

        >>> logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
        >>> bool(torch.allclose(FocalLoss(gamma=0)(logits, target), F.cross_entropy(logits, target[:, 0])))
        True
        >>> bool(FocalLoss(gamma=2)(logits, target) < FocalLoss(gamma=0)(logits, target))
        True
    """

    def __init__(self, gamma: float = 2.0, ignore_index: int | None = None):
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        :param logits: (B, C, X, Y[, Z]).
        :param target: integer labels (B, 1, X, Y[, Z]).
        :return: scalar loss (0 when every voxel is ignored).
        """
        labels = target[:, 0].long()
        annotated = torch.ones_like(labels, dtype=torch.bool) if self.ignore_index is None \
            else labels != self.ignore_index
        log_p = F.log_softmax(at_least_fp32(logits), 1)
        log_pt = log_p.gather(1, torch.where(annotated, labels, 0)[:, None])[:, 0]
        focal = -(1 - log_pt.exp()).pow(self.gamma) * log_pt
        return (focal * annotated).sum() / annotated.sum().clamp_min(1)


class FocalTverskyLoss(nn.Module):
    """``mean_c (1 - TI_c)^(1/gamma)``, Tversky index ``TI_c = (TP + s) / (TP + alpha FN + beta FP + s)`` from
    softmax probabilities and the one-hot target, over foreground classes.

    N. Abraham, N. M. Khan, *A Novel Focal Tversky Loss Function with Improved Attention U-Net for Lesion
    Segmentation*, ISBI 2019: alpha = 0.7 (false negatives), beta = 0.3, gamma = 4/3.

    :param batch_dice: sums over the batch and space per class (nnU-Net's batch Dice); else per sample.
    :param do_bg: include the background class in the mean.
    """

    def __init__(self, alpha: float = 0.7, beta: float = 0.3, gamma: float = 4 / 3, batch_dice: bool = True,
                 do_bg: bool = False, smooth: float = 1e-5, ignore_index: int | None = None):
        super().__init__()
        if not (alpha >= 0 and beta >= 0 and gamma > 0):
            raise ValueError(f"focal Tversky needs alpha, beta >= 0 and gamma > 0, got {alpha}, {beta}, {gamma}")
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.batch_dice, self.do_bg, self.smooth, self.ignore_index = batch_dice, do_bg, smooth, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, C, X, Y[, Z]), integer labels (B, 1, X, Y[, Z]); returns a scalar."""
        labels = target[:, 0].long()
        annotated = torch.ones_like(labels, dtype=torch.bool) if self.ignore_index is None \
            else labels != self.ignore_index
        p = torch.softmax(at_least_fp32(logits), 1)
        p = p * annotated[:, None]
        y = F.one_hot(torch.where(annotated, labels, 0), logits.shape[1]).movedim(-1, 1).to(p.dtype)
        y = y * annotated[:, None]
        axes = (0, *range(2, p.ndim)) if self.batch_dice else tuple(range(2, p.ndim))
        tp = (p * y).sum(axes)
        fn = y.sum(axes) - tp
        fp = p.sum(axes) - tp
        tversky = (tp + self.smooth) / (tp + self.alpha * fn + self.beta * fp + self.smooth)
        if not self.do_bg:
            tversky = tversky[..., 1:]
        # a perfect class (1 - TI = 0) would give an infinite gradient of x^(1/gamma): keep x above tiny
        return (1 - tversky).clamp_min(torch.finfo(tversky.dtype).eps).pow(1 / self.gamma).mean()
