"""Swapping the loss inside nnU-Net's deep-supervision wrapper, so that its per-scale weighting stays nnU-Net's."""
from collections.abc import Callable
from typing import Any

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
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

