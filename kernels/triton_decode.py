"""Triton kernels: decode attention over block tables, split along the context, then reduced.

The decode part of `reference.paged_attention`: the first `num_decodes` sequences,
one new token each, attend to their whole context. Decode reads every cached K and
V once and does little arithmetic on it, so its speed is memory bandwidth, and the
work must be spread over enough programs to keep every SM reading:

- one program per (sequence, KV head, context split) handles all the query heads
  that share that KV head (GQA), so each K/V tile is read once for the group, and
  writes the split's normalised output and log-sum-exp;
- a reduce program per (sequence, query head) weighs the splits by their
  log-sum-exp into the final output.

Short batches of long contexts get many splits; large batches get one.
"""

from functools import cache

import torch
import triton
import triton.language as tl

from kernels.checks import check_cache, check_metadata, check_query, check_same_device
from kernels.metadata import PagedAttentionMetadata
from kernels.triton_tile import LOG2_E, attend_tile, cache_rows

BLOCK_N = 64  # keys per step of a split
# NOTE: below this many tokens a split's fixed costs (its query load, its partial
# output write and its share of the reduce) outweigh what the extra parallelism buys.
# Both values are first guesses, to be tuned with bench/attention_kernels.py on a GPU.
MIN_SPLIT_LEN = 512
PROGRAMS_PER_SM = 4  # enough resident programs to hide memory latency


# NOTE: Triton compiles a variant per "is 1 / divisible by 16" of every int argument;
# the split count and length change with the batch, so they are left out of that.
@triton.jit(do_not_specialize=["num_splits", "split_len"])
def _decode_split_kernel(
    query_ptr,  # [num_decodes, num_heads, head_dim]
    partial_out_ptr,  # [num_decodes, num_heads, num_splits, head_dim] fp32
    partial_lse_ptr,  # [num_decodes, num_heads, num_splits] fp32, base 2
    key_cache_ptr,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache_ptr,
    block_tables_ptr,  # [num_seqs, max_num_blocks] int32
    context_lens_ptr,  # [num_seqs] int32
    stride_qt,
    stride_qh,
    stride_cache_block,
    stride_cache_slot,
    stride_cache_head,
    stride_table,
    num_heads,
    num_splits,
    split_len,  # tokens per split
    group,  # query heads per KV head
    head_dim,
    qk_scale,
    BLOCK_SIZE: tl.constexpr,  # tokens per cache block
    BLOCK_G: tl.constexpr,  # group rounded up to a power of two, at least 16 for tl.dot
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,  # head_dim rounded up to a power of two
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    context_len = tl.load(context_lens_ptr + seq)
    start = split * split_len
    end = tl.minimum(start + split_len, context_len)  # start >= end: an empty split
    offsets = tl.arange(0, BLOCK_G)
    heads = kv_head * group + offsets  # [BLOCK_G] the query heads of this KV head
    dims = tl.arange(0, BLOCK_D)
    io_mask = (offsets < group)[:, None] & (dims[None, :] < head_dim)
    # NOTE: decode token i is row i of the batch: one new token per sequence.
    query = tl.load(
        query_ptr + seq.to(tl.int64) * stride_qt + heads[:, None] * stride_qh + dims[None, :],
        mask=io_mask,
        other=0.0,
    )  # [BLOCK_G, BLOCK_D]: rows past the group are zeros, computed and dropped
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    row_max = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_G], dtype=tl.float32)
    kv_head_offset = kv_head.to(tl.int64) * stride_cache_head
    table_row_ptr = block_tables_ptr + seq.to(tl.int64) * stride_table
    for tile_start in range(start, end, BLOCK_N):
        keys = tile_start + tl.arange(0, BLOCK_N)
        key_mask = keys < end
        rows = cache_rows(
            table_row_ptr, keys, key_mask, stride_cache_block, stride_cache_slot, BLOCK_SIZE
        )
        acc, row_max, row_sum = attend_tile(
            query,
            acc,
            row_max,
            row_sum,
            key_cache_ptr + kv_head_offset,
            value_cache_ptr + kv_head_offset,
            rows,
            key_mask,
            key_mask[None, :],
            dims,
            head_dim,
            qk_scale,
        )
    # An empty split has sum 0: output 0 and log-sum-exp -inf, so it weighs nothing.
    has_keys = row_sum > 0
    safe_sum = tl.where(has_keys, row_sum, 1.0)
    lse = tl.where(has_keys, row_max + tl.log2(safe_sum), float("-inf"))
    output = acc / safe_sum[:, None]
    partial_rows = (seq * num_heads + heads).to(tl.int64) * num_splits + split  # [BLOCK_G]
    tl.store(
        partial_out_ptr + partial_rows[:, None] * head_dim + dims[None, :], output, mask=io_mask
    )
    tl.store(partial_lse_ptr + partial_rows, lse, mask=offsets < group)


