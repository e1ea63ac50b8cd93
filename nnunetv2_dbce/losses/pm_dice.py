"""Pixel-wise modulated Dice (PM Dice): a soft Dice whose every voxel is scaled by how wrong it is. Plain torch."""
import math
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import torch
from torch import nn

from nnunetv2_dbce.losses.ddp import sum_over_processes
from nnunetv2_dbce.losses.precision import accumulation_dtype

Gamma = float | Sequence[float]


def check_gamma(gamma: Gamma, num_classes: int | None = None) -> tuple:
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


def modulation(p: torch.Tensor, y: torch.Tensor, gamma: float | torch.Tensor,
               loss_mask: torch.Tensor | None) -> torch.Tensor:
    """``|y - p|^gamma`` (times the loss mask), computed without a graph: the modulation is a constant."""
    with torch.no_grad():
        m = y - p
        m = m.square_() if isinstance(gamma, float) and gamma == 2 else m.abs_().pow_(gamma)
        return m if loss_mask is None else m.mul_(loss_mask)


class ModulatedDiceSums(torch.autograd.Function):
    """Per (sample, class) sums ``sum_i m y p`` and ``sum_i m (y^2 + p^2)`` over the spatial axes.

    The backward recomputes ``m`` instead of keeping it, so only ``p`` (which the softmax keeps anyway)
    and the one-hot target stay alive between forward and backward, as for nnU-Net's soft Dice. Products
    are formed in place: on the CPU, fresh logits-sized buffers cost as much as the arithmetic.
    ``binary_target``: ``y`` holds only 0 and 1, so ``y^2 = y`` saves a pass.
    """

    @staticmethod
    def forward(ctx: Any, p: torch.Tensor, y: torch.Tensor, loss_mask: torch.Tensor | None,
                gamma: float | torch.Tensor, binary_target: bool) -> tuple[torch.Tensor, torch.Tensor]:
        axes = tuple(range(2, p.ndim))
        p_sums = p.to(y.dtype)  # fp16 inputs: sums in the target's fp32
        m = modulation(p_sums, y, gamma, loss_mask)
        modulated_target = m * y
        sum_m_y2 = (modulated_target if binary_target else modulated_target * y).sum(axes)
        intersect = modulated_target.mul_(p_sums).sum(axes)
        sum_m_p2 = m.mul_(p_sums).mul_(p_sums).sum(axes)
        ctx.save_for_backward(p, y, loss_mask)
        ctx.gamma = gamma
        return intersect, sum_m_y2 + sum_m_p2

    @staticmethod
    def backward(ctx: Any, grad_intersect: torch.Tensor, grad_denominator: torch.Tensor) -> tuple:
        p, y, loss_mask = ctx.saved_tensors
        p_sums = p.to(y.dtype)
        spatial = (1,) * (p.ndim - 2)
        grad_p = y * grad_intersect.view(*grad_intersect.shape, *spatial)
        grad_p.addcmul_(p_sums, 2 * grad_denominator.view(*grad_denominator.shape, *spatial))
        grad_p.mul_(modulation(p_sums, y, ctx.gamma, loss_mask))
        return grad_p.to(p.dtype), None, None, None, None


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

    Raises:
        TypeError, ValueError: ``gamma`` not a number or list of numbers, negative, NaN, or (at the first
            call) a per-class list whose length is not the number of channels.

    Example (gamma 0: the soft Dice, ``1 - 2 sum y p / sum (y^2 + p^2)``)::

        >>> logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))
        >>> loss = PMDiceLoss(apply_nonlin=lambda x: torch.softmax(x, 1), gamma=2.0)
        >>> value = loss(logits, target)
        >>> p, y = torch.softmax(logits, 1)[:, 1:], torch.cat([target == 1, target == 2], 1).float()
        >>> soft_dice = (2 * (p * y).sum((0, 2, 3)) / (p * p + y * y).sum((0, 2, 3))).mean()
        >>> gamma_0 = PMDiceLoss(apply_nonlin=lambda x: torch.softmax(x, 1), gamma=0.0, smooth=0)
        >>> torch.allclose(gamma_0(logits, target), 1 - soft_dice)
        True

    S. M. Hosseini, *Pixel-wise Modulated Dice Loss for Medical Image Segmentation*, arXiv:2506.15744, 2025.
    """

    def __init__(self, apply_nonlin: Callable | None = None, gamma: Gamma = 1.0, batch_dice: bool = True,
                 do_bg: bool = False, smooth: float = 1e-5, ddp: bool = False):
        super().__init__()
        self.apply_nonlin = apply_nonlin
        self.gamma = check_gamma(gamma)
        self.batch_dice = batch_dice
        self.do_bg = do_bg
        self.smooth = smooth
        self.ddp = ddp

    def _gamma_tensor(self, x: torch.Tensor) -> float | torch.Tensor:
        """One float, or a (1, C, 1, ...) tensor of per-class values in the precision of the sums."""
        if len(self.gamma) == 1:
            return self.gamma[0]
        check_gamma(self.gamma, x.shape[1])
        return torch.tensor(self.gamma, device=x.device, dtype=accumulation_dtype(x.dtype)) \
            .view(1, x.shape[1], *([1] * (x.ndim - 2)))

    def forward(self, x: torch.Tensor, y: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        :param x: network output (B, C, X, Y[, Z]); ``apply_nonlin`` turns it into probabilities.
        :param y: label map (B, 1, ...) or (B, ...) with values in [0, C), or one-hot / region target (B, C, ...).
        :param loss_mask: (B, 1, ...), 1 (True) where voxels count, 0 where they are ignored.
        :return: scalar loss.
        """
        if self.apply_nonlin is not None:
            x = self.apply_nonlin(x)
        gamma = self._gamma_tensor(x)
        with torch.no_grad():
            if y.ndim == x.ndim - 1:
                y = y[:, None]
            accumulate = accumulation_dtype(x.dtype)
            binary_target = y.shape != x.shape
            if binary_target:
                y_onehot = torch.zeros(x.shape, device=x.device, dtype=accumulate)
                y_onehot.scatter_(1, y.long(), 1)
            else:
                y_onehot = y.to(accumulate)
        # all channels go through (contiguous, in-place products); the background's sums are dropped after
        return self.loss_from_sums(*ModulatedDiceSums.apply(x, y_onehot, loss_mask, gamma, binary_target))

    def loss_from_sums(self, intersect: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
        """The loss from the (B, C) sums ``sum_i m y p`` and ``sum_i m (y^2 + p^2)`` of every channel."""
        if not self.do_bg:
            intersect, denominator = intersect[:, 1:], denominator[:, 1:]
        if self.batch_dice:
            intersect, denominator = intersect.sum(0), denominator.sum(0)
            if self.ddp:
                intersect, denominator = sum_over_processes(intersect), sum_over_processes(denominator)
        dice = (2 * intersect + self.smooth) / (denominator + self.smooth).clamp_min(1e-8)
        return 1 - dice.mean()
