"""Label maps as the per-voxel map functions receive them: validation, label ranges, bounding boxes, and the
physical scale of each axis. numpy / OpenCV / scipy only."""
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
from scipy import ndimage


def axis_scale(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    """Per-axis voxel size in units of the finest axis, ``spacing / min(spacing)``; ones if isotropic.
    Read-only (shared between calls with the same spacing)."""
    if spacing is None:
        return scale_of_spacing(None, (ndim,), ndim)
    if type(spacing) is tuple and all(type(size) is float for size in spacing):  # as the transforms pass it
        return scale_of_spacing(spacing, (len(spacing),), ndim)
    sizes = np.asarray(spacing, dtype=np.float64)
    return scale_of_spacing(tuple(sizes.ravel().tolist()), sizes.shape, ndim)


@lru_cache(maxsize=64)
def scale_of_spacing(values: tuple | None, shape: tuple, ndim: int) -> np.ndarray:
    """``axis_scale`` of a spacing given as its values (a flat tuple of floats) and its array shape, hashable for
    the cache (the transform asks once per sample)."""
    sizes = np.ones(ndim) if values is None else np.asarray(values, dtype=np.float64).reshape(shape)
    if sizes.shape != (ndim,) or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"spacing must give one positive, finite value per axis of the {ndim}D label map, "
                         f"got {sizes.tolist()}")
    scale = sizes / sizes.min()
    scale.setflags(write=False)
    return scale


# dtypes cv2.minMaxLoc reads (one SIMD pass for both extremes, ~2x numpy's min and max)
MIN_MAX_LOC_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32,
                                                     np.float64))


def label_range(label_map: np.ndarray) -> tuple[int, int]:
    """Smallest and largest label of a non-empty 2D or 3D integer map, in one pass."""
    rows_of_an_image = label_map.ndim == 2 and label_map.strides[1] == label_map.itemsize  # e.g. a cropped patch
    if label_map.dtype in MIN_MAX_LOC_DTYPES and (label_map.flags.c_contiguous or rows_of_an_image):
        smallest, largest, _, _ = cv2.minMaxLoc(label_map.reshape(label_map.shape[0], -1))
        return int(smallest), int(largest)
    return int(label_map.min()), int(label_map.max())


def as_label_map(label_map: np.ndarray, ignore_label: int | None = None) -> np.ndarray:
    """Validate a 2D/3D map of non-negative integer labels (float maps must hold whole numbers)."""
    return label_map_and_max(label_map, ignore_label)[0]


def integer_label_map(label_map: np.ndarray, ignore_label: int | None = None) -> np.ndarray:
    """The checks of ``as_label_map`` that need no pass over the labels' range: 2D or 3D, integer labels (bool maps
    viewed as uint8, float maps of whole numbers converted), a positive ignore label."""
    label_map = np.asarray(label_map)
    if label_map.ndim not in (2, 3):
        raise ValueError(f"label_map must be a 2D or 3D array of labels with no channel axis, "
                         f"got shape {label_map.shape}")
    if ignore_label is not None and ignore_label <= 0:
        raise ValueError(f"ignore_label must be > 0 (0 is the background), got {ignore_label}")
    kind = label_map.dtype.kind  # (not np.issubdtype: a tenth of its time, and the maps' fixed costs count)
    if kind == "b":
        return label_map.view(np.uint8)
    if kind not in "iu":
        if kind != "f":
            raise TypeError(f"label_map must hold integer labels, got dtype {label_map.dtype}")
        bad = ~np.isfinite(label_map) | (label_map != np.round(label_map))
        if bad.any():
            raise ValueError(f"label_map has non-integer values, e.g. {label_map[bad].flat[0]}: "
                             f"expected integer class labels")
        label_map = label_map.astype(np.int64)
    return label_map


def checked_largest(smallest: int, largest: int) -> int:
    """``largest``, the largest label of a map whose smallest is ``smallest``; ValueError for negative labels."""
    if smallest < 0:
        raise ValueError(f"label_map has negative labels (min {smallest}): expected labels >= 0")
    return largest


def largest_label(label_map: np.ndarray) -> int:
    """The largest label of a map ``integer_label_map`` returned (0 for an empty map); ValueError for negative
    labels."""
    return checked_largest(*label_range(label_map)) if label_map.size else 0


def label_map_and_max(label_map: np.ndarray, ignore_label: int | None = None) -> tuple[np.ndarray, int]:
    """``as_label_map`` and the largest label (0 for an empty map)."""
    label_map = integer_label_map(label_map, ignore_label)
    return label_map, largest_label(label_map)


def check_dataset_labels(largest: int, max_label: int | None) -> None:
    """Raise ValueError when a segmentation's ``largest`` label is beyond ``max_label``, the largest the dataset
    defines (ignore label included); None: not checked."""
    if max_label is not None and largest > max_label:
        raise ValueError(f"the segmentation holds label {largest}, but the dataset's labels go up to {max_label}")


# Up to this many labels, one bounding box per label (a comparison and OpenCV's boundingRect) is faster than
# scipy's find_objects, whose single pass costs about as much as ten labels' (measured on 256^2, 512^2, 128^3).
PER_LABEL_MAX_LABELS = 10


def mask_box(mask: np.ndarray) -> tuple | None:
    """Bounding box (a tuple of slices) of the True voxels of a C-contiguous 2D or 3D bool mask; None if empty.

    OpenCV's boundingRect on the mask as an image; in 3D first on the mask seen as (X, Y * Z) for the
    extent along X, then on the OR of those slices for Y and Z."""
    image = mask.view(np.uint8)
    if mask.ndim == 3:
        _, first, _, count = cv2.boundingRect(image.reshape(mask.shape[0], -1))
        if count == 0:
            return None
        rows = slice(first, first + count)
        image = np.bitwise_or.reduce(image[rows], axis=0)
    x, y, width, height = cv2.boundingRect(image)
    if width == 0:
        return None
    box = (slice(y, y + height), slice(x, x + width))
    return (rows, *box) if mask.ndim == 3 else box


def label_boxes(label_map: np.ndarray, max_label: int | None = None) -> dict:
    """Bounding box (a tuple of slices) of every label > 0 present in ``label_map``; ``max_label``: its largest
    label, when known."""
    if max_label is None:
        max_label = int(label_map.max()) if label_map.size else 0
    if max_label > PER_LABEL_MAX_LABELS:
        return {label: box for label, box in enumerate(ndimage.find_objects(label_map), start=1) if box is not None}
    boxes = {label: mask_box(label_map == label) for label in range(1, max_label + 1)}
    return {label: box for label, box in boxes.items() if box is not None}


def grown_box(box: tuple, reach: np.ndarray, shape: tuple) -> tuple:
    """The bounding box ``box`` (tuple of slices) grown by ``reach[a]`` voxels per axis, clipped to ``shape``."""
    return tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, r, n in zip(box, reach, shape))
