"""What the Triton launchers check before a launch: a kernel reads raw pointers, so a
wrong shape, stride, dtype or device would give wrong numbers, not an error."""

import torch

from kernels.metadata import PagedAttentionMetadata

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_cache(key_cache: torch.Tensor, value_cache: torch.Tensor) -> None:
    """K and V caches alike: [num_blocks, block_size, kv_heads, head_dim], rows contiguous."""
    if key_cache.dim() != 4:
        raise ValueError(
            "the KV cache must be [num_blocks, block_size, num_kv_heads, head_dim], "
            f"got {tuple(key_cache.shape)}"
        )
    if key_cache.shape[3] < 16:
        raise ValueError(
            f"head_dim must be at least 16 (tl.dot's minimum), got {key_cache.shape[3]}"
        )
    if key_cache.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"the Triton kernels take fp16, bf16 or fp32, got {key_cache.dtype}")
    if (value_cache.shape, value_cache.dtype) != (key_cache.shape, key_cache.dtype):
        raise ValueError(
            f"key and value caches differ: {tuple(key_cache.shape)} {key_cache.dtype} vs "
            f"{tuple(value_cache.shape)} {value_cache.dtype}"
        )
    # NOTE: the kernels address both caches with one set of strides.
    if value_cache.stride() != key_cache.stride() or key_cache.stride(-1) != 1:
        raise ValueError(
            "key and value caches must share strides with contiguous head_dim, "
            f"got {key_cache.stride()} and {value_cache.stride()}"
        )


def check_query(query: torch.Tensor, key_cache: torch.Tensor) -> None:
    """[num_tokens, num_heads, head_dim] in the cache's dtype, heads a multiple of KV heads."""
    num_kv_heads, head_dim = key_cache.shape[2:]
    if query.dim() != 3 or query.shape[2] != head_dim or query.stride(-1) != 1:
        raise ValueError(
            f"query must be [num_tokens, num_heads, {head_dim}] with contiguous rows, "
            f"got {tuple(query.shape)} with strides {query.stride()}"
        )
    if query.shape[1] % num_kv_heads:
        raise ValueError(
            f"{query.shape[1]} query heads cannot share {num_kv_heads} KV heads evenly"
        )
    if query.dtype != key_cache.dtype:
        raise ValueError(f"query is {query.dtype} but the cache is {key_cache.dtype}")


def check_metadata(metadata: PagedAttentionMetadata) -> None:
    """int32 offsets, lengths and block tables, the tables' rows contiguous."""
    for name in ("query_start_loc", "context_lens", "block_tables"):
        tensor = getattr(metadata, name)
        if tensor.dtype != torch.int32 or tensor.stride(-1) != 1:
            raise ValueError(f"metadata.{name} must be contiguous int32, got {tensor.dtype}")


def check_same_device(*tensors: torch.Tensor) -> None:
    devices = {tensor.device for tensor in tensors}
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
