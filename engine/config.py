"""Engine settings: what users pass to `LLM(...)` or `pagedrag ... --flag`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    model: str | None = None  # library name, HF directory or .gguf file; None: the default model
    dtype: str | None = (
        None  # "float32" or "bfloat16"; None: the fastest exact-enough for the device
    )
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: CUDA when available
    block_size: int = 16  # tokens per KV block: the unit of sharing and of allocation
    enable_prefix_caching: bool = True
    kv_cache_memory: int | None = None  # bytes for the KV pool; None: a fraction of free memory
    kv_cache_memory_fraction: float = 0.2  # on CPU the pool competes with the OS and the indexer
    max_num_batched_tokens: int = 2048  # per step; bounds activation memory and step latency
    max_num_seqs: int = 64  # running sequences at once
    max_model_len: int | None = (
        None  # prompt plus output; None: the model's (or what the pool holds)
    )
    seed: int = 0  # for sampled requests without a seed of their own

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be positive, got {self.block_size}")
        if self.kv_cache_memory is not None and self.kv_cache_memory <= 0:
            raise ValueError("kv_cache_memory must be a positive number of bytes")
        if not 0 < self.kv_cache_memory_fraction <= 1:
            raise ValueError("kv_cache_memory_fraction must be in (0, 1]")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError("max_model_len must be at least 2")
