"""DBCE weight maps (docs/losses.md). numpy / OpenCV / scipy / edt only, no torch, no nnU-Net.

A foreground class ``c`` present in the patch is dilated with a ball of radius ``R`` (voxels of the
finest axis; on anisotropic grids a ball in physical space) into ``D_c``. With ``N`` the number of
non-ignored voxels and ``C`` the number of non-empty regions among ``D_1..D_K`` and the remaining
background ``B`` (voxels outside every ``D_c``)::

    w_c = N / (C * |D_c|)        w_0 = N / (C * |B|)

A voxel of class ``c`` gets ``w_c``; a background voxel inside one or more ``D_c`` (the band around a
structure) gets the largest of those ``w_c``; a background voxel in ``B`` gets ``w_0``; ignored voxels
get 0. All areas count non-ignored voxels only. ``R = 0`` gives plain balanced CE weights.
"""
import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from numbers import Real

import cv2
import edt
import numpy as np
from scipy import ndimage

# Relative slack on the squared radius: a voxel offset d is inside the ball when
# sum_a (d_a * spacing_a / min(spacing))**2 <= R**2 * (1 + BALL_TOLERANCE). It absorbs float rounding of
# the distance transform so that offsets exactly on the sphere (e.g. (3, 4) for R = 5) are inside.
BALL_TOLERANCE = 1e-5


def check_radius(radius: float | None) -> float:
    """Return ``radius`` as a float, or raise for a non-numeric, negative, NaN or infinite radius."""
    if isinstance(radius, bool) or not isinstance(radius, (Real, np.integer, np.floating)):
        raise TypeError(f"dilation radius must be a number of voxels, got {radius!r} ({type(radius).__name__})")
    radius = float(radius)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"dilation radius must be a finite number >= 0 (voxels of the finest axis), got {radius}")
    return radius


