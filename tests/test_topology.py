"""Skeleton Recall and clDice: the tubed skeletons against a per-class loop, the losses against hand computations with
loops over voxels, and the trainers' logged loss on a real batch."""
import itertools
import json

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import skeletonize

from helpers import make_trainer, onehot, validation_loss_and_reference
from nnunetv2_dbce import ClDiceLoss, SkeletonRecallLoss
from nnunetv2_dbce.losses.compound import WithAddedTerm
from nnunetv2_dbce.tools.synthetic import write_vessel_dataset
from nnunetv2_dbce.trainers import nnUNetTrainerclDice, nnUNetTrainerSkeletonRecall
from nnunetv2_dbce.voxel_maps.skeletons import tubed_skeletons
from reference import reference_soft_dice, reference_weighted_ce


def blobs(shape, classes, seed):
    """Label map of touching, branching random blobs of ``classes`` labels."""
    rng = np.random.default_rng(seed)
    label_map = np.zeros(shape, np.int16)
    for c in range(1, classes + 1):
        seeds = ndimage.binary_dilation(rng.random(shape) > 0.985, iterations=2)
        label_map[seeds] = c
    return label_map


def slow_tubed_skeletons(label_map, classes, tube):
    """Per class, on the whole array: skeleton, then ``tube`` dilations voxel by voxel (face neighbours), inside
    the class."""
    maps = []
    for c in classes:
        mask = label_map == c
        tubed = skeletonize(mask) if mask.any() else np.zeros_like(mask)
        for _ in range(tube):
            grown = tubed.copy()
            for index in zip(*np.nonzero(tubed)):
                for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
                    neighbour = list(index)
                    neighbour[axis] += step
                    if 0 <= neighbour[axis] < mask.shape[axis]:
                        grown[tuple(neighbour)] = True
            tubed = grown
        maps.append(tubed & mask)
    return np.stack(maps).astype(np.float32)


@pytest.mark.parametrize("shape, tube", [((40, 36), 2), ((14, 18, 16), 2), ((30, 30), 0)])
def test_tubed_skeletons_match_a_per_class_loop(shape, tube):
    label_map = blobs(shape, 2, seed=len(shape) + tube)
    expected = slow_tubed_skeletons(label_map, [1, 2, 3], tube)
    np.testing.assert_array_equal(tubed_skeletons(label_map, [1, 2, 3], tube), expected)
    assert expected[:2].any() and not expected[2].any()  # class 3 is absent
    regions = np.stack([label_map > 0, label_map == 2])
    expected_regions = np.concatenate([slow_tubed_skeletons(r.astype(np.int16), [1], tube) for r in regions])
    np.testing.assert_array_equal(tubed_skeletons(regions, None, tube), expected_regions)


def reference_skeleton_recall(probabilities, skeletons, batch_dice, smooth, mask=None):
    """1 - mean over present (sample,) class of (sum p S + smooth) / (sum S + smooth), loops over voxels."""
    batch, classes = skeletons.shape[:2]
    groups = [list(range(batch))] if batch_dice else [[b] for b in range(batch)]
    recalls = []
    for samples in groups:
        for c in range(classes):
            overlap = length = 0.0
            for b in samples:
                for index in np.ndindex(skeletons.shape[2:]):
                    if mask is not None and not mask[(b, *index)]:
                        continue
                    s = float(skeletons[(b, c, *index)])
                    overlap += float(probabilities[(b, c, *index)]) * s
                    length += s
            if length > 0:
                recalls.append((overlap + smooth) / (length + smooth))
    return 1 - sum(recalls) / len(recalls) if recalls else 0.0


@pytest.mark.parametrize("batch_dice, ignore", [(True, None), (False, None), (True, 3)])
def test_skeleton_recall_matches_a_hand_computation(batch_dice, ignore):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn((2, 3, 9, 8), generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4 if ignore else 3, (2, 1, 9, 8), generator=generator)
    skeletons = (torch.rand((2, 2, 9, 8), generator=generator) > 0.6).double()
    skeletons[1, 1] = 0  # class 2 has no skeleton in sample 1
    loss = SkeletonRecallLoss(lambda x: torch.softmax(x, 1), batch_dice, 1e-5, ignore_index=ignore)
    mask = None if ignore is None else (target[:, 0] != ignore).numpy()
    expected = reference_skeleton_recall(torch.softmax(logits, 1)[:, 1:].detach().numpy(), skeletons.numpy(),
                                         batch_dice, 1e-5, mask)
    assert loss(logits, target, skeletons).item() == pytest.approx(expected, rel=1e-12)
    assert torch.autograd.gradcheck(lambda x: loss(x, target, skeletons), (logits,))
    empty = loss(logits, target, torch.zeros_like(skeletons))
    assert empty.item() == 0 and empty.requires_grad
    with pytest.raises(ValueError, match="one channel per foreground class"):
        loss(logits, target, skeletons[:, :1])


