"""Structure sizes and the derived dilation radius, against flood fill and geometry."""
import math

import numpy as np
import pytest

from helpers import make_trainer
from nnunetv2_dbce.trainers.dbce import nnUNetTrainerDBCE_derived
from nnunetv2_dbce.voxel_maps.structure_sizes import (
    derived_radius,
    equivalent_radii,
    measured_identifiers,
    structure_radii,
)
from reference import reference_component_sizes


@pytest.mark.parametrize("shape, spacing", [((13, 11), None), ((13, 11), (0.5, 2.0)), ((6, 7, 8), (3.0, 1.0, 1.5))])
def test_equivalent_radii_match_flood_fill(shape, spacing):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        mask = rng.random(shape) < 0.4
        voxel_size = 1.0 if spacing is None else np.prod(np.asarray(spacing) / min(spacing))
        sizes = np.array(reference_component_sizes(mask)) * voxel_size
        expected = np.sqrt(sizes / math.pi) if mask.ndim == 2 else (3 * sizes / (4 * math.pi)) ** (1 / 3)
        assert np.allclose(np.sort(equivalent_radii(mask, spacing)), np.sort(expected))


def test_a_drawn_disk_and_ball_have_their_radius():
    grid = np.indices((61, 61)) - 30
    assert equivalent_radii((grid ** 2).sum(0) <= 20 ** 2)[0] == pytest.approx(20, rel=0.02)
    grid = np.indices((41, 41, 41)) - 20
    # voxels of 2 x 1 x 1 mm: a ball of 12 mm holds 6 voxels along the first axis, 12 along the others
    ball = ((grid * np.array([2, 1, 1])[:, None, None, None]) ** 2).sum(0) <= 12 ** 2
    assert equivalent_radii(ball, (2.0, 1.0, 1.0))[0] == pytest.approx(12, rel=0.02)


def test_structures_are_measured_per_slice_for_2d_and_per_class_or_region():
    volume = np.zeros((3, 20, 20), np.uint8)
    volume[0, 2:6, 2:6] = 1        # 16 pixels
    volume[1, 2:6, 2:6] = 1        # the same square one slice further: one 3D structure of 32 voxels
    volume[2, 10:12, 10:12] = 2    # 4 pixels
    volume[2, 12:14, 10:12] = 1    # touches label 2: one region (1, 2) of 8 pixels in that slice
    per_slice = structure_radii([volume], [1, 2], (1.0, 1.0), slices=True)
    assert np.allclose(np.sort(per_slice[0]), np.sqrt(np.array([4, 16, 16]) / math.pi))
    assert np.allclose(per_slice[1], np.sqrt(4 / math.pi))
    in_3d = structure_radii([volume], [1, (1, 2)], (1.0, 1.0, 1.0), slices=False)
    assert np.allclose(np.sort(in_3d[0]), np.cbrt(3 * np.array([4, 32]) / (4 * math.pi)))
    assert np.allclose(np.sort(in_3d[1]), np.cbrt(3 * np.array([8, 32]) / (4 * math.pi)))


def test_derived_radius_is_half_the_smallest_median_and_at_least_one():
    assert derived_radius([np.array([30.0, 40, 50]), np.array([5.0, 9, 200])]) == (4.0, 9.0, 1)
    assert derived_radius([np.zeros(0), np.array([0.6, 1.0])])[0] == 1.0
    with pytest.raises(ValueError, match="no class"):
        derived_radius([np.zeros(0)])


def test_measured_identifiers_spread_over_the_dataset():
    identifiers = [f"case_{i:03d}" for i in range(250)]
    chosen = measured_identifiers(identifiers[::-1], limit=100)
    assert len(chosen) == len(set(chosen)) == 100 and chosen[0] == "case_000" and chosen[-1] == "case_249"
    assert measured_identifiers(identifiers[:7], limit=100) == identifiers[:7]


def test_trainer_derives_its_radius_from_the_preprocessed_label_maps(plans_and_dataset_json):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    trainer = make_trainer(nnUNetTrainerDBCE_derived, *plans_and_dataset_json)
    folder = trainer.preprocessed_dataset_folder
    dataset = infer_dataset_class(folder)(folder)
    radii = {label: [] for label in trainer.label_manager.foreground_labels}
    for identifier in dataset.identifiers:
        segmentation = np.asarray(dataset.load_case(identifier)[1][0])
        for plane in segmentation:
            for label in radii:
                radii[label] += [math.sqrt(s / math.pi) for s in reference_component_sizes(plane == label)]
    expected = max(1.0, round(min(np.median(r) for r in radii.values()) / 2))
    assert trainer.dilation_radius == expected
    assert trainer.my_init_kwargs["nnunetv2_dbce_loss_settings"]["dilation_radius"] == expected
    assert f"dilation radius {expected:g} voxels of the finest axis (derived: 0.5 x" in \
        trainer.describe_loss_settings()[0]
