"""Distance-based per-voxel maps for classic losses, as picklable map functions ``f(labels, spacing)`` for
``VoxelMapTransform``: signed distance maps (boundary loss) and U-Net border weights. numpy / scipy, and the compiled
distances of ``squared_distance``.
"""
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from nnunetv2_dbce.voxel_maps.dbce import dbce_weight_map
from nnunetv2_dbce.voxel_maps.labels import as_label_map, axis_scale, grown_box, mask_box
from nnunetv2_dbce.voxel_maps.squared_distance import squared_distances


def signed_distance_maps(label_map: np.ndarray, num_classes: int, spacing: Sequence[float]) -> np.ndarray:
    """Signed distance to each foreground class's boundary, in the units of ``spacing`` (mm), float32
    (num_classes - 1, X, Y[, Z]).

    Kervadec et al.'s convention (``one_hot2dist`` of LIVIAETS/boundary-loss, MONAI's ``BoundaryLoss``),
    in physical units: outside class ``c``, the distance to its nearest voxel; inside, minus (the distance to
    the nearest voxel outside it, less one voxel of the finest axis), so the class's own border voxels
    get 0. A class absent from the patch, or filling it, gets zeros (no boundary).

    Example (a run of seven voxels of class 1 in a row of nine)::

        >>> label_map = np.zeros((1, 9), np.int16)
        >>> label_map[0, 1:8] = 1
        >>> signed_distance_maps(label_map, num_classes=2, spacing=(1.0, 1.0))[0, 0].tolist()
        [1.0, 0.0, -1.0, -2.0, -3.0, -2.0, -1.0, 0.0, 1.0]
    """
    label_map = as_label_map(label_map)
    spacing = tuple(float(s) for s in spacing)
    maps = np.empty((num_classes - 1, *label_map.shape), np.float32)
    for c in range(1, num_classes):
        inside = label_map == c
        box = mask_box(inside)
        if box is None or (box == tuple(slice(0, n) for n in label_map.shape) and inside.all()):
            maps[c - 1] = 0
            continue
        squared_distances(inside, spacing, box, root=True, out=maps[c - 1])
        # the nearest voxel outside the class is within its bounding box grown by one voxel (that layer is
        # outside it), so the inside distances need only that box
        grown = grown_box(box, np.ones(label_map.ndim, int), label_map.shape)
        inside_box = inside[grown]
        inside_distance = squared_distances(~inside_box, spacing, root=True, dense=True)
        np.subtract(min(spacing), inside_distance, out=maps[c - 1][grown], where=inside_box)
    return maps


class SignedDistanceMaps:
    """``signed_distance_maps`` with a fixed number of classes, as a map function ``f(labels, spacing)``."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        return signed_distance_maps(labels, self.num_classes, spacing)


def unet_border_weights(label_map: np.ndarray, spacing: Sequence[float] | None = None, w0: float = 10.0,
                        sigma: float = 5.0, ignore_label: int | None = None) -> np.ndarray:
    """Ronneberger et al.'s U-Net weight map, float32 of the shape of ``label_map``:
    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))``.

    ``w_c`` balances the class frequencies (the inverse-frequency weights of balanced CE,
    ``dbce_weight_map`` with R = 0); ``d1``, ``d2`` are the distances to the nearest and second-nearest
    object, objects being the connected components (full connectivity) of the foreground (labels > 0 other
    than the ignore label); distances and ``sigma`` in voxels of the finest axis (physical ratios on
    anisotropic grids). With fewer than two objects there is no border term. Each object's distances are
    computed within ``6 sigma`` of it: beyond, the term is below ``w0 * exp(-18)`` (1.5e-8 w0) and left out.
    Ignored voxels weigh 0.

    Raises:
        ValueError, TypeError: a label map that is not 2D or 3D integer labels, or a spacing that is not one positive
            value per axis.

    Example (two 4x4 objects two voxels apart: the background between them weighs most)::

        >>> label_map = np.zeros((6, 12), np.int16)
        >>> label_map[1:5, 1:5] = label_map[1:5, 7:11] = 1
        >>> weights = unet_border_weights(label_map)
        >>> round(float(weights[2, 5]), 2), round(float(weights[2, 0]), 2)  # in the gap; at the far edge
        (9.25, 3.68)

    O. Ronneberger, P. Fischer, T. Brox, *U-Net: Convolutional Networks for Biomedical Image Segmentation*,
    MICCAI 2015 (w0 = 10, sigma = 5 pixels).
    """
    label_map = as_label_map(label_map, ignore_label)
    scale = axis_scale(spacing, label_map.ndim)
    weights = dbce_weight_map(label_map, 0, spacing, ignore_label)
    foreground = label_map > 0
    if ignore_label is not None:
        foreground &= label_map != ignore_label
    objects, count = ndimage.label(foreground, ndimage.generate_binary_structure(label_map.ndim, label_map.ndim))
    if count < 2:
        return weights
    cutoff = 6 * sigma
    nearest = np.full(label_map.shape, np.inf, np.float32)
    second = np.full(label_map.shape, np.inf, np.float32)
    reach = np.ceil(cutoff / scale).astype(int)
    for index, box in enumerate(ndimage.find_objects(objects), start=1):
        grown = grown_box(box, reach, label_map.shape)
        box_in_grown = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))
        distance = squared_distances(objects[grown] == index, tuple(scale), box_in_grown, root=True)
        distance[distance > cutoff] = np.inf
        second[grown] = np.minimum(second[grown], np.maximum(nearest[grown], distance))
        nearest[grown] = np.minimum(nearest[grown], distance)
    border = w0 * np.exp(-np.square(nearest + second) / (2 * sigma ** 2))
    border[weights == 0] = 0  # ignored voxels
    return (weights + border).astype(np.float32)


class UNetBorderWeights:
    """``unet_border_weights`` with fixed settings, as a map function ``f(labels, spacing)``."""

    def __init__(self, w0: float = 10.0, sigma: float = 5.0, ignore_label: int | None = None):
        if not (w0 >= 0 and sigma > 0 and math.isfinite(w0) and math.isfinite(sigma)):
            raise ValueError(f"U-Net border weights need finite w0 >= 0 and sigma > 0, got {w0}, {sigma}")
        self.w0, self.sigma, self.ignore_label = w0, sigma, ignore_label

    def __call__(self, labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        return unet_border_weights(labels, spacing, self.w0, self.sigma, self.ignore_label)
