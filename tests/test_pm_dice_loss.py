"""PMDiceLoss against a voxel-loop reference in every option combination; gradient, gamma = 0, masks, fp16."""
import itertools

import numpy as np
import pytest
import torch

from nnunetv2_dbce import PMDiceLoss
from nnunetv2_dbce.losses.pm_dice import check_gamma
from reference import reference_pm_dice


def softmax(x):
    return torch.softmax(x, 1)


def random_case(shape=(2, 3, 4, 5), seed=0, regions=False):
    generator = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(shape, generator=generator, dtype=torch.float64)).requires_grad_()
    if regions:
        target = (torch.rand(shape, generator=generator) < 0.4).double()
    else:
        target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=generator)
    return logits, target


def onehot(target, classes):
    if target.shape[1] == classes:
        return target.double().numpy()
    return torch.nn.functional.one_hot(target[:, 0].long(), classes).movedim(-1, 1).double().numpy()


OPTIONS = list(itertools.product([True, False], [True, False], [0.0, 2.0, 0.5, (1.0, 2.0, 3.0)], [False, True]))


@pytest.mark.parametrize("batch_dice, do_bg, gamma, masked", OPTIONS)
def test_value_matches_voxel_loop(batch_dice, do_bg, gamma, masked):
    logits, target = random_case(seed=hash((batch_dice, do_bg, masked)) % 1000)
    mask = (torch.rand(target.shape, generator=torch.Generator().manual_seed(1)) > 0.3) if masked else None
    loss = PMDiceLoss(softmax, gamma, batch_dice, do_bg, smooth=1e-5)(logits, target, loss_mask=mask)
    expected = reference_pm_dice(softmax(logits).detach().numpy(), onehot(target, 3), gamma, batch_dice, do_bg,
                                 1e-5, None if mask is None else mask[:, 0].numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("batch_dice, do_bg, gamma, masked", OPTIONS[::3])
def test_gradient_treats_the_modulation_as_a_constant(batch_dice, do_bg, gamma, masked):
    logits, target = random_case(seed=7)
    mask = (torch.rand(target.shape, generator=torch.Generator().manual_seed(2)) > 0.3) if masked else None
    loss = PMDiceLoss(softmax, gamma, batch_dice, do_bg)(logits, target, loss_mask=mask)
    (grad,) = torch.autograd.grad(loss, logits)

    p = softmax(logits)
    y = torch.from_numpy(onehot(target, 3))
    gammas = torch.tensor(gamma if np.ndim(gamma) else [gamma] * 3, dtype=torch.float64).view(1, 3, 1, 1)
    frozen_m = torch.from_numpy(np.abs(y.numpy() - p.detach().numpy()) ** gammas.numpy())  # no graph at all
    if mask is not None:
        frozen_m = frozen_m * mask
    first = 0 if do_bg else 1
    axes = (0, 2, 3) if batch_dice else (2, 3)
    numerator = 2 * (frozen_m * y * p)[:, first:].sum(axes) + 1e-5
    denominator = (frozen_m * (y * y + p * p))[:, first:].sum(axes) + 1e-5
    (expected,) = torch.autograd.grad(1 - (numerator / denominator).mean(), logits)
    torch.testing.assert_close(grad, expected)


def test_modulation_carries_no_gradient():
    """With gamma > 0 the gradient differs from that of the same formula with m left in the graph."""
    logits, target = random_case(seed=3)
    (grad,) = torch.autograd.grad(PMDiceLoss(softmax, 2.0)(logits, target), logits)
    p = softmax(logits)
    y = torch.from_numpy(onehot(target, 3))
    m = (y - p).abs() ** 2  # not detached
    through_m = 1 - ((2 * (m * y * p).sum((0, 2, 3)) + 1e-5) / ((m * (y + p * p)).sum((0, 2, 3)) + 1e-5))[1:].mean()
    (grad_through_m,) = torch.autograd.grad(through_m, logits)
    assert not torch.allclose(grad, grad_through_m, atol=1e-6)


@pytest.mark.parametrize("batch_dice, do_bg", [(True, False), (False, True)])
def test_gamma_zero_is_soft_dice_with_squared_denominator(batch_dice, do_bg):
    logits, target = random_case(seed=11)
    p, y = softmax(logits), torch.from_numpy(onehot(target, 3))
    axes = (0, 2, 3) if batch_dice else (2, 3)
    dice = (2 * (p * y).sum(axes) + 1e-5) / ((p * p).sum(axes) + (y * y).sum(axes) + 1e-5)
    soft_dice = 1 - (dice if do_bg else dice[..., 1:]).mean()
    loss = PMDiceLoss(softmax, 0.0, batch_dice, do_bg)(logits, target)
    torch.testing.assert_close(loss, soft_dice)
    torch.testing.assert_close(*(torch.autograd.grad(v, logits)[0] for v in (loss, soft_dice)))


@pytest.mark.parametrize("batch_dice", [True, False])
def test_region_mode_with_sigmoid_and_overlapping_targets(batch_dice):
    logits, target = random_case(seed=5, regions=True)
    loss = PMDiceLoss(torch.sigmoid, 2.0, batch_dice, do_bg=True)(logits, target)
    expected = reference_pm_dice(torch.sigmoid(logits).detach().numpy(), target.numpy(), 2.0, batch_dice, True, 1e-5)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_ignored_voxels_contribute_nothing():
    logits, target = random_case(seed=9)
    mask = torch.ones(target.shape, dtype=torch.bool)
    mask[:, :, :2] = False
    loss_function = PMDiceLoss(softmax, 2.0)
    loss = loss_function(logits, target, loss_mask=mask)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.all(grad[:, :, :2] == 0)
    changed = logits.detach().clone()
    changed[:, :, :2] = torch.randn(changed[:, :, :2].shape, generator=torch.Generator().manual_seed(3)) * 10
    other_target = target.clone()
    other_target[:, :, :2] = 0
    assert loss_function(changed, other_target, loss_mask=mask).item() == pytest.approx(loss.item(), rel=1e-12)


def test_label_map_with_or_without_channel_axis_and_onehot_agree():
    logits, target = random_case(seed=4)
    loss_function = PMDiceLoss(softmax, 1.5)
    values = [loss_function(logits, t) for t in (target, target[:, 0], torch.from_numpy(onehot(target, 3)))]
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(values[0], values[2])


def test_fp16_autocast_and_extreme_logits_are_finite():
    logits, target = random_case(seed=6)
    extreme = (torch.sign(logits.detach()) * 1e4).float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = PMDiceLoss(softmax, 2.0)(extreme, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(extreme.grad))
    half = PMDiceLoss(softmax, 2.0)(extreme.detach().half(), target)
    assert torch.isfinite(half)


def test_empty_classes_give_finite_loss():
    logits, _ = random_case(seed=8)
    background_only = torch.zeros((2, 1, 4, 5), dtype=torch.long)
    loss = PMDiceLoss(softmax, 2.0, batch_dice=False)(logits, background_only)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(logits.grad))


