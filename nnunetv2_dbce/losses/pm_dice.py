"""Pixel-wise modulated Dice (PM Dice): a soft Dice whose every voxel is scaled by how wrong it is. Plain torch."""
import math
from numbers import Real
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from nnunetv2_dbce.losses.ddp import sum_over_processes

Gamma = Union[float, Sequence[float]]


def check_gamma(gamma: Gamma, num_classes: Optional[int] = None) -> tuple:
    """Return ``gamma`` as a tuple of floats (one value, or one per class), or raise with the reason.

    :param num_classes: when given, a per-class ``gamma`` must have exactly this many values.
    """
    values = tuple(gamma) if isinstance(gamma, (list, tuple)) else (gamma,)
    if not values or any(isinstance(v, bool) or not isinstance(v, Real) for v in values):
        raise TypeError(f"gamma must be a number or a list of one number per class, got {gamma!r}")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"gamma must be finite and >= 0, got {gamma!r}")
    if len(values) > 1 and num_classes is not None and len(values) != num_classes:
        raise ValueError(f"gamma has {len(values)} values but there are {num_classes} classes (output channels, "
                         f"background included): give one value, or one per class")
    return tuple(float(v) for v in values)


class PMDiceLoss(nn.Module):
    """``1 - mean_c (2 sum_i m y p + smooth) / (sum_i m (y^2 + p^2) + smooth)``, ``m = |y - p.detach()|^gamma_c``.

    ``p`` is ``apply_nonlin(x)`` (softmax for labels, sigmoid for regions), ``y`` the one-hot target.
    ``gamma = 0`` is the soft Dice with squared denominator. The modulation ``m`` carries no gradient.

    :param gamma: one value for all classes, or one per output channel (background included).
    :param batch_dice: sum over batch and space per class (nnU-Net's default for most plans); else per
        sample, the Dice then averaged over samples and classes.
    :param do_bg: include channel 0 (background) in the mean.
    :param ddp: with ``batch_dice``, sum over every process of a distributed job, so N processes with
        1/N of the batch each get the loss of one process with the whole batch.
    """

    def __init__(self, apply_nonlin: Optional[Callable] = None, gamma: Gamma = 2.0, batch_dice: bool = True,
                 do_bg: bool = False, smooth: float = 1e-5, ddp: bool = False):
        super().__init__()
        self.apply_nonlin = apply_nonlin
        self.gamma = check_gamma(gamma)
        self.batch_dice = batch_dice
        self.do_bg = do_bg
        self.smooth = smooth
        self.ddp = ddp

    def _gamma_tensor(self, num_channels: int, ndim: int, device) -> Union[float, torch.Tensor]:
        if len(self.gamma) == 1:
            return self.gamma[0]
        check_gamma(self.gamma, num_channels)
        return torch.tensor(self.gamma, device=device).view(1, num_channels, *([1] * (ndim - 2)))

    def forward(self, x: torch.Tensor, y: torch.Tensor, loss_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        :param x: network output (B, C, X, Y[, Z]); ``apply_nonlin`` turns it into probabilities.
        :param y: label map (B, 1, ...) or (B, ...) with values in [0, C), or one-hot / region target (B, C, ...).
        :param loss_mask: (B, 1, ...), 1 (True) where voxels count, 0 where they are ignored.
        :return: scalar loss.
        """
        if self.apply_nonlin is not None:
            x = self.apply_nonlin(x)
        axes = tuple(range(2, x.ndim))
        accumulate = torch.promote_types(x.dtype, torch.float32)  # fp16 inputs: sums in fp32
        with torch.no_grad():
            if y.ndim == x.ndim - 1:
                y = y[:, None]
            if y.shape == x.shape:
                y_onehot = y.to(accumulate)
            else:
                y_onehot = torch.zeros(x.shape, device=x.device, dtype=accumulate)
                y_onehot.scatter_(1, y.long(), 1)
            modulation = (y_onehot - x.detach()).abs().pow(self._gamma_tensor(x.shape[1], x.ndim, x.device))
            if loss_mask is not None:
                modulation = modulation * loss_mask
            if not self.do_bg:
                y_onehot, modulation = y_onehot[:, 1:], modulation[:, 1:]
            modulated_target = modulation * y_onehot
            sum_m_y2 = (modulated_target * y_onehot).sum(axes, dtype=accumulate)
        if not self.do_bg:
            x = x[:, 1:]
        intersect = (x * modulated_target).sum(axes, dtype=accumulate)
        sum_m_p2 = (modulation * x * x).sum(axes, dtype=accumulate)
        denominator = sum_m_y2 + sum_m_p2

        if self.batch_dice:
            intersect, denominator = intersect.sum(0), denominator.sum(0)
            if self.ddp:
                intersect, denominator = sum_over_processes(intersect), sum_over_processes(denominator)
        dice = (2 * intersect + self.smooth) / (denominator + self.smooth).clamp_min(1e-8)
        return 1 - dice.mean()
