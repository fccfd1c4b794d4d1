"""Paged attention in plain PyTorch: the reference every kernel is tested against.

It also runs prefill chunks on the CPU (the CPU backend, `cpu_attention.py`, compiles a
kernel for decodes only), and everything where that kernel cannot be built. Each decode
is one fused attention call over its gathered blocks; prefill chunks, each large enough
to amortise a Python loop, go through `scaled_dot_product_attention` with a causal mask
offset by the cached prefix.
"""

import torch
import torch.nn.functional as F

from kernels.metadata import PagedAttentionMetadata

NAME = "reference"  # what PAGEDRAG_ATTENTION calls this backend


def write_kv_cache(
    key: torch.Tensor,  # [num_tokens, num_kv_heads, head_dim]
    value: torch.Tensor,  # [num_tokens, num_kv_heads, head_dim]
    key_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    slot_mapping: torch.Tensor,  # [num_tokens] int64
) -> None:
    """Store the new tokens' K and V in their slots of the paged cache."""
    num_kv_heads, head_dim = key_cache.shape[2:]
    key_cache.view(-1, num_kv_heads, head_dim).index_copy_(0, slot_mapping, key)
    value_cache.view(-1, num_kv_heads, head_dim).index_copy_(0, slot_mapping, value)


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
    num_decodes = metadata.num_decodes
    if num_decodes:
        output[:num_decodes] = decode(query[:num_decodes], key_cache, value_cache, metadata, scale)
    attend_prefill_chunks(query, key_cache, value_cache, metadata, scale, output)
    return output


def attend_prefill_chunks(
    query: torch.Tensor,  # [num_tokens, num_heads, head_dim]
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    metadata: PagedAttentionMetadata,
    scale: float,
    output: torch.Tensor,  # [num_tokens, num_heads, head_dim]: rows after the decodes filled
) -> None:
    """The prefill chunks' part of `paged_attention`, which the CPU backend shares."""
    # NOTE: offsets from the host copy of the lengths: no device sync inside a step.
    end = metadata.num_decodes
    for index in range(metadata.num_decodes, metadata.num_seqs):
        start, end = end, end + metadata.query_lens_host[index]
        output[start:end] = _prefill_one(
            query[start:end],
            key_cache,
            value_cache,
            metadata.block_tables[index],
            metadata.context_lens_host[index],
            scale,
        )


def gather_kv(
    cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    block_tables: torch.Tensor,  # [num_seqs, num_blocks_per_seq] int32
) -> torch.Tensor:  # [num_seqs, num_blocks_per_seq * block_size, num_kv_heads, head_dim]
    """Copy each sequence's blocks into one contiguous run of tokens."""
    num_seqs, num_blocks = block_tables.shape
    # NOTE: index_select over whole blocks is several times faster on the CPU than
    # advanced indexing, which copies element-wise.
    rows = cache.view(cache.shape[0], -1).index_select(0, block_tables.reshape(-1).long())
    return rows.view(num_seqs, num_blocks * cache.shape[1], *cache.shape[2:])


