"""Focal and focal Tversky losses against MONAI's implementations and voxel loops; the baseline trainers."""
import math

import numpy as np
import pytest
import torch
from monai.losses import FocalLoss as MonaiFocalLoss
from monai.losses import TverskyLoss as MonaiTverskyLoss

from helpers import make_trainer
from nnunetv2_dbce import FocalLoss, FocalTverskyLoss
from nnunetv2_dbce.trainers import nnUNetTrainerFocalLoss, nnUNetTrainerFocalTversky


def random_inputs(shape=(2, 3, 5, 6), seed=0, ignore_index=None):
    generator = torch.Generator().manual_seed(seed)
    batch, classes, *spatial = shape
    logits = (2 * torch.randn(shape, generator=generator, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, classes, (batch, 1, *spatial), generator=generator)
    if ignore_index is not None:
        target[torch.rand(target.shape, generator=generator) < 0.25] = ignore_index
    return logits, target


def focal_voxel_loop(logits, target, gamma, ignore_index=None):
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for index in np.ndindex(tuple(target.shape[2:])):
            label = int(target[(b, 0, *index)])
            if label == ignore_index:
                continue
            scores = [float(logits[(b, c, *index)]) for c in range(logits.shape[1])]
            p = math.exp(scores[label]) / sum(math.exp(s) for s in scores)
            total += -(1 - p) ** gamma * math.log(p)
            count += 1
    return total / count


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 4, 3, 4, 5)])
def test_focal_loss_matches_monai(shape):
    logits, target = random_inputs(shape)
    value = FocalLoss(gamma=2.0)(logits, target)
    monai = MonaiFocalLoss(gamma=2.0, use_softmax=True, to_onehot_y=True, reduction="none")(logits, target)
    assert value.item() == pytest.approx(monai.sum(1).mean().item(), rel=1e-6)  # MONAI computes in float32


@pytest.mark.parametrize("gamma", [0.0, 2.0, 3.5])
def test_focal_loss_with_ignore_label_matches_voxel_loop(gamma):
    logits, target = random_inputs(seed=2, ignore_index=5)
    value = FocalLoss(gamma, ignore_index=5)(logits, target)
    assert value.item() == pytest.approx(focal_voxel_loop(logits.detach(), target, gamma, 5), rel=1e-10)
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.all(grad.permute(1, 0, 2, 3)[:, target[:, 0] == 5] == 0)


def test_focal_loss_gamma_0_is_cross_entropy_and_gradients_are_right():
    logits, target = random_inputs(seed=4)
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
    assert FocalLoss(0.0)(logits, target).item() == pytest.approx(ce.item(), rel=1e-12)
    small_logits, small_target = random_inputs((1, 3, 3, 4), seed=6)
    assert torch.autograd.gradcheck(lambda x: FocalLoss(2.0)(x, small_target), (small_logits,))


def test_focal_loss_default_gamma_is_the_papers_and_one_annotated_voxel_is_its_own_mean():
    logits, target = random_inputs(seed=5)
    assert FocalLoss()(logits, target).item() == pytest.approx(focal_voxel_loop(logits.detach(), target, 2.0),
                                                               rel=1e-10)
    target = torch.full_like(target, 7)
    target[1, 0, 2, 3] = 1
    p = torch.softmax(logits.detach()[1, :, 2, 3], 0)[1].item()
    assert FocalLoss(ignore_index=7)(logits, target).item() == pytest.approx(-(1 - p) ** 2 * math.log(p), rel=1e-10)


@pytest.mark.parametrize("make, message", [
    (lambda: FocalLoss(gamma=-0.5), "gamma must be >= 0, got -0.5"),
    (lambda: FocalTverskyLoss(alpha=-0.1), "alpha, beta >= 0 and gamma > 0, got -0.1, 0.3"),
    (lambda: FocalTverskyLoss(beta=-0.1), "alpha, beta >= 0 and gamma > 0, got 0.7, -0.1"),
    (lambda: FocalTverskyLoss(gamma=0.0), "alpha, beta >= 0 and gamma > 0, got 0.7, 0.3, 0.0")])
