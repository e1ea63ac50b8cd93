"""DBCE weight maps of 2D patches in one compiled call (numba): the weights of ``dbce_weight_map``, bit for bit, without
its ~100 numpy and OpenCV calls per patch, whose fixed costs dominate a 2D map where nnU-Net's augmentation runs it
(docs/measurements.md).

Every loop below runs over a contiguous row (or a contiguous piece of one) from index 0, the form LLVM vectorises:
a loop indexed with an offset (``row[x + dx]``) ran ~35x slower. The dilation by the disc is exact and separable: with
``v`` the distance along axis 0 to the nearest voxel of the class in the same column, a voxel is in the dilated area
when, for some column offset ``dx`` of the disc, ``v`` at ``x + dx`` is at most the disc's half-height at ``dx``.

Compiled on first use for each label dtype (~7 s) and cached next to this module (numba's ``cache=True``); the
augmentation workers load the cached code.
"""
from functools import lru_cache

import numpy as np
from numba import njit
from numba.typed import List

from nnunetv2_dbce.voxel_maps.dilation import ball_kernel

# Label dtypes compiled for: nnU-Net's segmentations (int16) and the binary region maps of region_dbce_weight_maps.
COMPILED_DTYPES = (np.dtype(np.int16), np.dtype(np.uint8))
# Distances along axis 0 are counted in uint8 and saturate here; the disc's half-height must stay below.
DISTANCE_CAP = 255


@lru_cache(maxsize=64)
def disc_half_heights(radius: float, scale: tuple) -> np.ndarray | None:
    """The half-height along axis 0 of ``ball_kernel(radius, scale)`` (2D) at each column offset -reach..reach along
    axis 1, int64; -1 where a column holds none of it. None for a disc that may be too tall for the saturating uint8
    distances (a reach along axis 0 of ``DISTANCE_CAP - 1`` voxels or more)."""
    kernel = ball_kernel(radius, scale)
    reach = kernel.shape[0] // 2
    if reach >= DISTANCE_CAP - 1:
        return None
    in_column = kernel.any(axis=0)
    heights = kernel.shape[0] - 1 - np.argmax(kernel[::-1], axis=0) - reach
    return np.where(in_column, heights, -1).astype(np.int64)


@njit(cache=True, boundscheck=False)
def row_label_ranges(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray]:
    """Smallest and largest label of each row of a non-empty 2D ``label_map`` (two arrays (rows,) of its dtype) and of
    the whole map, and which columns hold a label > 0 (uint8 (columns,)): one vectorised pass (half the time of
    OpenCV's ``minMaxLoc`` of the whole map; ``label_boxes`` reads it)."""
    height, width = label_map.shape
    smallest = np.empty(height, label_map.dtype)
    largest = np.empty(height, label_map.dtype)
    foreground_columns = np.zeros(width, np.uint8)
    for y in range(height):
        row = label_map[y]
        low = row[0]
        high = row[0]
        for x in range(width):
            low = min(low, row[x])
            high = max(high, row[x])
        smallest[y] = low
        largest[y] = high
        if high > 0:
            for x in range(width):
                foreground_columns[x] |= np.uint8(row[x] != 0)
    return smallest, largest, int(smallest.min()), int(largest.max()), foreground_columns


@njit(cache=True, boundscheck=False)
def label_boxes(label_map: np.ndarray, max_label: int, row_smallest: np.ndarray, row_largest: np.ndarray,
                foreground_columns: np.ndarray) -> np.ndarray:
    """Inclusive bounding box (first row, last row, first column, last column) of each label 0..max_label, int64
    (max_label + 1, 4); a label not in the map keeps first row = number of rows. From ``row_label_ranges``: a map with
    the one label 1 needs no more pass; otherwise, per label, one vectorised pass over the rows whose ranges hold it,
    OR-ing where it is into a row of columns."""
    height, width = label_map.shape
    boxes = np.empty((max_label + 1, 4), np.int64)
    boxes[:, 0] = height
    boxes[:, 1] = -1
    boxes[:, 2] = width
    boxes[:, 3] = -1
    in_column = np.empty(width, np.uint8)
    for label in range(1, max_label + 1):
        value = label_map.dtype.type(label)
        if max_label == 1:
            in_column[:] = foreground_columns
            for y in range(height):
                if row_largest[y] == value:
                    boxes[label, 0] = min(boxes[label, 0], y)
                    boxes[label, 1] = y
        else:
            in_column[:] = 0
            for y in range(height):
                if row_smallest[y] > value or row_largest[y] < value:
                    continue
                row = label_map[y]
                in_row = np.uint8(0)
                for x in range(width):
                    here = np.uint8(row[x] == value)
                    in_column[x] |= here
                    in_row |= here
                if in_row:
                    boxes[label, 0] = min(boxes[label, 0], y)
                    boxes[label, 1] = y
        for x in range(width):
            if in_column[x]:
                boxes[label, 2] = x
                break
        for x in range(width - 1, -1, -1):
            if in_column[x]:
                boxes[label, 3] = x
                break
    return boxes