def decode(
    query: torch.Tensor,  # [num_decodes, num_heads, head_dim]
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    metadata: PagedAttentionMetadata,
    scale: float,
) -> torch.Tensor:  # [num_decodes, num_heads, head_dim]
    """One fused SDPA call per decode, its query heads grouped by the KV head they read.

    NOTE: a decode token sees every cached key, so the query heads that share a KV head
    can stand in for query positions: [1, kv_heads, group, D] against [1, kv_heads, L, D]
    is plain attention, which takes torch's fused CPU kernel (given 4-D inputs).
    `enable_gqa` would take the math path and copy K and V once per query head (10x
    slower at 1,000 tokens). One call per sequence rather than one padded call: padding
    changes the kernel's blocking, and so the last bits of a sequence's output with the
    batch it is in.
    """
    num_decodes, num_heads, head_dim = query.shape
    block_size, num_kv_heads = key_cache.shape[1], key_cache.shape[2]
    grouped = query.view(num_decodes, num_kv_heads, num_heads // num_kv_heads, head_dim)
    output = torch.empty_like(grouped)
    for index, context_len in enumerate(metadata.context_lens_host[:num_decodes]):
        table = metadata.block_tables[index : index + 1, : -(-context_len // block_size)]
        keys = gather_kv(key_cache, table)[:, :context_len].transpose(1, 2)  # [1, kv_h, L, D]
        values = gather_kv(value_cache, table)[:, :context_len].transpose(1, 2)
        output[index : index + 1] = F.scaled_dot_product_attention(
            grouped[index : index + 1], keys, values, scale=scale
        )
    return output.view(num_decodes, num_heads, head_dim)


def _prefill_one(
    query: torch.Tensor,  # [query_len, num_heads, head_dim]
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,  # [max_num_blocks] int32
    context_len: int,
    scale: float,
) -> torch.Tensor:  # [query_len, num_heads, head_dim]
    query_len = query.shape[0]
    table = block_table[None, : -(-context_len // key_cache.shape[1])]
    keys = gather_kv(key_cache, table)[0, :context_len]  # [L, kv_heads, head_dim]
    values = gather_kv(value_cache, table)[0, :context_len]
    if query_len <= SHORT_CHUNK:
        return _attend_short_chunk(query, keys, values, scale)
    # Query i sits at position (context_len - query_len + i) and sees keys up to it.
    mask = None
    if query_len < context_len:
        mask = torch.ones(query_len, context_len, dtype=torch.bool, device=query.device)
        mask = mask.tril(diagonal=context_len - query_len)
    # NOTE: K and V repeated per query head, in 4-D: `enable_gqa` or 3-D inputs take
    # SDPA's math path, three times slower at 1,000 tokens than the fused CPU kernel.
    group = query.shape[1] // keys.shape[1]
    output = F.scaled_dot_product_attention(
        query.transpose(0, 1)[None],  # [1, num_heads, query_len, head_dim]
        keys.repeat_interleave(group, dim=1).transpose(0, 1)[None],  # [1, num_heads, L, D]
        values.repeat_interleave(group, dim=1).transpose(0, 1)[None],
        attn_mask=mask,
        is_causal=mask is None,
        scale=scale,
    )
    return output[0].transpose(0, 1)


# NOTE: a question behind cached passages is a short chunk with a long prefix, the
# common RAG case. Plain matmuls beat SDPA's masked path there, whose checks and
# dtype copies cost more than the maths; long chunks keep SDPA's memory-efficient kernel.
SHORT_CHUNK = 64


def _attend_short_chunk(
    query: torch.Tensor,  # [Q, num_heads, head_dim]
    keys: torch.Tensor,  # [L, kv_heads, head_dim]
    values: torch.Tensor,  # [L, kv_heads, head_dim]
    scale: float,
) -> torch.Tensor:  # [Q, num_heads, head_dim]
    query_len, num_heads, head_dim = query.shape
    context_len, num_kv_heads = keys.shape[:2]
    group = num_heads // num_kv_heads
    # Each KV head serves its group of query heads for all Q positions at once.
    grouped = query.view(query_len, num_kv_heads, group, head_dim).permute(1, 2, 0, 3)
    grouped = grouped.reshape(num_kv_heads, group * query_len, head_dim)  # [kv_heads, G*Q, D]
    scores = torch.bmm(grouped, keys.permute(1, 2, 0)).float() * scale  # [kv_heads, G*Q, L]
    visible = torch.ones(query_len, context_len, dtype=torch.bool, device=query.device)
    visible = visible.tril(diagonal=context_len - query_len)  # [Q, L]
    scores = scores.view(num_kv_heads, group, query_len, context_len)
    scores.masked_fill_(~visible, float("-inf"))
    probs = scores.softmax(-1).to(values.dtype).view(num_kv_heads, group * query_len, context_len)
    output = torch.bmm(probs, values.transpose(0, 1))  # [kv_heads, G*Q, D]
    output = output.view(num_kv_heads, group, query_len, head_dim).permute(2, 0, 1, 3)
    return output.reshape(query_len, num_heads, head_dim)
