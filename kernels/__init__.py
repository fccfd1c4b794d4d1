"""Paged attention: the KV write and attention over a paged cache.

The PyTorch reference runs everywhere; Triton kernels with the same interface are
chosen on CUDA once they exist.
"""

from kernels.metadata import PagedAttentionMetadata
from kernels.reference import paged_attention, write_kv_cache

__all__ = ["PagedAttentionMetadata", "paged_attention", "write_kv_cache"]