def test_skeleton_recall_on_regions_with_an_ignore_channel():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn((2, 2, 7, 6), generator=generator, dtype=torch.float64)
    target = (torch.rand((2, 3, 7, 6), generator=generator) > 0.7).to(torch.int16)  # last channel: ignore mask
    skeletons = (torch.rand((2, 2, 7, 6), generator=generator) > 0.5).double()
    value = SkeletonRecallLoss(torch.sigmoid, True, 1e-5, regions=True, ignore_index=9)(logits, target, skeletons)
    expected = reference_skeleton_recall(torch.sigmoid(logits).numpy(), skeletons.numpy(), True, 1e-5,
                                         (target[:, -1] == 0).numpy())
    assert value.item() == pytest.approx(expected, rel=1e-12)


def reference_soft_skeleton(image: np.ndarray, iterations: int) -> np.ndarray:
    """Shit et al.'s soft skeleton of one 2D map, with loops: erosion = min over the vertical and the horizontal
    3-neighbourhood, dilation = max over the 3x3 neighbourhood (borders: neighbours outside are left out)."""
    def neighbourhood(img, offsets, reduce):
        out = np.empty_like(img)
        for y, x in np.ndindex(img.shape):
            values = [img[y + dy, x + dx] for dy, dx in offsets
                      if 0 <= y + dy < img.shape[0] and 0 <= x + dx < img.shape[1]]
            out[y, x] = reduce(values)
        return out

    def erode(img):
        return np.minimum(neighbourhood(img, [(-1, 0), (0, 0), (1, 0)], min),
                          neighbourhood(img, [(0, -1), (0, 0), (0, 1)], min))

    def dilate(img):
        return neighbourhood(img, list(itertools.product((-1, 0, 1), repeat=2)), max)

    skeleton = np.maximum(image - dilate(erode(image)), 0)
    for _ in range(iterations):
        image = erode(image)
        delta = np.maximum(image - dilate(erode(image)), 0)
        skeleton = skeleton + np.maximum(delta - skeleton * delta, 0)
    return skeleton


def reference_cldice(probabilities, reference, iterations=3):
    """MONAI's soft clDice per sample (smoothing 1 / 1 / 1e-4), mean over the batch; (B, K, Y, X) arrays."""
    values = []
    for p, v in zip(probabilities, reference):
        skeleton_p = np.stack([reference_soft_skeleton(c, iterations) for c in p])
        skeleton_v = np.stack([reference_soft_skeleton(c, iterations) for c in v])
        precision = ((skeleton_p * v).sum() + 1) / (skeleton_p.sum() + 1)
        sensitivity = ((skeleton_v * p).sum() + 1) / (skeleton_v.sum() + 1)
        values.append(1 - 2 * precision * sensitivity / (precision + sensitivity + 1e-4))
    return float(np.mean(values))


@pytest.mark.parametrize("ignore", [None, 3])
def test_cldice_matches_the_soft_skeleton_by_loops(ignore):
    generator = torch.Generator().manual_seed(5)
    logits = 3 * torch.randn((2, 3, 10, 9), generator=generator)
    target = torch.from_numpy(np.stack([blobs((10, 9), 2, seed=s) for s in (1, 2)]))[:, None]
    if ignore:
        target[:, :, :3] = ignore
    kept = np.ones((2, 1, 10, 9), bool) if ignore is None else (target != ignore).numpy()
    labels = np.where(kept[:, 0], target[:, 0].numpy(), 0)
    reference = np.stack([labels == c for c in (1, 2)], 1) * kept
    probabilities = torch.softmax(logits, 1)[:, 1:].numpy() * kept
    expected = reference_cldice(probabilities.astype(np.float64), reference.astype(np.float64))
    assert ClDiceLoss(3, ignore_index=ignore)(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_skeleton_recall_trainer_logs_dice_ce_plus_recall_at_every_scale(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerSkeletonRecall, *plans_and_dataset_json)

    def terms(output, target, skeletons):
        probabilities = torch.softmax(output, 1).numpy()
        return reference_weighted_ce(output.numpy(), target[:, 0].numpy(), np.ones(target[:, 0].shape)) + \
            reference_soft_dice(probabilities, onehot(target, 3), True, False, 1e-5) + \
            reference_skeleton_recall(probabilities[:, 1:], skeletons.numpy(), True, 1e-5)

    logged, expected = validation_loss_and_reference(trainer, terms)
    assert logged == pytest.approx(expected, rel=1e-4)
    loader, _ = trainer.get_dataloaders()
    batch = next(loader)
    for b, full in enumerate(batch["target"][0]):  # the map of each augmented patch, at full resolution
        np.testing.assert_array_equal(batch["voxel_map"][0][b].numpy(), tubed_skeletons(full[0].numpy(), [1, 2]))
    assert batch["voxel_map"][0].sum() > 0


def test_cldice_trainer_logs_dice_ce_plus_half_cldice(plans_and_dataset_json):
    trainer = make_trainer(nnUNetTrainerclDice, *plans_and_dataset_json)

    def terms(output, target, _):
        probabilities = torch.softmax(output, 1).numpy()
        reference = onehot(target, 3)
        return reference_weighted_ce(output.numpy(), target[:, 0].numpy(), np.ones(target[:, 0].shape)) + \
            reference_soft_dice(probabilities, reference, True, False, 1e-5) + \
            0.5 * reference_cldice(probabilities[:, 1:], reference[:, 1:].astype(np.float64))

    logged, expected = validation_loss_and_reference(trainer, terms)
    assert logged == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerSkeletonRecall, nnUNetTrainerclDice])
