"""One rank's part of the engine, and the loop every rank but 0 runs.

Rank 0 (the engine's process) sends each rank the same `RankSpec`; each rank builds
its shard of the model and its share of the paged KV pool (every rank the same number
of blocks: the fewest any rank can hold), then runs what rank 0 broadcasts, step by
step, until told to stop. A worker has no scheduler, no block manager and no sampler:
the block tables and slots in each step's inputs are rank 0's.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.distributed.config import ParallelConfig
from engine.distributed.groups import ParallelGroups, init_groups
from engine.kv_cache import KVCacheSpec, allocate_kv_cache, rank_kv_budget
from engine.library import resolve_model
from engine.library.store import ModelStore
from engine.model_runner import ModelRunner, StepInput
from engine.models.loader import load_model
from engine.models.quantization import QuantizationConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankSpec:
    """What each rank builds its part of the engine from (rank 0's settings)."""

    model: str | None  # library name, HF directory or .gguf file; resolved on each node
    dtype: torch.dtype
    device_type: str  # "cpu" or "cuda": a rank's device is its local index on that kind
    quantization: QuantizationConfig | None
    block_size: int
    kv_cache_memory: int | None  # bytes for the whole pool on a node (CPU) or per GPU
    kv_cache_memory_fraction: float
    attention_backend: str


@dataclass(frozen=True)
class RunStep:
    step: StepInput


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class RankParts:
    runner: ModelRunner
    num_blocks: int  # every rank's
    kv_spec: KVCacheSpec  # this rank's layers and KV heads


def rank_device(config: ParallelConfig, rank: int, device_type: str) -> torch.device:
    if device_type == "cuda":
        return torch.device("cuda", rank - config.node_rank * config.ranks_per_node)
    return torch.device("cpu")


def build_rank(spec: RankSpec, groups: ParallelGroups, home: Path | None) -> RankParts:
    """Load this rank's shard and allocate its KV pool (collective: every rank calls it)."""
    config = groups.config
    device = rank_device(config, groups.rank, spec.device_type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # NOTE: the node's ranks share its cores; more threads than cores only thrash
        torch.set_num_threads(max((os.cpu_count() or 1) // config.ranks_per_node, 1))
    model_path = resolve_model(spec.model, home=home, progress=False)
    quantized_path = None
    if spec.quantization is not None:
        quantized_path = ModelStore.default(home).quantized_weights_path(
            model_path, spec.quantization.tag
        )
    model = load_model(
        model_path,
        spec.dtype,
        device,
        spec.quantization,
        quantized_path,
        groups.shard,
        groups.tensor_parallel,
    )
    local = model.local_config
    kv_spec = KVCacheSpec(
        len(model.model.layers), local.num_kv_heads, local.head_dim, spec.block_size, spec.dtype
    )
    budget = rank_kv_budget(
        device, spec.kv_cache_memory, spec.kv_cache_memory_fraction, config.ranks_per_node
    )
    num_blocks = groups.agree_min(kv_spec.num_blocks_for(budget))
    kv_caches = allocate_kv_cache(kv_spec, max(num_blocks, 0), device)
    runner = ModelRunner(model, kv_caches, spec.block_size, device, spec.attention_backend, groups)
    return RankParts(runner, num_blocks, kv_spec)


def run_worker(config: ParallelConfig, rank: int, device_type: str, home: Path | None) -> None:
    """A worker rank, from joining the job to rank 0's stop; losing rank 0 (or another
    rank) ends it with one line in the log and exit code 1."""
    groups = init_groups(config, rank, rank_device(config, rank, device_type))
    try:
        spec = groups.broadcast()
        if isinstance(spec, Stop):
            return
        parts = build_rank(spec, groups, home)
        if parts.num_blocks < 2:
            return  # rank 0 refuses to start and says why
        logger.info("rank %d ready: %s", rank, groups.shard)
        while True:
            message = groups.broadcast()
            if isinstance(message, RunStep):
                parts.runner.run(message.step)
            else:
                return
    except Exception as error:  # a peer closed, a timeout, a model this node cannot load
        logger.error("rank %d left the job: %s", rank, str(error).splitlines()[0])
        raise SystemExit(1) from None
    finally:
        groups.close()
