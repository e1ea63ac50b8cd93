"""The DBCE weight-map transform for nnU-Net's batchgeneratorsv2 augmentation pipeline."""
from functools import lru_cache
from typing import Optional, Sequence

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from torch.nn.functional import interpolate

from nnunetv2_dbce.weight_maps import check_radius, dilated_balanced_weights


@lru_cache(maxsize=512)
def nearest_exact_source(size_in: int, size_out: int):
    """The input index each output index takes when ``interpolate(mode='nearest-exact')`` resizes an axis from
    ``size_in`` to ``size_out``, read off torch itself (an index ramp through the same call): a ``slice`` when
    they are evenly spaced (always, for nnU-Net's power-of-two scales of divisible sizes), else an index tensor."""
    ramp = torch.arange(size_in, dtype=torch.float64)[None, None]
    source = interpolate(ramp, size=size_out, mode="nearest-exact")[0, 0].long()
    steps = torch.diff(source)
    if size_out > 1 and torch.all(steps == steps[0]) and steps[0] > 0:
        return slice(int(source[0]), int(source[-1]) + 1, int(steps[0]))
    return source


def sample_like_segmentation(weight_map: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resample a (K, X, Y[, Z]) map to ``shape`` exactly as ``DownsampleSegForDSTransform`` resamples the
    segmentation (``interpolate(..., mode='nearest-exact')`` to the same size), so both stay aligned: per axis,
    the same source voxels, picked by a strided view where possible instead of a call to ``interpolate``."""
    sampled = weight_map
    for axis, (size_in, size_out) in enumerate(zip(weight_map.shape[1:], shape), start=1):
        if size_in != size_out:
            source = nearest_exact_source(size_in, size_out)
            sampled = sampled[(slice(None),) * axis + (source,)] if isinstance(source, slice) \
                else sampled.index_select(axis, source)
    return sampled


class DilatedBalancedWeightsTransform(BasicTransform):
    """Adds ``data_dict['weights']``: the DBCE weight map of the (augmented) segmentation.

    Place it last, after spatial augmentation, ``RemoveLabelTansform`` and, with deep supervision,
    ``DownsampleSegForDSTransform``. The map is computed once from the full-resolution segmentation
    (channel 0); when ``segmentation`` is a list (one tensor per deep-supervision scale, full resolution
    first) ``weights`` is a list of float32 tensors of the same shapes, else a single (1, X, Y[, Z]) tensor.
    """

    def __init__(self, dilation_radius: float, spacing: Optional[Sequence[float]] = None,
                 ignore_label: Optional[int] = None, max_label: Optional[int] = None):
        """
        :param dilation_radius: R in voxels of the finest axis.
        :param spacing: voxel spacing per spatial axis; None for isotropic.
        :param ignore_label: label left out of the weighting (weight 0).
        :param max_label: the largest label the dataset defines (ignore label included); a larger one in a
            patch is an error. None: not checked.
        """
        super().__init__()
        self.dilation_radius = check_radius(dilation_radius)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.ignore_label = ignore_label
        self.max_label = max_label

    def apply(self, data_dict: dict, **params) -> dict:
        segmentation = data_dict["segmentation"]
        per_scale = isinstance(segmentation, (list, tuple))
        full_resolution = segmentation[0] if per_scale else segmentation
        if full_resolution.shape[0] != 1:
            raise ValueError(f"{type(self).__name__} needs a single-channel label map, got segmentation of shape "
                             f"{tuple(full_resolution.shape)} (region-based training is not supported)")
        label_map = full_resolution[0].numpy()
        if self.max_label is not None and label_map.size and label_map.max() > self.max_label:
            raise ValueError(f"the segmentation holds label {label_map.max()}, but the dataset's labels go up to "
                             f"{self.max_label}")
        weight_map = torch.from_numpy(dilated_balanced_weights(
            label_map, self.dilation_radius, self.spacing, self.ignore_label))[None]
        data_dict["weights"] = [sample_like_segmentation(weight_map, s.shape[1:]) for s in segmentation] \
            if per_scale else weight_map
        return data_dict
