"""DBCE weight maps, the per-voxel map of dilated balanced cross entropy (docs/losses.md). numpy / OpenCV / scipy
/ edt only, no torch, no nnU-Net.

A foreground class ``c`` present in the patch is dilated with a ball of radius ``R`` (voxels of the
finest axis; on anisotropic grids a ball in physical space) into ``D_c``. With ``N`` the number of
non-ignored voxels and ``C`` the number of non-empty regions among ``D_1..D_K`` and the remaining
background ``B`` (voxels outside every ``D_c``)::

    w_c = N / (C * |D_c|)        w_0 = N / (C * |B|)

A voxel of class ``c`` gets ``w_c``; a background voxel inside one or more ``D_c`` (the band around a
structure) gets the largest of those ``w_c``; a background voxel in ``B`` gets ``w_0``; ignored voxels
get 0. All areas count non-ignored voxels only. ``R = 0`` gives plain balanced CE weights.
"""
from collections.abc import Sequence

import numpy as np

from nnunetv2_dbce.voxel_maps.dbce_2d import COMPILED_DTYPES, compiled_weight_map, row_label_ranges
from nnunetv2_dbce.voxel_maps.dilation import BALL_TOLERANCE, check_radius, dilate, packed_ball
from nnunetv2_dbce.voxel_maps.labels import (
    PER_LABEL_MAX_LABELS,
    axis_scale,
    check_dataset_labels,
    checked_largest,
    grown_box,
    integer_label_map,
    label_boxes,
    largest_label,
)


def boxes_overlap(box: tuple, other: tuple) -> bool:
    """Whether two boxes (tuples of slices with start and stop) share a voxel."""
    return all(a.start < b.stop and b.start < a.stop for a, b in zip(box, other))


def banded_area(bands: list) -> int:
    """Voxels in at least one band, for bands given as (grown box, band mask in it): counted in the box around all
    of them."""
    if all(not boxes_overlap(a, b) for i, (a, _) in enumerate(bands) for b, _ in bands[i + 1:]):
        return sum(int(np.count_nonzero(band)) for _, band in bands)
    around = tuple(slice(min(box[a].start for box, _ in bands), max(box[a].stop for box, _ in bands))
                   for a in range(len(bands[0][0])))
    in_some_band = np.zeros(tuple(s.stop - s.start for s in around), dtype=bool)
    for box, band in bands:
        in_some_band[tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, around))] |= band
    return int(np.count_nonzero(in_some_band))


def dbce_weight_map(label_map: np.ndarray, radius: float, spacing: Sequence[float] | None = None,
                    ignore_label: int | None = None, max_label: int | None = None) -> np.ndarray:
    """DBCE weight map of one patch.

    All work beyond two cheap passes (bounding boxes, the band count) happens inside each class's
    bounding box grown by the radius: voxels outside every box are background outside every band. 2D maps of
    nnU-Net's label dtypes run compiled (``dbce_2d``: the label range of each row, then the whole map in one call),
    the rest in numpy and OpenCV (``weight_map_in_boxes``): the same weights, bit for bit.

    :param label_map: integer labels, shape (X, Y) or (X, Y, Z), no channel axis; labels >= 0.
    :param radius: dilation radius R in voxels of the finest axis (>= 0; 0 gives balanced CE weights).
    :param spacing: voxel spacing per axis (any unit); None means isotropic.
    :param ignore_label: label (> 0) whose voxels are left out of every count and get weight 0.
    :param max_label: the largest label the dataset defines (ignore label included), checked against the label
        range the map finds anyway; None: not checked.
    :return: float32 weights, same shape as ``label_map``.

    Raises:
        ValueError, TypeError: a radius that is negative, NaN, infinite or not a number; a label map that is not
            2D or 3D integer labels, or holds a label beyond ``max_label``; a spacing that is not one positive value
            per axis.

    Example (a 4x4 square: it and its 3-pixel band, 80 pixels in all, share one weight, 4096 / (2 x 80))::

        >>> label_map = np.zeros((64, 64), np.int16)
        >>> label_map[30:34, 30:34] = 1
        >>> weights = dbce_weight_map(label_map, radius=3)
        >>> [round(float(w), 2) for w in np.unique(weights)], int((weights > 1).sum())
        ([0.51, 25.6], 80)

    S. M. Hosseini, M. Soleymani Baghshah, *Dilated Balanced Cross Entropy Loss for Medical Image
    Segmentation*, arXiv:2412.06045, 2024.
    """
    label_map = integer_label_map(label_map, ignore_label)
    radius = check_radius(radius)
    scale = axis_scale(spacing, label_map.ndim)
    if label_map.ndim == 2 and label_map.dtype in COMPILED_DTYPES and label_map.size:
        label_map = np.ascontiguousarray(label_map)
        row_smallest, row_largest, smallest, largest, foreground_columns = row_label_ranges(label_map)
        largest = checked_largest(smallest, largest)
        check_dataset_labels(largest, max_label)
        if largest <= PER_LABEL_MAX_LABELS:
            ladder, disc_rows, _ = packed_ball(radius, tuple(scale.tolist()))
            return compiled_weight_map(label_map, largest, ladder, disc_rows,
                                       -1 if ignore_label is None else int(ignore_label), row_smallest, row_largest,
                                       foreground_columns)
    else:
        largest = largest_label(label_map)
        check_dataset_labels(largest, max_label)
    return weight_map_in_boxes(label_map, largest, radius, scale, ignore_label)