@pytest.mark.parametrize("gamma, error", [(-1.0, ValueError), (float("nan"), ValueError), ("2", TypeError),
                                          ([], TypeError), ([1.0, -2.0], ValueError), (True, TypeError)])
def test_bad_gamma_is_refused(gamma, error):
    with pytest.raises(error, match="gamma"):
        PMDiceLoss(softmax, gamma)


def test_per_class_gamma_of_the_wrong_length_is_refused():
    logits, target = random_case()
    with pytest.raises(ValueError, match="gamma has 2 values but there are 3 classes"):
        PMDiceLoss(softmax, [1.0, 2.0])(logits, target)
    assert check_gamma([1, 2, 3], 3) == (1.0, 2.0, 3.0)


def test_defaults_are_the_papers_settings_with_nnunets_dice():
    """gamma 1, batch Dice, background excluded, smoothing 1e-5, no DDP: ``PMDiceLoss(softmax)`` as documented."""
    logits, target = random_case(seed=3)
    loss = PMDiceLoss(softmax)
    assert loss.gamma == (1.0,) and loss.ddp is False
    expected = reference_pm_dice(softmax(logits).detach().numpy(), onehot(target, 3), 1.0, True, False, 1e-5)
    assert loss(logits, target).item() == pytest.approx(expected, rel=1e-10)
    assert check_gamma(2, num_classes=3) == check_gamma([2.0], num_classes=3) == (2.0,)  # one value for all


def test_a_class_predicted_nowhere_in_a_tiny_patch_matches_the_reference():
    """Denominators far below 1 (a class neither present nor predicted): only the smoothing term is left."""
    logits = torch.tensor([[[[12.0, 12.0]], [[-12.0, -12.0]], [[-12.0, -12.0]]]], dtype=torch.float64)
    target = torch.zeros((1, 1, 1, 2), dtype=torch.long)
    expected = reference_pm_dice(softmax(logits).numpy(), onehot(target, 3), 1.0, False, False, 1e-5)
    assert PMDiceLoss(softmax, 1.0, batch_dice=False)(logits, target).item() == pytest.approx(expected, rel=1e-9)


def test_gamma_three_and_soft_targets_match_voxel_loop():
    """One gamma of 3 (a power the modulation takes no shortcut for) and soft region targets (y^2 != y)."""
    logits, target = random_case(seed=11)
    expected = reference_pm_dice(softmax(logits).detach().numpy(), onehot(target, 3), 3.0, True, False, 1e-5)
    assert PMDiceLoss(softmax, 3.0)(logits, target).item() == pytest.approx(expected, rel=1e-9)
    soft = torch.rand(logits.shape, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    expected = reference_pm_dice(torch.sigmoid(logits).detach().numpy(), soft.numpy(), 2.0, True, True, 1e-5)
    assert PMDiceLoss(torch.sigmoid, 2.0, do_bg=True)(logits, soft).item() == pytest.approx(expected, rel=1e-9)