def test_topology_trainers_on_regions(plans_and_dataset_json, trainer_class):
    plans, dataset_json = plans_and_dataset_json
    regions = dict(dataset_json, labels={"background": 0, "spot_or_blob": [1, 2], "blob": 2},
                   regions_class_order=[1, 2])
    trainer = make_trainer(trainer_class, plans, regions)
    trainer.initialize()
    loader, _ = trainer.get_dataloaders()
    batch = next(loader)
    if trainer_class is nnUNetTrainerSkeletonRecall:
        full = batch["target"][0][0].numpy()
        np.testing.assert_array_equal(batch["voxel_map"][0][0].numpy(), tubed_skeletons(full, None))
    trainer.on_train_epoch_start()
    assert np.isfinite(trainer.train_step(batch)["loss"])


def test_generated_vessel_trees(tmp_path):
    """Branching trees of varying width: few components, thick trunks and one-voxel twigs, in 2D PNGs and 3D NIfTI."""
    import SimpleITK as sitk
    from PIL import Image

    folder = write_vessel_dataset(tmp_path, 995, num_train=3, num_test=1, size=64)
    labels = [np.asarray(Image.open(p)) for p in sorted((folder / "labelsTr").glob("*.png"))]
    assert len(labels) == 3 and len(list((folder / "imagesTs").glob("*_0000.png"))) == 1
    for label in labels:
        assert set(np.unique(label)) == {0, 1} and 0.01 < label.mean() < 0.3
        assert ndimage.label(label, np.ones((3, 3)))[1] <= 2  # one or two trees (they may cross)
        radius = ndimage.distance_transform_edt(label)[skeletonize(label > 0)]
        assert radius.max() >= 2.5 and radius.min() <= 1.0  # thick trunks, one-pixel twigs
    folder_3d = write_vessel_dataset(tmp_path, 996, num_train=1, num_test=0, size=32, dims=3)
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(folder_3d / "labelsTr" / "vessels_000.nii.gz")))
    assert volume.shape == (32, 32, 32) and 0.002 < volume.mean() < 0.3
    assert json.loads((folder_3d / "dataset.json").read_text())["file_ending"] == ".nii.gz"


def test_an_added_term_is_weighted_and_gets_the_maps():
    """WithAddedTerm (Skeleton Recall, clDice): base(output, target) + weight * term(output, target, *maps)."""
    output, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    skeleton = torch.rand(2, 1, 4, 4)
    calls = []

    def base(o, t):
        calls.append(("base", o, t))
        return torch.tensor(1.5)

    def term(o, t, *maps):
        calls.append(("term", o, t, maps))
        return torch.tensor(4.0)

    assert WithAddedTerm(base, term, 0.25)(output, target, skeleton).item() == 1.5 + 0.25 * 4.0
    assert WithAddedTerm(base, term)(output, target).item() == 1.5 + 4.0  # weight 1 by default, no maps
    assert [c[0] for c in calls] == ["base", "term", "base", "term"]
    assert calls[0][1] is output and calls[0][2] is target and calls[1][1] is output and calls[1][2] is target
    assert len(calls[1][3]) == 1 and calls[1][3][0] is skeleton and calls[3][3] == ()


