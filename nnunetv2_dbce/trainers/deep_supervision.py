"""Swapping the loss inside nnU-Net's deep-supervision wrapper, so that its per-scale weighting stays nnU-Net's."""
from collections.abc import Callable
from typing import Any

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn


def innermost(loss: Callable) -> Any:
    """The loss inside nnU-Net's deep-supervision wrapper, if any."""
    return loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss


def with_innermost(loss: nn.Module, inner: nn.Module) -> nn.Module:
    """``loss`` with ``inner`` in place of the loss inside its deep-supervision wrapper; ``inner`` if unwrapped."""
    if isinstance(loss, DeepSupervisionWrapper):
        loss.loss = inner
        return loss
    return inner


def refuse_regions(trainer: nnUNetTrainer, reason: str) -> None:
    """Raise before training if the dataset is region-based (``regions_class_order`` in dataset.json)."""
    if trainer.label_manager.has_regions:
        raise ValueError(f"{type(trainer).__name__} does not support region-based training (dataset.json defines "
                         f"regions with 'regions_class_order'); {reason}")
