"""Property-based tests (hypothesis) and numerical safety: random label maps, radii, spacings and gammas;
fp16 autocast with empty, absent-class, all-ignored, single-voxel and extreme-logit inputs."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nnunetv2_dbce import DBCELoss, DiceAndDBCELoss, PMDiceCELoss, PMDiceLoss, dbce_weight_map
from reference import reference_pm_dice, reference_weights

# derandomize: the same examples on every run, so that the suite's outcome never depends on chance
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def label_maps(draw, max_side=9):
    ndim = draw(st.sampled_from([2, 3]))
    shape = draw(st.tuples(*[st.integers(1, max_side)] * ndim))
    num_labels = draw(st.integers(1, 4))
    label_map = draw(arrays(np.int16, shape, elements=st.integers(0, num_labels)))
    spacing = draw(st.none() | st.tuples(*[st.floats(0.3, 4.0)] * ndim))
    ignore_label = draw(st.none() | st.just(num_labels + 1))
    if ignore_label is not None:
        label_map = np.where(draw(arrays(np.bool_, shape)), ignore_label, label_map).astype(np.int16)
    return label_map, spacing, ignore_label


@SETTINGS
@given(label_maps(), st.floats(0, 12) | st.integers(0, 12))
def test_weight_maps_equal_the_reference(case, radius):
    label_map, spacing, ignore_label = case
    weights = dbce_weight_map(label_map, radius, spacing, ignore_label)
    np.testing.assert_allclose(weights, reference_weights(label_map, radius, spacing, ignore_label), rtol=1e-5)
    assert weights.dtype == np.float32 and np.all(np.isfinite(weights)) and np.all(weights >= 0)
    valid = label_map != ignore_label if ignore_label is not None else np.ones(label_map.shape, bool)
    assert np.all(weights[~valid] == 0) and np.all(weights[valid] > 0)


@SETTINGS
@given(label_maps(max_side=6), st.floats(0, 6), st.integers(0, 2**31 - 1))
def test_dbce_loss_is_finite_non_negative_with_finite_gradients(case, radius, seed):
    label_map, spacing, ignore_label = case
    weights = torch.from_numpy(dbce_weight_map(label_map, radius, spacing, ignore_label))[None, None]
    target = torch.from_numpy(label_map.astype(np.int64))[None, None]
    classes = int(label_map.max()) + 1 if ignore_label is None else ignore_label
    logits = (torch.randn((1, max(classes, 2), *label_map.shape), generator=torch.Generator().manual_seed(seed))
              * 20).requires_grad_()
    loss = DBCELoss(ignore_label)(logits, target, weights)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() >= 0 and torch.all(torch.isfinite(logits.grad))


@SETTINGS
@given(st.lists(st.floats(0, 5), min_size=1, max_size=3), st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
def test_pm_dice_is_in_unit_interval_and_matches_the_reference(gammas, batch_dice, do_bg, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn((2, 3, 4, 3), generator=generator, dtype=torch.float64) * 5
    target = torch.randint(0, 3, (2, 1, 4, 3), generator=generator)
    gamma = gammas[0] if len(gammas) < 3 else gammas
    loss = PMDiceLoss(lambda x: torch.softmax(x, 1), gamma, batch_dice, do_bg)(logits, target)
    probabilities = torch.softmax(logits, 1).numpy()
    onehot = torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).numpy()
    assert 0 <= loss.item() <= 1
    assert loss.item() == pytest.approx(reference_pm_dice(probabilities, onehot, gamma, batch_dice, do_bg, 1e-5),
                                        rel=1e-9, abs=1e-12)


def awkward_targets():
    """(name, target (B, 1, X, Y), ignore label) for the edge cases: background only, a class absent, a single
    voxel, all ignored."""
    background = torch.zeros((2, 1, 8, 8), dtype=torch.long)
    absent_class = background.clone()
    absent_class[:, :, 2:5, 2:5] = 1  # class 2 of 3 absent from the whole batch
    single_voxel = background.clone()
    single_voxel[0, 0, 4, 4] = 2
    all_ignored = torch.full((2, 1, 8, 8), 3)
    return [("background only", background, None), ("class absent from the batch", absent_class, None),
            ("single foreground voxel", single_voxel, None), ("all ignored", all_ignored, 3)]


@pytest.mark.parametrize("name, target, ignore_label", awkward_targets(), ids=[c[0] for c in awkward_targets()])
@pytest.mark.parametrize("radius", [0, 5, 1000])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_fp16_autocast_is_finite_on_awkward_batches(name, target, ignore_label, radius, scale):
    weights = torch.stack([torch.from_numpy(dbce_weight_map(t[0].numpy(), radius,
                                                           ignore_label=ignore_label))[None]
                           for t in target])
    logits = (torch.sign(torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))) * scale)
    logits.requires_grad_()
    softmax = lambda x: torch.softmax(x, 1)  # noqa: E731
    for loss_function in (DBCELoss(ignore_label), DiceAndDBCELoss(PMDiceLoss(softmax, 2.0), ignore_label),
                          PMDiceCELoss(2.0, ignore_index=ignore_label)):
        logits.grad = None
        with torch.autocast("cpu", dtype=torch.float16):
            loss = loss_function(logits, target, weights)
        loss.backward()
        assert torch.isfinite(loss) and torch.all(torch.isfinite(logits.grad)), type(loss_function).__name__
    mask = None if ignore_label is None else target != ignore_label
    dice_target = target if ignore_label is None else torch.where(mask, target, 0)
    logits.grad = None
    with torch.autocast("cpu", dtype=torch.float16):
        loss = PMDiceLoss(softmax, [0.0, 2.0, 4.0], batch_dice=False)(logits, dice_target, loss_mask=mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(logits.grad))
