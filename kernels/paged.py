"""The two calls the model makes: write new K and V into the paged cache, and attend
over it, each sent to the backend `backend.py` picks for the device."""

import torch

from kernels.backend import select_backend
from kernels.metadata import PagedAttentionMetadata


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
