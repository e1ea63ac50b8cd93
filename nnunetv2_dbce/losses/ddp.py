"""All-gather with gradient, for batch sums that must span every process of a DDP job."""
from typing import Any

import torch
from torch import distributed as dist


class AllGatherWithGrad(torch.autograd.Function):
    """Stack ``x`` of every process along a new first axis; the backward sums the incoming gradients over
    processes and returns this process's slice (every process computes the same loss from the gathered
    sums, so each input's gradient is the sum of its gradients in all those copies)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        gathered = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, x.contiguous())
        return torch.stack(gathered)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[dist.get_rank()]


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over all processes (differentiably); ``x`` itself when not running distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return x
    return AllGatherWithGrad.apply(x).sum(0)
