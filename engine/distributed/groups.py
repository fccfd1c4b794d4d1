"""The process groups a rank belongs to, and the collectives the engine runs on them.

Ranks are laid out stage by stage: rank = pp_rank * tp_size + tp_rank, so rank 0 (the
engine's own process) is the first stage's first tensor-parallel rank. Each stage's
ranks form a tensor-parallel group; hidden states go from a rank to the rank with the
same tensor-parallel index in the next stage; the last stage's first rank sends the
logits back to rank 0. Control messages (each step's inputs) go over a gloo group, so
they travel as pickled CPU objects whatever the device.
"""

import pickle
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from engine.distributed.config import ParallelConfig
from engine.distributed.tensor_parallel import SINGLE_RANK, TensorParallelGroup
from engine.models.sharding import ModelShard

CONTROL_TAG = 1  # rank 0's messages; hidden states and logits go with tag 0


@dataclass
class ParallelGroups:
    """One rank's place: its shard of the model and the groups it talks on."""

    rank: int
    config: ParallelConfig
    shard: ModelShard
    tensor_parallel: TensorParallelGroup
    control: Any = field(repr=False)  # gloo group of every rank: step inputs, agreements
    # rank 0's sends of its last message, with their tensors (kept until they complete)
    _control_sends: list[tuple[Any, torch.Tensor]] = field(default_factory=list, repr=False)

    @property
    def next_stage_rank(self) -> int:
        return self.rank + self.config.tensor_parallel_size

    @property
    def previous_stage_rank(self) -> int:
        return self.rank - self.config.tensor_parallel_size

    @property
    def last_stage_first_rank(self) -> int:
        return self.config.world_size - self.config.tensor_parallel_size

    def broadcast(self, message: object = None) -> Any:
        """Rank 0's message, on every rank (rank 0 passes it, the others get it).

        NOTE: rank 0 sends without waiting for the others to take it (a collective
        broadcast waits): with pipeline stages the last stage takes a step's message
        only after the step before, while rank 0 is meant to run that step's first stage.
        """
        if self.rank != 0:
            size = torch.empty(1, dtype=torch.int64)
            dist.recv(size, src=0, group=self.control, tag=CONTROL_TAG)
            payload = torch.empty(int(size.item()), dtype=torch.uint8)
            dist.recv(payload, src=0, group=self.control, tag=CONTROL_TAG)
            return pickle.loads(payload.numpy().tobytes())
        for work, _ in self._control_sends:  # the last message's: long since taken
            work.wait()
        payload = torch.frombuffer(bytearray(pickle.dumps(message)), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.int64)
        self._control_sends = [
            (dist.isend(tensor, dst=rank, group=self.control, tag=CONTROL_TAG), tensor)
            for rank in range(1, self.config.world_size)
            for tensor in (size, payload)
        ]
        return message

    def agree_min(self, value: int) -> int:
        """The smallest of every rank's value (the KV pool every rank can hold)."""
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=self.control)
        return int(tensor.item())

    def send(self, tensor: torch.Tensor, to_rank: int) -> None:
        dist.send(tensor.contiguous(), dst=to_rank)

    def receive(self, tensor: torch.Tensor, from_rank: int) -> torch.Tensor:
        dist.recv(tensor, src=from_rank)
        return tensor

    def send_async(self, tensor: torch.Tensor, to_rank: int) -> Any:
        """A send that goes on while this rank works; wait on the returned Work before
        touching `tensor` again."""
        return dist.isend(tensor.contiguous(), dst=to_rank)

    def receive_async(self, tensor: torch.Tensor, from_rank: int) -> Any:
        return dist.irecv(tensor, src=from_rank)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def init_groups(config: ParallelConfig, rank: int, device: torch.device) -> ParallelGroups:
    """Join the job (blocks until every rank has joined, or the timeout) and build the
    groups; every rank calls this with the same config."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=config.timeout_s)
    dist.init_process_group(
        backend,
        init_method=f"tcp://{config.master_addr}:{config.master_port}",
        rank=rank,
        world_size=config.world_size,
        timeout=timeout,
    )
    control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    tp_size = config.tensor_parallel_size
    tensor_parallel = SINGLE_RANK
    for stage in range(config.pipeline_parallel_size):
        # NOTE: every rank creates every group, in the same order (torch requires it).
        ranks = list(range(stage * tp_size, (stage + 1) * tp_size))
        group = dist.new_group(ranks, backend=backend, timeout=timeout) if tp_size > 1 else None
        if rank in ranks and tp_size > 1:
            tensor_parallel = TensorParallelGroup(tp_size, group, backend)
    shard = ModelShard(
        tp_rank=rank % tp_size,
        tp_size=tp_size,
        pp_rank=rank // tp_size,
        pp_size=config.pipeline_parallel_size,
    )
    return ParallelGroups(rank, config, shard, tensor_parallel, control or dist.group.WORLD)
