"""nnU-Net's own loss terms built as ``nnUNetTrainer._build_loss`` (2.8) builds them, through their public
constructors, for trainers that add to them or swap one term."""
from typing import cast

import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import softmax_helper_dim1
from torch import nn


def nnunet_soft_dice(trainer: nnUNetTrainer, dice_class: type = MemoryEfficientSoftDiceLoss,
                     **extra: object) -> nn.Module:
    """``dice_class`` built as nnU-Net builds the Dice of its Dice+CE (2.8): softmax and background excluded for
    labels, sigmoid and background included for regions; batch Dice from the plans, smoothing 1e-5, the DDP
    sums when distributed; compiled when nnU-Net compiles. ``extra``: further arguments of ``dice_class``
    (e.g. PM Dice's ``gamma``)."""
    dice = dice_class(apply_nonlin=torch.sigmoid if trainer.label_manager.has_regions else softmax_helper_dim1,
                      **nnunet_dice_settings(trainer), **extra)
    return cast(nn.Module, torch.compile(dice)) if trainer._do_i_compile() else dice


def nnunet_dice_settings(trainer: nnUNetTrainer) -> dict:
    """The settings nnU-Net's ``_build_loss`` (2.8) gives its soft Dice: batch Dice from the plans, background
    excluded for labels and included for regions, smoothing 1e-5, the DDP sums when distributed."""
    return {"batch_dice": trainer.configuration_manager.batch_dice, "do_bg": trainer.label_manager.has_regions,
            "smooth": 1e-5, "ddp": trainer.is_ddp}


def nnunet_dice_ce(trainer: nnUNetTrainer, dice_class: type = MemoryEfficientSoftDiceLoss, weight_ce: float = 1,
                   **extra: object) -> nn.Module:
    """nnU-Net's default loss of one deep-supervision scale, through its public constructors: Dice+CE (labels;
    ignore label masked) or Dice+BCE (regions), its Dice compiled when nnU-Net compiles. ``dice_class``, its
    further arguments ``extra`` (e.g. PM Dice's ``gamma``) and ``weight_ce`` as nnU-Net's constructors take them."""
    dice_settings = {**nnunet_dice_settings(trainer), **extra}
    labels = trainer.label_manager
    if labels.has_regions:
        loss = DC_and_BCE_loss({}, dice_settings, weight_ce=weight_ce, use_ignore_label=labels.ignore_label is not None,
                               dice_class=dice_class)
    else:
        loss = DC_and_CE_loss(dice_settings, {}, weight_ce=weight_ce, weight_dice=1, ignore_label=labels.ignore_label,
                              dice_class=dice_class)
    if trainer._do_i_compile():
        loss.dc = torch.compile(loss.dc)
    return loss