@pytest.mark.parametrize("ignore", [None, 9])
def test_cldice_on_regions_and_with_other_iterations_matches_the_loops(ignore):
    """Sigmoid region channels against the region masks (the last target channel: the ignore mask, when set), and a
    number of soft-skeleton iterations other than the default; half-precision logits are computed in fp32."""
    generator = torch.Generator().manual_seed(6)
    logits = 3 * torch.randn((2, 2, 10, 9), generator=generator)
    regions = torch.from_numpy(np.stack([blobs((10, 9), 2, seed=s) for s in (3, 4)]))[:, None]
    target = torch.cat([regions > 0, regions == 2], 1).to(torch.int16)
    kept = np.ones((2, 1, 10, 9), bool)
    if ignore:
        ignored = torch.zeros((2, 1, 10, 9), dtype=torch.int16)
        ignored[:, :, 7:] = 1
        target = torch.cat([target, ignored], 1)
        kept = (ignored == 0).numpy()
    probabilities = torch.sigmoid(logits).numpy() * kept
    reference = target[:, :2].numpy() * kept
    for iterations in (1, 3):
        expected = reference_cldice(probabilities.astype(np.float64), reference.astype(np.float64), iterations)
        loss = ClDiceLoss(iterations, regions=True, ignore_index=ignore)
        assert loss(logits, target).item() == pytest.approx(expected, rel=1e-5)
        assert loss(logits.to(torch.bfloat16), target).dtype == torch.float32


def test_skeleton_recall_defaults_single_voxel_skeletons_and_precision():
    """Batch recall and smoothing 1e-5 by default; a one-voxel skeleton counts; fp64 skeletons keep an fp32 loss
    fp32; the shape error names regions in region mode."""
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn((2, 3, 5, 4), generator=generator)
    target = torch.randint(0, 3, (2, 1, 5, 4), generator=generator)
    skeletons = torch.zeros((2, 2, 5, 4), dtype=torch.float64)
    skeletons[0, 0, 2, 1] = 1
    skeletons[1, 0, 3, 3] = 1
    skeletons[1, 1, 4, 0] = 1
    probabilities = torch.softmax(logits, 1)[:, 1:].double()
    value = SkeletonRecallLoss(lambda x: torch.softmax(x, 1))(logits, target, skeletons)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference_skeleton_recall(probabilities.numpy(), skeletons.numpy(), True,
                                                                   1e-5), rel=1e-6)
    single = skeletons.clone()
    single[0, 0] = single[1, 0] = 0  # class 1: no skeleton; class 2: one voxel
    assert SkeletonRecallLoss(lambda x: torch.softmax(x, 1))(logits, target, single).item() == pytest.approx(
        1 - (probabilities[1, 1, 4, 0].item() + 1e-5) / (1 + 1e-5), rel=1e-6)
    with pytest.raises(ValueError, match="one channel per foreground region"):
        SkeletonRecallLoss(torch.sigmoid, regions=True)(logits, target, skeletons)


def test_cldice_default_iterations_and_a_class_absent_from_the_batch():
    generator = torch.Generator().manual_seed(8)
    logits = 3 * torch.randn((2, 4, 10, 9), generator=generator)
    target = torch.from_numpy(np.stack([blobs((10, 9), 2, seed=s) for s in (5, 6)]))[:, None]  # no label 3
    reference = np.stack([target[:, 0].numpy() == c for c in (1, 2, 3)], 1).astype(np.float64)
    probabilities = torch.softmax(logits, 1)[:, 1:].numpy().astype(np.float64)
    assert ClDiceLoss()(logits, target).item() == pytest.approx(reference_cldice(probabilities, reference, 3),
                                                                rel=1e-5)


def test_cldice_computes_fp16_logits_in_fp32_and_keeps_fp64():
    """The precision rule of every loss here: half-precision logits are summed in fp32, fp64 stays fp64."""
    generator = torch.Generator().manual_seed(9)
    logits = 3 * torch.randn((2, 3, 10, 9), generator=generator, dtype=torch.float64)
    target = torch.from_numpy(np.stack([blobs((10, 9), 2, seed=s) for s in (7, 8)]))[:, None]
    reference = np.stack([target[:, 0].numpy() == c for c in (1, 2)], 1).astype(np.float64)
    exact = reference_cldice(torch.softmax(logits, 1)[:, 1:].numpy(), reference, 3)
    double = ClDiceLoss()(logits, target)
    assert double.dtype == torch.float64 and double.item() == pytest.approx(exact, rel=1e-10)
    half = ClDiceLoss()(logits.half(), target)
    assert half.dtype == torch.float32 and half.item() == pytest.approx(exact, rel=1e-2)
