"""Carry per-sample weight maps from the augmentation pipeline to ``train_step``.

Why this exists: ``nnUNetDataLoader.generate_train_batch`` (nnU-Net 2.8) runs the transforms on each
sample and keeps only ``image`` and ``segmentation``; the ``weights`` our transform adds would be
dropped. Instead of copying that long method we wrap the loader's transforms so that each sample's
``weights`` are set aside, call the original method, and stack them into ``batch['weights']`` the same
way it stacks the segmentation (one tensor per deep-supervision scale).

``nnUNetTrainer.get_dataloaders`` builds ``nnUNetDataLoader`` by its module-global name and starts the
worker processes before returning, so the loader class has to be swapped for the duration of that call
(``use_weight_map_loader``); the swap is undone on exit and affects nothing else.

Errors: batchgenerators' workers print an exception and stop, and the main process only learns that a
worker died. So a sample that fails (a weight map that cannot be made, say) turns into a batch holding
only ``FAILED_KEY``: the case identifier, the error and its traceback, which the trainer raises in the
main process (``raise_if_failed``).
"""
import importlib
import traceback
from contextlib import contextmanager
from typing import List, Union
from unittest import mock

import torch
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

nnunet_trainer_module = importlib.import_module("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
WeightMaps = Union[torch.Tensor, List[torch.Tensor]]
FAILED_KEY = "failed"


class SetAsideWeights:
    """Calls the wrapped transforms and moves each sample's ``weights`` out of the returned dict."""

    def __init__(self, transforms):
        self.transforms = transforms
        self.set_aside: List[WeightMaps] = []

    def __call__(self, **data_dict) -> dict:
        transformed = self.transforms(**data_dict)
        if "weights" not in transformed:
            raise KeyError("the training transforms added no 'weights': DilatedBalancedWeightsTransform must be "
                           "the last transform of the pipeline")
        self.set_aside.append(transformed.pop("weights"))
        return transformed

    def __repr__(self):
        return f"{type(self).__name__}({self.transforms!r})"


def stack_weight_maps(per_sample: List[WeightMaps]) -> WeightMaps:
    """(1, ...) maps of B samples -> (B, 1, ...); lists of per-scale maps -> a list of per-scale batches."""
    if isinstance(per_sample[0], (list, tuple)):
        return [torch.stack(scale) for scale in zip(*per_sample)]
    return torch.stack(per_sample)


class WeightMapDataLoader(nnUNetDataLoader):
    """``nnUNetDataLoader`` whose batches also hold ``weights``, aligned with ``target``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.transforms is None:
            raise ValueError("WeightMapDataLoader needs transforms that add 'weights'")
        self.transforms = SetAsideWeights(self.transforms)

    def get_indices(self):
        self.batch_keys = super().get_indices()
        return self.batch_keys

    def generate_train_batch(self) -> dict:
        self.transforms.set_aside.clear()
        try:
            batch = super().generate_train_batch()
        except Exception as error:
            case = self.batch_keys[len(self.transforms.set_aside)]  # samples are done in order: the next one failed
            return {FAILED_KEY: f"Preparing the training sample of case '{case}' failed in a data loader "
                                f"worker: {type(error).__name__}: {error}\n{traceback.format_exc()}"}
        batch["weights"] = stack_weight_maps(self.transforms.set_aside)
        self.transforms.set_aside.clear()
        return batch


def raise_if_failed(batch: dict) -> None:
    """Raise, in the main process, the error a worker sent instead of a batch."""
    if FAILED_KEY in batch:
        raise RuntimeError(batch[FAILED_KEY])


@contextmanager
def use_weight_map_loader():
    """While active, ``nnUNetTrainer.get_dataloaders`` builds ``WeightMapDataLoader``, not ``nnUNetDataLoader``."""
    with mock.patch.object(nnunet_trainer_module, "nnUNetDataLoader", WeightMapDataLoader):
        yield
