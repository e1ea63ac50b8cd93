"""Exact squared Euclidean distances to the voxels of a mask, compiled (numba): Felzenszwalb and Huttenlocher's lower
envelope of parabolas, one axis after the other, over only the lines that cross the mask's bounding box. Every other
line holds no voxel of the mask, or only infinite distances after the earlier axes, so a structure small for its
patch costs a scan of its box's columns, one envelope per line through the box, and a pass over the patch for the
last axis, where the ``edt`` library runs every line of every axis (3-5x its time for structures in a 512^2 patch,
2-5x for organ-sized ones in 128^3, level where the box fills the patch).

Compiled on first use (~1 s) and cached next to this module (numba's ``cache=True``), like ``dbce_2d``.

P. F. Felzenszwalb, D. P. Huttenlocher, *Distance Transforms of Sampled Functions*, Theory of Computing 8 (2012).
"""
from collections.abc import Sequence

import numpy as np
from numba import njit

from nnunetv2_dbce.voxel_maps.labels import mask_box


@njit(cache=True, boundscheck=False)
def lower_envelope(values: np.ndarray, first: int, last: int, weight: float, root: bool, sites: np.ndarray,
                   offsets: np.ndarray, site_values: np.ndarray, bounds: np.ndarray) -> None:
    """In place, ``values[q] = min_p weight (q - p)^2 + values[p]`` over the sites p in first..last (the other entries
    are infinite, so left out), infinite everywhere when every site is; its square root when ``root``. ``sites``,
    ``offsets``, ``site_values`` (one entry per value) and ``bounds`` (one more) are scratch space."""
    count = -1
    for q in range(first, last + 1):
        value = values[q]
        if value == np.inf:
            continue
        offset = value + weight * q * q
        if count < 0:
            count = 0
        else:
            while True:  # drop the parabolas this one lies below from where they started to be the lowest
                numerator = offset - offsets[count]
                denominator = 2.0 * weight * (q - sites[count])
                if count > 0 and numerator <= bounds[count] * denominator:
                    count -= 1
                else:
                    break
            bounds[count + 1] = numerator / denominator
            count += 1
        sites[count] = q
        offsets[count] = offset
        site_values[count] = value
    if count < 0:
        values[:] = np.inf
        return
    bounds[count + 1] = np.inf
    lowest = 0
    end = bounds[1]
    for q in range(values.size):
        while end < q:
            lowest += 1
            end = bounds[lowest + 1]
        step = q - sites[lowest]
        squared = weight * step * step + site_values[lowest]
        values[q] = np.sqrt(np.float32(squared)) if root else squared


@njit(cache=True, boundscheck=False)
def off_mask_envelopes(values: np.ndarray, on_mask: np.ndarray, first: int, last: int, weight: float, root: bool,
                       sites: np.ndarray, offsets: np.ndarray, site_values: np.ndarray, bounds: np.ndarray) -> None:
    """``lower_envelope`` of a whole line (sites in ``first``..``last``), for a line whose voxels on the mask
    (``on_mask``, bool, all within ``first``..``last``) are at distance 0: one envelope per stretch of voxels off the
    mask, over the stretch and its neighbour on the mask at each end. Exact: a parabola beyond a neighbour at distance
    0 lies above that neighbour's on the whole stretch, and the whole line's envelope keeps the same parabolas in the
    stretch, so the values are the same bit for bit. For dense masks, whose stretches are short: their cost instead
    of the line's."""
    size = values.size
    x = 0
    while x < size:
        if on_mask[x]:
            x += 1
            continue
        start = max(x - 1, 0)
        while x < size and not on_mask[x]:
            x += 1
        stop = min(x, size - 1)
        lower_envelope(values[start:stop + 1], max(first, start) - start, min(last, stop) - start, weight, root, sites,
                       offsets, site_values, bounds)


