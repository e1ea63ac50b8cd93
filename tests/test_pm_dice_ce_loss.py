"""PMDiceCELoss (PM Dice + CE or DBCE from one softmax) against voxel-loop references and a plain-autograd gradient."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1

from nnunetv2_dbce import PMDiceCELoss
from reference import reference_pm_dice, reference_weighted_ce

GAMMAS = [0.0, 1.0, 2.0, 0.5, (1.0, 2.0, 3.0)]


def random_case(seed, ignore_index=None, shape=(2, 3, 4, 5)):
    generator = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(shape, generator=generator, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, shape[1] + (ignore_index is not None), (shape[0], 1, *shape[2:]), generator=generator)
    weights = torch.rand(target.shape, generator=generator, dtype=torch.float64) + 0.5
    return logits, target, weights


def onehot(labels, classes):
    return np.moveaxis(np.eye(classes)[labels], -1, 1)


def reference(logits, target, weights, gamma, batch_dice, do_bg, ignore_index, weight_ce):
    """Voxel loops: PM Dice over the counted voxels (ignored ones relabelled 0 and masked, as nnU-Net does) plus
    weight_ce times the voxel-weighted CE (weights 1 for plain CE)."""
    labels = target[:, 0].numpy()
    counted = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    probabilities = torch.softmax(logits, 1).detach().numpy()
    value = reference_pm_dice(probabilities, onehot(np.where(counted, labels, 0), logits.shape[1]), gamma,
                              batch_dice, do_bg, 1e-5, counted)
    if weight_ce:
        voxel_weights = np.ones(labels.shape) if weights is None else weights[:, 0].numpy()
        value += weight_ce * reference_weighted_ce(logits.detach().numpy(), labels, voxel_weights, ignore_index)
    return value


def autograd_loss(logits, target, weights, gamma, batch_dice, do_bg, ignore_index, weight_ce):
    """The same loss written plainly in torch (one-hot target, the modulation detached), for its gradient."""
    classes = logits.shape[1]
    counted = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    y = F.one_hot(torch.where(counted, target, 0)[:, 0], classes).movedim(-1, 1).double()
    p = torch.softmax(logits, 1)
    gammas = torch.tensor(gamma if np.ndim(gamma) else [gamma] * classes, dtype=torch.float64).view(1, -1, 1, 1)
    m = (y - p).abs().detach() ** gammas * counted
    axes = (0, 2, 3) if batch_dice else (2, 3)
    dice = (2 * (m * y * p).sum(axes) + 1e-5) / ((m * (y * y + p * p)).sum(axes) + 1e-5)
    dice = dice if do_bg else dice[..., 1:]
    value = 1 - dice.mean()
    if weight_ce:
        w = (torch.ones_like(target, dtype=torch.float64) if weights is None else weights) * counted
        ce = F.cross_entropy(logits, torch.where(counted, target, 0)[:, 0], reduction="none")
        value = value + weight_ce * (w[:, 0] * ce).sum() / w.sum()
    return value


OPTIONS = list(itertools.product(GAMMAS, [True, False], [False, True], [None, 3], [False, True], [1, 0]))


@pytest.mark.parametrize("gamma, batch_dice, do_bg, ignore_index, weighted, weight_ce", OPTIONS)
def test_value_and_gradient_match_the_references(gamma, batch_dice, do_bg, ignore_index, weighted, weight_ce):
    logits, target, weights = random_case(OPTIONS.index((gamma, batch_dice, do_bg, ignore_index, weighted,
                                                         weight_ce)), ignore_index)
    weights = weights if weighted else None
    loss = PMDiceCELoss(gamma, batch_dice, do_bg, ignore_index=ignore_index, weight_ce=weight_ce)
    value = loss(logits, target, weights)
    expected = reference(logits, target, weights, gamma, batch_dice, do_bg, ignore_index, weight_ce)
    assert value.item() == pytest.approx(expected, rel=1e-9)
    (grad,) = torch.autograd.grad(value, logits)
    plain = autograd_loss(logits, target, weights, gamma, batch_dice, do_bg, ignore_index, weight_ce)
    (expected_grad,) = torch.autograd.grad(plain, logits)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)
    if ignore_index is not None:
        assert torch.all(grad.movedim(1, -1)[target[:, 0] == ignore_index] == 0)


def test_gamma_zero_plus_ce_is_the_squared_soft_dice_plus_nnunets_ce():
    logits, target, _ = random_case(5, shape=(3, 4, 6, 5))
    value = PMDiceCELoss(0.0)(logits, target)
    p = torch.softmax(logits, 1)
    y = F.one_hot(target[:, 0], 4).movedim(-1, 1).double()
    dice = (2 * (y * p).sum((0, 2, 3)) + 1e-5) / ((y + p * p).sum((0, 2, 3)) + 1e-5)
    expected = 1 - dice[1:].mean() + F.cross_entropy(logits, target[:, 0])
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_ce_stays_exact_for_wildly_wrong_logits_in_every_precision(dtype):
    """p at the label underflows to 0 here; the CE must still be logsumexp - logit (2000, 1000), not inf or 69."""
    logits, target, _ = random_case(3, shape=(2, 3, 6, 6))
    logits = logits.detach().float()
    logits[0, :, 0, 0] = torch.tensor([1000.0, -1000.0, 0.0])
    logits[1, :, 2, 3] = torch.tensor([-500.0, 500.0, 0.0])
    target[0, 0, 0, 0], target[1, 0, 2, 3] = 1, 0
    logits = logits.to(dtype).requires_grad_()
    value = PMDiceCELoss(1.0, weight_dice=0)(logits, target)
    expected = F.cross_entropy(logits.detach().double(), target[:, 0])
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() > 2000 / 72  # the two wrong voxels dominate the mean over 72 voxels
    value.backward()
    assert logits.grad.dtype == dtype and torch.all(torch.isfinite(logits.grad))


def test_under_autocast_sums_in_fp32():
    logits, target, weights = random_case(4, shape=(2, 3, 8, 8))
    expected = PMDiceCELoss(2.0)(logits.detach().half().float(), target, weights)
    with torch.autocast("cpu", dtype=torch.float16):
        value = PMDiceCELoss(2.0)(logits.detach().half(), target, weights.half())
    assert value.dtype == torch.float32 and value.item() == pytest.approx(expected.item(), rel=1e-3)


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_keeps_no_more_for_backward_than_nnunets_dice_ce(precision):
    """fp32, and bf16 logits under autocast (as on a GPU with fp16), where the sums stay in fp32."""
    logits, target, weights = random_case(6, shape=(4, 3, 32, 32))
    logits = logits.detach().to(precision)
    nnunet = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                            weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)

    def kept_bytes(loss, *arguments):
        storages = {}

        def keep(tensor):
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        x = logits.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor), \
                torch.autocast("cpu", enabled=precision != torch.float32):
            loss(x, *arguments)
        storages.pop(x.untyped_storage().data_ptr(), None)
        return sum(storages.values())

    assert kept_bytes(PMDiceCELoss(1.0), target, weights.float()) <= kept_bytes(nnunet, target)
    assert kept_bytes(PMDiceCELoss(0.5), target) <= kept_bytes(nnunet, target)
    # PM Dice alone (CE weight 0) keeps no CE weights, whether or not weight maps are passed
    dice_alone = PMDiceCELoss(weight_ce=0)
    assert kept_bytes(dice_alone, target, weights.float()) == kept_bytes(dice_alone, target)
    assert softmax_helper_dim1 is nnunet.dc.apply_nonlin  # the baseline is nnU-Net's own Dice+CE


def test_wrong_shapes_are_refused():
    logits, target, weights = random_case(1)
    with pytest.raises(ValueError, match=r"target and weights of shape \(2, 1, 4, 5\) for logits of shape "
                                         r"\(2, 3, 4, 5\), got \(2, 1, 4, 5\) and \(2, 1, 3, 5\)$"):
        PMDiceCELoss()(logits, target, weights[:, :, :3])
    with pytest.raises(ValueError, match=r"target of shape \(2, 1, 4, 5\) for logits of shape \(2, 3, 4, 5\), "
                                         r"got \(2, 4, 5\)$"):
        PMDiceCELoss()(logits, target[:, 0])


def test_defaults_are_the_studys_gamma_and_nnunets_dice_ce_settings():
    loss = PMDiceCELoss()
    assert loss.gamma == (1.0,) and loss.batch_dice and not loss.do_bg and loss.smooth == 1e-5
    assert loss.ddp is False and loss.ignore_index is None and loss.weight_ce == 1 and loss.weight_dice == 1
    assert PMDiceCELoss(ddp=True).ddp is True and PMDiceCELoss(0.5).gamma == (0.5,)
    assert loss.apply_nonlin is None  # the softmax is built in


def test_more_classes_than_int16_holds():
    """Labels are kept for backward as int16 only while every label fits; 40000 classes keep int64."""
    generator = torch.Generator().manual_seed(9)
    logits = torch.randn((1, 40000, 2, 1), generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[[39999], [35000]]]])
    value = PMDiceCELoss(1.0)(logits, target)
    (grad,) = torch.autograd.grad(value, logits)
    plain = autograd_loss(logits, target, None, 1.0, True, False, None, 1)
    assert value.item() == pytest.approx(plain.item(), rel=1e-9)
    torch.testing.assert_close(grad, torch.autograd.grad(plain, logits)[0], rtol=1e-9, atol=1e-12)
