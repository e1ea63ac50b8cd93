"""DBCE weight maps: DESIGN section 1, steps 1-3. numpy / scipy / edt only, no torch, no nnU-Net.

A foreground class ``c`` present in the patch is dilated with a ball of radius ``R`` (voxels of the
finest axis; on anisotropic grids a ball in physical space) into ``D_c``. With ``N`` the number of
non-ignored voxels and ``C`` the number of non-empty regions among ``D_1..D_K`` and the remaining
background ``B`` (voxels outside every ``D_c``)::

    w_c = N / (C * |D_c|)        w_0 = N / (C * |B|)

A voxel of class ``c`` gets ``w_c``; a background voxel inside one or more ``D_c`` (the band around a
structure) gets the largest of those ``w_c``; a background voxel in ``B`` gets ``w_0``; ignored voxels
get 0. All areas count non-ignored voxels only. ``R = 0`` gives plain balanced CE weights.
"""
from numbers import Real
from typing import Optional, Sequence

import edt
import numpy as np
from scipy import ndimage

# Relative slack on the squared radius: a voxel offset d is inside the ball when
# sum_a (d_a * spacing_a / min(spacing))**2 <= R**2 * (1 + BALL_TOLERANCE). It absorbs float rounding of
# the distance transform so that offsets exactly on the sphere (e.g. (3, 4) for R = 5) are inside.
BALL_TOLERANCE = 1e-5


def check_radius(radius) -> float:
    """Return ``radius`` as a float, or raise for a non-numeric, negative, NaN or infinite radius."""
    if isinstance(radius, bool) or not isinstance(radius, (Real, np.integer, np.floating)):
        raise TypeError(f"dilation radius must be a number of voxels, got {radius!r} ({type(radius).__name__})")
    radius = float(radius)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"dilation radius must be a finite number >= 0 (voxels of the finest axis), got {radius}")
    return radius


def axis_scale(spacing: Optional[Sequence[float]], ndim: int) -> np.ndarray:
    """Per-axis voxel size in units of the finest axis, ``spacing / min(spacing)``; ones if isotropic."""
    if spacing is None:
        return np.ones(ndim)
    spacing = np.asarray(spacing, dtype=np.float64)
    if spacing.shape != (ndim,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing must give one positive, finite value per axis of the {ndim}D label map, "
                         f"got {spacing.tolist()}")
    return spacing / spacing.min()


def as_label_map(label_map, ignore_label: Optional[int] = None) -> np.ndarray:
    """Validate a 2D/3D map of non-negative integer labels (float maps must hold whole numbers)."""
    label_map = np.asarray(label_map)
    if label_map.ndim not in (2, 3):
        raise ValueError(f"label_map must be a 2D or 3D array of labels with no channel axis, "
                         f"got shape {label_map.shape}")
    if label_map.dtype == bool:
        return label_map.astype(np.uint8)
    if not np.issubdtype(label_map.dtype, np.integer):
        if not np.issubdtype(label_map.dtype, np.floating):
            raise TypeError(f"label_map must hold integer labels, got dtype {label_map.dtype}")
        bad = ~np.isfinite(label_map) | (label_map != np.round(label_map))
        if bad.any():
            raise ValueError(f"label_map has non-integer values, e.g. {label_map[bad].flat[0]}: "
                             f"expected integer class labels")
        label_map = label_map.astype(np.int64)
    if label_map.size and label_map.min() < 0:
        raise ValueError(f"label_map has negative labels (min {label_map.min()}): expected labels >= 0")
    if ignore_label is not None and ignore_label < 0:
        raise ValueError(f"ignore_label must be >= 0, got {ignore_label}")
    return label_map


def _grown_box(box: tuple, reach: np.ndarray, shape: tuple) -> tuple:
    """The bounding box ``box`` (tuple of slices) grown by ``reach[a]`` voxels per axis, clipped to ``shape``."""
    return tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, r, n in zip(box, reach, shape))


def dilate_in_box(label_crop: np.ndarray, label: int, radius: float, scale: np.ndarray) -> np.ndarray:
    """Dilation of ``label_crop == label`` by the ball of ``radius``; the crop must hold every voxel in reach.

    Uses an exact Euclidean distance transform (``edt``) to the class instead of a structuring element.
    """
    mask = label_crop == label
    if radius == 0:
        return mask
    squared_distance = edt.edtsq(~mask, anisotropy=tuple(scale), black_border=False, parallel=1)
    return squared_distance <= radius ** 2 * (1 + BALL_TOLERANCE)


def dilated_balanced_weights(label_map, radius, spacing: Optional[Sequence[float]] = None,
                             ignore_label: Optional[int] = None) -> np.ndarray:
    """DBCE weight map of one patch.

    :param label_map: integer labels, shape (X, Y) or (X, Y, Z), no channel axis; labels >= 0.
    :param radius: dilation radius R in voxels of the finest axis (>= 0; 0 gives balanced CE weights).
    :param spacing: voxel spacing per axis (any unit); None means isotropic.
    :param ignore_label: label whose voxels are left out of every count and get weight 0.
    :return: float32 weights, same shape as ``label_map``.
    """
    label_map = as_label_map(label_map, ignore_label)
    radius = check_radius(radius)
    scale = axis_scale(spacing, label_map.ndim)
    weights = np.zeros(label_map.shape, dtype=np.float32)

    counts = np.bincount(label_map.ravel())
    if ignore_label is not None and ignore_label < len(counts):
        counts[ignore_label] = 0
    num_voxels = int(counts.sum())
    if num_voxels == 0:
        return weights
    valid = label_map != ignore_label if ignore_label is not None else None

    reach = np.floor(radius / scale * (1 + BALL_TOLERANCE)).astype(int)
    dilated = {}  # label -> (grown box, dilated mask inside that box)
    in_some_band = np.zeros(label_map.shape, dtype=bool)
    for label, box in enumerate(ndimage.find_objects(label_map), start=1):
        if box is None or label == ignore_label:
            continue
        grown = _grown_box(box, reach, label_map.shape)
        mask = dilate_in_box(label_map[grown], label, radius, scale)
        if valid is not None:
            mask &= valid[grown]
        dilated[label] = (grown, mask)
        in_some_band[grown] |= mask

    background_area = num_voxels - int(np.count_nonzero(in_some_band))
    num_regions = len(dilated) + (background_area > 0)
    class_weight = np.zeros(len(counts), dtype=np.float64)
    if background_area > 0:
        class_weight[0] = num_voxels / (num_regions * background_area)
    band_weight = np.zeros(label_map.shape, dtype=np.float32)
    for label, (grown, mask) in dilated.items():
        class_weight[label] = num_voxels / (num_regions * np.count_nonzero(mask))
        np.maximum(band_weight[grown], np.float32(class_weight[label]) * mask, out=band_weight[grown])

    if ignore_label is not None and ignore_label < len(class_weight):
        class_weight[ignore_label] = 0
    weights[...] = class_weight.astype(np.float32)[label_map]
    background_in_band = (label_map == 0) & in_some_band
    weights[background_in_band] = band_weight[background_in_band]
    return weights
