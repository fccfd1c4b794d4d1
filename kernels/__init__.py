"""Paged attention: the KV write and attention over a paged cache.

Three backends share one interface: the PyTorch reference (`reference.py`), which runs
everywhere; Triton kernels (`triton_*.py`), chosen on CUDA; and on the CPU a compiled C
decode kernel (`cpu_decode.c`, `cpu_attention.py`) beside the reference's prefill.
`backend.py` picks one per device, unless the caller forces one by name
(`metadata.backend`).
"""

import torch

from kernels.backend import AttentionBackendError, select_backend
from kernels.metadata import PagedAttentionMetadata

__all__ = [
    "AttentionBackendError",
    "PagedAttentionMetadata",
    "paged_attention",
    "select_backend",
    "write_kv_cache",
]


def write_kv_cache(
    key: torch.Tensor,  # [num_tokens, num_kv_heads, head_dim]
    value: torch.Tensor,  # [num_tokens, num_kv_heads, head_dim]
    key_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    slot_mapping: torch.Tensor,  # [num_tokens] int64
    backend: str | None = None,  # forced by name; None: by device
) -> None:
    """Store the new tokens' K and V in their slots of the paged cache."""
    backend_module = select_backend(key_cache.device, backend)
    backend_module.write_kv_cache(key, value, key_cache, value_cache, slot_mapping)


def paged_attention(
    query: torch.Tensor,  # [num_tokens, num_heads, head_dim]
    key_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    metadata: PagedAttentionMetadata,
    scale: float,
) -> torch.Tensor:  # [num_tokens, num_heads, head_dim]
    """Causal attention of every new token to its sequence's cached prefix and itself.

    The new tokens' K and V must already be written to the cache (`write_kv_cache`).
    """
    backend = select_backend(query.device, metadata.backend)
    return backend.paged_attention(query, key_cache, value_cache, metadata, scale)
