"""One step of attention over a tile of paged KV, shared by the prefill and decode kernels.

Both kernels walk a sequence's context BLOCK_N tokens at a time. A token at position
p lives in cache block `block_table[p // block_size]` at slot `p % block_size`, so a
tile may span several cache blocks in any order: each token's row is found through
the block table, never by assuming blocks are adjacent. The softmax is the online
one (running max and sum, in fp32, base 2), so no tile of scores outlives its step.
"""

import triton
import triton.language as tl

LOG2_E = 1.4426950408889634  # the kernels take the softmax scale times this, for exp2


@triton.jit
def cache_rows(
    table_row_ptr,  # this sequence's row of the block tables, int32
    positions,  # [BLOCK_N] token positions in the sequence
    mask,  # [BLOCK_N] positions that exist
    stride_cache_block,
    stride_cache_slot,
    BLOCK_SIZE: tl.constexpr,
):
    """Element offsets of each position's row in the cache (int64: caches can be huge)."""
    block = tl.load(table_row_ptr + positions // BLOCK_SIZE, mask=mask, other=0).to(tl.int64)
    return block * stride_cache_block + (positions % BLOCK_SIZE) * stride_cache_slot


@triton.jit
def attend_tile(
    query,  # [M, BLOCK_D] in the cache dtype
    acc,  # [M, BLOCK_D] fp32: unnormalised output so far
    row_max,  # [M] fp32: running max of the (base-2) scores
    row_sum,  # [M] fp32: running sum of exp2(score - row_max)
    key_head_ptr,  # the key cache, offset to this KV head
    value_head_ptr,  # the value cache, offset to this KV head
    rows,  # [BLOCK_N] int64 offsets from `cache_rows`
    token_mask,  # [BLOCK_N] tokens of the tile that exist
    visible,  # [M, BLOCK_N] or [1, BLOCK_N]: which scores count
    dims,  # [BLOCK_D] arange
    head_dim,
    qk_scale,  # softmax scale times log2(e)
):
    """Fold one tile of keys and values into the running softmax; returns the new state.

    Every row must see at least one key in its first tile, so the running max is
    finite from then on (exp2 of -inf minus -inf would be NaN).
    """
    kv_mask = token_mask[:, None] & (dims[None, :] < head_dim)
    kv_offsets = rows[:, None] + dims[None, :]
    key = tl.load(key_head_ptr + kv_offsets, mask=kv_mask, other=0.0)  # [BLOCK_N, BLOCK_D]
    # NOTE: "ieee" keeps fp32 inputs exact (the default would round them to tf32 on
    # tensor cores); fp16 and bf16 inputs ignore it.
    scores = tl.dot(query, tl.trans(key), input_precision="ieee") * qk_scale  # [M, BLOCK_N]
    scores = tl.where(visible, scores, float("-inf"))
    new_max = tl.maximum(row_max, tl.max(scores, 1))
    correction = tl.exp2(row_max - new_max)  # [M]
    probs = tl.exp2(scores - new_max[:, None])  # [M, BLOCK_N]
    value = tl.load(value_head_ptr + kv_offsets, mask=kv_mask, other=0.0)  # [BLOCK_N, BLOCK_D]
    acc = acc * correction[:, None] + tl.dot(probs.to(value.dtype), value, input_precision="ieee")
    return acc, new_max, row_sum * correction + tl.sum(probs, 1)
