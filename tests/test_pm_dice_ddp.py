"""PM Dice with ddp=True: two gloo processes with half a batch each give one process's whole-batch loss."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunetv2_dbce import PMDiceLoss

WORLD_SIZE = 2


def whole_batch():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn((4, 3, 6, 5), generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3, (4, 1, 6, 5), generator=generator)
    return logits, target


def loss_and_grad(logits, target, ddp):
    logits = logits.clone().requires_grad_()
    loss = PMDiceLoss(lambda x: torch.softmax(x, 1), gamma=2.0, batch_dice=True, ddp=ddp)(logits, target)
    loss.backward()
    return loss.detach(), logits.grad


def worker(rank, init_file, out_folder):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        logits, target = whole_batch()
        half = slice(rank * 2, rank * 2 + 2)
        torch.save(loss_and_grad(logits[half], target[half], ddp=True), f"{out_folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_process_with_the_whole_batch(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    single_loss, single_grad = loss_and_grad(*whole_batch(), ddp=False)
    for rank in range(WORLD_SIZE):
        loss, grad = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(loss, single_loss)
        # each process back-propagates the same global loss, so its inputs' gradient is WORLD_SIZE times the
        # single-process one; DDP's averaging of parameter gradients over processes divides that out again
        torch.testing.assert_close(grad, WORLD_SIZE * single_grad[rank * 2:rank * 2 + 2])


def test_without_ddp_each_process_only_sees_its_half():
    logits, target = whole_batch()
    half_loss, _ = loss_and_grad(logits[:2], target[:2], ddp=False)
    assert not torch.isclose(half_loss, loss_and_grad(logits, target, ddp=False)[0])


def test_sum_over_processes_in_this_process():
    """Without a process group the tensor itself; in a one-process gloo group the sum over that one process, with
    the upstream gradient passed through unchanged (the two-process test above runs in spawned workers, where
    mutation testing cannot see which code it reaches)."""
    import tempfile

    from nnunetv2_dbce.losses.ddp import sum_over_processes
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    assert sum_over_processes(x) is x
    with tempfile.TemporaryDirectory() as folder:
        dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=0, world_size=1)
        try:
            leaf = x.clone().requires_grad_()
            summed = sum_over_processes(leaf)
            torch.testing.assert_close(summed, x)
            upstream = torch.randn(2, 3, dtype=torch.float64)
            summed.backward(upstream)
            torch.testing.assert_close(leaf.grad, upstream)
            logits, target = whole_batch()
            torch.testing.assert_close(loss_and_grad(logits, target, ddp=True),
                                       loss_and_grad(logits, target, ddp=False))
        finally:
            dist.destroy_process_group()
