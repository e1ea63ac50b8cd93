"""PM Dice + CE (or DBCE) on a label map from one softmax, as cheap as nnU-Net's Dice+CE. Plain torch."""
from typing import Any

import torch

from nnunetv2_dbce.losses.pm_dice import Gamma, PMDiceLoss
from nnunetv2_dbce.losses.precision import accumulation_dtype, at_least_fp32


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """(B, C, X, Y[, Z]) as (B, C, N)."""
    return tensor.reshape(*tensor.shape[:2], -1)


def _power(p: torch.Tensor, exponent: float | torch.Tensor) -> torch.Tensor:
    """``p^exponent`` for an exponent >= 2 (a float or a broadcastable tensor): products for 2, 3 and 4, else
    ``exp(exponent log p)`` (on the CPU ``pow`` with another exponent costs twice as much)."""
    if isinstance(exponent, float) and exponent in (2, 3, 4):
        power = p * p
        return power.mul_(p) if exponent == 3 else power.mul_(power) if exponent == 4 else power
    return p.log().mul_(exponent).exp_()


def _log_probability_at_label(logits: torch.Tensor, p_label: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log p`` at each voxel's label (B, 1, N): ``log(p_label)``, and ``logits - logsumexp(logits)`` where
    ``p_label`` underflows (a voxel's CE above ~69), so that CE stays exact however wrong the prediction."""
    log_p_label = p_label.log()
    underflow = p_label < 1e-30
    if underflow.any():
        sample, _, voxel = underflow.nonzero(as_tuple=True)
        voxel_logits = logits[sample, :, voxel]  # (K, C)
        log_p_label[underflow] = voxel_logits.gather(1, labels[sample, :, voxel])[:, 0] - \
            voxel_logits.logsumexp(1)
    return log_p_label


class SoftmaxPMDiceCESums(torch.autograd.Function):
    """From logits and a label map: the PM Dice sums per (sample, class) and the voxel-weighted CE sum.

    With ``p = softmax(logits)``, ``t`` the label and ``m = |y - p|^gamma`` (no gradient), the Dice sums need
    no one-hot target: away from its label a voxel adds ``m p^2 = p^(gamma + 2)`` to ``sum m (y^2 + p^2)`` and
    nothing to ``sum m y p``; at its label the terms with ``y = 1`` take the place of that, computed per voxel
    (1/C of the logits' size) from the one log-probability gathered there, which is also the voxel's CE. So
    forward and backward take a few passes over the logits, and backward keeps ``p``, ``p^(gamma + 2)`` and
    voxel-sized terms (labels as int16), no more than nnU-Net's Dice+CE keeps.

    ``labels`` (B, 1, N) int64, every value in [0, C) (ignored voxels too: ``loss_mask`` removes them);
    ``loss_mask`` (B, 1, N) 0/1 or None; ``ce_weights`` (B, 1, N) or None: with ``with_ce``, the CE weight of
    every voxel, ignored voxels at 0 (None: 1 everywhere); ``gamma`` a float or a (1, C, 1) tensor. Returns
    ``sum m y p`` and ``sum m (y^2 + p^2)``, both (B, C), and ``sum_i w_i CE_i`` (a scalar, 0 without ``with_ce``).
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor | None,
                ce_weights: torch.Tensor | None, with_ce: bool,
                gamma: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # fp16/bf16 logits (autocast): every sum in fp32; no op here is one autocast lowers
        logits = at_least_fp32(logits)
        p = torch.softmax(logits, 1)
        p_gamma2 = _power(p, gamma + 2)
        gamma_label = gamma if isinstance(gamma, float) else gamma[0, :, 0][labels]
        p_label = p.gather(1, labels)
        log_p_label = _log_probability_at_label(logits, p_label, labels)
        m_label = (1 - p_label).clamp_min_(0).pow_(gamma_label)
        # at the label, m (y^2 + p^2) = m + m p^2 takes the place of p^(gamma + 2)
        label_correction = m_label * p_label * p_label - log_p_label.mul(gamma_label + 2).exp_()
        label_intersect = m_label.mul(p_label)
        label_denominator = m_label.add_(label_correction)
        if loss_mask is not None:  # ignored voxels: out of every Dice sum and of the softmax's gradient
            for tensor in (p, p_gamma2, label_correction, label_intersect, label_denominator):
                tensor.mul_(loss_mask)
        index = labels[:, 0]
        denominator = p_gamma2.sum(2).scatter_add_(1, index, label_denominator[:, 0])
        intersect = torch.zeros_like(denominator).scatter_add_(1, index, label_intersect[:, 0])
        if not with_ce:
            ce = log_p_label.new_zeros(())
        elif ce_weights is None:
            ce = -log_p_label.sum()
        else:
            ce = -(ce_weights * log_p_label).sum()
        compact_labels = labels.to(torch.int16) if p.shape[1] <= torch.iinfo(torch.int16).max else labels
        ctx.save_for_backward(p, p_gamma2, compact_labels, label_intersect, label_correction,
                              ce_weights if with_ce else None)
        ctx.with_ce = with_ce
        return intersect, denominator, ce

    @staticmethod
    def backward(ctx: Any, grad_intersect: torch.Tensor, grad_denominator: torch.Tensor,
                 grad_ce: torch.Tensor) -> tuple:
        p, p_gamma2, labels, label_intersect, label_correction, ce_weights = ctx.saved_tensors
        labels = labels.long()
        index = labels[:, 0]
        # p times d/dp of the sums (m frozen): 2 g_den p^(gamma + 2) away from the label, and at the label
        # p (g_int m + 2 g_den (m p - p^(gamma + 1))) = g_int m p + 2 g_den (m p^2 - p^(gamma + 2))
        grad = p_gamma2.mul(2 * grad_denominator[..., None])
        label_term = grad_intersect.gather(1, index)[:, None] * label_intersect + \
            2 * grad_denominator.gather(1, index)[:, None] * label_correction
        # softmax backward: p g - p sum_c p g; CE: w (p - onehot)
        shift = -(grad.sum(1, keepdim=True) + label_term)
        if ctx.with_ce:
            ce_scale = grad_ce if ce_weights is None else grad_ce * ce_weights
            shift += ce_scale
            label_term -= ce_scale
        grad.addcmul_(p, shift).scatter_add_(1, labels, label_term)
        return grad, None, None, None, None, None  # autograd casts it to the logits' dtype


class PMDiceCELoss(PMDiceLoss):
    """``weight_dice * PM Dice + weight_ce * CE`` on the softmax of the logits and a label map, 1:1 by default like
    nnU-Net's Dice+CE; with voxel ``weights`` the CE is DBCE (``sum w CE / sum w``). The same values as
    ``PMDiceLoss`` plus ``torch.nn.CrossEntropyLoss`` (or ``DBCELoss``) from one softmax: the fast path that
    ``nnUNetTrainerPMDiceCE`` and ``nnUNetTrainerDBCEPMDice`` use for labels (regions keep nnU-Net's Dice+BCE
    with ``PMDiceLoss``).

    :param ignore_index: voxels with this label are left out of both terms (nnU-Net's ignore label).
    :param weight_ce: 0 leaves the CE out (PM Dice alone).
    Other parameters as ``PMDiceLoss`` (without ``apply_nonlin``: always the softmax).

    Example (the same value as PM Dice plus CE, computed apart)::

        >>> from nnunetv2_dbce import PMDiceLoss
        >>> logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))
        >>> pm_dice = PMDiceLoss(lambda x: torch.softmax(x, 1), gamma=1.0)
        >>> ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
        >>> torch.allclose(PMDiceCELoss(gamma=1.0)(logits, target), pm_dice(logits, target) + ce)
        True
    """

    def __init__(self, gamma: Gamma = 1.0, batch_dice: bool = True, do_bg: bool = False, smooth: float = 1e-5,
                 ddp: bool = False, ignore_index: int | None = None, weight_ce: float = 1, weight_dice: float = 1):
        super().__init__(None, gamma, batch_dice, do_bg, smooth, ddp)
        self.ignore_index = ignore_index
        self.weight_ce = weight_ce
        self.weight_dice = weight_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        """
        :param logits: (B, C, X, Y[, Z]).
        :param target: label map (B, 1, X, Y[, Z]), any numeric dtype.
        :param weights: DBCE weight maps (B, 1, X, Y[, Z]), or None for plain CE.
        :return: scalar loss.
        """
        expected = (logits.shape[0], 1, *logits.shape[2:])
        if tuple(target.shape) != expected or (weights is not None and tuple(weights.shape) != expected):
            raise ValueError(f"PMDiceCELoss expects a target{' and weights' if weights is not None else ''} of "
                             f"shape {expected} for logits of shape {tuple(logits.shape)}, got {tuple(target.shape)}"
                             f"{'' if weights is None else f' and {tuple(weights.shape)}'}")
        gamma = self._gamma_tensor(_flat(logits))
        accumulate = accumulation_dtype(logits.dtype)
        labels = _flat(target).long()
        loss_mask: torch.Tensor | None = None
        if self.ignore_index is not None:
            loss_mask = labels != self.ignore_index
            labels = torch.where(loss_mask, labels, 0)
            loss_mask = loss_mask.to(accumulate)
        with_ce = self.weight_ce != 0
        ce_weights = loss_mask  # the CE weight of every voxel: DBCE's map, 0 where ignored; None: 1 everywhere
        if weights is not None:
            ce_weights = _flat(weights).to(accumulate)
            if loss_mask is not None:
                ce_weights = ce_weights * loss_mask
        intersect, denominator, ce_sum = SoftmaxPMDiceCESums.apply(_flat(logits), labels, loss_mask, ce_weights,
                                                                   with_ce, gamma)
        loss = self.weight_dice * self.loss_from_sums(intersect, denominator)
        if with_ce:
            weight_sum = labels.numel() if ce_weights is None else \
                ce_weights.sum().clamp_min(torch.finfo(accumulate).tiny)
            loss = loss + self.weight_ce * ce_sum / weight_sum
        return loss
