"""Structure sizes of a preprocessed dataset, and the dilation radius DBCE derives from them.

A *structure* is a connected component of one class (a label, or a region for region-based datasets) as the
configuration sees it: in the configuration's preprocessed label maps, slice by slice for a 2D configuration
(each training sample is a slice), in 3D otherwise. Its size is its *equivalent radius*: the radius of the
disk (2D) or ball (3D) of the same physical area or volume, in voxels of the finest axis, the unit of the
dilation radius.
"""
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from nnunetv2_dbce.voxel_maps.labels import axis_scale

# The derived radius is this fraction of the typical structure's equivalent radius (see derived_radius).
RADIUS_PER_STRUCTURE_RADIUS = 0.5
# Cases read to measure a dataset: evenly spaced over the sorted identifiers, all of them for smaller datasets.
MAX_MEASURED_CASES = 100


def equivalent_radii(mask: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Equivalent radius of every connected component (face connectivity) of a 2D or 3D boolean mask.

    ``spacing`` (one value per axis; isotropic if None) makes the disk or ball a physical one; radii are in
    voxels of the finest axis. Returns float64 (number of components,), in no particular order.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be 2D or 3D, got shape {mask.shape}")
    components, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(0)
    voxels = np.bincount(components.ravel(), minlength=count + 1)[1:]
    size = voxels * np.prod(axis_scale(spacing, mask.ndim))
    if mask.ndim == 2:
        return np.sqrt(size / np.pi)
    return np.cbrt(3 * size / (4 * np.pi))


def structure_radii(label_maps: Iterable[np.ndarray], classes: Sequence, spacing: Sequence[float],
                    slices: bool) -> list:
    """Equivalent radii of the structures of each class over ``label_maps``, as the configuration sees them.

    label_maps: iterable of label maps (Z, Y, X) or (Y, X), preprocessed (channel axis removed); a class is a
    label (int) or a region (a sequence of labels: their union). ``spacing``:
    the configuration's spacing, two values when ``slices`` (a 2D configuration: structures are measured in each
    slice along the first axis), three otherwise. Returns one float64 array of radii per class.
    """
    radii: list[list[np.ndarray]] = [[] for _ in classes]
    for label_map in label_maps:
        label_map = np.asarray(label_map)
        planes = label_map.reshape(-1, *label_map.shape[-2:]) if slices else [label_map]
        for plane in planes:
            for cls, cls_radii in zip(classes, radii):
                mask = np.isin(plane, np.atleast_1d(cls))
                if mask.any():
                    cls_radii.append(equivalent_radii(mask, spacing))
    return [np.concatenate(r) if r else np.zeros(0) for r in radii]


def derived_radius(radii_per_class: Sequence[np.ndarray]) -> tuple:
    """The dilation radius for classes with these structure radii, and the typical radius it comes from.

    The typical radius is the median structure radius of the class with the smallest median (the class DBCE
    must not drown in its band); the radius is ``RADIUS_PER_STRUCTURE_RADIUS`` of it, rounded, at least 1.
    Returns ``(radius, typical_radius, index of that class)``. Raises ValueError when no class has a structure.
    """
    medians = [np.median(r) if len(r) else np.inf for r in radii_per_class]
    smallest = int(np.argmin(medians))
    if not np.isfinite(medians[smallest]):
        raise ValueError("no class has any structure in the measured label maps, so no radius can be derived")
    typical = float(medians[smallest])
    return max(1.0, float(np.round(RADIUS_PER_STRUCTURE_RADIUS * typical))), typical, smallest


def measured_identifiers(identifiers: Sequence[str], limit: int = MAX_MEASURED_CASES) -> list:
    """At most ``limit`` identifiers, evenly spaced over the sorted list (all of them if there are fewer)."""
    identifiers = sorted(identifiers)
    if len(identifiers) <= limit:
        return identifiers
    return [identifiers[i] for i in np.linspace(0, len(identifiers) - 1, limit).round().astype(int)]