@njit(cache=True, boundscheck=False)
def squared_distances_in_box(mask: np.ndarray, first: np.ndarray, last: np.ndarray, weights: np.ndarray, root: bool,
                             dense: bool, out: np.ndarray) -> None:
    """Into ``out`` (float32, C-contiguous, the shape of ``mask``): the squared distance (distance when ``root``) of
    every voxel of a 3D ``mask`` to its nearest True voxel (inf if none), all True voxels lying in the inclusive box
    ``first``..``last`` (int64 (3,)); ``weights``: squared voxel size per axis. Axis 0 by two scans of the box's
    columns, axes 1 and 2 by lower envelopes: with ``dense``, only over the stretches off the mask
    (``off_mask_envelopes``)."""
    n0, n1, n2 = mask.shape
    longest = max(n0, n1, n2)
    sites = np.empty(longest, np.int64)
    offsets = np.empty(longest, np.float64)
    site_values = np.empty(longest, np.float64)
    bounds = np.empty(longest + 1, np.float64)
    start, stop = first[2], last[2] + 1
    width = stop - start
    none = n0 + 1  # steps to the nearest True voxel along axis 0 when the column holds none
    steps = np.empty(width, np.int32)
    for j in range(first[1], last[1] + 1):
        steps[:] = none
        for i in range(n0):
            in_mask = mask[i, j, start:stop]
            column_steps = out[i, j, start:stop]
            for k in range(width):
                step = 0 if in_mask[k] else steps[k] + 1
                steps[k] = step
                column_steps[k] = step
        steps[:] = none
        for i in range(n0 - 1, -1, -1):
            column_steps = out[i, j, start:stop]
            for k in range(width):
                step = min(np.int32(column_steps[k]), steps[k] + 1)
                steps[k] = step
                column_steps[k] = np.float32(weights[0] * step * step) if step < none else np.inf
    if n1 > 1:
        for i in range(n0):
            for k in range(start, stop):
                if dense:
                    off_mask_envelopes(out[i, :, k], mask[i, :, k], first[1], last[1], weights[1], False, sites,
                                       offsets, site_values, bounds)
                else:
                    lower_envelope(out[i, :, k], first[1], last[1], weights[1], False, sites, offsets, site_values,
                                   bounds)
    for i in range(n0):
        for j in range(n1):
            if dense:
                off_mask_envelopes(out[i, j], mask[i, j], start, stop - 1, weights[2], root, sites, offsets,
                                   site_values, bounds)
            else:
                lower_envelope(out[i, j], start, stop - 1, weights[2], root, sites, offsets, site_values, bounds)


def squared_distances(mask: np.ndarray, spacing: Sequence[float], box: tuple | None = None, root: bool = False,
                      out: np.ndarray | None = None, dense: bool = False) -> np.ndarray:
    """Squared Euclidean distance of every voxel of a 2D or 3D bool ``mask`` to its nearest True voxel, in the units
    of ``spacing`` (one per axis) squared, float32 of the mask's shape: 0 on the mask, inf everywhere if it is empty.
    ``box``: the mask's bounding box (a tuple of slices) when known; ``root``: the distances instead (the square root
    taken in the last pass); ``out``: a C-contiguous float32 array of the mask's shape to write them into (returned);
    ``dense``: the mask holds most voxels (a structure's complement, for the distances inside it), so the envelopes run
    only over the stretches off it, to the same values. Voxels beyond the mask's edges are not True.

    Example (a voxel of the mask at the end of a row, spacing 2 along it)::

        >>> squared_distances(np.array([[False, False, True]]), (1.0, 2.0)).tolist()
        [[16.0, 4.0, 0.0]]
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.ndim not in (2, 3) or len(spacing) != mask.ndim:
        raise ValueError(f"squared distances need a 2D or 3D mask and one spacing per axis, got a mask of shape "
                         f"{mask.shape} and spacing {tuple(spacing)}")
    if out is None:
        out = np.empty(mask.shape, np.float32)
    elif out.shape != mask.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"squared distances of a mask of shape {mask.shape} need a C-contiguous float32 out of that "
                         f"shape, got {out.dtype} {out.shape}")
    if box is None:
        box = mask_box(mask)
    if box is None:
        out.fill(np.inf)
        return out
    weights = np.square(np.asarray(spacing, np.float64))
    if mask.ndim == 2:  # as (X, 1, Y): the scans run along X over contiguous rows, the envelopes along Y
        box = (box[0], slice(0, 1), box[1])
        weights = np.array([weights[0], 1.0, weights[1]])
    first = np.array([s.start for s in box], np.int64)
    last = np.array([s.stop - 1 for s in box], np.int64)
    as_3d = (mask.shape[0], -1, mask.shape[-1])
    squared_distances_in_box(mask.reshape(as_3d), first, last, weights, root, dense, out.reshape(as_3d))
    return out
