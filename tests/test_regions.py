"""DBCE for region-based training: per-channel weight maps and the weighted BCE against slow references,
inside nnU-Net's region pipeline, and the trainers on a region dataset."""
import math

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform

from helpers import logged_and_reference, make_trainer
from nnunetv2_dbce import DBCEWeightMapTransform, DiceAndDBCELoss, PMDiceLoss, RegionDBCELoss, region_dbce_weight_maps
from nnunetv2_dbce.trainers import nnUNetTrainerBalancedCE, nnUNetTrainerDBCE, nnUNetTrainerDBCEPMDice
from nnunetv2_dbce.voxel_maps.dbce import DBCEWeightMap
from reference import reference_pm_dice, reference_weights

REGIONS = [(1, 2), (2,)]


def label_map_with_ignore(shape, seed, ignore_label=3):
    rng = np.random.default_rng(seed)
    label_map = np.zeros(shape, np.int16)
    for _ in range(4):
        lo = [rng.integers(0, n - 2) for n in shape]
        label_map[tuple(slice(a, a + rng.integers(2, max(3, n // 3))) for a, n in zip(lo, shape))] = rng.integers(1, 3)
    label_map[:2, :3] = ignore_label
    return label_map


def region_masks(label_map, ignore_label=3):
    """nnU-Net's layout: one mask per region, then the ignore mask."""
    return np.stack([np.isin(label_map, r) for r in REGIONS] + [label_map == ignore_label]).astype(np.int16)


@pytest.mark.parametrize("shape, spacing", [((17, 21), None), ((7, 12, 10), (2.0, 1.0, 1.0))])
@pytest.mark.parametrize("radius", [0, 2.5])
def test_region_weights_are_each_channels_binary_weights(shape, spacing, radius):
    for seed in range(3):
        label_map = label_map_with_ignore(shape, seed)
        weights = region_dbce_weight_maps(region_masks(label_map), radius, spacing, ignore_channel=True)
        assert weights.shape == (2, *shape)
        for channel, region in enumerate(REGIONS):
            binary = np.where(label_map == 3, 2, np.isin(label_map, region)).astype(np.int16)
            np.testing.assert_allclose(weights[channel], reference_weights(binary, radius, spacing, ignore_label=2),
                                       rtol=1e-5)
        assert np.all(weights[:, label_map == 3] == 0) and weights.dtype == np.float32


@pytest.mark.parametrize("spacing", [None, (1.0, 3.0)])
def test_region_weights_without_an_ignore_channel_and_through_the_map_function(spacing):
    """Every channel is a region when nnU-Net has no ignore label; ``DBCEWeightMap`` passes the spacing on."""
    label_map = label_map_with_ignore((15, 18), 0, ignore_label=0)
    masks = np.stack([np.isin(label_map, r) for r in REGIONS]).astype(np.int16)
    weights = region_dbce_weight_maps(masks, 2, spacing)
    assert weights.shape == (2, 15, 18) and weights.dtype == np.float32
    for channel, region in enumerate(REGIONS):
        expected = reference_weights(np.isin(label_map, region).astype(np.int16), 2, spacing)
        np.testing.assert_allclose(weights[channel], expected, rtol=1e-5)
    np.testing.assert_array_equal(DBCEWeightMap(2)(masks, spacing or (1.0, 1.0)), weights)


def weighted_bce_voxel_loop(logits, regions, weights, ignored):
    numerator = denominator = 0.0
    for index in np.ndindex(logits.shape):
        b, _, *spatial = index
        if ignored is not None and ignored[(b, *spatial)]:
            continue
        x, y, w = float(logits[index]), float(regions[index]), float(weights[index])
        bce = max(x, 0) - x * y + math.log1p(math.exp(-abs(x)))
        numerator += w * bce
        denominator += w
    return numerator / denominator


@pytest.mark.parametrize("ignore_channel", [False, True])
def test_region_dbce_loss_matches_voxel_loop(ignore_channel):
    generator = torch.Generator().manual_seed(4)
    logits = (3 * torch.randn((2, 2, 5, 6), generator=generator, dtype=torch.float64)).requires_grad_()
    target = (torch.rand((2, 3 if ignore_channel else 2, 5, 6), generator=generator) > 0.6).to(torch.int16)
    weights = torch.rand((2, 2, 5, 6), generator=generator, dtype=torch.float64) * 3
    loss = RegionDBCELoss(ignore_channel)(logits, target, weights)
    ignored = target[:, -1].bool().numpy() if ignore_channel else None
    expected = weighted_bce_voxel_loop(logits.detach().numpy(), target[:, :2].numpy(), weights.numpy(), ignored)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert torch.autograd.gradcheck(lambda x: RegionDBCELoss(ignore_channel)(x, target, weights), (logits,))
    said = r" \(\+1 ignore channel in the target\)" if ignore_channel else ""
    target_shape = "3" if ignore_channel else "2"
    with pytest.raises(ValueError, match=rf"of shape \(2, 2, 5, 6\){said}, got \(2, {target_shape}, 5, 6\) and "
                                         rf"\(2, 1, 5, 6\)$"):
        RegionDBCELoss(ignore_channel)(logits, target, weights[:, :1])
    if not ignore_channel:
        assert RegionDBCELoss()(logits, target, weights).item() == loss.item()  # no ignore channel by default


def test_dbce_and_pm_dice_on_regions_is_the_sum_of_its_parts():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn((2, 2, 6, 5), generator=generator, dtype=torch.float64)
    target = (torch.rand((2, 3, 6, 5), generator=generator) > 0.5).to(torch.int16)  # last channel: ignore mask
    weights = torch.rand((2, 2, 6, 5), generator=generator, dtype=torch.float64) + 0.5
    pm_dice = PMDiceLoss(torch.sigmoid, gamma=2.0, batch_dice=True, do_bg=True, smooth=1e-5)
    value = DiceAndDBCELoss(pm_dice, ignore_index=3, regions=True)(logits, target, weights)
    kept = (target[:, -1] == 0).numpy()
    expected = RegionDBCELoss(True)(logits, target, weights).item() + reference_pm_dice(
        torch.sigmoid(logits).numpy(), target[:, :2].numpy(), 2.0, True, True, 1e-5, kept)
    assert value.item() == pytest.approx(expected, rel=1e-8)


def test_region_maps_in_nnunets_pipeline_at_every_scale():
    label_map = label_map_with_ignore((24, 20), seed=8)
    scales = [[1, 1], [0.5, 0.5], [0.25, 0.25]]
    pipeline = ComposeTransforms([ConvertSegmentationToRegionsTransform(REGIONS + [3], channel_in_seg=0),
                                  DownsampleSegForDSTransform(scales), DBCEWeightMapTransform(2, None, 3)])
    out = pipeline(image=torch.zeros((1, 24, 20)), segmentation=torch.from_numpy(label_map)[None])
    full = region_dbce_weight_maps(region_masks(label_map), 2, None, ignore_channel=True)
    for scale_target, scale_map in zip(out["segmentation"], out["voxel_map"]):
        assert scale_target.shape[0] == 3 and scale_map.shape == (2, *scale_target.shape[1:])
    np.testing.assert_array_equal(out["voxel_map"][0].numpy(), full)
    np.testing.assert_array_equal(out["voxel_map"][1].numpy(), full[:, 1::2, 1::2])
    assert torch.all(out["voxel_map"][2][:, out["segmentation"][2][-1].bool()] == 0)


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerDBCE, nnUNetTrainerBalancedCE, nnUNetTrainerDBCEPMDice],
                         ids=lambda c: c.__name__)
def test_dbce_trainers_train_region_datasets(plans_and_dataset_json, trainer_class):
    plans, dataset_json = plans_and_dataset_json
    regions = dict(dataset_json, labels={"background": 0, "spot_or_blob": [1, 2], "blob": 2},
                   regions_class_order=[1, 2])
    trainer = make_trainer(trainer_class, plans, regions)
    trainer.initialize()
    inner = trainer.loss.loss
    dbce = inner.dbce if trainer_class is nnUNetTrainerDBCEPMDice else inner
    assert isinstance(dbce, RegionDBCELoss) and not dbce.ignore_channel
    if trainer_class is nnUNetTrainerDBCEPMDice:
        assert inner.dice.apply_nonlin is torch.sigmoid and inner.dice.do_bg
    loader_train, loader_val = trainer.get_dataloaders()
    batch = next(loader_train)
    for target, weights in zip(batch["target"], batch["voxel_map"]):
        assert target.shape[1] == 2 and weights.shape == target.shape
    radius = trainer.dilation_radius
    for b in range(batch["target"][0].shape[0]):
        expected = region_dbce_weight_maps(batch["target"][0][b].numpy(), radius, trainer.configuration_manager.spacing)
        np.testing.assert_allclose(batch["voxel_map"][0][b].numpy(), expected, rtol=1e-6)
    trainer.on_train_epoch_start()
    assert math.isfinite(trainer.train_step(batch)["loss"])

    def reference(out, target, weights):  # (PM Dice on the sigmoid channels +) BCE weighted by the region maps
        value = weighted_bce_voxel_loop(out.numpy(), target.numpy(), weights.numpy(), None)
        if trainer_class is nnUNetTrainerDBCEPMDice:
            value += reference_pm_dice(torch.sigmoid(out).numpy(), target.double().numpy(), 1.0, True, True, 1e-5)
        return value

    logged, expected = logged_and_reference(trainer, next(loader_val), reference)
    assert logged == pytest.approx(expected, rel=1e-4)
