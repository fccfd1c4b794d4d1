"""Triton kernel: store the new tokens' K and V in their slots of the paged cache.

The same contract as `reference.write_kv_cache`. One program per new token moves
all of that token's KV heads at once: a [kv_heads, head_dim] tile is one or two
kilobytes, enough to keep a GPU's loads wide, and few programs keep the CPU
interpreter quick.
"""

import torch
import triton
import triton.language as tl

from kernels.checks import check_cache, check_same_device


@triton.jit
def _write_kv_kernel(
    key_ptr,  # [num_tokens, num_kv_heads, head_dim]
    value_ptr,
    key_cache_ptr,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache_ptr,
    slot_mapping_ptr,  # [num_tokens] int64
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_cache_block,
    stride_cache_slot,
    stride_cache_head,
    num_kv_heads,
    head_dim,
    BLOCK_SIZE: tl.constexpr,  # tokens per cache block
    BLOCK_H: tl.constexpr,  # num_kv_heads rounded up to a power of two
    BLOCK_D: tl.constexpr,  # head_dim rounded up to a power of two
):
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_mapping_ptr + token)  # int64: caches past 2**31 elements are fine
    block, offset = slot // BLOCK_SIZE, slot % BLOCK_SIZE
    heads = tl.arange(0, BLOCK_H)[:, None]
    dims = tl.arange(0, BLOCK_D)[None, :]
    mask = (heads < num_kv_heads) & (dims < head_dim)
    key = tl.load(key_ptr + token * stride_kt + heads * stride_kh + dims, mask=mask)
    value = tl.load(value_ptr + token * stride_vt + heads * stride_vh + dims, mask=mask)
    cache_offset = block * stride_cache_block + offset * stride_cache_slot
    cache_offset += heads * stride_cache_head + dims
    tl.store(key_cache_ptr + cache_offset, key, mask=mask)
    tl.store(value_cache_ptr + cache_offset, value, mask=mask)


def write_kv_cache(
    key: torch.Tensor,  # [num_tokens, num_kv_heads, head_dim]
    value: torch.Tensor,  # [num_tokens, num_kv_heads, head_dim]
    key_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    value_cache: torch.Tensor,  # [num_blocks, block_size, num_kv_heads, head_dim]
    slot_mapping: torch.Tensor,  # [num_tokens] int64
) -> None:
    """Store the new tokens' K and V in their slots of the paged cache."""
    check_cache(key_cache, value_cache)
    check_same_device(key, value, key_cache, value_cache, slot_mapping)
    num_tokens = key.shape[0]
    _, block_size, num_kv_heads, head_dim = key_cache.shape
    for name, tensor in (("key", key), ("value", value)):
        if tensor.shape != (num_tokens, num_kv_heads, head_dim) or tensor.stride(-1) != 1:
            raise ValueError(
                f"{name} must be [{num_tokens}, {num_kv_heads}, {head_dim}] with contiguous "
                f"rows, got {tuple(tensor.shape)} with strides {tensor.stride()}"
            )
        if tensor.dtype != key_cache.dtype:
            raise ValueError(f"{name} is {tensor.dtype} but the cache is {key_cache.dtype}")
    if slot_mapping.shape != (num_tokens,) or slot_mapping.dtype != torch.int64:
        raise ValueError(
            f"slot_mapping must be [{num_tokens}] int64, "
            f"got {tuple(slot_mapping.shape)} {slot_mapping.dtype}"
        )
    if num_tokens == 0:
        return
    _write_kv_kernel[(num_tokens,)](
        key,
        value,
        key_cache,
        value_cache,
        slot_mapping,
        key.stride(0),
        key.stride(1),
        value.stride(0),
        value.stride(1),
        key_cache.stride(0),
        key_cache.stride(1),
        key_cache.stride(2),
        num_kv_heads,
        head_dim,
        BLOCK_SIZE=block_size,
        BLOCK_H=triton.next_power_of_2(num_kv_heads),
        BLOCK_D=triton.next_power_of_2(head_dim),
    )
