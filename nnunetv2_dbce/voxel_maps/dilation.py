"""Exact binary dilation by a ball of radius R in physical space (voxels of the finest axis), three ways that
give identical masks (OpenCV's kernel dilation, runs on rows packed 64 voxels to a word, a distance transform),
and the cost model that picks the cheapest for a ball and a box. numpy / OpenCV / edt, and the compiled loops of
the runs (``packed_runs``)."""
import math
from collections.abc import Iterable
from functools import lru_cache
from numbers import Real

import cv2
import edt
import numpy as np

from nnunetv2_dbce.voxel_maps.packed_runs import dilated_packed

# Relative slack on the squared radius: a voxel offset d is inside the ball when
# sum_a (d_a * spacing_a / min(spacing))**2 <= R**2 * (1 + BALL_TOLERANCE). It absorbs float rounding of
# the distance transform so that offsets exactly on the sphere (e.g. (3, 4) for R = 5) are inside.
BALL_TOLERANCE = 1e-5


def check_radius(radius: float | None) -> float:
    """Return ``radius`` as a float, or raise for a non-numeric, negative, NaN or infinite radius."""
    if type(radius) is float and 0 <= radius < math.inf:  # the maps' own calls: checked once before
        return radius
    if isinstance(radius, bool) or not isinstance(radius, (Real, np.integer, np.floating)):
        raise TypeError(f"dilation radius must be a number of voxels, got {radius!r} ({type(radius).__name__})")
    radius = float(radius)
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"dilation radius must be a finite number >= 0 (voxels of the finest axis), got {radius}")
    return radius


@lru_cache(maxsize=64)
def ball_kernel(radius: float, scale: tuple) -> np.ndarray:
    """The ball as a structuring element: offsets d (uint8 1 inside, shape ``2 * reach + 1`` per axis) with
    ``sum_a (d_a * scale_a)**2 <= radius**2 * (1 + BALL_TOLERANCE)``."""
    reach = np.floor(radius / np.asarray(scale) * (1 + BALL_TOLERANCE)).astype(int)
    offsets = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    squared = sum((o * s) ** 2 for o, s in zip(offsets, scale))
    return (squared <= radius ** 2 * (1 + BALL_TOLERANCE)).astype(np.uint8)


# The cost of each exact dilation in microseconds on one thread, fitted to the timings of
# ``scripts/benchmark_weight_maps.py --dilation`` (boxes 26x30-512^2, odd widths among them, 24^3-128^3 and
# 64x50x90, R = 1-30, all three dilations in one run; each a least-squares fit of the relative error, within ~45 %):
# the runs a fixed cost, one per voxel (packing and unpacking) and one per voxel of the packed box in each of their
# ``run_passes``; OpenCV's 2D kernel dilation a fixed cost and one per kernel point and voxel of the row-padded box;
# the distance transform a fixed cost plus one per voxel, whatever the radius. In 3D the runs beat OpenCV's disc
# stacks at every radius, and the distance transform only where the ball is large for its box (R = 60 in 32^3); in
# 2D OpenCV takes small discs (R <= ~3 at 512^2, up to R ~ 7 in boxes under 100^2) and the runs the rest.
RUN_COST = {2: (20.9, 3.6e-4, 4.8e-6), 3: (36.0, 6.4e-4, 5.2e-6)}
KERNEL_COST = (6.5, 1.9e-5)
SIMD_BYTES = 16
DISTANCE_TRANSFORM_COST = {2: (71.3, 0.0222), 3: (32.4, 0.0323)}


def dilate_with_distance_transform(mask: np.ndarray, radius: float, scale: np.ndarray) -> np.ndarray:
    """An exact Euclidean distance transform (``edt``, fed uint8: 2.5x faster there than bool) thresholded at the
    radius. Cost independent of the radius."""
    squared_distance = edt.edtsq((~mask).view(np.uint8), anisotropy=tuple(scale), black_border=False, parallel=1)
    return squared_distance <= radius ** 2 * (1 + BALL_TOLERANCE)


