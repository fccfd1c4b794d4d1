"""The paged reference against plain dense attention on fresh random inputs."""

import math

import pytest
import torch

from kernels import PagedAttentionMetadata
from kernels.reference import paged_attention, write_kv_cache

NUM_HEADS, NUM_KV_HEADS, HEAD_DIM, BLOCK = 6, 2, 16, 4


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [Q, H, D] are the last Q positions of the sequence whose keys are k, v [L, KVH, D]."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1).double()
    v = v.repeat_interleave(group, dim=1).double()
    scores = torch.einsum("qhd,lhd->hql", q.double(), k) / math.sqrt(q.shape[-1])
    offset = k.shape[0] - q.shape[0]
    allowed = torch.ones(q.shape[0], k.shape[0], dtype=torch.bool).tril(offset)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hql,lhd->qhd", scores.softmax(-1), v)


def build_batch(
    seqs: list[tuple[int, int]], num_blocks: int, dtype: torch.dtype, generator: torch.Generator
):
    """seqs: (context_len, query_len) per sequence, decodes first. Blocks are scattered."""
    key_cache = torch.zeros(num_blocks, BLOCK, NUM_KV_HEADS, HEAD_DIM, dtype=dtype)
    value_cache = torch.zeros_like(key_cache)
    free = torch.randperm(num_blocks, generator=generator).tolist()
    tables, full_keys, full_values, queries, slots = [], [], [], [], []
    for context_len, query_len in seqs:
        table = [free.pop() for _ in range(-(-context_len // BLOCK))]
        tables.append(table)
        keys = torch.randn(context_len, NUM_KV_HEADS, HEAD_DIM, generator=generator).to(dtype)
        values = torch.randn(context_len, NUM_KV_HEADS, HEAD_DIM, generator=generator).to(dtype)
        full_keys.append(keys)
        full_values.append(values)
        seq_slots = [table[p // BLOCK] * BLOCK + p % BLOCK for p in range(context_len)]
        prefix = context_len - query_len
        # The cached prefix is already in the cache; the new tokens are written by the test.
        write_kv_cache(
            keys[:prefix],
            values[:prefix],
            key_cache,
            value_cache,
            torch.tensor(seq_slots[:prefix], dtype=torch.int64),
        )
        slots.extend(seq_slots[prefix:])
        queries.append(torch.randn(query_len, NUM_HEADS, HEAD_DIM, generator=generator).to(dtype))
    width = max(len(t) for t in tables)
    query_lens = tuple(q for _, q in seqs)
    metadata = PagedAttentionMetadata(
        slot_mapping=torch.tensor(slots, dtype=torch.int64),
        query_start_loc=torch.tensor(
            [0, *torch.tensor(query_lens).cumsum(0).tolist()], dtype=torch.int32
        ),
        context_lens=torch.tensor([c for c, _ in seqs], dtype=torch.int32),
        block_tables=torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32),
        num_decodes=sum(1 for q in query_lens if q == 1),
        query_lens_host=query_lens,
        context_lens_host=tuple(c for c, _ in seqs),
    )
    new_keys = torch.cat([k[c - q :] for k, (c, q) in zip(full_keys, seqs, strict=True)])
    new_values = torch.cat([v[c - q :] for v, (c, q) in zip(full_values, seqs, strict=True)])
    return key_cache, value_cache, metadata, queries, full_keys, full_values, new_keys, new_values


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "seqs",
    [
        # Decodes of different lengths, a fresh prompt, a prompt behind a cached prefix
        # that ends mid-block, a one-token-prefix chunk, and chunks too long for the
        # short-chunk path, with and without a prefix.
        [(1, 1), (9, 1), (23, 1), (13, 13), (30, 7), (5, 4), (150, 100), (90, 90)],
        # A lone decode (its own path) ending mid-block, then one beside a prefill.
        [(37, 1)],
        [(33, 1), (13, 13)],
        # Decodes of one length: the batch needs no padding mask.
        [(21, 1), (21, 1), (21, 1)],
    ],
    ids=["mixed", "one-decode", "one-decode-and-prefill", "equal-decodes"],
)
def test_paged_attention_matches_dense_attention(
    dtype: torch.dtype, tolerance: float, seed: int, seqs: list[tuple[int, int]]
) -> None:
    generator = torch.Generator().manual_seed(seed)
    key_cache, value_cache, metadata, queries, keys, values, new_k, new_v = build_batch(
        seqs, num_blocks=128, dtype=dtype, generator=generator
    )
    write_kv_cache(new_k, new_v, key_cache, value_cache, metadata.slot_mapping)
    output = paged_attention(torch.cat(queries), key_cache, value_cache, metadata, HEAD_DIM**-0.5)
    expected = torch.cat(
        [dense_attention(q, k, v) for q, k, v in zip(queries, keys, values, strict=True)]
    )
    assert output.shape == (sum(q for _, q in seqs), NUM_HEADS, HEAD_DIM)
    assert output.dtype == dtype
    torch.testing.assert_close(output.double(), expected, atol=tolerance, rtol=tolerance)


def test_write_kv_cache_puts_each_token_in_its_slot() -> None:
    key_cache = torch.zeros(4, BLOCK, NUM_KV_HEADS, HEAD_DIM)
    value_cache = torch.zeros_like(key_cache)
    key = torch.randn(3, NUM_KV_HEADS, HEAD_DIM)
    value = torch.randn(3, NUM_KV_HEADS, HEAD_DIM)
    write_kv_cache(key, value, key_cache, value_cache, torch.tensor([13, 2, 7]))
    torch.testing.assert_close(key_cache[3, 1], key[0])
    torch.testing.assert_close(value_cache[0, 2], value[1])
    torch.testing.assert_close(key_cache[1, 3], key[2])
    assert key_cache.count_nonzero() == 3 * NUM_KV_HEADS * HEAD_DIM
