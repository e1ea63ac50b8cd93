"""Per-voxel maps made from the augmented label inside nnU-Net's batchgeneratorsv2 pipeline, at every
deep-supervision scale: ``VoxelMapTransform`` for any map function, ``DBCEWeightMapTransform`` for DBCE's
weight maps."""
import importlib.util
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from numba import njit
from torch.nn.functional import adaptive_avg_pool2d, adaptive_avg_pool3d, interpolate

from nnunetv2_dbce.voxel_maps.dbce import DBCEWeightMap
from nnunetv2_dbce.voxel_maps.dilation import check_radius
from nnunetv2_dbce.voxel_maps.labels import check_dataset_labels

VOXEL_MAP_KEY = "voxel_map"


@lru_cache(maxsize=512)
def nearest_exact_source(size_in: int, size_out: int) -> slice | np.ndarray:
    """The input index each output index takes when ``interpolate(mode='nearest-exact')`` resizes an axis from
    ``size_in`` to ``size_out``, read off torch itself (an index ramp through the same call): a ``slice`` when
    they are evenly spaced (always, for nnU-Net's power-of-two scales of divisible sizes), else an index array."""
    ramp = torch.arange(size_in, dtype=torch.float64)[None, None]
    source = interpolate(ramp, size=size_out, mode="nearest-exact")[0, 0].long().numpy()
    steps = np.diff(source)
    if size_out > 1 and np.all(steps == steps[0]) and steps[0] > 0:
        return slice(int(source[0]), int(source[-1]) + 1, int(steps[0]))
    return source