def weight_map_in_boxes(label_map: np.ndarray, max_label: int, radius: float, scale: np.ndarray,
                        ignore_label: int | None) -> np.ndarray:
    """``dbce_weight_map`` of a validated 2D or 3D ``label_map`` (largest label ``max_label``, ``scale`` from
    ``axis_scale``) with numpy and OpenCV calls: every 3D map, and 2D maps ``compiled_weight_map`` does not take (more
    than ``PER_LABEL_MAX_LABELS`` labels, other label dtypes)."""
    boxes = label_boxes(label_map, max_label)
    ignore_box = boxes.pop(ignore_label, None) if ignore_label is not None else None
    ignored = None if ignore_box is None else label_map[ignore_box] == ignore_label
    num_voxels = label_map.size - (0 if ignored is None else int(np.count_nonzero(ignored)))
    if num_voxels == 0:
        return np.zeros(label_map.shape, dtype=np.float32)

    reach = np.floor(radius / scale * (1 + BALL_TOLERANCE)).astype(int)
    classes = {}  # label -> (grown box, class mask in it, dilated mask in it)
    for label, box in boxes.items():
        grown = grown_box(box, reach, label_map.shape)
        crop = label_map[grown]
        is_label = crop == label
        band = dilate(is_label, radius, scale)
        if ignored is not None:
            band &= crop != ignore_label
        classes[label] = (grown, is_label, band)

    background_area = num_voxels - banded_area([(grown, band) for grown, _, band in classes.values()])
    num_regions = len(classes) + (background_area > 0)
    weights = np.empty(label_map.shape, dtype=np.float32)
    weights.fill(num_voxels / (num_regions * background_area) if background_area > 0 else 0)
    class_weight = {label: np.float32(num_voxels / (num_regions * np.count_nonzero(band)))
                    for label, (_, _, band) in classes.items()}
    ascending = sorted(classes, key=class_weight.__getitem__)
    for label in ascending:  # a voxel in several bands: the last, largest weight stays
        grown, _, band = classes[label]
        np.copyto(weights[grown], class_weight[label], where=band)
    for label in ascending[:-1]:  # class voxels in a band of larger weight; the last class's voxels already have it
        grown, is_label, _ = classes[label]
        np.copyto(weights[grown], class_weight[label], where=is_label)
    if ignored is not None:
        np.copyto(weights[ignore_box], 0, where=ignored)
    return weights


class DBCEWeightMap:
    """DBCE weight maps with a fixed radius, as a picklable map function ``f(labels, spacing)`` for
    ``VoxelMapTransform``.

    ``labels`` is a label map (X, Y[, Z]) -> (X, Y[, Z]) weights, or, for region-based training, nnU-Net's
    (R, X, Y[, Z]) region masks -> (R, X, Y[, Z]): each region channel weighted as a binary problem (the region
    against the rest, dilated and balanced within that channel). With ``ignore_label`` set, the last region
    channel is nnU-Net's ignore mask: its voxels are left out of every region's counts and weigh 0.
    """

    def __init__(self, radius: float, ignore_label: int | None = None, max_label: int | None = None):
        """``max_label``: the largest label the dataset defines (ignore label included); a label map with a larger
        one is an error. None: not checked."""
        self.radius = check_radius(radius)
        self.ignore_label = ignore_label
        self.max_label = max_label

    def with_max_label(self, max_label: int) -> "DBCEWeightMap":
        """The same maps, checking the dataset's largest label from the label range they find anyway: how
        ``VoxelMapTransform`` hands its check over, saving a pass over the labels per sample."""
        return DBCEWeightMap(self.radius, self.ignore_label, max_label)

    def __call__(self, labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        if labels.ndim == len(spacing):
            return dbce_weight_map(labels, self.radius, spacing, self.ignore_label, self.max_label)
        return region_dbce_weight_maps(labels, self.radius, spacing, self.ignore_label is not None)


def region_dbce_weight_maps(regions: np.ndarray, radius: float, spacing: Sequence[float] | None = None,
                            ignore_channel: bool = False) -> np.ndarray:
    """DBCE weights of each region channel of (R, X, Y[, Z]) binary masks, as a binary label map of its own.

    :param ignore_channel: the last channel marks ignored voxels (nnU-Net's layout with an ignore label);
        it gets no map, and its voxels weigh 0 in every region.
    :return: float32 (R, X, Y[, Z]), R without the ignore channel.
    """
    regions = np.asarray(regions)
    masks = regions[:-1] if ignore_channel else regions
    ignored = regions[-1].astype(bool) if ignore_channel else None
    weights = np.empty(masks.shape, np.float32)
    for channel, mask in enumerate(masks):
        binary = mask.astype(np.uint8)
        if ignored is not None:
            binary[ignored] = 2
        weights[channel] = dbce_weight_map(binary, radius, spacing, 2 if ignored is not None else None)
    return weights