def test_focal_losses_refuse_settings_out_of_range(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_focal_tversky_accepts_the_edges_of_its_range():
    """alpha = 0 or beta = 0 (Tversky without one error term) and gamma below 1 are valid settings."""
    logits, target = random_inputs(seed=7)
    for alpha, beta, gamma in ((0.0, 1.0, 0.5), (1.0, 0.0, 0.75)):
        value = FocalTverskyLoss(alpha, beta, gamma)(logits, target)
        reference = MonaiTverskyLoss(include_background=False, to_onehot_y=True, softmax=True, alpha=beta, beta=alpha,
                                     smooth_nr=1e-5, smooth_dr=1e-5, batch=True, reduction="none")(logits, target)
        assert value.item() == pytest.approx(reference.pow(1 / gamma).mean().item(), rel=1e-10)


@pytest.mark.parametrize("batch_dice", [True, False])
def test_focal_tversky_matches_monai_tversky(batch_dice):
    logits, target = random_inputs((3, 3, 6, 5), seed=1)
    value = FocalTverskyLoss(batch_dice=batch_dice)(logits, target)
    # MONAI: alpha weighs false positives, beta false negatives; the paper's alpha weighs false negatives
    tversky = MonaiTverskyLoss(include_background=False, to_onehot_y=True, softmax=True, alpha=0.3, beta=0.7,
                               smooth_nr=1e-5, smooth_dr=1e-5, batch=batch_dice, reduction="none")(logits, target)
    assert value.item() == pytest.approx(tversky.pow(0.75).mean().item(), rel=1e-10)


def test_focal_tversky_with_ignore_label_matches_voxel_loop():
    logits, target = random_inputs((2, 3, 4, 5), seed=3, ignore_index=9)
    value = FocalTverskyLoss(alpha=0.6, beta=0.4, gamma=2.0, do_bg=True, smooth=1.0, ignore_index=9)(logits, target)
    p = torch.softmax(logits.detach(), 1).numpy()
    expected = []
    for c in range(3):
        tp = fn = fp = 0.0
        for b in range(2):
            for index in np.ndindex(4, 5):
                label = int(target[(b, 0, *index)])
                if label == 9:
                    continue
                y, q = float(label == c), float(p[(b, c, *index)])
                tp, fn, fp = tp + y * q, fn + y * (1 - q), fp + (1 - y) * q
        expected.append((1 - (tp + 1) / (tp + 0.6 * fn + 0.4 * fp + 1)) ** 0.5)
    assert value.item() == pytest.approx(np.mean(expected), rel=1e-10)
    assert torch.autograd.gradcheck(lambda x: FocalTverskyLoss(ignore_index=9)(x, target), (logits,))


def test_focal_losses_are_finite_under_fp16_autocast_and_on_perfect_predictions():
    target = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    target[0, 0, 2:4, 2:4] = 1
    logits = torch.where(torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).bool(), 30.0, -30.0)
    logits.requires_grad_()
    for loss in (FocalLoss(), FocalTverskyLoss(), FocalTverskyLoss(batch_dice=False)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(logits, target)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
        logits.grad = None


@pytest.mark.parametrize("trainer_class, loss_class", [(nnUNetTrainerFocalLoss, FocalLoss),
                                                       (nnUNetTrainerFocalTversky, FocalTverskyLoss)])
def test_baseline_trainers_train_inside_nnunets_deep_supervision(plans_and_dataset_json, trainer_class, loss_class):
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    trainer = make_trainer(trainer_class, *plans_and_dataset_json)
    trainer.initialize()
    assert isinstance(trainer.loss, DeepSupervisionWrapper) and isinstance(trainer.loss.loss, loss_class)
    loader_train, _ = trainer.get_dataloaders()
    batch = next(loader_train)
    with torch.no_grad():
        outputs = trainer.network(batch["data"])
        wrapped = trainer.loss(outputs, batch["target"])
        settings = {} if loss_class is FocalLoss else {"batch_dice": trainer.configuration_manager.batch_dice}
        by_hand = sum(w * loss_class(**settings)(o, t)
                      for w, o, t in zip(trainer.loss.weight_factors, outputs, batch["target"]))
    assert len(outputs) > 1 and wrapped.item() == pytest.approx(by_hand.item(), rel=1e-5)
    trainer.on_train_epoch_start()
    assert np.isfinite(trainer.train_step(batch)["loss"])


def test_baseline_trainers_refuse_regions(plans_and_dataset_json):
    plans, dataset_json = plans_and_dataset_json
    regions = dict(dataset_json, labels={"background": 0, "any": [1, 2], "blob": 2}, regions_class_order=[1, 2])
    for trainer_class in (nnUNetTrainerFocalLoss, nnUNetTrainerFocalTversky):
        with pytest.raises(ValueError, match="does not support region-based training"):
            make_trainer(trainer_class, plans, regions)
