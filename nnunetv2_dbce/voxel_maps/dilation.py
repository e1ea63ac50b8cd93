"""Exact binary dilation by a ball of radius R in physical space (voxels of the finest axis), three ways that
give identical masks (OpenCV's kernel dilation, runs on rows packed 64 voxels to a word, a distance transform),
and the cost model that picks the cheapest for a ball and a box. numpy / OpenCV / edt only."""
import math
from collections.abc import Iterable
from functools import lru_cache
from numbers import Real

import cv2
import edt
import numpy as np

# Relative slack on the squared radius: a voxel offset d is inside the ball when
# sum_a (d_a * spacing_a / min(spacing))**2 <= R**2 * (1 + BALL_TOLERANCE). It absorbs float rounding of
# the distance transform so that offsets exactly on the sphere (e.g. (3, 4) for R = 5) are inside.
BALL_TOLERANCE = 1e-5


def check_radius(radius: float | None) -> float:
    """Return ``radius`` as a float, or raise for a non-numeric, negative, NaN or infinite radius."""
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


# The cost of each exact dilation in microseconds on one thread, fitted to ``scripts/benchmark_weight_maps.py
# --dilation`` (boxes 26x30-512^2, odd widths among them, and 24^3-128^3, R = 1-30; each a least-squares fit of
# the relative error): the runs ``run_passes`` ORs of the packed box, each a fixed cost plus one per voxel;
# OpenCV's 2D kernel dilation one per kernel point and voxel of the row-padded box; the distance transform a fixed
# cost plus one per voxel, whatever the radius. In 3D the runs beat OpenCV's disc stacks at every radius, so 3D
# balls go to the runs or, when large for their box (R > ~30 at 128^3), to the distance transform; in 2D OpenCV
# takes small discs (R < ~7 at 512^2, up to R ~ 20 in boxes under 100^2), the distance transform large discs in
# small boxes (R = 30 under ~100^2), the runs the rest.
RUN_PASS_COST = {2: (1.5, 2.9e-5), 3: (1.6, 1.1e-5)}
KERNEL_POINT_COST = 1.5e-5
SIMD_BYTES = 16
DISTANCE_TRANSFORM_COST = {2: (43.0, 0.0147), 3: (150.0, 0.024)}


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
    if ndim == 2:
        kernel = ball_kernel_work(radius, scale) * shape[0] * simd_width(shape[1]) * KERNEL_POINT_COST
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
