"""The paged KV pool: per-layer K and V tensors allocated once, sized from a memory budget."""

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import psutil
import torch

from engine.models.decoder import KVCache


@dataclass(frozen=True)
class KVCacheSpec:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    block_size: int
    dtype: torch.dtype

    @property
    def bytes_per_block(self) -> int:
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.block_size * self.num_kv_heads * self.head_dim * itemsize

    def num_blocks_for(self, budget_bytes: int) -> int:
        return budget_bytes // self.bytes_per_block


def default_kv_budget(device: torch.device, fraction: float) -> int:
    """A fraction of the memory still free on the device, after the weights are loaded."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * fraction)
    return int(psutil.virtual_memory().available * fraction)


def rank_kv_budget(
    device: torch.device, kv_cache_memory: int | None, fraction: float, ranks_per_node: int
) -> int:
    """One rank's share of the KV budget: a GPU's is its own; on the CPU the node's ranks
    share one memory, so the budget (given, or a fraction of what is free) is split."""
    budget = kv_cache_memory or default_kv_budget(device, fraction)
    return budget if device.type == "cuda" else budget // ranks_per_node


def allocate_kv_cache(spec: KVCacheSpec, num_blocks: int, device: torch.device) -> list[KVCache]:
    """One (K, V) pair per layer, each [num_blocks, block_size, num_kv_heads, head_dim].

    NOTE: zero-filled, not empty: a padded decode gather reads unused slots, and
    garbage there could be NaN, which survives multiplication by a zero probability.
    """
    shape = (num_blocks, spec.block_size, spec.num_kv_heads, spec.head_dim)
    zeros = _lazy_zeros if device.type == "cpu" else partial(torch.zeros, device=device)
    return [
        (zeros(shape, dtype=spec.dtype), zeros(shape, dtype=spec.dtype))
        for _ in range(spec.num_layers)
    ]


def _lazy_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Zeros the OS provides on first touch (calloc): an unused pool costs no memory or time."""
    num_bytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    return torch.from_numpy(np.zeros(num_bytes, dtype=np.uint8)).view(dtype).view(shape)
