"""DBCE weight maps of 2D patches in one compiled call (numba): the weights of ``dbce_weight_map``, bit for bit, without
its ~100 numpy and OpenCV calls per patch, whose fixed costs dominate a 2D map where nnU-Net's augmentation runs it
(docs/measurements.md).

Each class's box is packed 64 voxels to a word, word-major (``packed_label_rows``), and dilated by the disc as the
OR of its rows widened to each row's half-width (``packed_runs.dilated_packed_disc``): a shift along a row is a bit
shift of whole words, so a pass costs an eighth of the bytes of a mask, and the band's area is a count of bits. The
band reaches the float map word by word: a word of no bits is skipped and one of all bits written at once.

Every loop below runs over a contiguous row (or a contiguous piece of one) from index 0, the form LLVM vectorises:
a loop indexed with an offset (``row[x + dx]``) ran ~35x slower.

Compiled on first use for each label dtype (~15 s the first, ~6 s another) and cached next to this module (numba's
``cache=True``); the augmentation workers load the cached code.
"""
import numpy as np
from numba import njit
from numba.typed import List

from nnunetv2_dbce.voxel_maps.packed_runs import dilated_packed_disc

# Label dtypes compiled for: nnU-Net's segmentations (int16) and the binary region maps of region_dbce_weight_maps.
COMPILED_DTYPES = (np.dtype(np.int16), np.dtype(np.uint8))
# 8 voxels as bytes 0 / 1, read as one little-endian uint64, times this: voxel i lands in bit 56 + i (no two
# products share a bit, so nothing carries)
GATHER_BITS = np.uint64(0x0102040810204080)
ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)


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
def packed_label_rows(label_map: np.ndarray, label: int, rows: tuple, columns: tuple) -> np.ndarray:
    """Where ``label_map`` is ``label`` within the box ``rows`` x ``columns``, packed as ``packed_runs`` takes it:
    uint64 (words, box rows), voxel ``x`` of a row in bit ``x % 64`` of word ``x // 64``, the bits past the box zero."""
    first_row, stop_row = rows
    first_column, stop_column = columns
    height = stop_row - first_row
    width = stop_column - first_column
    words = (width + 63) // 64
    packed = np.empty((words, height), np.uint64)
    is_label = np.zeros(64 * words, np.uint8)
    groups = is_label.view(np.uint64)
    gathered = np.empty(8 * words, np.uint8)
    row_words = gathered.view(np.uint64)
    top_byte = np.uint64(56)
    value = label_map.dtype.type(label)
    for y in range(height):
        labels = label_map[first_row + y][first_column:stop_column]
        for x in range(width):
            is_label[x] = np.uint8(labels[x] == value)
        for g in range(groups.size):
            gathered[g] = np.uint8((groups[g] * GATHER_BITS) >> top_byte)
        for k in range(words):
            packed[k, y] = row_words[k]
    return packed


@njit(cache=True, boundscheck=False)
def bit_count(word: np.uint64) -> np.uint64:
    """The set bits of a uint64 (LLVM turns this into one popcount)."""
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + ((word >> np.uint64(2)) & np.uint64(0x3333333333333333))
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (word * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, boundscheck=False)
def dilated_band(label_map: np.ndarray, label: int, rows: tuple, columns: tuple, ladder: np.ndarray,
                 disc_rows: np.ndarray, ignore_label: int) -> tuple[np.ndarray, int]:
    """The area of ``label`` dilated by the disc of ``ladder`` and ``disc_rows`` (``dilation.packed_ball``), within
    the box ``rows`` x ``columns`` (its bounding box grown by the disc's reach, clipped to the map), less
    ``ignore_label``'s voxels: packed rows, uint64 (words, box rows), the bits past the box zero; and its voxels."""
    width = columns[1] - columns[0]
    dilated = dilated_packed_disc(packed_label_rows(label_map, label, rows, columns), ladder, disc_rows)
    words = dilated.shape[0]
    if ignore_label > 0:
        ignored = packed_label_rows(label_map, ignore_label, rows, columns)
        for k in range(words):
            into = dilated[k]
            other = ignored[k]
            for i in range(into.size):
                into[i] &= ~other[i]
    tail = width - 64 * (words - 1)
    if tail < 64:  # the dilation spills past the box into the last word's spare bits
        last = dilated[words - 1]
        in_box = (np.uint64(1) << np.uint64(tail)) - np.uint64(1)
        for i in range(last.size):
            last[i] &= in_box
    area = np.uint64(0)
    for k in range(words):
        row = dilated[k]
        for i in range(row.size):
            area += bit_count(row[i])
    return dilated, int(area)


@njit(cache=True, boundscheck=False)
def banded_voxels(classes: List, areas: List) -> int:
    """Voxels in at least one band, for bands given as ``(label, rows, columns, packed band)`` (``dilated_band``) with
    their ``areas``: the areas' sum when no two bands' boxes overlap (as ``dbce.banded_area``), else counted in the box
    around them all."""
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
            marked = in_some_band[rows[0] - first_row + y][columns[0] - first_column:columns[1] - first_column]
            for k in range(band.shape[0]):
                word = band[k, y]
                piece = marked[64 * k:64 * k + 64]
                for x in range(piece.size):
                    piece[x] |= np.uint8((word >> np.uint64(x)) & np.uint64(1))
    total = 0
    for y in range(stop_row - first_row):
        marked = in_some_band[y]
        for x in range(marked.size):
            total += marked[x]
    return total


@njit(cache=True, boundscheck=False)
def compiled_weight_map(label_map: np.ndarray, max_label: int, ladder: np.ndarray, disc_rows: np.ndarray,
                        ignore_label: int, row_smallest: np.ndarray, row_largest: np.ndarray,
                        foreground_columns: np.ndarray) -> np.ndarray:
    """``dbce_weight_map`` of a 2D ``label_map`` (labels 0..max_label; ``row_smallest``, ``row_largest`` and
    ``foreground_columns`` from ``row_label_ranges``) for the disc of ``ladder`` and ``disc_rows``
    (``dilation.packed_ball``); ``ignore_label`` -1 for none. float32, the shape of ``label_map``."""
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
    reach_y = 0
    reach_x = 0
    for j in range(disc_rows.shape[0]):
        reach_y = max(reach_y, abs(disc_rows[j, 1]))
        reach_x = max(reach_x, disc_rows[j, 2])
    classes = List()
    areas = List()
    for label in range(1, max_label + 1):
        if label == ignore_label or boxes[label, 1] < 0:
            continue
        rows = (max(boxes[label, 0] - reach_y, 0), min(boxes[label, 1] + 1 + reach_y, height))
        columns = (max(boxes[label, 2] - reach_x, 0), min(boxes[label, 3] + 1 + reach_x, width))
        band, area = dilated_band(label_map, label, rows, columns, ladder, disc_rows, ignore_label)
        classes.append((label, rows, columns, band))
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
        _, rows, columns, band = classes[i]
        weight = class_weights[i]
        for y in range(rows[1] - rows[0]):
            row = weights[rows[0] + y][columns[0]:columns[1]]
            for k in range(band.shape[0]):
                word = band[k, y]
                if word == 0:
                    continue
                piece = row[64 * k:64 * k + 64]
                if word == ALL_BITS:
                    piece[:] = weight
                    continue
                for x in range(piece.size):
                    piece[x] = weight if (word >> np.uint64(x)) & np.uint64(1) else piece[x]
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
