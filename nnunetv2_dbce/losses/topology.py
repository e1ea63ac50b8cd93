"""Losses for thin structures (vessels, airways, nerves): soft skeleton recall and soft clDice. Plain torch
(clDice through MONAI's ``SoftclDiceLoss``)."""
from collections.abc import Callable

import torch
from torch import nn

from nnunetv2_dbce.losses.precision import at_least_fp32


def loss_mask(target: torch.Tensor, ignore_index: int | None, regions: bool) -> torch.Tensor | None:
    """(B, 1, ...) True where a voxel counts, as nnU-Net masks its Dice: labels other than ``ignore_index``; for
    regions with an ignore label, voxels whose ignore channel (the target's last) is 0. None: every voxel counts."""
    if ignore_index is None:
        return None
    return target[:, -1:] == 0 if regions else target != ignore_index


class SkeletonRecallLoss(nn.Module):
    """Soft skeleton recall: ``1 - mean_c (sum_i p[c,i] S[c,i] + smooth) / (sum_i S[c,i] + smooth)`` over the
    classes whose skeleton is in the batch (``batch_dice``) or over the (sample, class) pairs that have one.

    ``S`` are tubed skeletons of the reference (``tubed_skeletons``), one channel per foreground class (labels) or
    per region; ``p`` the softmax probabilities of those classes (sigmoid for regions). Voxels with
    ``ignore_index`` (regions: the ignore channel) are left out. A batch without any skeleton gives 0.

    Example (a bar: a confident right prediction recalls its whole skeleton, the opposite none of it)::

        >>> from nnunetv2_dbce.voxel_maps.skeletons import tubed_skeletons
        >>> target = torch.zeros(1, 1, 16, 16, dtype=torch.long)
        >>> target[0, 0, 7:9, 2:14] = 1
        >>> skeletons = torch.stack([torch.from_numpy(tubed_skeletons(t[0].numpy(), [1])) for t in target])
        >>> right = 20 * torch.cat([target == 0, target == 1], 1).float()
        >>> loss = SkeletonRecallLoss(lambda x: torch.softmax(x, 1))
        >>> round(loss(right, target, skeletons).item(), 4), round(loss(-right, target, skeletons).item(), 4)
        (0.0, 1.0)

    M. Kirchhoff, Y. Kirchhoff et al., *Skeleton Recall Loss for Connectivity Conserving and Resource Efficient
    Segmentation of Thin Tubular Structures*, ECCV 2024, arXiv:2404.03010.

    Raises:
        ValueError: skeletons not of shape (B, K, ...) with K the foreground channels of the logits.
    """

    def __init__(self, apply_nonlin: Callable, batch_dice: bool = True, smooth: float = 1e-5, regions: bool = False,
                 ignore_index: int | None = None):
        super().__init__()
        self.apply_nonlin, self.batch_dice, self.smooth = apply_nonlin, batch_dice, smooth
        self.regions, self.ignore_index = regions, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor, skeletons: torch.Tensor) -> torch.Tensor:
        probabilities = self.apply_nonlin(at_least_fp32(logits))
        if not self.regions:
            probabilities = probabilities[:, 1:]
        if skeletons.shape != probabilities.shape:
            raise ValueError(f"SkeletonRecallLoss expects skeletons of shape {tuple(probabilities.shape)} (one channel "
                             f"per foreground {'region' if self.regions else 'class'}), got {tuple(skeletons.shape)}")
        skeletons = skeletons.to(probabilities.dtype)
        mask = loss_mask(target, self.ignore_index, self.regions)
        if mask is not None:
            skeletons = skeletons * mask
        axes = tuple(range(2, logits.ndim))
        overlap, length = (probabilities * skeletons).sum(axes), skeletons.sum(axes)
        if self.batch_dice:
            overlap, length = overlap.sum(0), length.sum(0)
        present = length > 0
        if not present.any():
            return (probabilities * 0).sum()
        recall = (overlap + self.smooth) / (length + self.smooth)
        return 1 - recall[present].mean()


class ClDiceLoss(nn.Module):
    """Soft clDice (Shit et al., CVPR 2021) through MONAI's ``SoftclDiceLoss`` (``iterations`` soft-skeleton steps,
    its smoothing), on nnU-Net's outputs and targets: softmax over labels with the background left out, or sigmoid
    region channels; voxels with ``ignore_index`` (regions: the ignore channel) set to 0 in both the prediction and
    the reference before the soft skeletons; computed in float32.

    S. Shit, J. C. Paetzold et al., *clDice - a Novel Topology-Preserving Loss Function for Tubular Structure
    Segmentation*, CVPR 2021, arXiv:2003.07311.
    """

    def __init__(self, iterations: int = 3, regions: bool = False, ignore_index: int | None = None):
        super().__init__()
        from monai.losses import SoftclDiceLoss
        self.cldice = SoftclDiceLoss(iter_=iterations, include_background=True)
        self.regions, self.ignore_index = regions, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = at_least_fp32(logits)
        mask = loss_mask(target, self.ignore_index, self.regions)
        if self.regions:
            probabilities = torch.sigmoid(logits)
            reference = (target[:, :-1] if self.ignore_index is not None else target).to(logits.dtype)
        else:
            probabilities = torch.softmax(logits, 1)[:, 1:]
            labels = target[:, 0].long() if mask is None else torch.where(mask[:, 0], target[:, 0].long(), 0)
            reference = nn.functional.one_hot(labels, logits.shape[1]).movedim(-1, 1)[:, 1:].to(logits.dtype)
        if mask is not None:
            probabilities, reference = probabilities * mask, reference * mask
        return self.cldice(probabilities, reference)
