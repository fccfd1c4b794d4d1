"""The Triton backend: the reference's two functions, on the kernels.

Imported only when the backend is chosen (`kernels.backend`): importing it imports
Triton, and decorates the kernels for the GPU or, under TRITON_INTERPRET=1, for
Triton's CPU interpreter.
"""

import torch
import triton

from kernels.metadata import PagedAttentionMetadata
from kernels.triton_decode import decode_attention
from kernels.triton_prefill import prefill_attention
from kernels.triton_write_kv import write_kv_cache

NAME = "triton"
# NOTE: Triton picks compiled or interpreted when a kernel is decorated (the imports
# above), not when it runs; this remembers which, so a CPU caller can be told.
INTERPRETED: bool = triton.knobs.runtime.interpret

__all__ = ["INTERPRETED", "NAME", "paged_attention", "write_kv_cache"]


def paged_attention(
    query: torch.Tensor,  # [num_tokens, num_heads, head_dim]
    key_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    metadata: PagedAttentionMetadata,
    scale: float,
) -> torch.Tensor:  # [num_tokens, num_heads, head_dim]
    """Causal attention of every new token to its sequence's cached prefix and itself.

    The new tokens' K and V must already be written to the cache.
    """
    output = torch.empty_like(query)
    decode_attention(query, key_cache, value_cache, metadata, scale, output)
    prefill_attention(query, key_cache, value_cache, metadata, scale, output)
    return output
