"""The precision the losses compute in: fp16/bf16 inputs (autocast) are summed in fp32, fp64 stays fp64."""
import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` if it is at least fp32, else fp32."""
    return torch.promote_types(dtype, torch.float32)


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in ``accumulation_dtype`` (itself when it already is)."""
    return tensor.to(accumulation_dtype(tensor.dtype))
