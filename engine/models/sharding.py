"""Which part of the model one rank holds under tensor and pipeline parallelism.

Megatron's split, as vLLM and nano-vllm make it: attention heads and the MLP's
intermediate columns are divided among the tensor-parallel ranks (the projections that
read the layer input are split by output rows, the ones that write the layer output by
input columns, so each layer needs one all-reduce after attention and one after the
MLP), the vocabulary is divided into equal row blocks (the last one padded), and the
layers are divided into consecutive pipeline stages. KV heads are divided like the
query heads; with more ranks than KV heads each KV head is replicated on the ranks whose
query heads read it.
"""

from dataclasses import dataclass, replace

import torch

from engine.models.config import DecoderConfig

# Hugging Face parameter name fragment -> how tensor parallelism divides that tensor.
_SPLITS = {
    ".q_proj.": "query_rows",
    ".k_proj.": "kv_rows",
    ".v_proj.": "kv_rows",
    ".o_proj.weight": "query_columns",
    ".o_proj.bias": "first_rank",
    ".gate_proj.": "mlp_rows",
    ".up_proj.": "mlp_rows",
    ".down_proj.weight": "mlp_columns",
    ".down_proj.bias": "first_rank",
    "embed_tokens.": "vocab_rows",
    "lm_head.": "vocab_rows",
}
_LAYER_PREFIX = "model.layers."


@dataclass(frozen=True)
class ModelShard:
    tp_rank: int = 0
    tp_size: int = 1
    pp_rank: int = 0
    pp_size: int = 1

    @property
    def is_whole(self) -> bool:
        return self.tp_size == 1 and self.pp_size == 1

    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1

    def check(self, config: DecoderConfig) -> None:
        """Raises ValueError, naming the sizes, when the model cannot be split this way."""
        tp, heads, kv_heads = self.tp_size, config.num_heads, config.num_kv_heads
        if heads % tp:
            raise ValueError(
                f"tensor parallel size {tp} must divide the model's {heads} attention heads"
            )
        if kv_heads % tp and tp % kv_heads:
            raise ValueError(
                f"tensor parallel size {tp} must divide, or be a multiple of, the model's "
                f"{kv_heads} KV heads"
            )
        if config.intermediate_size % tp:
            raise ValueError(
                f"tensor parallel size {tp} must divide the MLP's "
                f"{config.intermediate_size} columns"
            )
        if config.num_layers < self.pp_size:
            raise ValueError(
                f"pipeline parallel size {self.pp_size} is more than the model's "
                f"{config.num_layers} layers"
            )

    def local_config(self, config: DecoderConfig) -> DecoderConfig:
        """The sizes this rank's layers have: its heads, KV heads and MLP columns."""
        if self.tp_size == 1:
            return config
        return replace(
            config,
            num_heads=config.num_heads // self.tp_size,
            num_kv_heads=max(config.num_kv_heads // self.tp_size, 1),
            intermediate_size=config.intermediate_size // self.tp_size,
        )

    def layers(self, num_layers: int) -> range:
        """This stage's layers: consecutive, the first stages taking one more when uneven."""
        base, extra = divmod(num_layers, self.pp_size)
        start = self.pp_rank * base + min(self.pp_rank, extra)
        return range(start, start + base + (self.pp_rank < extra))

    def vocab_rows(self, vocab_size: int) -> tuple[int, int]:
        """The first vocabulary row this rank holds, and how many rows (padding included)."""
        rows = -(-vocab_size // self.tp_size)
        return self.tp_rank * rows, rows

    def holds_embedding(self, config: DecoderConfig) -> bool:
        """The first stage embeds; the last one reads the embedding as its tied LM head."""
        return self.is_first_stage or (self.is_last_stage and config.tie_word_embeddings)

    def local_name(self, name: str, config: DecoderConfig) -> str | None:
        """A checkpoint tensor's name in this rank's model, or None when another stage
        holds it (layers are numbered from 0 in each stage)."""
        if name.startswith(_LAYER_PREFIX):
            index, rest = name[len(_LAYER_PREFIX) :].split(".", 1)
            layers = self.layers(config.num_layers)
            if int(index) not in layers:
                return None
            return f"{_LAYER_PREFIX}{int(index) - layers.start}.{rest}"
        if name.startswith("model.embed_tokens."):
            return name if self.holds_embedding(config) else None
        return name if self.is_last_stage else None  # the final norm and the LM head

    def slice(self, name: str, tensor: torch.Tensor, config: DecoderConfig) -> torch.Tensor:
        """This rank's part of a checkpoint tensor."""
        if self.tp_size == 1:
            return tensor
        split = next((how for fragment, how in _SPLITS.items() if fragment in name), None)
        if split is None:
            return tensor  # norms: every rank holds them whole
        if split == "first_rank":  # a row-parallel bias: added once, after the all-reduce
            return tensor if self.tp_rank == 0 else torch.zeros_like(tensor)
        if split == "vocab_rows":
            start, rows = self.vocab_rows(config.vocab_size)
            part = tensor[start : start + rows]
            padding = rows - part.shape[0]
            return torch.nn.functional.pad(part, (0, 0, 0, padding)) if padding else part
        local = self.local_config(config)
        dim = config.head_dim
        if split == "kv_rows":
            first_head = self._first_kv_head(config)
            return tensor[first_head * dim : (first_head + local.num_kv_heads) * dim]
        size = {
            "query_rows": local.q_size,
            "query_columns": local.q_size,
            "mlp_rows": local.intermediate_size,
            "mlp_columns": local.intermediate_size,
        }[split]
        start = self.tp_rank * size
        if split.endswith("_columns"):
            return tensor[:, start : start + size]
        return tensor[start : start + size]

    def _first_kv_head(self, config: DecoderConfig) -> int:
        """The first KV head this rank's query heads read."""
        if config.num_kv_heads >= self.tp_size:
            return self.tp_rank * (config.num_kv_heads // self.tp_size)
        return self.tp_rank // (self.tp_size // config.num_kv_heads)
