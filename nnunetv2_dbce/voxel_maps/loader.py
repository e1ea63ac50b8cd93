"""Carry per-sample voxel maps from the augmentation pipeline to ``train_step``.

Why this exists: ``nnUNetDataLoader.generate_train_batch`` (nnU-Net 2.8) runs the transforms on each
sample and keeps only ``image`` and ``segmentation``; the ``voxel_map`` our transform adds would be
dropped. Instead of copying that long method we wrap the loader's transforms so that each sample's
``voxel_map`` is set aside, call the original method, and stack the maps into ``batch['voxel_map']`` the
same way it stacks the segmentation (one tensor per deep-supervision scale).

``nnUNetTrainer.get_dataloaders`` builds ``nnUNetDataLoader`` by its module-global name and starts the
worker processes before returning, so ``VoxelMapDataLoader`` must stand in for that name during the call
(``voxel_map_loader_in_nnunet``): a plain assignment, undone on exit.

Errors: batchgenerators' workers print an exception and stop, and the main process only learns that a
worker died. So a sample that fails (a case that cannot be loaded, a map that cannot be made) turns into a batch
holding only ``FAILED_KEY``: the case identifier, the error and its traceback (and the exception itself, when it
pickles), which the trainer raises in the main process (``raise_if_failed``). The failing case is the sample
nnU-Net's loop was at: it asks ``get_do_oversample(j)`` first for every sample ``j``, before loading it.
"""
import importlib
import pickle
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from nnunetv2_dbce.voxel_maps.transform import VOXEL_MAP_KEY

nnunet_trainer_module: Any = importlib.import_module(  # its global nnUNetDataLoader is swapped below
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
VoxelMaps = torch.Tensor | list[torch.Tensor]
FAILED_KEY = "failed"
FAILED_ERROR_KEY = "failed_error"


class SetAsideVoxelMaps:
    """Calls the wrapped transforms and moves each sample's ``voxel_map`` out of the returned dict."""

    def __init__(self, transforms: Callable[..., dict]):
        self.transforms = transforms
        self.set_aside: list[VoxelMaps] = []

    def __call__(self, **data_dict: object) -> dict:
        transformed = self.transforms(**data_dict)
        if VOXEL_MAP_KEY not in transformed:
            raise KeyError(f"the training transforms added no '{VOXEL_MAP_KEY}': a VoxelMapTransform must be the last "
                           f"transform of the pipeline")
        self.set_aside.append(transformed.pop(VOXEL_MAP_KEY))
        return transformed

    def __repr__(self):
        return f"{type(self).__name__}({self.transforms!r})"


def stack_voxel_maps(per_sample: list[VoxelMaps]) -> VoxelMaps:
    """(K, ...) maps of B samples -> (B, K, ...); lists of per-scale maps -> a list of per-scale batches.

    Example (three samples, each with a map at two deep-supervision scales)::

        >>> per_sample = [[torch.full((1, 8, 8), float(b)), torch.full((1, 4, 4), float(b))] for b in range(3)]
        >>> [(tuple(scale.shape), scale[:, 0, 0, 0].tolist()) for scale in stack_voxel_maps(per_sample)]
        [((3, 1, 8, 8), [0.0, 1.0, 2.0]), ((3, 1, 4, 4), [0.0, 1.0, 2.0])]
    """
    if isinstance(per_sample[0], (list, tuple)):
        return [torch.stack(scale) for scale in zip(*per_sample)]
    return torch.stack(per_sample)  # type: ignore[arg-type]  # one tensor per sample here


class VoxelMapDataLoader(nnUNetDataLoader):
    """``nnUNetDataLoader`` whose batches also hold ``voxel_map``, aligned with ``target``."""

    transforms: Any  # nnU-Net's pipeline, wrapped in SetAsideVoxelMaps here
    get_do_oversample: Callable[[int], bool]  # nnU-Net's instance attribute, wrapped here

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.transforms is None:
            raise ValueError(f"VoxelMapDataLoader needs transforms that add '{VOXEL_MAP_KEY}'")
        self.transforms = SetAsideVoxelMaps(self.transforms)
        self.current_sample: int | None = None  # the batch's sample being loaded, None before the first
        # nnU-Net picks its oversampling rule in __init__ as an instance attribute; wrap whichever it chose
        self.nnunet_do_oversample, self.get_do_oversample = self.get_do_oversample, self.oversample_and_note_sample

    def get_indices(self) -> list:
        self.batch_keys = super().get_indices()
        return self.batch_keys

    def oversample_and_note_sample(self, sample_idx: int) -> bool:
        """nnU-Net asks this first for each sample of the batch, before loading it: note the sample being prepared."""
        self.current_sample = sample_idx
        return self.nnunet_do_oversample(sample_idx)

    def generate_train_batch(self) -> dict:
        self.transforms.set_aside.clear()
        self.batch_keys, self.current_sample = [], None
        try:
            batch = super().generate_train_batch()
        except Exception as error:
            if self.current_sample is None:
                return failed("choosing the cases of a training batch", error)
            return failed(f"the training sample of case '{self.batch_keys[self.current_sample]}'", error)
        try:
            batch[VOXEL_MAP_KEY] = stack_voxel_maps(self.transforms.set_aside)
        except Exception as error:
            return failed(f"stacking the voxel maps of cases {[str(key) for key in self.batch_keys]}", error)
        finally:
            self.transforms.set_aside.clear()
        return batch


def failed(what: str, error: Exception) -> dict:
    """The batch a worker sends instead of a failed one: the message with the traceback, and the exception when
    it pickles (to chain it in the main process)."""
    message = f"Preparing {what} failed in a data loader worker: {type(error).__name__}: {error}\n" \
              f"{traceback.format_exc()}"
    try:
        pickle.dumps(error)
    except Exception:
        return {FAILED_KEY: message}
    return {FAILED_KEY: message, FAILED_ERROR_KEY: error}


def raise_if_failed(batch: dict) -> None:
    """Raise, in the main process, the error a worker sent instead of a batch, the worker's exception chained."""
    if FAILED_KEY in batch:
        raise RuntimeError(batch[FAILED_KEY]) from batch.get(FAILED_ERROR_KEY)


@contextmanager
def voxel_map_loader_in_nnunet() -> Iterator[None]:
    """While active, ``nnUNetTrainer.get_dataloaders`` builds ``VoxelMapDataLoader``, not ``nnUNetDataLoader``."""
    nnunet_trainer_module.nnUNetDataLoader = VoxelMapDataLoader
    try:
        yield
    finally:
        nnunet_trainer_module.nnUNetDataLoader = nnUNetDataLoader
