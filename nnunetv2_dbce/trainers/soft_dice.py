"""A soft Dice with the settings nnU-Net's ``nnUNetTrainer._build_loss`` gives its own Dice term."""
import torch
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1
from torch import nn


def nnunet_soft_dice(trainer, dice_class: type = MemoryEfficientSoftDiceLoss, **extra) -> nn.Module:
    """``dice_class`` built as nnU-Net builds the Dice of its Dice+CE (2.8): softmax and background excluded for
    labels, sigmoid and background included for regions; batch Dice from the plans, smoothing 1e-5, the DDP
    sums when distributed; compiled when nnU-Net compiles. ``extra``: further arguments of ``dice_class``
    (e.g. PM Dice's ``gamma``)."""
    regions = trainer.label_manager.has_regions
    dice = dice_class(apply_nonlin=torch.sigmoid if regions else softmax_helper_dim1,
                      batch_dice=trainer.configuration_manager.batch_dice, do_bg=regions, smooth=1e-5,
                      ddp=trainer.is_ddp, **extra)
    return torch.compile(dice) if trainer._do_i_compile() else dice
