"""DBCEWeightMapTransform inside nnU-Net's own pipeline pieces, at every deep-supervision scale."""
import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform

from nnunetv2_dbce import DBCEWeightMapTransform, VoxelMapTransform, dbce_weight_map


def random_segmentation(shape, seed, num_classes=3, padding=True):
    """(1, *shape) int16 segmentation with blobs and, like nnU-Net's spatial transform output, -1 padding."""
    rng = np.random.default_rng(seed)
    seg = np.zeros(shape, np.int16)
    for _ in range(5):
        lo = [rng.integers(0, n - 2) for n in shape]
        seg[tuple(slice(a, a + rng.integers(2, max(3, n // 3))) for a, n in zip(lo, shape))] = \
            rng.integers(1, num_classes + 1)
    if padding:
        seg[:2] = -1
    return torch.from_numpy(seg)[None]


def source_voxels(shape, ds_scales):
    """For each deep-supervision scale, the flat index of the full-resolution voxel nnU-Net samples."""
    index_map = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(1, *shape)
    return [s[0].long() for s in DownsampleSegForDSTransform(ds_scales)._apply_to_segmentation(index_map)]


@pytest.mark.parametrize("shape, ds_scales, spacing", [
    ((40, 36), [[1, 1], [0.5, 0.5], [0.25, 0.25], [0.125, 0.125]], None),
    ((13, 30, 27), [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25]], (3.0, 1.0, 1.0)),
])
def test_weights_at_every_deep_supervision_scale(shape, ds_scales, spacing):
    segmentation = random_segmentation(shape, seed=len(shape))
    pipeline = ComposeTransforms([RemoveLabelTansform(-1, 0), DownsampleSegForDSTransform(ds_scales),
                                  DBCEWeightMapTransform(3, spacing)])
    out = pipeline(image=torch.zeros((1, *shape)), segmentation=segmentation.clone())

    labels, weights = out["segmentation"], out["voxel_map"]
    assert isinstance(weights, list) and len(weights) == len(ds_scales)
    full_labels = segmentation.clamp_min(0)[0].numpy()
    full_weights = dbce_weight_map(full_labels, 3, spacing)
    np.testing.assert_array_equal(weights[0][0].numpy(), full_weights)
    for scale_labels, scale_weights, source in zip(labels, weights, source_voxels(shape, ds_scales)):
        assert scale_weights.shape == scale_labels.shape and scale_weights.dtype == torch.float32
        np.testing.assert_array_equal(scale_labels[0].numpy(), full_labels.ravel()[source.numpy()])
        np.testing.assert_array_equal(scale_weights[0].numpy(), full_weights.ravel()[source.numpy()])


def test_without_deep_supervision_weights_are_one_tensor():
    segmentation = random_segmentation((20, 24), seed=5, padding=False)
    out = DBCEWeightMapTransform(2)(image=torch.zeros((1, 20, 24)), segmentation=segmentation)
    assert isinstance(out["voxel_map"], torch.Tensor) and out["voxel_map"].shape == (1, 20, 24)
    np.testing.assert_array_equal(out["voxel_map"][0].numpy(), dbce_weight_map(segmentation[0].numpy(), 2))


def test_ignore_label_gets_zero_weight():
    segmentation = random_segmentation((20, 24), seed=6, padding=False)
    segmentation[0, 5:9, 5:9] = 4
    out = DBCEWeightMapTransform(2, ignore_label=4)(segmentation=segmentation)
    assert torch.all(out["voxel_map"][segmentation == 4] == 0)
    assert torch.all(out["voxel_map"][segmentation != 4] > 0)


def test_bad_radius_is_refused_when_built():
    with pytest.raises(ValueError, match="radius"):
        DBCEWeightMapTransform(-3)


def foreground_map(labels, spacing):
    return labels > 0


def test_labels_beyond_the_datasets_are_refused():
    segmentation = random_segmentation((12, 12), seed=7, padding=False)
    segmentation[0, 0, 0] = 5
    with pytest.raises(ValueError, match="holds label 5, but the dataset's labels go up to 3"):
        DBCEWeightMapTransform(2, max_label=3)(segmentation=segmentation)
    assert "voxel_map" in DBCEWeightMapTransform(2, max_label=5)(segmentation=segmentation)
    # the DBCE map makes the check from its own label range; any other map function is checked by the transform
    handed_over = DBCEWeightMapTransform(2, max_label=3)
    assert handed_over.max_label is None and handed_over.map_function.function.max_label == 3
    with pytest.raises(ValueError, match="holds label 5, but the dataset's labels go up to 4"):
        dbce_weight_map(segmentation[0].numpy(), 2, max_label=4)
    with pytest.raises(ValueError, match="holds label 5, but the dataset's labels go up to 3"):
        VoxelMapTransform(foreground_map, max_label=3)(segmentation=segmentation)


@pytest.mark.parametrize("shape_in, shape_out", [((40, 36), (20, 18)), ((13, 30, 27), (7, 15, 14)),
                                                 ((13, 30, 27), (13, 8, 4)), ((9, 11), (3, 11)), ((5, 6), (1, 1))])
def test_sampling_equals_torchs_nearest_exact_interpolation(shape_in, shape_out):
    """The strided / indexed sampling picks exactly the voxels interpolate(mode='nearest-exact') picks."""
    from torch.nn.functional import interpolate

    from nnunetv2_dbce.voxel_maps.transform import sample_like_segmentation
    weight_map = torch.rand((2, *shape_in), generator=torch.Generator().manual_seed(len(shape_in)))
    expected = interpolate(weight_map[None], list(shape_out), mode="nearest-exact")[0]
    sampled = torch.from_numpy(sample_like_segmentation(weight_map.numpy(), shape_out))
    torch.testing.assert_close(sampled, expected, rtol=0, atol=0)