def simd_width(width: int) -> int:
    """``width`` rounded up to whole ``SIMD_BYTES`` (the row length OpenCV's 2D kernel dilation is costed at)."""
    return -(-width // SIMD_BYTES) * SIMD_BYTES


def dilate_with_kernel(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2D binary dilation by ``kernel`` with OpenCV (uint8 SIMD). Rows are padded with False to whole
    ``SIMD_BYTES``: OpenCV dilates the rest of a row (``width % 16`` voxels) one voxel at a time, which made boxes
    26-60 voxels wide cost 1.5-3x as much as the padded ones."""
    height, width = mask.shape
    if simd_width(width) == width:
        return cv2.dilate(mask.view(np.uint8), kernel).view(bool)
    padded = np.zeros((height, simd_width(width)), np.uint8)
    padded[:, :width] = mask
    return cv2.dilate(padded, kernel)[:, :width].view(bool)


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
def packed_ball(radius: float, scale: tuple) -> tuple:
    """``ball_runs(radius, scale)`` as ``packed_runs.dilated_packed`` takes it: the ``widening_ladder`` of every run
    half-width (int64 (n, 2) of width, base), every row of every disc (int64 (m, 3) of disc, row offset, half-width)
    and the disc at each offset 0..reach along axis 0 (the one of smallest depth that reaches it: discs shrink away
    from the centre). Cached: ``dilate`` asks once per class and patch."""
    runs = ball_runs(radius, scale)
    ladder = np.array(list(widening_ladder(w for _, widths in runs for w in widths).items()), np.int64).reshape(-1, 2)
    disc_rows = np.array([(disc, side * row, width) for disc, (_, widths) in enumerate(runs)
                          for row, width in enumerate(widths) for side in ((1, -1) if row else (1,))],
                         np.int64).reshape(-1, 3)
    depths = [depth for depth, _ in runs]
    disc_of_offset = np.array([min((disc for disc, depth in enumerate(depths) if depth >= offset),
                                   key=depths.__getitem__) for offset in range(max(depths) + 1)], np.int64)
    return ladder, disc_rows, disc_of_offset


@lru_cache(maxsize=64)
def run_passes(radius: float, scale: tuple) -> int:
    """Passes over the packed box that ``dilate_with_runs`` makes (copies and shifted ORs alike): three per widening
    of its ladder, one per row of every disc, and two per offset along axis 0 and one more to combine the discs."""
    ladder, disc_rows, disc_of_offset = packed_ball(radius, scale)
    return 3 * len(ladder) + len(disc_rows) + 2 * len(disc_of_offset) - 1


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


def dilate_with_runs(mask: np.ndarray, radius: float, scale: tuple) -> np.ndarray:
    """2D or 3D binary dilation by the ball of ``ball_kernel`` from its runs (``ball_runs``), on rows packed 64
    voxels to a word (``packed_runs``): the mask widened along the last axis to each run half-width
    (``widening_ladder``: two shifted ORs of a narrower widening at least half as wide), each distinct disc the OR
    of those widened masks at its row offsets, and the ball the OR over the offsets along axis 0 of each offset's
    disc. Cost: ``run_passes`` passes over the packed box (an eighth of the bytes of a bool mask), growing about as
    R^2 instead of the kernel's R^3 (3D) or R^2 point-passes over the whole box (2D)."""
    volume = mask if mask.ndim == 3 else mask[None]
    word_major = np.ascontiguousarray(np.moveaxis(packed_rows(volume), -1, 0))
    ladder, disc_rows, disc_of_offset = packed_ball(radius, scale)
    dilated = dilated_packed(word_major, ladder, disc_rows, disc_of_offset)
    return unpacked_rows(np.ascontiguousarray(np.moveaxis(dilated, 0, -1)), mask.shape[-1]).reshape(mask.shape)


def cheapest_dilation(radius: float, scale: tuple, shape: tuple) -> str:
    """``"kernel"``, ``"runs"`` or ``"distance transform"``: the exact dilation the cost model above expects to be
    the fastest for the ball of ``radius`` (``scale``: one entry per axis, 2D or 3D) in a box of ``shape``. The
    runs work on whole 64-voxel words: a row of 65 voxels costs as much as one of 128."""
    ndim = len(shape)
    voxels = math.prod(shape)
    packed_voxels = voxels // shape[-1] * 64 * -(-shape[-1] // 64)
    fixed, per_voxel, per_pass_voxel = RUN_COST[ndim]
    runs = fixed + per_voxel * voxels + per_pass_voxel * run_passes(radius, scale) * packed_voxels
    fixed, per_voxel = DISTANCE_TRANSFORM_COST[ndim]
    distance_transform = fixed + per_voxel * voxels
    if ndim == 2:
        fixed, per_point_voxel = KERNEL_COST
        kernel = fixed + per_point_voxel * ball_kernel_work(radius, scale) * shape[0] * simd_width(shape[1])
        if kernel <= min(runs, distance_transform):
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
