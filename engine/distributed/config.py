"""How many processes run the model, and where they meet (torchrun's conventions)."""

from dataclasses import dataclass

from engine.errors import EngineConfigError


@dataclass(frozen=True)
class ParallelConfig:
    tensor_parallel_size: int = 1  # ranks that split each layer (heads, MLP columns, vocabulary)
    pipeline_parallel_size: int = 1  # stages that split the layers
    nnodes: int = 1  # machines; each runs world_size / nnodes ranks
    node_rank: int = 0  # this machine's place: 0 runs the server and rank 0
    master_addr: str = "127.0.0.1"  # where rank 0 listens for the others to join
    master_port: int = 0  # 0: a free port on this machine (one machine only)
    timeout_s: float = 600.0  # a collective that waits longer than this has failed

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1 or self.pipeline_parallel_size < 1:
            raise EngineConfigError(
                "tensor_parallel_size and pipeline_parallel_size must be 1 or more, got "
                f"{self.tensor_parallel_size} and {self.pipeline_parallel_size}"
            )
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise EngineConfigError(
                f"node_rank must be in [0, nnodes), got {self.node_rank} of {self.nnodes}"
            )
        if self.world_size % self.nnodes:
            raise EngineConfigError(
                f"{self.world_size} ranks (tensor x pipeline parallel size) cannot be "
                f"spread evenly over {self.nnodes} nodes"
            )
        if self.nnodes > 1 and self.master_port == 0:
            raise EngineConfigError(
                "a job over several nodes needs --master-port: the port on node 0 the others join"
            )
        if not 0 <= self.master_port < 65536:
            raise EngineConfigError(f"master_port must be a TCP port, got {self.master_port}")
        if self.timeout_s <= 0:
            raise EngineConfigError(f"timeout_s must be positive, got {self.timeout_s}")

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def ranks_per_node(self) -> int:
        return self.world_size // self.nnodes

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def node_ranks(self) -> range:
        """The global ranks this node runs."""
        first = self.node_rank * self.ranks_per_node
        return range(first, first + self.ranks_per_node)
