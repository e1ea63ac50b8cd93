"""DBCELoss value and gradient against a hand-written weighted CE."""
import pytest
import torch

from nnunetv2_dbce import DBCELoss, RegionDBCELoss, dbce_weight_map
from reference import reference_weighted_ce


def random_inputs(shape=(2, 3, 5, 6), seed=0, ignore_index=None, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    batch, classes, *spatial = shape
    logits = (3 * torch.randn(shape, generator=generator, dtype=dtype)).requires_grad_()
    target = torch.randint(0, classes, (batch, 1, *spatial), generator=generator)
    if ignore_index is not None:
        target[torch.rand(target.shape, generator=generator) < 0.2] = ignore_index
    weights = torch.rand((batch, 1, *spatial), generator=generator, dtype=dtype) * 4
    return logits, target, weights


def hand_written_weighted_ce(logits, target, weights, ignore_index=None):
    """Same formula from elementary torch ops: -w * log_softmax at the target class, normalised by sum(w)."""
    labels = target[:, 0].long()
    annotated = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    safe_labels = torch.where(annotated, labels, 0)
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    picked = torch.gather(log_p, 1, safe_labels[:, None])[:, 0]
    w = weights[:, 0] * annotated
    return -(w * picked).sum() / w.sum()


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 4, 3, 4, 5)])
@pytest.mark.parametrize("ignore_index", [None, 7])
def test_value_matches_voxel_loop(shape, ignore_index):
    logits, target, weights = random_inputs(shape, ignore_index=ignore_index)
    value = DBCELoss(ignore_index=ignore_index)(logits, target, weights)
    expected = reference_weighted_ce(logits.detach().numpy(), target[:, 0].numpy(), weights[:, 0].numpy(),
                                     ignore_index)
    assert value.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("ignore_index", [None, 7])
def test_gradient_matches_hand_written_loss(ignore_index):
    logits, target, weights = random_inputs(ignore_index=ignore_index, seed=3)
    (grad,) = torch.autograd.grad(DBCELoss(ignore_index)(logits, target, weights), logits)
    (expected,) = torch.autograd.grad(hand_written_weighted_ce(logits, target, weights, ignore_index), logits)
    torch.testing.assert_close(grad, expected)
    if ignore_index is not None:
        assert torch.all(grad.permute(1, 0, 2, 3)[:, target[:, 0] == ignore_index] == 0)


def test_gradcheck():
    logits, target, weights = random_inputs((1, 3, 3, 4), seed=5)
    assert torch.autograd.gradcheck(lambda x: DBCELoss()(x, target, weights), (logits,))


def test_unit_weights_give_plain_cross_entropy():
    logits, target, _ = random_inputs(seed=1)
    value = DBCELoss()(logits, target, torch.ones_like(target, dtype=logits.dtype))
    assert value.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target[:, 0]).item(), rel=1e-10)


def test_with_real_weight_maps_and_float_targets():
    """nnU-Net targets are float tensors; weights from dbce_weight_map per sample."""
    generator = torch.Generator().manual_seed(2)
    target = torch.zeros((2, 1, 12, 12))
    target[0, 0, 2:4, 2:5] = 1
    target[1, 0, 6:11, 3:9] = 2
    weights = torch.stack([torch.from_numpy(dbce_weight_map(t[0].numpy(), 2))[None] for t in target])
    logits = torch.randn((2, 3, 12, 12), generator=generator, dtype=torch.float64)
    expected = reference_weighted_ce(logits.numpy(), target[:, 0].numpy(), weights[:, 0].numpy())
    assert DBCELoss()(logits, target, weights).item() == pytest.approx(expected, rel=1e-6)


def test_all_ignored_batch_gives_zero_loss_and_gradient():
    logits, target, weights = random_inputs(seed=4)
    target[:] = 9
    value = DBCELoss(ignore_index=9)(logits, target, weights)
    value.backward()
    assert value.item() == 0 and torch.all(logits.grad == 0)


def test_fp16_extreme_logits_are_finite():
    logits, target, weights = random_inputs(seed=6, dtype=torch.float32)
    extreme = (torch.sign(logits.detach()) * 1e4).half().requires_grad_()
    value = DBCELoss()(extreme, target, weights.half())
    value.backward()
    assert torch.isfinite(value) and value.item() > 0 and torch.all(torch.isfinite(extreme.grad))


def test_wrong_shapes_are_refused():
    logits, target, weights = random_inputs()
    with pytest.raises(ValueError, match=r"^DBCELoss expects target and weights of shape \(2, 1, 5, 6\)"):
        DBCELoss()(logits, target[:, 0], weights)
    with pytest.raises(ValueError, match="shape"):
        DBCELoss()(logits, target, weights[:1])


def test_label_100_counts_without_an_ignore_label_and_the_loss_keeps_the_logits_precision():
    """Without an ignore label no label is left out (not even torch's default ignore index 100 away from it), and
    fp64 weight maps do not lift an fp32 loss to fp64."""
    logits, target, weights = random_inputs(shape=(1, 101, 3, 2), seed=3, dtype=torch.float32)
    target[0, 0, 0, 0] = 100
    expected = hand_written_weighted_ce(logits.double(), target, weights.double())
    value = DBCELoss()(logits, target, weights.double())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    regions = (torch.rand(logits.shape[:2] + (3, 2), generator=torch.Generator().manual_seed(4)) > 0.5).float()
    assert RegionDBCELoss()(logits, regions, torch.ones(logits.shape, dtype=torch.float64)).dtype == torch.float32