def axis_scale(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    """Per-axis voxel size in units of the finest axis, ``spacing / min(spacing)``; ones if isotropic.
    Read-only (shared between calls with the same spacing)."""
    if spacing is None:
        return scale_of_spacing(None, (ndim,), ndim)
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


def label_map_and_max(label_map: np.ndarray, ignore_label: int | None = None) -> tuple[np.ndarray, int]:
    """``as_label_map`` and the largest label (0 for an empty map)."""
    label_map = np.asarray(label_map)
    if label_map.ndim not in (2, 3):
        raise ValueError(f"label_map must be a 2D or 3D array of labels with no channel axis, "
                         f"got shape {label_map.shape}")
    if ignore_label is not None and ignore_label <= 0:
        raise ValueError(f"ignore_label must be > 0 (0 is the background), got {ignore_label}")
    if label_map.dtype == bool:
        label_map = label_map.view(np.uint8)
    elif not np.issubdtype(label_map.dtype, np.integer):
        if not np.issubdtype(label_map.dtype, np.floating):
            raise TypeError(f"label_map must hold integer labels, got dtype {label_map.dtype}")
        bad = ~np.isfinite(label_map) | (label_map != np.round(label_map))
        if bad.any():
            raise ValueError(f"label_map has non-integer values, e.g. {label_map[bad].flat[0]}: "
                             f"expected integer class labels")
        label_map = label_map.astype(np.int64)
    if not label_map.size:
        return label_map, 0
    smallest, largest = label_range(label_map)
    if smallest < 0:
        raise ValueError(f"label_map has negative labels (min {smallest}): expected labels >= 0")
    return label_map, largest


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


@lru_cache(maxsize=64)
def ball_kernel(radius: float, scale: tuple) -> np.ndarray:
    """The ball as a structuring element: offsets d (uint8 1 inside, shape ``2 * reach + 1`` per axis) with
    ``sum_a (d_a * scale_a)**2 <= radius**2 * (1 + BALL_TOLERANCE)``."""
    reach = np.floor(radius / np.asarray(scale) * (1 + BALL_TOLERANCE)).astype(int)
    offsets = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    squared = sum((o * s) ** 2 for o, s in zip(offsets, scale))
    return (squared <= radius ** 2 * (1 + BALL_TOLERANCE)).astype(np.uint8)


# The cost of each exact dilation in microseconds on one thread, fitted to ``scripts/benchmark_weight_maps.py
# --dilation`` (boxes 40^2-512^2 and 24^3-128^3, R = 1-30): the runs ``run_passes`` ORs of the packed box, each a
# fixed cost plus one per voxel; OpenCV's 2D kernel dilation one per kernel point and voxel; the distance transform
# a fixed cost plus one per voxel, whatever the radius. In 3D the runs beat OpenCV's disc stacks at every radius,
# so 3D balls go to the runs or, when large for their box (R > ~30 at 128^3), to the distance transform; in 2D
# OpenCV takes small discs (R < ~7 at 512^2, up to R ~ 20 in boxes under 100^2), the runs the rest.
RUN_PASS_COST = {2: (2.0, 2.0e-5), 3: (1.6, 1.1e-5)}
KERNEL_POINT_COST = 1.0e-5
DISTANCE_TRANSFORM_COST = {2: (150.0, 0.014), 3: (150.0, 0.024)}


def dilate_with_distance_transform(mask: np.ndarray, radius: float, scale: np.ndarray) -> np.ndarray:
    """An exact Euclidean distance transform (``edt``, fed uint8: 2.5x faster there than bool) thresholded at the
    radius. Cost independent of the radius."""
    squared_distance = edt.edtsq((~mask).view(np.uint8), anisotropy=tuple(scale), black_border=False, parallel=1)
    return squared_distance <= radius ** 2 * (1 + BALL_TOLERANCE)


def dilate_with_kernel(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2D binary dilation by ``kernel`` with OpenCV (uint8 SIMD)."""
    return cv2.dilate(mask.view(np.uint8), kernel).view(bool)


@lru_cache(maxsize=64)
def ball_kernel_work(radius: float, scale: tuple) -> int:
    """Points of the 2D ``ball_kernel(radius, scale)`` (cached: ``dilate`` asks once per class and patch)."""
    return int(np.count_nonzero(ball_kernel(radius, scale)))


@lru_cache(maxsize=64)
def ball_runs(radius: float, scale: tuple) -> tuple:
    """The ball of ``ball_kernel`` (2D or 3D) as runs along the last axis: a tuple of ``(depth, half_widths)``,
    one per distinct disc, where ``half_widths[dy]`` is the half-width of the disc's run at row offset +-dy
    (rows with a run only) and ``depth`` the largest offset along axis 0 that has this disc (a 2D disc: one,
    depth 0). The discs shrink away from the centre, so the ball is the union over these of (disc) x
    (offsets -depth..depth along axis 0)."""
    kernel = ball_kernel(radius, scale)
    if kernel.ndim == 2:
        kernel = kernel[None]
    quarter = kernel[tuple(slice(n // 2, None) for n in kernel.shape)]
    has_run: np.ndarray = np.any(quarter, axis=2)
    half_widths = quarter.shape[2] - 1 - np.argmax(quarter[:, :, ::-1], axis=2)
    depth_of_disc = {}
    for depth in range(quarter.shape[0]):
        if has_run[depth, 0]:  # the outermost offset along axis 0 can be empty (BALL_TOLERANCE in the reach)
            depth_of_disc[tuple(int(w) for w in half_widths[depth][has_run[depth]])] = depth
    return tuple((depth, widths) for widths, depth in depth_of_disc.items())


def widening_ladder(widths: Iterable[int]) -> dict:
    """``{width: base}``: how ``dilate_with_runs`` makes each row dilation -width..width it needs (every one of
    ``widths`` and the narrower steps that lead to them) from a narrower ``base`` at least half as wide
    (``2 * base + 1 >= width``), which is itself in the ladder or 0 (the rows). Ascending widths."""
    ladder: dict = {}
    made = [0]
    for width in sorted(set(widths) - {0}):
        steps = [width]
        while 2 * made[-1] + 1 < steps[-1]:
            steps.append(steps[-1] // 2)  # the narrowest base that reaches steps[-1]
        for step in reversed(steps):
            ladder[step] = made[-1]
            made.append(step)
    return ladder


@lru_cache(maxsize=64)
def ball_ladder(radius: float, scale: tuple) -> tuple:
    """The ``widening_ladder`` of every run half-width of ``ball_runs(radius, scale)``, as ``(width, base)`` pairs
    (cached: ``dilate_with_runs`` needs it once per class and patch)."""
    return tuple(widening_ladder(w for _, widths in ball_runs(radius, scale) for w in widths).items())


@lru_cache(maxsize=64)
def run_passes(radius: float, scale: tuple) -> int:
    """Bitwise ORs over the packed box that ``dilate_with_runs`` makes (copies and shifts counted as ORs): five
    per widening of its ladder, two per row of every disc, and for each disc with a depth two per doubling of its
    extent along axis 0 and three more."""
    runs = ball_runs(radius, scale)
    widenings = len(ball_ladder(radius, scale))
    return 5 * widenings + sum(2 * len(widths) + (2 * int(2 * depth).bit_length() + 3 if depth else 0)
                               for depth, widths in runs)


def or_shifted(target: np.ndarray, source: np.ndarray, axis: int, shift: int) -> None:
    """``target |= source`` moved by ``shift`` voxels along ``axis`` (arrays of one shape and dtype; what moves out
    of the array is dropped)."""
    size = source.shape[axis]
    if abs(shift) >= size:
        return
    before = (slice(None),) * axis
    to, source_part = (slice(shift, None), slice(None, size - shift)) if shift >= 0 else \
        (slice(None, shift), slice(-shift, None))
    np.bitwise_or(target[before + (to,)], source[before + (source_part,)], out=target[before + (to,)])


def packed_rows(mask: np.ndarray) -> np.ndarray:
    """A bool mask (..., N) as bits along its last axis: uint64 (..., ceil(N / 64)), voxel ``i`` of a row in bit
    ``i % 64`` of word ``i // 64``, the bits past ``N`` zero."""
    words = -(-mask.shape[-1] // 64)
    packed = np.zeros((*mask.shape[:-1], 8 * words), np.uint8)
    bits = np.packbits(mask, axis=-1, bitorder="little")
    packed[..., :bits.shape[-1]] = bits
    return packed.view("<u8")


def unpacked_rows(packed: np.ndarray, length: int) -> np.ndarray:
    """The bool mask (..., ``length``) of rows packed by ``packed_rows``."""
    return np.unpackbits(packed.view(np.uint8), axis=-1, count=length, bitorder="little").view(bool)


def or_shifted_bits(target: np.ndarray, source: np.ndarray, shift: int) -> None:
    """``target |= source`` moved by ``shift`` voxels along the last axis, for rows packed by ``packed_rows`` (what
    moves past the last word is dropped)."""
    words, bits = divmod(abs(shift), 64)
    size = source.shape[-1]
    if words >= size:
        return
    if shift > 0:  # towards higher voxel indices: higher bits, then into the next word
        np.bitwise_or(target[..., words:], source[..., :size - words] << bits, out=target[..., words:])
        if bits and words + 1 < size:
            np.bitwise_or(target[..., words + 1:], source[..., :size - words - 1] >> (64 - bits),
                          out=target[..., words + 1:])
    else:
        np.bitwise_or(target[..., :size - words], source[..., words:] >> bits, out=target[..., :size - words])
        if bits and words + 1 < size:
            np.bitwise_or(target[..., :size - words - 1], source[..., words + 1:] << (64 - bits),
                          out=target[..., :size - words - 1])


def dilated_along_first_axis(packed: np.ndarray, reach: int) -> np.ndarray:
    """The OR of ``packed`` over offsets -reach..reach along axis 0, by doubling: about 2 log2(reach) ORs."""
    if reach == 0:
        return packed
    size = packed.shape[0]
    ahead = np.zeros((reach + size, *packed.shape[1:]), packed.dtype)
    ahead[reach:] = packed  # ahead[i]: the OR of packed[i - reach .. i - reach + covered - 1]
    covered = 1
    while 2 * covered <= 2 * reach + 1:
        or_shifted(ahead, ahead, 0, -covered)
        covered *= 2
    start = 2 * reach + 1 - covered  # covered > reach: the two windows overlap and end within the padded array
    return ahead[:size] | ahead[start:start + size]


def dilate_with_runs(mask: np.ndarray, radius: float, scale: tuple) -> np.ndarray:
    """2D or 3D binary dilation by the ball of ``ball_kernel`` from its runs (``ball_runs``), on rows packed 64
    voxels to a word: the mask widened along the last axis to each run half-width (``widening_ladder``: two shifted
    ORs of a narrower widening at least half as wide), each distinct
    disc the OR of those widened masks at its row offsets, each disc dilated along axis 0 by its depth, and the
    discs OR-ed. Cost: ``run_passes`` ORs of the packed box (an eighth of the bytes of a bool mask), growing
    about as R^2 instead of the kernel's R^3 (3D) or R^2 point-passes over the whole box (2D)."""
    runs = ball_runs(radius, scale)
    widened = {0: packed_rows(mask if mask.ndim == 3 else mask[None])}
    for width, base in ball_ladder(radius, scale):
        widened[width] = widened[base].copy()
        or_shifted_bits(widened[width], widened[base], width - base)
        or_shifted_bits(widened[width], widened[base], base - width)
    dilated = np.zeros_like(widened[0])
    for depth, widths in runs:
        disc = widened[widths[0]].copy()
        for row, width in enumerate(widths[1:], start=1):
            or_shifted(disc, widened[width], 1, row)
            or_shifted(disc, widened[width], 1, -row)
        np.bitwise_or(dilated, dilated_along_first_axis(disc, depth), out=dilated)
    return unpacked_rows(dilated, mask.shape[-1]).reshape(mask.shape)


def cheapest_dilation(radius: float, scale: tuple, shape: tuple) -> str:
    """``"kernel"``, ``"runs"`` or ``"distance transform"``: the exact dilation the cost model above expects to be
    the fastest for the ball of ``radius`` (``scale``: one entry per axis, 2D or 3D) in a box of ``shape``. The
    runs work on whole 64-voxel words: a row of 65 voxels costs as much as one of 128."""
    ndim = len(shape)
    voxels = math.prod(shape)
    packed_voxels = voxels // shape[-1] * 64 * -(-shape[-1] // 64)
    fixed, per_voxel = RUN_PASS_COST[ndim]
    runs = run_passes(radius, scale) * (fixed + per_voxel * packed_voxels)
    fixed, per_voxel = DISTANCE_TRANSFORM_COST[ndim]
    distance_transform = fixed + per_voxel * voxels
    if ndim == 2 and ball_kernel_work(radius, scale) * voxels * KERNEL_POINT_COST <= min(runs, distance_transform):
        return "kernel"
    return "runs" if runs <= distance_transform else "distance transform"


def dilate(mask: np.ndarray, radius: float, scale: np.ndarray) -> np.ndarray:
    """``mask`` (bool, C-contiguous) dilated by the ball of ``radius``; ``mask`` must extend at least ``radius``
    beyond its voxels. The ``cheapest_dilation`` of three exact ones, which give identical masks."""
    if radius == 0:
        return mask
    scale_key = tuple(scale.tolist())
    path = cheapest_dilation(radius, scale_key, mask.shape)
    if path == "kernel":
        return dilate_with_kernel(mask, ball_kernel(radius, scale_key))
    if path == "runs":
        return dilate_with_runs(mask, radius, scale_key)
    return dilate_with_distance_transform(mask, radius, scale)


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


def dilated_balanced_weights(label_map: np.ndarray, radius: float, spacing: Sequence[float] | None = None,
                             ignore_label: int | None = None) -> np.ndarray:
    """DBCE weight map of one patch.

    All work beyond two cheap passes (bounding boxes, the band count) happens inside each class's
    bounding box grown by the radius: voxels outside every box are background outside every band.

    :param label_map: integer labels, shape (X, Y) or (X, Y, Z), no channel axis; labels >= 0.
    :param radius: dilation radius R in voxels of the finest axis (>= 0; 0 gives balanced CE weights).
    :param spacing: voxel spacing per axis (any unit); None means isotropic.
    :param ignore_label: label (> 0) whose voxels are left out of every count and get weight 0.
    :return: float32 weights, same shape as ``label_map``.

    Raises:
        ValueError, TypeError: a radius that is negative, NaN, infinite or not a number; a label map that is not
            2D or 3D integer labels, or a spacing that is not one positive value per axis.

    Example (a 4x4 square: it and its 3-pixel band, 80 pixels in all, share one weight, 4096 / (2 x 80))::

        >>> label_map = np.zeros((64, 64), np.int16)
        >>> label_map[30:34, 30:34] = 1
        >>> weights = dilated_balanced_weights(label_map, radius=3)
        >>> [round(float(w), 2) for w in np.unique(weights)], int((weights > 1).sum())
        ([0.51, 25.6], 80)

    S. M. Hosseini, M. Soleymani Baghshah, *Dilated Balanced Cross Entropy Loss for Medical Image
    Segmentation*, arXiv:2412.06045, 2024.
    """
    label_map, max_label = label_map_and_max(label_map, ignore_label)
    radius = check_radius(radius)
    scale = axis_scale(spacing, label_map.ndim)

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

    def __init__(self, radius: float, ignore_label: int | None = None):
        self.radius = check_radius(radius)
        self.ignore_label = ignore_label

    def __call__(self, labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        if labels.ndim == len(spacing):
            return dilated_balanced_weights(labels, self.radius, spacing, self.ignore_label)
        return region_weights(labels, self.radius, spacing, self.ignore_label is not None)


def region_weights(regions: np.ndarray, radius: float, spacing: Sequence[float] | None = None,
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
        weights[channel] = dilated_balanced_weights(binary, radius, spacing, 2 if ignored is not None else None)
    return weights
