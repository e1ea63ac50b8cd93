"""Skeleton Recall's per-voxel map, tubed skeletons, as a picklable map function ``f(labels, spacing)`` for
``VoxelMapTransform``. numpy / scipy / scikit-image.
"""
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from nnunetv2_dbce.voxel_maps.labels import grown_box, mask_box

TUBE_RADIUS = 2  # Skeleton Recall's official code: two binary dilations with the cross (face-connected) element


def tubed_skeletons(label_map: np.ndarray, classes: Sequence[int] | None, tube_radius: int = TUBE_RADIUS) -> np.ndarray:
    """Skeleton Recall's map: per class, the skeleton of its mask (``skimage.morphology.skeletonize``, 2D or 3D)
    "tubed" by ``tube_radius`` dilations with the face-connected element and kept inside the class's mask; float32
    (len(classes), X, Y[, Z]) of 0 and 1. ``label_map`` (X, Y[, Z]) holds labels; region masks (R, X, Y[, Z]) are
    given with ``classes=None`` (one skeleton per region channel). An absent class gets zeros.

    Kirchhoff et al.'s code skeletonises the union of the classes and labels the tube with the class below it;
    per class, as here, two touching classes each keep a skeleton of their own.

    Example (a bar three voxels thick: a thin skeleton, thickened by the tube, always inside the bar)::

        >>> bar = np.zeros((7, 9), np.int16)
        >>> bar[2:5, 1:8] = 1
        >>> thin, tubed = (tubed_skeletons(bar, [1], tube_radius=r)[0] for r in (0, 2))
        >>> int(thin.sum()) < int(tubed.sum()) <= int(bar.sum()), bool((tubed <= bar).all())
        (True, True)
    """
    from skimage.morphology import skeletonize
    masks = [label_map == c for c in classes] if classes is not None else [m > 0 for m in label_map]
    shape = masks[0].shape if masks else label_map.shape
    cross = ndimage.generate_binary_structure(len(shape), 1)
    maps = np.zeros((len(masks), *shape), np.float32)
    for index, mask in enumerate(masks):
        box = mask_box(np.ascontiguousarray(mask))
        if box is None:
            continue
        grown = grown_box(box, np.ones(len(shape), int), shape)
        skeleton = skeletonize(mask[grown])
        if tube_radius:
            skeleton = ndimage.binary_dilation(skeleton, cross, iterations=tube_radius)
        maps[index][grown] = skeleton & mask[grown]
    return maps


class TubedSkeletons:
    """``tubed_skeletons`` of fixed classes (None: region masks), as a map function ``f(labels, spacing)``."""

    def __init__(self, classes: Sequence[int] | None, tube_radius: int = TUBE_RADIUS):
        self.classes = None if classes is None else [int(c) for c in classes]
        self.tube_radius = tube_radius

    def __call__(self, labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        return tubed_skeletons(labels, self.classes, self.tube_radius)