@triton.jit(do_not_specialize=["num_splits"])
def _decode_reduce_kernel(
    partial_out_ptr,  # [num_decodes, num_heads, num_splits, head_dim] fp32
    partial_lse_ptr,  # [num_decodes, num_heads, num_splits] fp32, base 2
    output_ptr,  # [num_decodes, num_heads, head_dim]
    stride_ot,
    stride_oh,
    num_heads,
    num_splits,
    head_dim,
    BLOCK_S: tl.constexpr,  # num_splits rounded up to a power of two
    BLOCK_D: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, BLOCK_S)
    dims = tl.arange(0, BLOCK_D)
    split_mask = splits < num_splits
    first_row = (seq * num_heads + head).to(tl.int64) * num_splits
    lse = tl.load(partial_lse_ptr + first_row + splits, mask=split_mask, other=float("-inf"))
    weights = tl.exp2(lse - tl.max(lse, 0))  # [BLOCK_S]: split 0 is never empty, so max is finite
    partial = tl.load(
        partial_out_ptr + (first_row + splits)[:, None] * head_dim + dims[None, :],
        mask=split_mask[:, None] & (dims[None, :] < head_dim),
        other=0.0,
    )  # [BLOCK_S, BLOCK_D]
    output = tl.sum(weights[:, None] * partial, 0) / tl.sum(weights, 0)
    tl.store(
        output_ptr + seq.to(tl.int64) * stride_ot + head * stride_oh + dims,
        output.to(output_ptr.dtype.element_ty),
        mask=dims < head_dim,
    )


def decode_attention(
    query: torch.Tensor,  # [num_tokens, num_heads, head_dim]
    key_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache: torch.Tensor,
    metadata: PagedAttentionMetadata,
    scale: float,
    output: torch.Tensor,  # [num_tokens, num_heads, head_dim], written for the decode rows
    *,
    split_len: int | None = None,  # tokens per split; None: chosen to fill the device
) -> None:
    """Attention for every decode of the batch (its first `num_decodes` rows)."""
    check_cache(key_cache, value_cache)
    check_query(query, key_cache)
    check_metadata(metadata)
    check_same_device(query, output, key_cache, metadata.block_tables, metadata.context_lens)
    if output.shape != query.shape or output.dtype != query.dtype or output.stride(-1) != 1:
        raise ValueError("output must be shaped and typed like query, with contiguous rows")
    num_decodes = metadata.num_decodes
    if num_decodes == 0:
        return
    num_heads, head_dim = query.shape[1:]
    num_kv_heads = key_cache.shape[2]
    max_context_len = max(metadata.context_lens_host[:num_decodes])
    if split_len is None:
        split_len = choose_split_len(num_decodes * num_kv_heads, max_context_len, query.device)
    if split_len < 1:
        raise ValueError(f"split_len must be positive, got {split_len}")
    num_splits = triton.cdiv(max_context_len, split_len)
    partial_out = torch.empty(
        num_decodes, num_heads, num_splits, head_dim, dtype=torch.float32, device=query.device
    )
    partial_lse = torch.empty(
        num_decodes, num_heads, num_splits, dtype=torch.float32, device=query.device
    )
    group = num_heads // num_kv_heads
    _decode_split_kernel[(num_decodes, num_kv_heads, num_splits)](
        query,
        partial_out,
        partial_lse,
        key_cache,
        value_cache,
        metadata.block_tables,
        metadata.context_lens,
        query.stride(0),
        query.stride(1),
        key_cache.stride(0),
        key_cache.stride(1),
        key_cache.stride(2),
        metadata.block_tables.stride(0),
        num_heads,
        num_splits,
        split_len,
        group,
        head_dim,
        scale * LOG2_E,
        BLOCK_SIZE=key_cache.shape[1],
        BLOCK_G=max(16, triton.next_power_of_2(group)),
        BLOCK_N=BLOCK_N,
        BLOCK_D=triton.next_power_of_2(head_dim),
        num_warps=4,
    )
    _decode_reduce_kernel[(num_decodes, num_heads)](
        partial_out,
        partial_lse,
        output,
        output.stride(0),
        output.stride(1),
        num_heads,
        num_splits,
        head_dim,
        BLOCK_S=triton.next_power_of_2(num_splits),
        BLOCK_D=triton.next_power_of_2(head_dim),
        num_warps=4,  # a [64 splits, 128] fp32 tile would spill with fewer threads
    )


def choose_split_len(num_programs: int, max_context_len: int, device: torch.device) -> int:
    """Tokens per split: enough splits to fill the device, none shorter than MIN_SPLIT_LEN.

    `num_programs` is the programs one split per sequence would launch (decodes times
    KV heads). Without a GPU (the interpreter) one program at a time runs anyway.
    """
    wanted = triton.cdiv(PROGRAMS_PER_SM * _num_sms(device), num_programs)
    num_splits = max(1, min(wanted, triton.cdiv(max_context_len, MIN_SPLIT_LEN)))
    return triton.cdiv(triton.cdiv(max_context_len, num_splits), BLOCK_N) * BLOCK_N


@cache
def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count
