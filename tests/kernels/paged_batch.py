"""Factory: a random flattened batch over a paged KV cache, as the model runner lays it out.

Decodes first, then prefill chunks; each sequence's blocks are drawn from a shuffled
pool, so block tables are out of order; every slot of the pool starts out holding
stale random values (as freed blocks do in the engine), so a kernel that reads a
slot it should not gives a wrong answer rather than a lucky zero.
"""

from dataclasses import dataclass

import torch

from kernels import PagedAttentionMetadata
from kernels.reference import write_kv_cache


@dataclass(frozen=True)
class PagedBatch:
    query: torch.Tensor  # [num_tokens, num_heads, head_dim]
    new_keys: torch.Tensor  # [num_tokens, num_kv_heads, head_dim]: K of the new tokens
    new_values: torch.Tensor  # [num_tokens, num_kv_heads, head_dim]
    key_cache: torch.Tensor  # [num_blocks, block_size, num_kv_heads, head_dim], prefixes in
    value_cache: torch.Tensor
    metadata: PagedAttentionMetadata


def random_batch(
    seqs: list[tuple[int, int]],  # (context_len, query_len) per sequence, decodes first
    *,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator,
) -> PagedBatch:
    """A batch whose cached prefixes are already in the cache; the new tokens' K/V are not."""
    num_blocks = sum(-(-context_len // block_size) for context_len, _ in seqs) + 3

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    key_cache = randn(num_blocks, block_size, num_kv_heads, head_dim)
    value_cache = randn(num_blocks, block_size, num_kv_heads, head_dim)
    free = torch.randperm(num_blocks, generator=generator).tolist()
    tables, slots = [], []
    for context_len, query_len in seqs:
        table = [free.pop() for _ in range(-(-context_len // block_size))]
        tables.append(table)
        seq_slots = [
            table[p // block_size] * block_size + p % block_size for p in range(context_len)
        ]
        prefix_len = context_len - query_len
        prefix_slots = torch.tensor(seq_slots[:prefix_len], dtype=torch.int64, device=device)
        prefix_keys = randn(prefix_len, num_kv_heads, head_dim)
        prefix_values = randn(prefix_len, num_kv_heads, head_dim)
        write_kv_cache(prefix_keys, prefix_values, key_cache, value_cache, prefix_slots)
        slots.extend(seq_slots[prefix_len:])
    width = max(len(table) for table in tables)
    query_lens = tuple(query_len for _, query_len in seqs)
    context_lens = tuple(context_len for context_len, _ in seqs)
    starts = [0, *torch.tensor(query_lens).cumsum(0).tolist()]
    metadata = PagedAttentionMetadata(
        slot_mapping=torch.tensor(slots, dtype=torch.int64, device=device),
        query_start_loc=torch.tensor(starts, dtype=torch.int32, device=device),
        context_lens=torch.tensor(context_lens, dtype=torch.int32, device=device),
        block_tables=torch.tensor(
            [table + [0] * (width - len(table)) for table in tables],
            dtype=torch.int32,
            device=device,
        ),
        num_decodes=sum(1 for query_len in query_lens if query_len == 1),
        query_lens_host=query_lens,
        context_lens_host=context_lens,
    )
    num_tokens = sum(query_lens)
    return PagedBatch(
        query=randn(num_tokens, num_heads, head_dim),
        new_keys=randn(num_tokens, num_kv_heads, head_dim),
        new_values=randn(num_tokens, num_kv_heads, head_dim),
        key_cache=key_cache,
        value_cache=value_cache,
        metadata=metadata,
    )


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64."""
    difference = (actual.double() - expected.double()).norm()
    return (difference / expected.double().norm()).item()


def written(batch: PagedBatch) -> PagedBatch:
    """The batch with its new tokens' K and V in the cache, written by the reference."""
    write_kv_cache(
        batch.new_keys,
        batch.new_values,
        batch.key_cache,
        batch.value_cache,
        batch.metadata.slot_mapping,
    )
    return batch