def sample_like_segmentation(voxel_map: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample a (K, X, Y[, Z]) map to ``shape`` exactly as ``DownsampleSegForDSTransform`` resamples the
    segmentation (``interpolate(..., mode='nearest-exact')`` to the same size), so both stay aligned: per axis,
    the same source voxels, picked by a strided numpy view where possible (no copy, no call to ``interpolate``)."""
    view = sampling_view(tuple(voxel_map.shape[1:]), tuple(shape))
    if view is not None:
        return voxel_map[view]
    sources = sources_per_axis(tuple(voxel_map.shape[1:]), tuple(shape))
    sampled = voxel_map
    for axis, source in enumerate(sources, start=1):
        sampled = sampled[(slice(None),) * axis + (source,)] if isinstance(source, slice) \
            else np.take(sampled, source, axis=axis)
    return sampled


@lru_cache(maxsize=512)
def sampling_view(shape_in: tuple, shape_out: tuple) -> tuple | None:
    """The index of a (K, *shape_in) map that ``sample_like_segmentation`` takes as a strided view (cached: asked
    once per deep-supervision scale and sample); None where an axis needs an index array."""
    sources = sources_per_axis(shape_in, shape_out)
    return (slice(None),) + sources if all(isinstance(source, slice) for source in sources) else None


@lru_cache(maxsize=512)
def sources_per_axis(shape_in: tuple, shape_out: tuple) -> tuple:
    """``nearest_exact_source`` of every spatial axis (a whole-axis slice where the size stays)."""
    return tuple(slice(None) if size_in == size_out else nearest_exact_source(size_in, size_out)
                 for size_in, size_out in zip(shape_in, shape_out))


def average_to(voxel_map: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A continuous (K, X, Y[, Z]) map at ``shape``: each voxel the mean of the full-resolution voxels it covers
    (adaptive average pooling; for nnU-Net's factor-2 scales, the mean of each 2x2(x2) block)."""
    if tuple(voxel_map.shape[1:]) == tuple(shape):
        return voxel_map
    if voxel_map.ndim == 3:
        return adaptive_avg_pool2d(voxel_map, (shape[0], shape[1]))
    return adaptive_avg_pool3d(voxel_map, (shape[0], shape[1], shape[2]))


@njit(cache=True, boundscheck=False)
def pair_means(voxel_map: np.ndarray, factors: tuple, means: np.ndarray) -> None:
    """Into ``means`` (K, X, Y, Z): the mean of each block of a float32 (K, X, Y, Z) map, ``factors`` 1 or 2 per axis,
    summed in the order of ``block_means`` (axis 1 first, then 2, then 3), so bit for bit its means, in one pass."""
    fx, fy, fz = factors
    scale = np.float32(fx * fy * fz)
    for k in range(means.shape[0]):
        for i in range(means.shape[1]):
            for j in range(means.shape[2]):
                row = means[k, i, j]
                near = voxel_map[k, i * fx, j * fy]
                near_x = voxel_map[k, i * fx + fx - 1, j * fy]
                far = voxel_map[k, i * fx, j * fy + fy - 1]
                far_x = voxel_map[k, i * fx + fx - 1, j * fy + fy - 1]
                for m in range(row.size):
                    z = m * fz
                    total = near[z] + near_x[z] if fx == 2 else near[z]
                    if fy == 2:
                        total = total + (far[z] + far_x[z] if fx == 2 else far[z])
                    if fz == 2:
                        second = near[z + 1] + near_x[z + 1] if fx == 2 else near[z + 1]
                        if fy == 2:
                            second = second + (far[z + 1] + far_x[z + 1] if fx == 2 else far[z + 1])
                        total = total + second
                    row[m] = total / scale


def block_means(voxel_map: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """The mean of each block of ``factors`` voxels (one whole factor per spatial axis, dividing its size) of a
    (K, X, Y[, Z]) map: one axis after the other, the sum of its strided views; the map itself when every factor is
    1. nnU-Net's poolings (factors 1 and 2) of a float32 map run compiled in one pass (``pair_means``: 3-4x faster
    at (3, 512, 512) and (3, 128, 128, 128), the same means)."""
    if all(factor == 1 for factor in factors):
        return voxel_map
    if set(factors) <= {1, 2} and voxel_map.dtype == np.float32:
        as_3d = voxel_map.reshape(voxel_map.shape[0], voxel_map.shape[1], 1, -1) if voxel_map.ndim == 3 \
            else voxel_map
        factors_3d = (factors[0], 1, factors[1]) if voxel_map.ndim == 3 else tuple(factors)
        means = np.empty((as_3d.shape[0], *(n // f for n, f in zip(as_3d.shape[1:], factors_3d))), np.float32)
        pair_means(np.ascontiguousarray(as_3d), factors_3d, means)
        return means.reshape(voxel_map.shape[0], *(n // f for n, f in zip(voxel_map.shape[1:], factors)))
    means = voxel_map
    for axis, factor in enumerate(factors, start=1):
        if factor == 1:
            continue
        views = [means[(slice(None),) * axis + (slice(offset, None, factor),)] for offset in range(factor)]
        means = views[0] + views[1]
        for view in views[2:]:
            means += view
    means /= np.float32(np.prod(factors))
    return means


def averaged_scales(voxel_map: np.ndarray, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """``average_to`` of a float32 (K, X, Y[, Z]) map for each spatial shape in ``shapes`` (finest first): each scale
    from the one before by ``block_means`` where its sizes divide the previous scale's (nnU-Net's poolings), else
    from full resolution. All the scales of a (3, 512, 512) map in 0.17x the time of ``average_to`` for each, of a
    (3, 128, 128, 128) map in 0.20x."""
    scales = []
    previous, exact = voxel_map, True
    for shape in shapes:
        factors = [size_in // size_out if size_out and size_in % size_out == 0 else 0
                   for size_in, size_out in zip(previous.shape[1:], shape)]
        exact = exact and all(factors)
        if exact:
            previous = block_means(previous, factors)
            scales.append(torch.from_numpy(previous))
        else:
            scales.append(average_to(torch.from_numpy(voxel_map), shape))
    return scales


class PicklableByFile:
    """Wraps a map function so that it reaches spawned augmentation workers.

    nnU-Net imports the modules of ``nnUNet_extTrainer`` folders and then drops them from ``sys.modules`` and
    their folder from ``sys.path``, so pickle cannot find a function defined there by its module name. A
    function whose module pickle cannot import is pickled as its file and name and loaded from that file.
    """

    def __init__(self, function: Callable):
        self.function = function

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.function(*args, **kwargs)

    def __reduce__(self):
        try:
            pickle.dumps(self.function)
        except (pickle.PicklingError, AttributeError, TypeError):
            code = getattr(self.function, "__code__", None)
            if code is None or "<locals>" in self.function.__qualname__ or self.function.__name__ == "<lambda>":
                raise TypeError(f"the voxel map function {self.function!r} must be a module-level function or a "
                                f"picklable callable object, so that augmentation workers can run it") from None
            return load_function, (code.co_filename, self.function.__module__, self.function.__qualname__)
        return PicklableByFile, (self.function,)


def load_function(path: str, module_name: str, qualified_name: str) -> PicklableByFile:
    """The function ``qualified_name`` of the module at ``path`` (imported under ``module_name`` if not loaded)."""
    module = sys.modules.get(module_name)
    if module is None or getattr(module, "__file__", None) != path:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        folder = os.path.dirname(path)
        sys.path.insert(0, folder)  # as during nnU-Net's trainer lookup: the file may import its neighbours
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(folder)
    function: Any = module
    for name in qualified_name.split("."):
        function = getattr(function, name)
    return PicklableByFile(function)


class VoxelMapTransform(BasicTransform):
    """Adds ``data_dict['voxel_map']``: ``map_function(labels, spacing)`` of the augmented full-resolution
    segmentation, as float32 (K, X, Y[, Z]), sampled to every deep-supervision scale.

    Place it last, after nnU-Net's transforms (spatial augmentation, ``RemoveLabelTansform``, regions,
    ``DownsampleSegForDSTransform``). ``labels`` is the label map (X, Y[, Z]), or for region-based training
    the (R, X, Y[, Z]) region masks nnU-Net made (the ignore mask last, if the dataset has an ignore label).
    When ``segmentation`` is a list (one tensor per deep-supervision scale, full resolution first),
    ``voxel_map`` is a list of the same length, each map with its scale's spatial shape: sampled exactly as
    nnU-Net samples the segmentation (nearest-exact), or averaged when ``continuous``.

    Example (a foreground map of a 4x4 square at two deep-supervision scales; averaged, the half-resolution
    map keeps the square's area in full-resolution voxels, 16 / 4)::

        >>> def foreground(labels, spacing):
        ...     return labels > 0
        >>> segmentation = torch.zeros(1, 64, 64)
        >>> segmentation[0, 30:34, 30:34] = 1
        >>> transform = VoxelMapTransform(foreground, continuous=True)
        >>> sample = transform(image=torch.zeros(1, 64, 64), segmentation=[segmentation, segmentation[:, 1::2, 1::2]])
        >>> [(tuple(m.shape), float(m.sum())) for m in sample["voxel_map"]]
        [((1, 64, 64), 16.0), ((1, 32, 32), 4.0)]
    """

    def __init__(self, map_function: Callable, spacing: Sequence[float] | None = None, continuous: bool = False,
                 max_label: int | None = None):
        """
        :param map_function: ``f(labels: np.ndarray, spacing: tuple) -> np.ndarray`` of shape (X, Y[, Z]) or
            (K, X, Y[, Z]); runs in the augmentation workers, so it must be picklable (a module-level function
            or a picklable callable object).
        :param spacing: voxel spacing per spatial axis, passed on to ``map_function``; None: all 1.
        :param continuous: lower scales get block means instead of nnU-Net's nearest-exact sampling.
        :param max_label: the largest label the dataset defines (ignore label included); a larger one in a
            label map is an error. None: not checked. A map function with a ``with_max_label(max_label)`` method
            (``DBCEWeightMap``) is handed the check, and makes it from the label range it finds anyway.
        """
        super().__init__()
        if max_label is not None and hasattr(map_function, "with_max_label"):
            map_function, max_label = map_function.with_max_label(max_label), None
        self.map_function = PicklableByFile(map_function)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.continuous = continuous
        self.max_label = max_label

    def apply(self, data_dict: dict, **params: object) -> dict:
        segmentation = data_dict["segmentation"]
        per_scale = isinstance(segmentation, (list, tuple))
        full_resolution = segmentation[0] if per_scale else segmentation
        labels = full_resolution.numpy()
        spatial = labels.shape[1:]
        if labels.shape[0] == 1:
            labels = labels[0]
            if self.max_label is not None and labels.size:
                check_dataset_labels(int(labels.max()), self.max_label)
        spacing = self.spacing if self.spacing is not None else (1.0,) * len(spatial)
        computed = np.asarray(self.map_function(labels, spacing), dtype=np.float32)
        if computed.shape == spatial:
            computed = computed[None]
        if computed.ndim != len(spatial) + 1 or computed.shape[1:] != spatial:
            raise ValueError(f"the voxel map function returned shape {computed.shape} for a patch of shape {spatial}: "
                             f"expected {spatial} or (K, {', '.join(map(str, spatial))})")
        if not per_scale:
            data_dict[VOXEL_MAP_KEY] = torch.from_numpy(computed)
        elif self.continuous:
            data_dict[VOXEL_MAP_KEY] = averaged_scales(computed, [s.shape[1:] for s in segmentation])
        else:
            data_dict[VOXEL_MAP_KEY] = [torch.from_numpy(sample_like_segmentation(computed, s.shape[1:]))
                                        for s in segmentation]
        return data_dict


class DBCEWeightMapTransform(VoxelMapTransform):
    """Adds ``data_dict['voxel_map']``: the DBCE weight map of the (augmented) segmentation, (1, X, Y[, Z]) float32.

    A ``VoxelMapTransform`` with ``DBCEWeightMap``: place it last, after spatial augmentation,
    ``RemoveLabelTansform`` and, with deep supervision, ``DownsampleSegForDSTransform``. The map is computed
    once from the full-resolution segmentation; when ``segmentation`` is a list (one tensor per
    deep-supervision scale, full resolution first) ``voxel_map`` is a list of maps sampled to the same shapes
    exactly as nnU-Net samples the segmentation.

    Example (the 4x4 square of ``dbce_weight_map``'s example, with a half-resolution deep-supervision scale;
    the square and its 3-pixel band weigh 4096 / (2 x 80) at every scale)::

        >>> segmentation = torch.zeros(1, 64, 64)
        >>> segmentation[0, 30:34, 30:34] = 1
        >>> transform = DBCEWeightMapTransform(dilation_radius=3)
        >>> sample = transform(image=torch.zeros(1, 64, 64), segmentation=[segmentation, segmentation[:, 1::2, 1::2]])
        >>> [(tuple(m.shape), round(float(m.max()), 2)) for m in sample["voxel_map"]]
        [((1, 64, 64), 25.6), ((1, 32, 32), 25.6)]
    """

    def __init__(self, dilation_radius: float, spacing: Sequence[float] | None = None,
                 ignore_label: int | None = None, max_label: int | None = None):
        """
        :param dilation_radius: R in voxels of the finest axis.
        :param spacing: voxel spacing per spatial axis; None for isotropic.
        :param ignore_label: label left out of the weighting (weight 0).
        :param max_label: the largest label the dataset defines (ignore label included); a larger one in a
            patch is an error. None: not checked.
        """
        self.dilation_radius = check_radius(dilation_radius)
        super().__init__(DBCEWeightMap(self.dilation_radius, ignore_label), spacing, continuous=False,
                         max_label=max_label)