@njit(cache=True, boundscheck=False)
def dilated_area(label_map: np.ndarray, label: int, rows: tuple, columns: tuple, half_heights: np.ndarray,
                 ignore_label: int) -> np.ndarray:
    """The area of ``label`` dilated by the disc, within the box ``rows`` x ``columns`` (its bounding box grown by the
    disc's reach, clipped to the map), less ``ignore_label``'s voxels: uint8 (box rows, box columns), 1 inside."""
    first_row, stop_row = rows
    first_column, stop_column = columns
    height = stop_row - first_row
    width = stop_column - first_column
    one = np.uint8(1)
    below_cap = np.uint8(DISTANCE_CAP - 1)
    distance = np.empty((height, width), np.uint8)  # along axis 0 to the nearest voxel of the label, saturating
    labels = label_map[first_row][first_column:stop_column]
    current = distance[0]
    for x in range(width):
        current[x] = np.uint8(0) if labels[x] == label else np.uint8(DISTANCE_CAP)
    for y in range(1, height):
        labels = label_map[first_row + y][first_column:stop_column]
        current = distance[y]
        previous = distance[y - 1]
        for x in range(width):
            current[x] = np.uint8(0) if labels[x] == label else min(previous[x], below_cap) + one
    for y in range(height - 2, -1, -1):
        current = distance[y]
        following = distance[y + 1]
        for x in range(width):
            current[x] = min(current[x], min(following[x], below_cap) + one)
    reach = half_heights.size // 2
    dilated = np.zeros((height, width), np.uint8)
    for y in range(height):
        for k in range(half_heights.size):
            if half_heights[k] < 0:
                continue
            half_height = np.uint8(half_heights[k])
            shift = k - reach
            start = max(0, -shift)
            stop = min(width, width - shift)
            if stop <= start:
                continue
            target = dilated[y][start:stop]
            source = distance[y][start + shift:stop + shift]
            for x in range(target.size):
                target[x] = target[x] | np.uint8(source[x] <= half_height)
        if ignore_label > 0:
            target = dilated[y]
            labels = label_map[first_row + y][first_column:stop_column]
            for x in range(width):
                target[x] = target[x] & np.uint8(labels[x] != ignore_label)
    return dilated


@njit(cache=True, boundscheck=False)
def banded_voxels(classes: List, areas: List) -> int:
    """Voxels in at least one band, for bands given as ``(label, rows, columns, band mask)`` with their ``areas``: the
    areas' sum when no two bands' boxes overlap (as ``dbce.banded_area``), else counted in the box around them all."""
    overlapping = False
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            rows, columns = classes[i][1], classes[i][2]
            other_rows, other_columns = classes[j][1], classes[j][2]
            overlapping |= (rows[0] < other_rows[1] and other_rows[0] < rows[1] and columns[0] < other_columns[1]
                            and other_columns[0] < columns[1])
    if not overlapping:
        total = 0
        for area in areas:
            total += area
        return total
    first_row, stop_row, first_column, stop_column = 1 << 62, 0, 1 << 62, 0
    for _, rows, columns, _ in classes:
        first_row, stop_row = min(first_row, rows[0]), max(stop_row, rows[1])
        first_column, stop_column = min(first_column, columns[0]), max(stop_column, columns[1])
    in_some_band = np.zeros((stop_row - first_row, stop_column - first_column), np.uint8)
    for _, rows, columns, band in classes:
        for y in range(rows[1] - rows[0]):
            row = band[y]
            marked = in_some_band[rows[0] - first_row + y][columns[0] - first_column:columns[1] - first_column]
            for x in range(row.size):
                marked[x] = marked[x] | row[x]
    total = 0
    for y in range(stop_row - first_row):
        marked = in_some_band[y]
        for x in range(marked.size):
            total += marked[x]
    return total


