"""Paged attention in plain PyTorch: the reference every kernel is tested against.

It is also what runs on the CPU. Decodes are batched into one padded gather and two
matmuls; prefill chunks, each large enough to amortise a Python loop, go through
`scaled_dot_product_attention` with a causal mask offset by the cached prefix.
"""

import torch
import torch.nn.functional as F

from kernels.metadata import PagedAttentionMetadata


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
        output[:num_decodes] = _decode(query[:num_decodes], key_cache, value_cache, metadata, scale)
    starts = metadata.query_start_loc.tolist()
    for index in range(num_decodes, metadata.num_seqs):
        start, end = starts[index], starts[index + 1]
        output[start:end] = _prefill_one(
            query[start:end],
            key_cache,
            value_cache,
            metadata.block_tables[index],
            metadata.context_lens_host[index],
            scale,
        )
    return output


def gather_kv(
    cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    block_tables: torch.Tensor,  # [num_seqs, num_blocks_per_seq] int32
) -> torch.Tensor:  # [num_seqs, num_blocks_per_seq * block_size, num_kv_heads, head_dim]
    """Copy each sequence's blocks into one contiguous run of tokens."""
    num_seqs, num_blocks = block_tables.shape
    gathered = cache[block_tables.long()]  # [num_seqs, num_blocks, block_size, kv_heads, head_dim]
    return gathered.view(num_seqs, num_blocks * cache.shape[1], *cache.shape[2:])


def _decode(
    query: torch.Tensor,  # [num_decodes, num_heads, head_dim]
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    metadata: PagedAttentionMetadata,
    scale: float,
) -> torch.Tensor:  # [num_decodes, num_heads, head_dim]
    num_decodes, num_heads, head_dim = query.shape
    block_size, num_kv_heads = key_cache.shape[1], key_cache.shape[2]
    context_lens = metadata.context_lens[:num_decodes]
    max_len = max(metadata.context_lens_host[:num_decodes])
    num_blocks = -(-max_len // block_size)
    block_tables = metadata.block_tables[:num_decodes, :num_blocks]
    keys = gather_kv(key_cache, block_tables).permute(0, 2, 3, 1)  # [B, kv_heads, head_dim, L]
    values = gather_kv(value_cache, block_tables).transpose(1, 2)  # [B, kv_heads, L, head_dim]
    # NOTE: grouped-query attention without copying K/V per head: each KV head's
    # query group is a small matrix of its own.
    grouped = query.view(num_decodes, num_kv_heads, num_heads // num_kv_heads, head_dim)
    scores = torch.matmul(grouped, keys).float() * scale  # [B, kv_heads, group, L]
    positions = torch.arange(keys.shape[-1], device=query.device)
    padding = positions[None, :] >= context_lens[:, None].to(positions.dtype)  # [B, L]
    scores.masked_fill_(padding[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(values.dtype)
    output = torch.matmul(probs, values)  # [B, kv_heads, group, head_dim]
    return output.reshape(num_decodes, num_heads, head_dim)


def _prefill_one(
    query: torch.Tensor,  # [query_len, num_heads, head_dim]
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,  # [max_num_blocks] int32
    context_len: int,
    scale: float,
) -> torch.Tensor:  # [query_len, num_heads, head_dim]
    query_len = query.shape[0]
    num_blocks = -(-context_len // key_cache.shape[1])
    table = block_table[None, :num_blocks]
    keys = gather_kv(key_cache, table)[0, :context_len].transpose(0, 1)  # [kv_heads, L, head_dim]
    values = gather_kv(value_cache, table)[0, :context_len].transpose(0, 1)
    queries = query.transpose(0, 1)  # [num_heads, query_len, head_dim]
    if query_len == context_len:
        output = F.scaled_dot_product_attention(
            queries, keys, values, is_causal=True, scale=scale, enable_gqa=True
        )
    else:
        # Query i sits at position (context_len - query_len + i) and sees keys up to it.
        mask = torch.ones(query_len, context_len, dtype=torch.bool, device=query.device)
        mask = mask.tril(diagonal=context_len - query_len)
        output = F.scaled_dot_product_attention(
            queries, keys, values, attn_mask=mask, scale=scale, enable_gqa=True
        )
    return output.transpose(0, 1)
