"""The compiled squared distances against a brute-force loop over voxel pairs, scipy's exact transform and the
``edt`` library they replace."""
import itertools

import edt
import numpy as np
import pytest
from scipy import ndimage

from nnunetv2_dbce.voxel_maps.squared_distance import squared_distances


def brute_force_squared_distances(mask, spacing):
    """Squared distance from every voxel to the nearest True voxel, one voxel pair at a time."""
    spacing = np.asarray(spacing, float)
    sites = np.argwhere(mask)
    out = np.full(mask.shape, np.inf)
    for voxel in itertools.product(*map(range, mask.shape)):
        for site in sites:
            out[voxel] = min(out[voxel], float((((np.asarray(voxel) - site) * spacing) ** 2).sum()))
    return out


def random_mask(shape, seed, density):
    """Sparse points and a few boxes, some touching the edges."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < density
    for _ in range(rng.integers(0, 3)):
        start = [rng.integers(0, n) for n in shape]
        mask[tuple(slice(a, a + rng.integers(1, n // 2 + 2)) for a, n in zip(start, shape))] = True
    return mask


@pytest.mark.parametrize("shape, spacing", [((7, 9), (1.0, 1.0)), ((6, 11), (2.5, 0.7)),
                                            ((5, 6, 7), (1.0, 1.0, 1.0)), ((4, 7, 5), (3.0, 0.8, 1.1))])
def test_squared_distances_match_brute_force(shape, spacing):
    for seed in range(12):
        mask = random_mask(shape, seed, density=0.05 * (seed % 4))
        expected = brute_force_squared_distances(mask, spacing)
        np.testing.assert_allclose(squared_distances(mask, spacing), expected, rtol=1e-6, err_msg=f"seed {seed}")
        np.testing.assert_allclose(squared_distances(mask, spacing, root=True), np.sqrt(expected), rtol=1e-6)


@pytest.mark.parametrize("shape", [(64, 96), (40, 33, 50), (1, 17), (9, 1, 12)])
def test_isotropic_distances_are_the_edt_librarys_bit_for_bit(shape):
    for seed in range(8):
        mask = random_mask(shape, seed, density=0.002 * seed)
        if not mask.any():
            continue
        expected = edt.edtsq((~mask).view(np.uint8), black_border=False, parallel=1)
        np.testing.assert_array_equal(squared_distances(mask, (1.0,) * len(shape)), expected)
        expected = edt.edt((~mask).view(np.uint8), black_border=False, parallel=1)
        np.testing.assert_array_equal(squared_distances(mask, (1.0,) * len(shape), root=True), expected)


@pytest.mark.parametrize("spacing", [(1.0, 3.0, 0.5), (0.7, 0.7, 2.0)])
def test_anisotropic_squared_distances_match_scipy(spacing):
    for seed in range(6):
        mask = random_mask((30, 25, 20), seed, density=0.001 * seed)
        if not mask.any():
            continue
        expected = ndimage.distance_transform_edt(~mask, sampling=spacing) ** 2
        np.testing.assert_allclose(squared_distances(mask, spacing), expected, rtol=1e-6)


@pytest.mark.parametrize("shape, spacing", [((40, 57), (1.0, 1.0)), ((33, 70), (2.5, 0.7)), ((1, 30), (1.0, 1.0)),
                                            ((12, 15, 18), (1.0, 1.0, 1.0)), ((9, 20, 14), (3.0, 0.8, 1.1)),
                                            ((10, 1, 25), (1.0, 1.0, 1.0))])
def test_dense_masks_envelope_their_stretches_to_the_same_distances(shape, spacing):
    """``dense``, on the complements of random structures (as the boundary loss uses it: distances inside them),
    some touching the edges, against the whole lines' envelopes, bit for bit; and against brute force."""
    for seed in range(10):
        mask = ~random_mask(shape, seed, density=0.03 * (seed % 3))
        if not mask.any():
            continue
        for root in (False, True):
            np.testing.assert_array_equal(squared_distances(mask, spacing, root=root, dense=True),
                                          squared_distances(mask, spacing, root=root), err_msg=f"seed {seed}")
        if mask.size <= 2000:
            np.testing.assert_allclose(squared_distances(mask, spacing, dense=True),
                                       brute_force_squared_distances(mask, spacing), rtol=1e-6)


def test_a_given_box_larger_than_the_masks_gives_the_same_distances():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 12:14] = True
    tight = squared_distances(mask, (1.0, 2.0))
    np.testing.assert_array_equal(squared_distances(mask, (1.0, 2.0), (slice(3, 15), slice(0, 30))), tight)
    np.testing.assert_array_equal(tight[mask], 0)
    assert tight[0, 0] == 5 ** 2 + (12 * 2.0) ** 2


def test_distances_written_into_a_given_array_and_bad_input_is_refused():
    mask = np.zeros((6, 7, 8), bool)
    mask[2, 3, 4] = True
    out = np.zeros((2, 6, 7, 8), np.float32)
    assert np.shares_memory(squared_distances(mask, (1.0, 2.0, 3.0), root=True, out=out[1]), out)
    np.testing.assert_array_equal(out[1], squared_distances(mask, (1.0, 2.0, 3.0), root=True))
    assert not out[0].any()
    assert np.isinf(squared_distances(np.zeros((4, 5), bool), (1.0, 1.0), out=out[0, 0, :4, :5].copy())).all()
    with pytest.raises(ValueError, match="C-contiguous float32"):
        squared_distances(mask, (1.0, 1.0, 1.0), out=out[0].astype(np.float64))
    with pytest.raises(ValueError, match="2D or 3D"):
        squared_distances(np.ones(5, bool), (1.0,))
    with pytest.raises(ValueError, match="one spacing per axis"):
        squared_distances(np.ones((3, 3), bool), (1.0, 1.0, 1.0))
