"""The per-voxel map extension point and its two instances against slow references: signed distance maps and
the boundary loss (also against MONAI), U-Net border weights, the transform's scales and pickling."""
import itertools
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.losses import BoundaryLoss as MonaiBoundaryLoss

from helpers import USER_TRAINER_FOLDER, make_trainer
from nnunetv2_dbce import BorderWeightedCELoss, BoundaryLoss, VoxelMapTransform
from nnunetv2_dbce.trainers import nnUNetTrainerBoundaryLoss, nnUNetTrainerUNetBorderWeightedCE
from nnunetv2_dbce.voxel_maps.distance import signed_distance_maps, unet_border_weights
from reference import reference_weights


def blobs(shape, seed, num_classes=2, count=4):
    rng = np.random.default_rng(seed)
    label_map = np.zeros(shape, np.int16)
    for _ in range(count):
        lo = [rng.integers(0, n - 1) for n in shape]
        label_map[tuple(slice(a, a + rng.integers(1, max(2, n // 3))) for a, n in zip(lo, shape))] = \
            rng.integers(1, num_classes + 1)
    return label_map


def physical_distances(points_a, points_b, spacing):
    """Distance from each point of a to the nearest point of b (brute force), in the units of spacing."""
    a, b = np.asarray(points_a) * spacing, np.asarray(points_b) * spacing
    return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min(1)


def reference_signed_distance(label_map, num_classes, spacing):
    spacing = np.asarray(spacing, float)
    maps = np.zeros((num_classes - 1, *label_map.shape))
    voxels = np.argwhere(np.ones(label_map.shape, bool))
    for c in range(1, num_classes):
        inside = label_map == c
        if not inside.any() or inside.all():
            continue
        outside_distance = physical_distances(voxels, np.argwhere(inside), spacing).reshape(label_map.shape)
        inside_distance = physical_distances(voxels, np.argwhere(~inside), spacing).reshape(label_map.shape)
        maps[c - 1] = np.where(inside, -(inside_distance - spacing.min()), outside_distance)
    return maps


@pytest.mark.parametrize("shape, spacing", [((13, 11), (1.0, 1.0)), ((12, 9), (0.7, 1.8)),
                                            ((6, 9, 8), (2.5, 1.0, 0.8))])
def test_signed_distance_maps_match_brute_force(shape, spacing):
    for seed in range(3):
        label_map = blobs(shape, seed)
        np.testing.assert_allclose(signed_distance_maps(label_map, 4, spacing),
                                   reference_signed_distance(label_map, 4, spacing), rtol=1e-5, atol=1e-5)


def test_boundary_loss_equals_monais_on_unit_spacing():
    generator = torch.Generator().manual_seed(0)
    labels = torch.from_numpy(np.stack([blobs((14, 12), seed) for seed in range(3)]).astype(np.int64))[:, None]
    logits = torch.randn((3, 3, 14, 12), generator=generator, dtype=torch.float64, requires_grad=True)
    maps = torch.from_numpy(np.stack([signed_distance_maps(t[0].numpy(), 3, (1.0, 1.0)) for t in labels]))
    ours = BoundaryLoss()(logits, labels, maps)
    onehot = torch.nn.functional.one_hot(labels[:, 0], 3).movedim(-1, 1).float()
    monai = MonaiBoundaryLoss(include_background=False, softmax=True)(logits, onehot)
    assert ours.item() == pytest.approx(monai.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(ours, logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_boundary_loss_leaves_out_ignored_voxels():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn((2, 3, 6, 5), generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 1, 6, 5), generator=generator)
    target[:, :, :2] = 7
    maps = torch.randn((2, 2, 6, 5), generator=generator, dtype=torch.float64)
    p = torch.softmax(logits, 1).numpy()
    expected = [p[b, c + 1, x, y] * maps[b, c, x, y].item() for b, c, x, y in
                itertools.product(range(2), range(2), range(6), range(5)) if target[b, 0, x, y] != 7]
    assert BoundaryLoss(ignore_index=7)(logits, target, maps).item() == pytest.approx(np.mean(expected), rel=1e-10)
    with pytest.raises(ValueError, match="distance maps"):
        BoundaryLoss()(logits, target, maps[:, :1])


def reference_border_weights(label_map, spacing, w0, sigma, ignore_label):
    """Class-balancing weights (the reference balanced weights) plus the border term from brute-force
    distances to every object (flood-filled components with all neighbours)."""
    scale = np.asarray(spacing, float) / min(spacing)
    weights = reference_weights(label_map, 0, spacing, ignore_label)
    foreground = (label_map > 0) & (label_map != (ignore_label or -1))
    objects, remaining = [], set(map(tuple, np.argwhere(foreground)))
    while remaining:
        stack, component = [remaining.pop()], []
        while stack:
            voxel = stack.pop()
            component.append(voxel)
            for offset in itertools.product((-1, 0, 1), repeat=label_map.ndim):
                neighbour = tuple(v + o for v, o in zip(voxel, offset))
                if neighbour in remaining:
                    remaining.remove(neighbour)
                    stack.append(neighbour)
        objects.append(component)
    if len(objects) < 2:
        return weights
    voxels = np.argwhere(np.ones(label_map.shape, bool))
    distances = np.sort(np.stack([physical_distances(voxels, o, scale) for o in objects]), axis=0)
    border = w0 * np.exp(-(distances[0] + distances[1]) ** 2 / (2 * sigma ** 2)).reshape(label_map.shape)
    return np.where(weights > 0, weights + border, 0)


@pytest.mark.parametrize("shape, spacing, ignore_label", [((20, 17), (1.0, 1.0), None), ((18, 16), (1.0, 1.6), 5),
                                                          ((8, 12, 11), (2.0, 1.0, 1.0), None)])
def test_unet_border_weights_match_brute_force(shape, spacing, ignore_label):
    largest_border_term = 0
    for seed in range(3):
        label_map = blobs(shape, seed + 10, count=5)
        if ignore_label is not None:
            label_map[:3, :4] = ignore_label
        weights = unet_border_weights(label_map, spacing, 10.0, 2.5, ignore_label)
        np.testing.assert_allclose(weights, reference_border_weights(label_map, spacing, 10.0, 2.5, ignore_label),
                                   rtol=1e-5, atol=1e-6)
        largest_border_term = max(largest_border_term,
                                  (weights - reference_weights(label_map, 0, spacing, ignore_label)).max())
    assert largest_border_term > 1  # objects close enough for the border term to matter


def test_border_weighted_ce_is_a_voxel_mean():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn((2, 3, 4, 5), generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 1, 4, 5), generator=generator)
    target[0, 0, 0] = 9
    weights = torch.rand((2, 1, 4, 5), generator=generator, dtype=torch.float64) * 5
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0].clamp_max(2), reduction="none")
    kept = target[:, 0] != 9
    expected = (weights[:, 0] * ce)[kept].mean()
    assert BorderWeightedCELoss(ignore_index=9)(logits, target, weights).item() == pytest.approx(expected.item())


def test_transform_samples_label_maps_and_averages_continuous_ones():
    labels = torch.from_numpy(blobs((16, 12), 3))[None]
    segmentation = [labels, labels[:, 1::2, 1::2].clone(), labels[:, 2::4, 2::4].clone()]

    def two_channels(label_map, spacing):
        return np.stack([label_map == 1, np.arange(label_map.size).reshape(label_map.shape)]).astype(np.float32)

    nearest = VoxelMapTransform(two_channels)(segmentation=segmentation)["voxel_map"]
    assert [tuple(m.shape) for m in nearest] == [(2, 16, 12), (2, 8, 6), (2, 4, 3)]
    for scale_map, scale_labels in zip(nearest, segmentation):
        torch.testing.assert_close(scale_map[0], (scale_labels[0] == 1).float())
    averaged = VoxelMapTransform(two_channels, continuous=True)(segmentation=segmentation)["voxel_map"]
    full = torch.from_numpy(two_channels(labels[0].numpy(), None))
    torch.testing.assert_close(averaged[1], full.reshape(2, 8, 2, 6, 2).mean((2, 4)))
    torch.testing.assert_close(averaged[2], full.reshape(2, 4, 4, 3, 4).mean((2, 4)))
    with pytest.raises(ValueError, match=r"returned shape \(3, 3\) for a patch of shape \(16, 12\): expected "
                                         r"\(16, 12\) or \(K, 16, 12\)"):
        VoxelMapTransform(lambda label_map, spacing: np.zeros((3, 3)))(segmentation=labels)
    with pytest.raises(ValueError, match=r"returned shape \(2, 16, 13\)"):
        VoxelMapTransform(lambda label_map, spacing: np.zeros((2, 16, 13)))(segmentation=labels)
    received = []

    def spacing_and_float64(label_map, spacing):
        received.append(spacing)
        return label_map.astype(np.float64)

    assert VoxelMapTransform(spacing_and_float64)(segmentation=labels)["voxel_map"].dtype == torch.float32
    assert received == [(1.0, 1.0)]  # no spacing given: unit spacing
    with pytest.raises(TypeError, match="module-level function"):
        pickle.dumps(VoxelMapTransform(lambda label_map, spacing: label_map))


PICKLED_USER_MAP = '''
import pickle, sys
transform = pickle.loads(open(sys.argv[1], "rb").read())
import numpy as np
label_map = np.zeros((6, 7), np.int16)
label_map[2:4, 3:5] = 2
out = transform.map_function(label_map, (1.0, 1.0))
print("CHANNELS", out.shape[0], int(out[1].max()))
'''


def test_user_map_from_an_ext_trainer_file_reaches_a_spawned_worker(plans_and_dataset_json, tmp_path, monkeypatch):
    """nnU-Net imports the user's trainer file and drops it from sys.modules again: the map function still
    pickles (by its file) and runs in a fresh interpreter that has never seen the trainer folder."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    monkeypatch.setenv("nnUNet_extTrainer", str(USER_TRAINER_FOLDER))
    trainer_class = recursive_find_trainer_class_by_name("nnUNetTrainerAlignedMap_tiny")
    assert "voxel_map_test_trainers" not in sys.modules  # nnU-Net cleaned up after its lookup
    trainer = make_trainer(trainer_class, *plans_and_dataset_json)
    (tmp_path / "transform.pkl").write_bytes(pickle.dumps(trainer._voxel_map_transform()))
    (tmp_path / "worker.py").write_text(PICKLED_USER_MAP)
    result = subprocess.run([sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "transform.pkl")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CHANNELS 2 2" in result.stdout


def test_boundary_trainer_alpha_rises_and_maps_are_continuous(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerBoundaryLoss, *plans_and_dataset_json)
    assert [trainer.boundary_alpha(e) for e in (0, 1, 50, 500)] == pytest.approx([0.01, 0.02, 0.51, 1.0])
    trainer.initialize()
    assert trainer.loss.loss.region.weight_ce == 0 and isinstance(trainer.loss.loss.boundary, BoundaryLoss)
    transform = trainer._voxel_map_transform()
    assert transform.continuous and transform.map_function.function.num_classes == 3
    loader_train, _ = trainer.get_dataloaders()
    trainer.current_epoch = 3
    trainer.on_train_epoch_start()
    assert trainer.loss.loss.alpha == pytest.approx(0.04)
    batch = next(loader_train)
    assert batch["voxel_map"][0].shape[1] == 2  # one signed distance map per foreground class
    assert math.isfinite(trainer.train_step(batch)["loss"])


def test_border_trainer_builds_the_papers_weights(plans_and_dataset_json):
    plans, dataset_json = plans_and_dataset_json
    trainer = make_trainer(nnUNetTrainerUNetBorderWeightedCE, plans, dict(dataset_json, labels={
        **dataset_json["labels"], "ignore": 3}))
    function = trainer._voxel_map_transform().map_function.function
    assert (function.w0, function.sigma, function.ignore_label) == (10.0, 5.0, 3)
    regions = dict(dataset_json, labels={"background": 0, "any": [1, 2], "blob": 2}, regions_class_order=[1, 2])
    for trainer_class in (nnUNetTrainerBoundaryLoss, nnUNetTrainerUNetBorderWeightedCE):
        with pytest.raises(ValueError, match="does not support region-based training"):
            make_trainer(trainer_class, plans, regions)


def test_documented_example_is_the_tested_trainer_file():
    documentation = (USER_TRAINER_FOLDER.parents[1] / "docs" / "voxel_maps.md").read_text()
    example = (USER_TRAINER_FOLDER / "my_voxel_map.py").read_text()
    assert example.strip() in documentation


USER_MAP_MODULE = '''
import map_neighbour


class Maps:
    @staticmethod
    def scaled(label_map, spacing):
        return map_neighbour.FACTOR * label_map.astype("float32")


doubled = lambda label_map, spacing: 2 * label_map  # noqa: E731
'''


def test_map_function_of_a_module_pickle_cannot_import_travels_by_its_file(tmp_path):
    """In-process round trip of what the worker test above does across processes: a function whose module is not
    in sys.modules pickles as (file, module, qualified name) and loads from that file, neighbours importable only
    while it loads; a function pickle can find travels as itself."""
    import importlib.util

    from nnunetv2_dbce.voxel_maps.transform import PicklableByFile, load_function
    (tmp_path / "map_neighbour.py").write_text("FACTOR = 3.0\n")
    (tmp_path / "user_maps_by_file.py").write_text(USER_MAP_MODULE)
    spec = importlib.util.spec_from_file_location("user_maps_by_file", tmp_path / "user_maps_by_file.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(tmp_path))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(tmp_path))
    sys.modules.pop("map_neighbour")
    label_map = np.arange(6, dtype=np.int16).reshape(2, 3)
    try:
        loaded = pickle.loads(pickle.dumps(PicklableByFile(module.Maps.scaled)))
        assert isinstance(loaded, PicklableByFile)
        np.testing.assert_array_equal(loaded(label_map, (1.0, 1.0)), 3.0 * label_map)
        assert sys.modules["user_maps_by_file"].__file__ == str(tmp_path / "user_maps_by_file.py")
        assert str(tmp_path) not in sys.path
        again = load_function(str(tmp_path / "user_maps_by_file.py"), "user_maps_by_file", "Maps.scaled")
        assert again.function is loaded.function  # the module already loaded from that file is reused
        with pytest.raises(ImportError, match="cannot import"):
            load_function(str(tmp_path / "not_python.txt"), "user_maps_by_file", "Maps.scaled")
        with pytest.raises(TypeError, match="module-level function"):  # a lambda has no name to load it by
            pickle.dumps(PicklableByFile(module.doubled))
        sys.modules["user_maps_by_file"] = type(sys)("user_maps_by_file")  # a module of that name, not from a file
        from_file = load_function(str(tmp_path / "user_maps_by_file.py"), "user_maps_by_file", "Maps.scaled")
        np.testing.assert_array_equal(from_file(label_map, spacing=(1.0, 1.0)), 3.0 * label_map)
    finally:
        sys.modules.pop("user_maps_by_file", None)
        sys.modules.pop("map_neighbour", None)

    def nested(label_map, spacing):
        return label_map

    class Unpicklable:
        def __init__(self):
            self.function = lambda label_map, spacing: label_map

        def __call__(self, label_map, spacing):
            return self.function(label_map, spacing)

    for function in (nested, Unpicklable()):
        with pytest.raises(TypeError, match="must be a module-level function or a picklable callable object"):
            pickle.dumps(PicklableByFile(function))
    by_reference = pickle.loads(pickle.dumps(PicklableByFile(reference_weights)))
    assert by_reference.function is reference_weights
    np.testing.assert_array_equal(by_reference(label_map, 1), reference_weights(label_map, 1))


def test_continuous_maps_are_block_means_in_3d_and_untouched_at_full_resolution():
    from nnunetv2_dbce.voxel_maps.transform import average_to
    full = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 4, 6, 8)
    assert average_to(full, (4, 6, 8)) is full
    torch.testing.assert_close(average_to(full, (2, 3, 4)), full.reshape(2, 2, 2, 3, 2, 4, 2).mean((2, 4, 6)))
    torch.testing.assert_close(average_to(full[:, 0], (3, 4)), full[:, 0].reshape(2, 3, 2, 4, 2).mean((2, 4)))


def test_scales_averaged_from_the_scale_before_equal_those_averaged_from_full_resolution():
    """nnU-Net's poolings (factor 2, 1 along a coarse axis, sizes that stop dividing, factors 3 and 4) through
    ``averaged_scales``
    against ``average_to`` of the full-resolution map, scale by scale."""
    from nnunetv2_dbce.voxel_maps.transform import average_to, averaged_scales
    full = np.random.default_rng(0).normal(size=(2, 8, 12, 16)).astype(np.float32)
    for shapes in ([(8, 12, 16), (8, 6, 8), (4, 3, 4), (2, 3, 2)], [(8, 12, 16), (4, 6, 8), (3, 3, 4), (1, 1, 2)],
                   [(8, 12, 16), (5, 6, 8), (4, 3, 4)], [(8, 12, 16), (8, 4, 16), (4, 2, 4)]):
        scales = averaged_scales(full, shapes)
        assert [tuple(scale.shape[1:]) for scale in scales] == shapes
        for scale, shape in zip(scales, shapes):
            torch.testing.assert_close(scale, average_to(torch.from_numpy(full), shape), rtol=1e-6, atol=1e-6)
    assert np.shares_memory(averaged_scales(full, [(8, 12, 16)])[0].numpy(), full)  # full resolution: no copy


@pytest.mark.parametrize("shape, factors", [((3, 8, 12), (2, 2)), ((2, 8, 12), (1, 2)), ((2, 8, 12), (2, 1)),
                                            ((2, 4, 6, 8), (2, 2, 2)), ((1, 4, 6, 8), (1, 2, 2)),
                                            ((2, 4, 6, 8), (2, 1, 2)), ((2, 4, 6, 8), (2, 2, 1))])
def test_compiled_block_means_sum_in_the_order_of_the_axes(shape, factors):
    """nnU-Net's poolings (factors 1 and 2) of float32 maps: bit for bit the sums axis after axis, then the division
    by the block's size (the float32 order of the strided-view path they replace)."""
    from nnunetv2_dbce.voxel_maps.transform import block_means
    full = np.random.default_rng(1).normal(size=shape).astype(np.float32) * 1e3
    expected = full
    for axis, factor in enumerate(factors, start=1):
        if factor == 2:
            take = [slice(None)] * expected.ndim
            even, odd = list(take), list(take)
            even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
            expected = expected[tuple(even)] + expected[tuple(odd)]
    expected = expected / np.float32(np.prod(factors))
    means = block_means(full, factors)
    assert means.dtype == np.float32 and means.shape == expected.shape
    np.testing.assert_array_equal(means, expected)


def test_boundary_loss_edge_cases_and_its_sum_with_a_region_loss():
    """All voxels ignored gives 0, mismatched spatial shapes are refused, half-precision logits are computed in
    fp32, and the region + alpha * boundary sum follows alpha as it is changed from outside."""
    from nnunetv2_dbce import RegionAndBoundaryLoss
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn((2, 3, 6, 5), generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 1, 6, 5), generator=generator)
    maps = torch.randn((2, 2, 6, 5), generator=generator, dtype=torch.float64)
    assert BoundaryLoss(ignore_index=7)(logits, torch.full_like(target, 7), maps).item() == 0
    with pytest.raises(ValueError, match=r"\(B, 2, \.\.\.\) distance maps"):
        BoundaryLoss()(logits, target, maps[:, :, :5])
    half = BoundaryLoss()(logits.to(torch.bfloat16), target, maps.float())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(BoundaryLoss()(logits.to(torch.bfloat16).double(), target, maps).item(),
                                        rel=1e-5)

    def region(output, labels):
        return torch.nn.functional.cross_entropy(output, labels[:, 0])

    combined = RegionAndBoundaryLoss(region, BoundaryLoss())
    boundary = BoundaryLoss()(logits, target, maps)
    assert combined(logits, target, maps).item() == pytest.approx((region(logits, target) + 0.01 * boundary).item())
    combined.alpha = 0.7
    assert combined(logits, target, maps).item() == pytest.approx((region(logits, target) + 0.7 * boundary).item())


def test_border_weighted_ce_without_ignore_label_and_with_everything_ignored():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn((2, 3, 4, 5), generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 1, 4, 5), generator=generator)
    weights = torch.rand((2, 1, 4, 5), generator=generator, dtype=torch.float64) * 5
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0], reduction="none")
    assert BorderWeightedCELoss()(logits, target, weights).item() == pytest.approx((weights[:, 0] * ce).mean().item())
    assert BorderWeightedCELoss(ignore_index=9)(logits, torch.full_like(target, 9), weights).item() == 0


def test_one_annotated_voxel_is_its_own_mean_and_maps_keep_the_logits_precision():
    """The means divide by the annotated voxels even when there is one (the clamp only guards 0), and fp64 maps do
    not lift fp32 logits' loss to fp64."""
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn((1, 2, 3, 4), generator=generator)
    target = torch.full((1, 1, 3, 4), 7)
    target[0, 0, 1, 2] = 1
    maps = torch.randn((1, 1, 3, 4), generator=generator, dtype=torch.float64)
    boundary = BoundaryLoss(ignore_index=7)(logits, target, maps)
    assert boundary.dtype == torch.float32
    assert boundary.item() == pytest.approx(torch.softmax(logits, 1)[0, 1, 1, 2].item() * maps[0, 0, 1, 2].item(),
                                            rel=1e-6)
    weights = torch.rand((1, 1, 3, 4), generator=generator) * 5
    ce = torch.nn.functional.cross_entropy(logits[..., 1, 2], torch.tensor([1]))
    assert BorderWeightedCELoss(ignore_index=7)(logits, target, weights).item() == pytest.approx(
        (weights[0, 0, 1, 2] * ce).item(), rel=1e-6)
