"""Engine settings: what users pass to `LLM(...)` or `pagedrag ... --flag`."""

from dataclasses import dataclass
from pathlib import Path

from engine.distributed.config import ParallelConfig
from engine.errors import EngineConfigError
from kernels.backend_names import CHOICES as ATTENTION_BACKENDS

QUANTIZATION_METHODS = ("none", "int8", "int4")


@dataclass(frozen=True)
class EngineConfig:
    model: str | None = None  # library name, HF directory or .gguf file; None: the default model
    dtype: str | None = (
        None  # "float32" or "bfloat16"; None: the fastest exact-enough for the device
    )
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: CUDA when available
    block_size: int = 16  # tokens per KV block: the unit of sharing and of allocation
    enable_prefix_caching: bool = True
    # Reuse a retrieved passage's KV wherever it recurs in a prompt (passage_cache.py),
    # computing again only the first `passage_recompute_tokens` of each reused passage.
    # On: bench-qa's accuracy was the same with it in English and Chinese (k = 16,
    # docs/benchmarks.md). Only prompts that mark passages (the RAG prompt) use it.
    enable_passage_cache: bool = True
    passage_recompute_tokens: int = 16
    # Steps a waiting request may be held back for a passage another request is
    # computing, or passed over for requests with more of their prompt cached; 0 keeps
    # first come, first served.
    passage_max_wait_steps: int = 8
    kv_cache_memory: int | None = None  # bytes for the KV pool; None: a fraction of free memory
    kv_cache_memory_fraction: float = 0.2  # on CPU the pool competes with the OS and the indexer
    max_num_batched_tokens: int = 2048  # per step; bounds activation memory and step latency
    max_num_seqs: int = 64  # running sequences at once
    max_model_len: int | None = (
        None  # prompt plus output; None: the model's (or what the pool holds)
    )
    seed: int = 0  # for sampled requests without a seed of their own
    # Weight-only quantization of the linears (vLLM's option name): "none", "int8" (per
    # output channel) or "int4" (group-wise); kept in the model store after the first start.
    # None: the library model's own default (int4 for the 1.5B model), else "none".
    quantization: str | None = None
    quantization_group_size: int = 32  # int4: input columns per scale (llama.cpp's Q4_K: 32)
    home: Path | None = None  # holds the model store; None: ~/.cache/pagedrag
    # "triton", "cpu" or "reference" forces the attention kernels (debugging,
    # comparisons); None: Triton on CUDA, the compiled CPU kernel on the CPU.
    attention_backend: str | None = None
    # Tensor and pipeline parallelism (vLLM's option names), torchrun's names for the
    # job's machines: tensor_parallel_size x pipeline_parallel_size processes in all.
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    nnodes: int = 1
    node_rank: int = 0  # only 0 runs an engine; the other nodes run `pagedrag worker`
    master_addr: str = "127.0.0.1"
    master_port: int = 0  # 0: a free port (one machine only)
    distributed_timeout_s: float = 600.0  # a collective waiting longer has failed

    @property
    def parallel(self) -> ParallelConfig:
        return ParallelConfig(
            self.tensor_parallel_size,
            self.pipeline_parallel_size,
            self.nnodes,
            self.node_rank,
            self.master_addr,
            self.master_port,
            self.distributed_timeout_s,
        )

    def __post_init__(self) -> None:
        self.parallel  # noqa: B018 (checks the parallel settings, raising EngineConfigError)
        if self.node_rank != 0:
            raise EngineConfigError(
                "the engine runs on node 0; start the other nodes with `pagedrag worker`"
            )
        if self.home is not None:  # a str from Python callers is welcome too
            object.__setattr__(self, "home", Path(self.home).expanduser())
        if self.block_size < 1:
            raise EngineConfigError(f"block_size must be a positive number, got {self.block_size}")
        if self.kv_cache_memory is not None and self.kv_cache_memory <= 0:
            raise EngineConfigError(
                f"kv_cache_memory must be a positive number of bytes, got {self.kv_cache_memory}; "
                "give the KV pool room (for example --kv-cache-memory 512M) or leave it unset "
                "to use a fraction of free memory"
            )
        if not 0 < self.kv_cache_memory_fraction <= 1:
            raise EngineConfigError(
                f"kv_cache_memory_fraction must be in (0, 1], got {self.kv_cache_memory_fraction}"
            )
        if self.passage_max_wait_steps < 0:
            raise EngineConfigError(
                f"passage_max_wait_steps must be 0 or more, got {self.passage_max_wait_steps}"
            )
        if self.passage_recompute_tokens < 0:
            raise EngineConfigError(
                f"passage_recompute_tokens must be 0 or more, got {self.passage_recompute_tokens}"
            )
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1:
            raise EngineConfigError("max_num_batched_tokens and max_num_seqs must be positive")
        if self.quantization is not None and self.quantization not in QUANTIZATION_METHODS:
            raise EngineConfigError(
                f"quantization must be one of {', '.join(QUANTIZATION_METHODS)}, "
                f"got {self.quantization!r}"
            )
        if self.attention_backend is not None and self.attention_backend not in ATTENTION_BACKENDS:
            raise EngineConfigError(
                f"attention_backend must be one of {', '.join(ATTENTION_BACKENDS)} (or None "
                f"to choose by device), got {self.attention_backend!r}"
            )
        if self.quantization_group_size < 16 or self.quantization_group_size % 16:
            raise EngineConfigError(
                "quantization_group_size must be a multiple of 16 (32, 64, 128, ...), "
                f"got {self.quantization_group_size}"
            )
        if self.max_model_len is not None and self.max_model_len < 2:
            raise EngineConfigError(
                f"max_model_len must be at least 2 (a prompt token and an output token), "
                f"got {self.max_model_len}"
            )
