"""The collectives inside a tensor-parallel layer: an all-reduce after each row-parallel
projection and the vocabulary lookup, an all-gather of the logits."""

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class TensorParallelGroup:
    """The collectives a sharded layer runs; with one rank they hand back their input."""

    size: int = 1
    group: Any = None  # torch's ProcessGroup
    backend: str = "gloo"

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over the group's ranks (row-parallel outputs, vocabulary lookups)."""
        if self.size == 1:
            return tensor
        if self.backend == "gloo" and tensor.dtype == torch.bfloat16:
            # NOTE: gloo sums bf16 only on some builds; fp32 sums it exactly as well.
            wide = tensor.float()
            dist.all_reduce(wide, group=self.group)
            return wide.to(tensor.dtype)
        dist.all_reduce(tensor, group=self.group)
        return tensor

    def all_gather_columns(self, tensor: torch.Tensor) -> torch.Tensor:
        """[rows, cols] on each rank -> [rows, size * cols], ranks in order (logits)."""
        if self.size == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return torch.cat(parts, dim=-1)


SINGLE_RANK = TensorParallelGroup()
