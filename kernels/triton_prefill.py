"""Triton kernel: prefill attention, new tokens attending to their cached prefix and themselves.

The prefill part of `reference.paged_attention`: the sequences after the decodes,
each with `query_len` new tokens at the end of `context_len` tokens whose K and V
(new ones included) are already in the paged cache. Causal: the new token at
position p sees positions 0..p. One program per (sequence, tile of BLOCK_M new
tokens, query head) streams the visible keys through the online softmax (flash
attention); GQA maps query head h to KV head h // group.
"""

import torch
import triton
import triton.language as tl

from kernels.checks import check_cache, check_metadata, check_query, check_same_device
from kernels.metadata import PagedAttentionMetadata
from kernels.triton_tile import LOG2_E, attend_tile, cache_rows


# NOTE: Triton compiles a variant per "is 1 / divisible by 16" of every int argument;
# the number of decodes changes every step, so it is left out of that.
@triton.jit(do_not_specialize=["first_seq"])
def _prefill_kernel(
    query_ptr,  # [num_tokens, num_heads, head_dim]
    output_ptr,  # [num_tokens, num_heads, head_dim]
    key_cache_ptr,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache_ptr,
    block_tables_ptr,  # [num_seqs, max_num_blocks] int32
    query_start_loc_ptr,  # [num_seqs + 1] int32
    context_lens_ptr,  # [num_seqs] int32
    stride_qt,
    stride_qh,
    stride_ot,
    stride_oh,
    stride_cache_block,
    stride_cache_slot,
    stride_cache_head,
    stride_table,
    first_seq,  # the number of decodes: prefill sequences come after them
    group,  # query heads per KV head
    head_dim,
    qk_scale,
    BLOCK_SIZE: tl.constexpr,  # tokens per cache block
    BLOCK_M: tl.constexpr,  # new tokens per program
    BLOCK_N: tl.constexpr,  # keys per step
    BLOCK_D: tl.constexpr,  # head_dim rounded up to a power of two
):
    seq = tl.program_id(0) + first_seq
    tile = tl.program_id(1)
    head = tl.program_id(2)
    query_start = tl.load(query_start_loc_ptr + seq)
    query_len = tl.load(query_start_loc_ptr + seq + 1) - query_start
    if tile * BLOCK_M >= query_len:
        return  # the grid is sized for the longest chunk; this one is shorter
    prefix_len = tl.load(context_lens_ptr + seq) - query_len
    new = tile * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M] index among the new tokens
    dims = tl.arange(0, BLOCK_D)
    row_mask = new < query_len
    io_mask = row_mask[:, None] & (dims[None, :] < head_dim)
    tokens = (query_start + new).to(tl.int64)  # [BLOCK_M] rows of the flattened batch
    query = tl.load(
        query_ptr + tokens[:, None] * stride_qt + head * stride_qh + dims[None, :],
        mask=io_mask,
        other=0.0,
    )  # [BLOCK_M, BLOCK_D]
    positions = prefix_len + new  # [BLOCK_M] where each new token sits in the sequence
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    kv_head_offset = (head // group).to(tl.int64) * stride_cache_head
    table_row_ptr = block_tables_ptr + seq.to(tl.int64) * stride_table
    # The tile's last new token sees everything before it; nothing later is read.
    end = prefix_len + tl.minimum((tile + 1) * BLOCK_M, query_len)
    for start in range(0, end, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)  # [BLOCK_N] key positions
        key_mask = keys < end
        rows = cache_rows(
            table_row_ptr, keys, key_mask, stride_cache_block, stride_cache_slot, BLOCK_SIZE
        )
        causal = (keys[None, :] <= positions[:, None]) & key_mask[None, :]  # [BLOCK_M, BLOCK_N]
        acc, row_max, row_sum = attend_tile(
            query,
            acc,
            row_max,
            row_sum,
            key_cache_ptr + kv_head_offset,
            value_cache_ptr + kv_head_offset,
            rows,
            key_mask,
            causal,
            dims,
            head_dim,
            qk_scale,
        )
    output = acc / row_sum[:, None]
    tl.store(
        output_ptr + tokens[:, None] * stride_ot + head * stride_oh + dims[None, :],
        output.to(output_ptr.dtype.element_ty),
        mask=io_mask,
    )


def prefill_attention(
    query: torch.Tensor,  # [num_tokens, num_heads, head_dim]
    key_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache: torch.Tensor,
    metadata: PagedAttentionMetadata,
    scale: float,
    output: torch.Tensor,  # [num_tokens, num_heads, head_dim], written for the prefill rows
) -> None:
    """Attention for every prefill chunk of the batch (the sequences after the decodes)."""
    check_cache(key_cache, value_cache)
    check_query(query, key_cache)
    check_metadata(metadata)
    check_same_device(query, output, key_cache, metadata.block_tables, metadata.context_lens)
    if output.shape != query.shape or output.dtype != query.dtype or output.stride(-1) != 1:
        raise ValueError("output must be shaped and typed like query, with contiguous rows")
    num_prefills = metadata.num_seqs - metadata.num_decodes
    if num_prefills == 0:
        return
    max_query_len = max(metadata.query_lens_host[metadata.num_decodes :])
    num_heads, head_dim = query.shape[1:]
    # NOTE: a tile of 16 rows is tl.dot's minimum; short chunks (a question behind
    # cached passages) get a small tile rather than a mostly empty one of 64.
    block_m = min(64, max(16, triton.next_power_of_2(max_query_len)))
    block_n = 64 if head_dim <= 64 else 32
    grid = (num_prefills, triton.cdiv(max_query_len, block_m), num_heads)
    _prefill_kernel[grid](
        query,
        output,
        key_cache,
        value_cache,
        metadata.block_tables,
        metadata.query_start_loc,
        metadata.context_lens,
        query.stride(0),
        query.stride(1),
        output.stride(0),
        output.stride(1),
        key_cache.stride(0),
        key_cache.stride(1),
        key_cache.stride(2),
        metadata.block_tables.stride(0),
        metadata.num_decodes,
        num_heads // key_cache.shape[2],
        head_dim,
        scale * LOG2_E,
        BLOCK_SIZE=key_cache.shape[1],
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_D=triton.next_power_of_2(head_dim),
        num_warps=4,
    )
