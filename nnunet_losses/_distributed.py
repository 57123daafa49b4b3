"""All-gather with gradients, for batch Dice under DDP (as nnU-Net's ``AllGatherGrad``)."""
from __future__ import annotations

import torch
import torch.distributed as dist


class AllGatherGrad(torch.autograd.Function):
    """Gather ``tensor`` from every rank -> (world_size, *tensor.shape); the backward sums the
    gradients of all ranks and returns this rank's slice (the same as nnU-Net's implementation)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group=None):
        ctx.group = group
        gathered = [torch.zeros_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, tensor.contiguous(), group=group)
        return torch.stack(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_output = grad_output.contiguous()
        dist.all_reduce(grad_output, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad_output[dist.get_rank(ctx.group)], None


def ddp_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all DDP ranks, differentiable; identity outside DDP."""
    if not ddp_active():
        return tensor
    return AllGatherGrad.apply(tensor).sum(0)
