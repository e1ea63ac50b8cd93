"""dbce_weight_map against the slow scipy/loop reference, plus the rules of docs/losses.md."""
import math

import numpy as np
import pytest

from nnunetv2_dbce import dbce_weight_map
from nnunetv2_dbce.voxel_maps import dbce as dbce_module
from nnunetv2_dbce.voxel_maps import dilation as dilation_module
from nnunetv2_dbce.voxel_maps.dbce import weight_map_in_boxes
from nnunetv2_dbce.voxel_maps.dilation import (
    ball_kernel,
    dilate_with_distance_transform,
    dilate_with_kernel,
    dilate_with_runs,
)
from nnunetv2_dbce.voxel_maps.labels import axis_scale, label_map_and_max
from reference import ball_structuring_element, reference_weights


def weights_in_boxes(label_map, radius, spacing=None, ignore_label=None):
    """``dbce_weight_map`` through its numpy and OpenCV path, whatever the map."""
    label_map, max_label = label_map_and_max(label_map, ignore_label)
    return weight_map_in_boxes(label_map, max_label, float(radius), axis_scale(spacing, label_map.ndim), ignore_label)


def random_label_map(rng, shape, num_classes, num_blobs=4, ignore_label=None):
    """Background with a few boxes of random classes (some overlapping, some tiny) and, optionally, ignore."""
    label_map = np.zeros(shape, dtype=np.int16)
    for _ in range(num_blobs):
        lo = [rng.integers(0, n) for n in shape]
        hi = [min(n, a + rng.integers(1, max(2, n // 3))) for a, n in zip(lo, shape)]
        label_map[tuple(slice(a, b) for a, b in zip(lo, hi))] = rng.integers(1, num_classes + 1)
    if ignore_label is not None:
        lo = [rng.integers(0, n) for n in shape]
        label_map[tuple(slice(a, a + 3) for a in lo)] = ignore_label
    return label_map


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("radius", [0, 1, 2.5, 4])
def test_2d_matches_reference(seed, radius):
    label_map = random_label_map(np.random.default_rng(seed), (17, 23), num_classes=3)
    np.testing.assert_allclose(dbce_weight_map(label_map, radius), reference_weights(label_map, radius),
                               rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("radius", [0, 1.5, 3])
def test_3d_matches_reference(seed, radius):
    label_map = random_label_map(np.random.default_rng(100 + seed), (9, 11, 10), num_classes=3)
    np.testing.assert_allclose(dbce_weight_map(label_map, radius), reference_weights(label_map, radius),
                               rtol=1e-5)


@pytest.mark.parametrize("spacing", [(3.0, 1.0, 1.0), (2.5, 0.7, 0.7), (1.0, 2.0, 1.5)])
@pytest.mark.parametrize("radius", [1, 3, 4.5])
def test_anisotropic_spacing_matches_reference(spacing, radius):
    label_map = random_label_map(np.random.default_rng(7), (8, 14, 12), num_classes=2)
    np.testing.assert_allclose(dbce_weight_map(label_map, radius, spacing),
                               reference_weights(label_map, radius, spacing), rtol=1e-5)


def test_anisotropic_ball_is_a_physical_ball():
    """One voxel dilated with R = 4 on spacing (2, 1): 4 voxels along the fine axis, 2 along the coarse one."""
    element = ball_structuring_element(4, (2.0, 1.0), 2)
    label_map = np.zeros((11, 15), np.int16)
    label_map[5, 7] = 1
    weights = dbce_weight_map(label_map, 4, (2.0, 1.0))
    band = weights == weights[5, 7]
    assert band[5, 3] and band[5, 11] and not band[5, 2] and not band[5, 12]
    assert band[3, 7] and band[7, 7] and not band[2, 7] and not band[8, 7]
    np.testing.assert_array_equal(band[3:8, 3:12], element[1:-1, 1:-1])


@pytest.mark.parametrize("seed", range(4))
def test_ignore_label_matches_reference_and_is_zero(seed):
    label_map = random_label_map(np.random.default_rng(200 + seed), (15, 19), num_classes=2, ignore_label=3)
    weights = dbce_weight_map(label_map, 2, ignore_label=3)
    np.testing.assert_allclose(weights, reference_weights(label_map, 2, ignore_label=3), rtol=1e-5)
    assert np.all(weights[label_map == 3] == 0)


def test_overlapping_bands_take_the_largest_weight():
    label_map = np.zeros((20, 20), np.int16)
    label_map[8:10, 3:5] = 1      # small structure: large weight
    label_map[8:16, 8:18] = 2     # large structure: small weight, band overlaps the small one's
    weights = dbce_weight_map(label_map, 3)
    w1, w2 = weights[8, 3], weights[10, 10]
    assert w1 > w2
    assert weights[8, 6] == pytest.approx(w1)   # in both bands: the larger weight wins
    assert weights[18, 12] == pytest.approx(w2)  # only in class 2's band
    np.testing.assert_allclose(weights, reference_weights(label_map, 3), rtol=1e-5)


def test_absent_classes_take_no_share():
    """Labels 0 and 2 only: C = 2 whatever other classes the dataset has, so the weights sum to N."""
    label_map = np.zeros((16, 16), np.int16)
    label_map[4:7, 4:7] = 2
    weights = dbce_weight_map(label_map, 1)
    assert weights.sum() == pytest.approx(label_map.size, rel=1e-5)
    dilated_area = 5 * 5 - 4  # 3x3 square grown by the radius-1 cross-shaped ball
    assert weights[5, 5] == pytest.approx(label_map.size / (2 * dilated_area))


def test_radius_zero_is_balanced_ce():
    label_map = np.zeros((10, 10), np.int16)
    label_map[:2, :5] = 1
    label_map[5:, :] = 2
    weights = dbce_weight_map(label_map, 0)
    counts = np.bincount(label_map.ravel())
    np.testing.assert_allclose(weights, (label_map.size / (3 * counts))[label_map], rtol=1e-6)


def test_background_only_and_all_ignored_patches():
    assert np.all(dbce_weight_map(np.zeros((6, 7), np.int16), 3) == 1)
    assert np.all(dbce_weight_map(np.full((6, 7), 4, np.int16), 3, ignore_label=4) == 0)


def test_band_covering_everything_leaves_background_without_share():
    label_map = np.zeros((5, 5), np.int16)
    label_map[2, 2] = 1
    weights = dbce_weight_map(label_map, 10)
    np.testing.assert_allclose(weights, 1.0)


def test_accepts_whole_number_floats_and_returns_float32():
    label_map = np.zeros((6, 6), np.float32)
    label_map[1:3, 1:3] = 1
    weights = dbce_weight_map(label_map, 1)
    assert weights.dtype == np.float32 and weights.shape == label_map.shape
    np.testing.assert_array_equal(weights, dbce_weight_map(label_map.astype(np.int16), 1))


@pytest.mark.parametrize("radius, error, message", [
    (-1, ValueError, "got -1.0"), (float("nan"), ValueError, "got nan"), (float("inf"), ValueError, "got inf"),
    ("5", TypeError, r"got '5' \(str\)"), (None, TypeError, r"got None \(NoneType\)"),
    (True, TypeError, r"got True \(bool\)")])
def test_bad_radius_is_refused(radius, error, message):
    with pytest.raises(error, match="dilation radius must be .*" + message):
        dbce_weight_map(np.zeros((4, 4), np.int16), radius)


def test_bad_label_maps_are_refused():
    with pytest.raises(ValueError, match="non-integer"):
        dbce_weight_map(np.array([[0, 0.5], [1, 1]]), 1)
    with pytest.raises(ValueError, match="negative"):
        dbce_weight_map(np.array([[0, -1], [1, 1]]), 1)
    with pytest.raises(ValueError, match="2D or 3D"):
        dbce_weight_map(np.zeros((1, 2, 3, 4), np.int16), 1)
    with pytest.raises(ValueError, match="spacing"):
        dbce_weight_map(np.zeros((4, 4), np.int16), 1, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="ignore_label must be > 0"):
        dbce_weight_map(np.zeros((4, 4), np.int16), 1, ignore_label=0)
    with pytest.raises(ValueError, match=r"one positive, finite value per axis of the 2D label map, got \[1.0, 1.0, 1"):
        dbce_weight_map(np.zeros((4, 4), np.int16), 1, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"per axis of the 2D label map, got \[\[1.0, 1.0\]\]"):
        dbce_weight_map(np.zeros((4, 4), np.int16), 1, spacing=np.ones((1, 2)))  # not flattened
    with pytest.raises(TypeError, match="label_map must hold integer labels, got dtype complex128"):
        dbce_weight_map(np.zeros((4, 4), complex), 1)
    only_ignored = np.array([[0, 1], [0, 0]])  # label 1 may be the ignore label (nnU-Net: the highest label)
    assert dbce_weight_map(only_ignored, 0, ignore_label=1)[0, 1] == 0


@pytest.mark.parametrize("shape", [(23, 31), (9, 14, 11)])
def test_label_boxes_equal_scipy_find_objects(shape):
    from scipy import ndimage

    from nnunetv2_dbce.voxel_maps.labels import PER_LABEL_MAX_LABELS, label_boxes
    for seed in range(5):
        for num_classes in (3, PER_LABEL_MAX_LABELS + 4):
            label_map = random_label_map(np.random.default_rng(seed), shape, num_classes, num_blobs=8)
            expected = {label: box for label, box in enumerate(ndimage.find_objects(label_map), start=1) if box}
            assert label_boxes(label_map) == expected


def test_many_labels_match_reference():
    label_map = random_label_map(np.random.default_rng(42), (20, 24), num_classes=14, num_blobs=12, ignore_label=15)
    assert label_map.max() > 8
    np.testing.assert_allclose(dbce_weight_map(label_map, 2, ignore_label=15),
                               reference_weights(label_map, 2, ignore_label=15), rtol=1e-5)


@pytest.mark.parametrize("shape, spacing", [((31, 27), None), ((19, 25), (1.0, 2.3)), ((13, 32), None),
                                            ((9, 17, 14), None), ((7, 15, 13), (2.5, 0.9, 1.0)), ((2, 9, 9), None)])
@pytest.mark.parametrize("radius", [0.5, 1, 2, math.sqrt(8), 3.5, 6])
def test_opencv_runs_and_distance_transform_dilations_are_identical(shape, spacing, radius):
    """The dilation paths are exact: the same voxels on random masks (OpenCV's kernel is the fast one for small
    2D discs, the runs for most radii, the distance transform for balls large for their box)."""
    rng = np.random.default_rng(len(shape) * 100 + int(radius * 10))
    scale = axis_scale(spacing, len(shape))
    for density in (0.02, 0.3):
        mask = rng.random(shape) < density
        expected = dilate_with_distance_transform(mask, radius, scale)
        if len(shape) == 2:
            np.testing.assert_array_equal(dilate_with_kernel(mask, ball_kernel(float(radius), tuple(scale))), expected)
        np.testing.assert_array_equal(dilate_with_runs(mask, float(radius), tuple(scale)), expected)


@pytest.mark.parametrize("shape, spacing", [((19, 300), (20.0, 1.0)), ((3, 5, 300), (30.0, 30.0, 1.0)),
                                            ((4, 7, 129), (30.0, 30.0, 1.0))])
def test_runs_across_words_of_the_packed_rows(shape, spacing):
    """Runs wider than the 64 voxels of a packed word (shifts that carry into the next word, skip words, or carry
    from the first word into the last), rows one voxel past a word, and masks at the ends of the rows dilate
    exactly as the distance transform."""
    rng = np.random.default_rng(7)
    scale = axis_scale(spacing, len(shape))
    for radius in (1.0, 30.0, 63.0, 64.0, 65.5, 130.0, 250.0):
        for density in (0.005, 0.05):
            mask = rng.random(shape) < density
            mask[..., -1] = mask[..., 0] = True
            np.testing.assert_array_equal(dilate_with_runs(mask, radius, tuple(scale)),
                                          dilate_with_distance_transform(mask, radius, scale),
                                          err_msg=f"radius {radius}")
        for voxel in (60, shape[-1] - 20):  # one voxel in the first or last word: nothing hides a wrong carry
            mask = np.zeros(shape, bool)
            mask[..., voxel] = True
            np.testing.assert_array_equal(dilate_with_runs(mask, radius, tuple(scale)),
                                          dilate_with_distance_transform(mask, radius, scale),
                                          err_msg=f"radius {radius}, voxel {voxel}")


@pytest.mark.parametrize("path", ["distance transform", "runs"])
def test_weight_maps_through_the_distance_transform_or_the_runs_match_reference(monkeypatch, path):
    monkeypatch.setattr(dilation_module, "KERNEL_COST", (math.inf, 0.0))
    free, unaffordable = {2: (0.0, 0.0), 3: (0.0, 0.0)}, {2: (math.inf, 0.0), 3: (math.inf, 0.0)}
    monkeypatch.setattr(dilation_module, "DISTANCE_TRANSFORM_COST",
                        free if path == "distance transform" else unaffordable)
    rng = np.random.default_rng(11)
    for shape, spacing in (((17, 23), None), ((6, 9, 11), (2.0, 1.0, 1.0))):
        label_map = random_label_map(rng, shape, num_classes=3, ignore_label=9)
        np.testing.assert_allclose(weights_in_boxes(label_map, 2.5, spacing, ignore_label=9),
                                   reference_weights(label_map, 2.5, spacing, ignore_label=9), rtol=1e-5)


def test_dilate_runs_the_dilation_the_cost_model_picks(monkeypatch):
    taken = []
    for path in ("kernel", "runs", "distance_transform"):
        dilation = getattr(dilation_module, f"dilate_with_{path}")
        monkeypatch.setattr(dilation_module, f"dilate_with_{path}",
                            lambda *args, path=path, dilation=dilation: taken.append(path) or dilation(*args))
    for shape, radius in (((40, 40), 5.0), ((512, 512), 20.0), ((32, 32, 32), 60.0)):
        mask = np.zeros(shape, bool)
        mask[tuple(n // 2 for n in shape)] = True
        dilation_module.dilate(mask, radius, np.ones(len(shape)))
    assert taken == ["kernel", "runs", "distance_transform"]


@pytest.mark.parametrize("shape, radius, path", [
    ((512, 512), 1, "kernel"), ((512, 512), 0.5, "kernel"), ((512, 512), 20, "runs"), ((40, 40), 20, "runs"),
    ((55, 55), 30, "runs"), ((128, 128, 128), 5, "runs"), ((128, 128, 128), 30, "runs"), ((48, 48, 48), 20, "runs"),
    ((32, 32, 32), 60, "distance transform")])
def test_cost_model_picks_the_fastest_dilation(shape, radius, path):
    """The cost model's choices where the measured times differ most (``--dilation`` of the benchmark: OpenCV 3-6x
    faster for R <= 1 at 512^2, the runs 4-20x faster from R = 20, the distance transform 2x for R = 60 in 32^3)."""
    from nnunetv2_dbce.voxel_maps.dilation import cheapest_dilation
    assert cheapest_dilation(float(radius), (1.0,) * len(shape), shape) == path


@pytest.mark.parametrize("scale", [(1.0, 1.0, 1.0), (2.5, 1.0, 1.0), (1.0, 1.3, 1.7), (3.0, 3.0, 1.0), (1.0, 1.0),
                                   (2.3, 1.0), (1.0, 1.6)])
def test_ball_runs_rebuild_the_ball(scale):
    """The union over the distinct discs of (disc rows of the listed half-widths) x (offsets -depth..depth along
    axis 0) is exactly ``ball_kernel``, radii on and between the integers and on sphere points such as 5; a 2D
    disc is one disc of depth 0."""
    from nnunetv2_dbce.voxel_maps.dilation import ball_runs
    for radius in (0.5, 1.0, 2.0, math.sqrt(8), 3.5, 5.0, 6.0, 7.5, 10.0, 12.2):
        kernel = ball_kernel(radius, scale)
        if kernel.ndim == 2:
            assert [depth for depth, _ in ball_runs(radius, scale)] == [0]
            kernel = kernel[None]
        reach = [n // 2 for n in kernel.shape]
        rebuilt = np.zeros_like(kernel)
        for depth, widths in ball_runs(radius, scale):
            for row, width in enumerate(widths):
                rows = [reach[1] - row, reach[1] + row]
                rebuilt[reach[0] - depth:reach[0] + depth + 1, rows, reach[2] - width:reach[2] + width + 1] = 1
        np.testing.assert_array_equal(rebuilt, kernel, err_msg=f"radius {radius}, scale {scale}")


@pytest.mark.parametrize("scale", [(1.0, 1.0, 1.0), (2.5, 1.0, 1.0), (1.0, 1.3, 1.7), (3.0, 3.0, 1.0), (1.0, 1.0)])
def test_packed_ball_lists_every_row_of_the_ball_once(scale):
    """What the compiled runs are given: each offset along axis 0 has one disc, and that disc's rows (offset along
    axis 1, half-width) are exactly the ball's rows at that offset; each disc row is listed once."""
    from nnunetv2_dbce.voxel_maps.dilation import packed_ball
    for radius in (0.5, 2.0, math.sqrt(8), 5.0, 7.5, 12.2):
        kernel = ball_kernel(radius, scale)
        kernel = kernel if kernel.ndim == 3 else kernel[None]
        reach = [n // 2 for n in kernel.shape]
        _, disc_rows, disc_of_offset = packed_ball(radius, scale)
        assert len({tuple(row) for row in disc_rows.tolist()}) == len(disc_rows)
        assert len(disc_of_offset) == reach[0] + 1 or not kernel[0].any()
        for offset in range(reach[0] + 1):
            rebuilt = np.zeros_like(kernel[0])
            if offset < len(disc_of_offset):
                for _, row, width in disc_rows[disc_rows[:, 0] == disc_of_offset[offset]]:
                    rebuilt[reach[1] + row, reach[2] - width:reach[2] + width + 1] = 1
            for side in (offset, -offset):
                np.testing.assert_array_equal(rebuilt, kernel[reach[0] + side], err_msg=f"R {radius}, offset {side}")


def test_widening_ladder_reaches_every_width_from_a_base_at_least_half_as_wide():
    """Each width the runs need is made, ascending, from the rows (0) or an earlier width whose two shifted copies
    reach it; one width alone takes as many steps as it has bits (doubling)."""
    from nnunetv2_dbce.voxel_maps.dilation import widening_ladder
    for widths in ([1], [5], [0, 3, 4, 5], [6, 8, 10, 12, 13, 20], range(31), [64, 65, 130], [250]):
        ladder = widening_ladder(widths)
        assert set(widths) - {0} <= set(ladder)
        assert list(ladder) == sorted(ladder)
        made = {0}
        for width, base in ladder.items():
            assert base in made and base < width <= 2 * base + 1, (widths, width, base)
            made.add(width)
    for width in (1, 2, 3, 20, 64, 250):
        assert len(widening_ladder([width])) == width.bit_length()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64])
def test_label_range_of_whole_and_cropped_maps(dtype):
    """The one-pass range (OpenCV where it reads the layout, numpy otherwise) equals numpy's min and max, also on
    crops that are not contiguous, as nnU-Net's transforms hand them over when they only crop."""
    from nnunetv2_dbce.voxel_maps.labels import label_range
    rng = np.random.default_rng(3)
    for shape in ((37, 41), (9, 12, 14)):
        whole = rng.integers(0, 100, shape).astype(dtype)
        whole.flat[rng.integers(whole.size)] = 0 if np.issubdtype(dtype, np.unsignedinteger) else -5
        for label_map in (whole, whole[2:-3, 1:-2], whole[::2], whole[..., ::-1]):
            assert label_range(label_map) == (int(label_map.min()), int(label_map.max()))


def test_boxes_overlap_only_when_they_share_a_voxel():
    from nnunetv2_dbce.voxel_maps.dbce import boxes_overlap
    box = (slice(2, 5), slice(2, 5))
    for axis in range(2):
        for start, stop, shared in ((5, 8, False), (4, 8, True), (0, 2, False), (0, 3, True)):
            other = list(box)
            other[axis] = slice(start, stop)
            assert boxes_overlap(box, tuple(other)) is shared
            assert boxes_overlap(tuple(other), box) is shared


@pytest.mark.parametrize("ndim", [2, 3])
def test_banded_area_counts_each_banded_voxel_once(ndim):
    """Against a whole-array OR of the bands: disjoint, touching and overlapping boxes, none at the origin."""
    from nnunetv2_dbce.voxel_maps.dbce import banded_area
    rng = np.random.default_rng(ndim)
    shape = (30,) * ndim
    for _ in range(40):
        bands = []
        for _ in range(rng.integers(1, 4)):
            start = rng.integers(3, 20, ndim)
            stop = start + rng.integers(1, 9, ndim)
            bands.append((tuple(slice(a, b) for a, b in zip(start, stop)), rng.random(stop - start) < 0.6))
        union = np.zeros(shape, bool)
        for box, band in bands:
            union[box] |= band
        assert banded_area(bands) == np.count_nonzero(union)


def test_label_boxes_and_largest_label_of_empty_and_background_maps():
    from nnunetv2_dbce.voxel_maps.labels import label_boxes, label_map_and_max
    for label_map in (np.zeros((0, 4), np.int16), np.zeros((5, 4), np.int16), np.zeros((3, 5, 4), np.uint8)):
        assert label_boxes(label_map) == {}
        assert label_map_and_max(label_map)[1] == 0
    label_map = np.zeros((6, 7), np.int16)
    label_map[1:3, 4:6] = 7
    assert label_boxes(label_map) == {7: (slice(1, 3), slice(4, 6))}
    assert label_map_and_max(label_map)[1] == 7
    assert label_map_and_max(label_map.astype(np.float32))[1] == 7
    assert label_boxes(label_map, max_label=7) == label_boxes(label_map)


def test_as_label_map_checks_and_keeps_the_labels():
    from nnunetv2_dbce.voxel_maps.labels import as_label_map
    label_map = np.array([[0, 2], [1, 3]], np.float64)
    result = as_label_map(label_map, ignore_label=3)
    assert np.issubdtype(result.dtype, np.integer) and result.tolist() == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="ignore_label must be > 0"):
        as_label_map(label_map, ignore_label=0)
    with pytest.raises(ValueError, match="negative"):
        as_label_map(-label_map)


def test_bool_label_maps_weigh_as_their_uint8_copies():
    label_map = np.zeros((20, 24), bool)
    label_map[4:9, 10:13] = True
    np.testing.assert_array_equal(dbce_weight_map(label_map, 2),
                                  dbce_weight_map(label_map.astype(np.uint8), 2))
    np.testing.assert_allclose(dbce_weight_map(label_map, 2),
                               reference_weights(label_map.astype(np.uint8), 2), rtol=1e-5)


def discs(rng, shape, num_classes, dtype):
    """A 2D map of a few discs of random classes and sizes (radius 0 to 12), some overlapping or cut by the border."""
    label_map = np.zeros(shape, dtype)
    rows, columns = np.ogrid[:shape[0], :shape[1]]
    for _ in range(rng.integers(0, 6)):
        y, x, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(0, 13)
        label_map[(rows - y) ** 2 + (columns - x) ** 2 <= r * r] = rng.integers(1, num_classes + 1)
    return label_map


@pytest.mark.parametrize("seed", range(6))
def test_compiled_2d_maps_equal_the_numpy_path_bit_for_bit(seed):
    """The compiled 2D map against ``weight_map_in_boxes`` (OpenCV kernel, runs or distance transform dilations) on
    random maps of both compiled dtypes: radii 0 to 20, anisotropic spacings, an ignore label, maps one voxel wide
    or tall, and rows of about one and two 64-voxel words (the packed rows' word boundaries) under discs taller than
    the map."""
    rng = np.random.default_rng(seed)
    shapes = [tuple(rng.integers(1, 70, 2)) for _ in range(60)] + [(1, 9), (9, 1), (300, 4), (700, 3)] + \
        [(int(rng.integers(2, 40)), width) for width in (63, 64, 65, 104, 127, 128, 129)]
    for i, shape in enumerate(shapes):
        dtype = np.uint8 if i % 3 == 0 else np.int16
        num_classes = int(rng.integers(1, 5))
        label_map = discs(rng, shape, num_classes, dtype)
        radius = float(rng.choice([0, 0.5, 1, 2.5, math.sqrt(8), 5, 7.5, 10, 20] if shape[1] < 63 else [20, 33]))
        spacing = None if rng.random() < 0.5 else tuple(rng.uniform(0.5, 3, 2))
        ignore_label = num_classes if rng.random() < 0.4 else None
        np.testing.assert_array_equal(dbce_weight_map(label_map, radius, spacing, ignore_label),
                                      weights_in_boxes(label_map, radius, spacing, ignore_label),
                                      err_msg=f"shape {shape}, radius {radius}, spacing {spacing}, "
                                              f"ignore {ignore_label}")


def test_compiled_packing_equals_numpys_packbits():
    """``packed_label_rows`` of random boxes (widths around the 64-voxel words) against ``packed_rows``
    (``np.packbits``), word-major; ``bit_count`` against Python's bit count."""
    from nnunetv2_dbce.voxel_maps import dbce_2d
    from nnunetv2_dbce.voxel_maps.dilation import packed_rows
    rng = np.random.default_rng(7)
    for dtype in (np.int16, np.uint8):
        label_map = rng.integers(0, 3, (40, 300)).astype(dtype)
        for width in (1, 63, 64, 65, 130, 300):
            first_column = int(rng.integers(0, 300 - width + 1))
            rows, columns = (3, 37), (first_column, first_column + width)
            box = label_map[rows[0]:rows[1], columns[0]:columns[1]]
            np.testing.assert_array_equal(dbce_2d.packed_label_rows(label_map, 2, rows, columns),
                                          packed_rows(box == 2).T, err_msg=f"width {width}")
    words = rng.integers(0, 2 ** 63, 200, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 200, dtype=np.uint64)
    assert [int(dbce_2d.bit_count(word)) for word in words] == [int(word).bit_count() for word in words]


def test_compiled_row_ranges_and_boxes_equal_numpys_and_opencvs():
    """``row_label_ranges`` against numpy's per-row and whole-map min and max and the columns holding foreground, and
    the compiled ``label_boxes`` (which skips the rows whose range misses a label, and for maps of the one label 1
    reads the box off the ranges) against the bounding boxes of ``labels.label_boxes``, labels absent included."""
    from nnunetv2_dbce.voxel_maps import dbce_2d
    from nnunetv2_dbce.voxel_maps.labels import label_boxes
    rng = np.random.default_rng(11)
    for i in range(40):
        shape = tuple(rng.integers(1, 60, 2))
        label_map = discs(rng, shape, int(rng.integers(1, 6)), np.uint8 if i % 2 else np.int16)
        smallest, largest, lowest, highest, foreground_columns = dbce_2d.row_label_ranges(label_map)
        np.testing.assert_array_equal(smallest, label_map.min(axis=1))
        np.testing.assert_array_equal(largest, label_map.max(axis=1))
        assert (lowest, highest) == (label_map.min(), label_map.max())
        np.testing.assert_array_equal(foreground_columns, (label_map > 0).any(axis=0))
        max_label = int(largest.max()) + int(i % 3 == 0)  # the map's largest label, or one more it does not hold
        boxes = dbce_2d.label_boxes(label_map, max_label, smallest, largest, foreground_columns)
        expected = label_boxes(label_map, max_label)
        for label in range(1, max_label + 1):
            if label in expected:
                rows, columns = expected[label]
                assert tuple(boxes[label]) == (rows.start, rows.stop - 1, columns.start, columns.stop - 1)
            else:
                assert tuple(boxes[label]) == (shape[0], -1, shape[1], -1)


def test_2d_maps_of_nnunet_dtypes_run_compiled_and_the_rest_in_boxes(monkeypatch):
    in_boxes = []
    monkeypatch.setattr(dbce_module, "weight_map_in_boxes",
                        lambda label_map, *args: in_boxes.append((label_map.dtype, label_map.ndim)) or
                        weight_map_in_boxes(label_map, *args))
    label_map = random_label_map(np.random.default_rng(3), (17, 23), num_classes=3)
    for dtype in (np.int16, np.uint8, bool):
        dbce_weight_map(label_map.astype(dtype), 2)
    assert in_boxes == []
    dbce_weight_map(label_map.astype(np.int32), 2)  # another dtype
    dbce_weight_map(random_label_map(np.random.default_rng(3), (9, 11, 10), num_classes=3), 2)  # 3D
    dbce_weight_map((np.arange(20 * 24) % 12).astype(np.int16).reshape(20, 24), 2)  # labels up to 11
    dbce_weight_map(label_map.astype(np.int16), 300)  # any radius
    assert in_boxes == [(np.dtype(np.int32), 2), (np.dtype(np.int16), 3), (np.dtype(np.int16), 2)]
