"""Paged attention on the CPU: decodes in a compiled kernel, prefill chunks as the reference.

A decode's attention is little arithmetic over a long, scattered context. The reference
gathers each sequence's blocks into a contiguous copy and makes one SDPA call per
sequence and layer: about 135 µs for 1,000 tokens of Qwen2.5-0.5B, most of it overhead,
or 26 ms of an 8-sequence decode step. `cpu_decode.c` reads K and V in place from their
blocks, every decode of the step in one call, on torch's OpenMP threads. Prefill chunks
are compute-bound matmuls, which SDPA already does well; they stay on the reference.
"""

import ctypes
from dataclasses import dataclass

import torch

from kernels import reference
from kernels.metadata import PagedAttentionMetadata

NAME = "cpu"  # what PAGEDRAG_ATTENTION calls this backend

# The C kernel's fixed limits (MAX_HEAD_DIM, MAX_GROUP in cpu_decode.c) and its dtypes.
MAX_HEAD_DIM = 256
MAX_GROUP = 32
DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1}


@dataclass(frozen=True)
class CpuAttention:
    """The CPU backend: `reference`'s interface over the loaded kernel library."""

    library: ctypes.CDLL
    NAME: str = NAME

    def write_kv_cache(
        self,
        key: torch.Tensor,
        value: torch.Tensor,
        key_cache: torch.Tensor,
        value_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
    ) -> None:
        reference.write_kv_cache(key, value, key_cache, value_cache, slot_mapping)

    def paged_attention(
        self,
        query: torch.Tensor,  # [num_tokens, num_heads, head_dim]
        key_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
        value_cache: torch.Tensor,
        metadata: PagedAttentionMetadata,
        scale: float,
    ) -> torch.Tensor:  # [num_tokens, num_heads, head_dim]
        output = torch.empty(query.shape, dtype=query.dtype, device=query.device)
        num_decodes = metadata.num_decodes
        if num_decodes and supports(query, key_cache, value_cache):
            self.decode(query[:num_decodes], key_cache, value_cache, metadata, scale, output)
        elif num_decodes:
            output[:num_decodes] = reference.decode(
                query[:num_decodes], key_cache, value_cache, metadata, scale
            )
        reference.attend_prefill_chunks(query, key_cache, value_cache, metadata, scale, output)
        return output

    def decode(
        self,
        query: torch.Tensor,  # [num_decodes, num_heads, head_dim]
        key_cache: torch.Tensor,
        value_cache: torch.Tensor,
        metadata: PagedAttentionMetadata,
        scale: float,
        output: torch.Tensor,  # [num_tokens, num_heads, head_dim]: its first rows are written
    ) -> None:
        """Every decode's attention in one kernel call, into output[:num_decodes]."""
        num_decodes, num_heads, head_dim = query.shape
        _, block_size, num_kv_heads, _ = key_cache.shape
        query = query.contiguous()
        block_tables = metadata.block_tables[:num_decodes].contiguous()
        context_lens = metadata.context_lens[:num_decodes].contiguous()
        status = self.library.paged_decode_attention(
            query.data_ptr(),
            key_cache.data_ptr(),
            value_cache.data_ptr(),
            block_tables.data_ptr(),
            context_lens.data_ptr(),
            output.data_ptr(),
            num_decodes,
            num_heads,
            num_kv_heads,
            head_dim,
            block_size,
            block_tables.shape[1],
            scale,
            DTYPE_CODES[query.dtype],
        )
        if status != 0:
            raise RuntimeError(f"cpu_decode.c returned {status} (a bug: its inputs were checked)")


def supports(query: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor) -> bool:
    """Whether the kernel takes these shapes and dtypes (others run on the reference)."""
    num_heads, head_dim = query.shape[1:]
    num_kv_heads = key_cache.shape[2]
    return (
        query.dtype in DTYPE_CODES
        and key_cache.dtype == value_cache.dtype == query.dtype
        and key_cache.is_contiguous()
        and value_cache.is_contiguous()
        and head_dim <= MAX_HEAD_DIM
        and num_heads % num_kv_heads == 0
        and num_heads // num_kv_heads <= MAX_GROUP
    )