@njit(cache=True, boundscheck=False)
def compiled_weight_map(label_map: np.ndarray, max_label: int, half_heights: np.ndarray, ignore_label: int,
                        row_smallest: np.ndarray, row_largest: np.ndarray,
                        foreground_columns: np.ndarray) -> np.ndarray:
    """``dbce_weight_map`` of a 2D ``label_map`` (labels 0..max_label; ``row_smallest``, ``row_largest`` and
    ``foreground_columns`` from ``row_label_ranges``) for the disc of ``half_heights``; ``ignore_label`` -1 for none.
    float32, the shape of ``label_map``."""
    height, width = label_map.shape
    weights = np.empty((height, width), np.float32)
    boxes = label_boxes(label_map, max_label, row_smallest, row_largest, foreground_columns)
    ignored_voxels = 0
    if 0 < ignore_label <= max_label:
        for y in range(boxes[ignore_label, 0], boxes[ignore_label, 1] + 1):
            labels = label_map[y]
            for x in range(width):
                ignored_voxels += labels[x] == ignore_label
    num_voxels = height * width - ignored_voxels
    if num_voxels == 0:
        weights[:] = 0
        return weights
    reach_y = int(half_heights.max())
    reach_x = half_heights.size // 2
    classes = List()
    areas = List()
    for label in range(1, max_label + 1):
        if label == ignore_label or boxes[label, 1] < 0:
            continue
        rows = (max(boxes[label, 0] - reach_y, 0), min(boxes[label, 1] + 1 + reach_y, height))
        columns = (max(boxes[label, 2] - reach_x, 0), min(boxes[label, 3] + 1 + reach_x, width))
        dilated = dilated_area(label_map, label, rows, columns, half_heights, ignore_label)
        area = 0
        for y in range(rows[1] - rows[0]):
            band = dilated[y]
            for x in range(band.size):
                area += band[x]
        classes.append((label, rows, columns, dilated))
        areas.append(area)
    background_area = num_voxels - banded_voxels(classes, areas)
    num_regions = len(classes) + (1 if background_area > 0 else 0)
    background_weight = np.float32(num_voxels / (num_regions * background_area)) if background_area > 0 \
        else np.float32(0)
    for y in range(height):
        row = weights[y]
        for x in range(width):
            row[x] = background_weight
    class_weights = np.empty(len(classes), np.float32)
    for i in range(len(classes)):
        class_weights[i] = np.float32(num_voxels / (num_regions * areas[i]))
    ascending = np.argsort(class_weights, kind="mergesort")
    for i in ascending:  # a voxel in several bands: the last, largest weight stays
        _, rows, columns, dilated = classes[i]
        weight = class_weights[i]
        for y in range(rows[1] - rows[0]):
            band = dilated[y]
            row = weights[rows[0] + y][columns[0]:columns[1]]
            for x in range(band.size):
                row[x] = weight if band[x] else row[x]
    for i in ascending[:-1]:  # a class voxel in a band of larger weight keeps its own; the last class's have it
        label = classes[i][0]
        weight = class_weights[i]
        for y in range(boxes[label, 0], boxes[label, 1] + 1):
            row = weights[y][boxes[label, 2]:boxes[label, 3] + 1]
            labels = label_map[y][boxes[label, 2]:boxes[label, 3] + 1]
            for x in range(row.size):
                row[x] = weight if labels[x] == label else row[x]
    if ignored_voxels:
        for y in range(boxes[ignore_label, 0], boxes[ignore_label, 1] + 1):
            row = weights[y][boxes[ignore_label, 2]:boxes[ignore_label, 3] + 1]
            labels = label_map[y][boxes[ignore_label, 2]:boxes[ignore_label, 3] + 1]
            for x in range(row.size):
                row[x] = np.float32(0) if labels[x] == ignore_label else row[x]
    return weights
