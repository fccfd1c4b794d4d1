"""The Llama/Qwen2 decoder family over a paged KV cache.

Pre-norm transformer: RMSNorm, rotary position embeddings (`rope.py`), grouped-query attention
(optionally with QKV bias), SwiGLU MLP, tied or untied LM head. The projections
that read the same input are fused (q|k|v and gate|up) so a step runs fewer, larger
matmuls; `load_weights` splits Hugging Face checkpoints into them.

Under tensor or pipeline parallelism a rank builds only its shard (`sharding.py`): its
heads, MLP columns, vocabulary rows and stage's layers, as plain linears of the smaller
shapes (so quantization and packing treat them as any other), with an all-reduce after
each row-parallel projection.
"""

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn

import kernels
from engine.distributed.tensor_parallel import SINGLE_RANK, TensorParallelGroup
from engine.models.config import DecoderConfig
from engine.models.rope import RotaryAngles, RotaryEmbedding
from engine.models.sharding import ModelShard
from kernels import PagedAttentionMetadata, fused_ops

KVCache = tuple[torch.Tensor, torch.Tensor]  # K and V: [num_blocks, block_size, kv_heads, head_dim]


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:  # RMSNorm(x + residual), x + residual
        """Adds the residual stream first when given; the sum is the new stream."""
        return fused_ops.rms_norm(x, self.weight, self.eps, residual)


class Attention(nn.Module):
    def __init__(self, config: DecoderConfig, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.config = config  # this rank's heads
        self.tp = tp
        self.qkv_proj = nn.Linear(
            config.hidden_size, config.q_size + 2 * config.kv_size, config.qkv_bias
        )
        self.o_proj = nn.Linear(config.q_size, config.hidden_size, config.o_bias)
        self.scale = config.head_dim**-0.5

    def forward(
        self,
        rotary: RotaryAngles,
        hidden: torch.Tensor,  # [T, hidden]
        kv_cache: KVCache,
        metadata: PagedAttentionMetadata,
    ) -> torch.Tensor:  # [T, hidden]
        c = self.config
        num_tokens = hidden.shape[0]
        qkv = self.qkv_proj(hidden)  # [T, q_size + 2 * kv_size]
        # NOTE: queries and keys sit side by side in the fused output, so one rotation
        # covers both (the same element-wise maths, half the calls).
        rotated = rotary.rotate(
            qkv, c.num_heads + c.num_kv_heads, c.head_dim
        )  # [T, heads + kv_heads, head_dim]
        query, key = rotated.split([c.num_heads, c.num_kv_heads], dim=1)
        value = qkv[:, c.q_size + c.kv_size :].view(num_tokens, c.num_kv_heads, c.head_dim)
        kernels.write_kv_cache(
            key, value, kv_cache[0], kv_cache[1], metadata.slot_mapping, metadata.backend
        )
        output = kernels.paged_attention(query, kv_cache[0], kv_cache[1], metadata, self.scale)
        return self.tp.all_reduce(self.o_proj(output.reshape(num_tokens, c.q_size)))


class MLP(nn.Module):
    def __init__(self, config: DecoderConfig, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.tp = tp
        self.gate_up_proj = nn.Linear(
            config.hidden_size, 2 * config.intermediate_size, config.mlp_bias
        )
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tp.all_reduce(self.down_proj(fused_ops.silu_and_mul(self.gate_up_proj(x))))


class VocabParallelEmbedding(nn.Embedding):
    """The embedding's rows for this rank's part of the vocabulary; a token held by
    another rank looks up zeros here, and the all-reduce sums each token's one row."""

    def __init__(
        self, vocab_size: int, hidden_size: int, shard: ModelShard, tp: TensorParallelGroup
    ):
        self.first_row, rows = shard.vocab_rows(vocab_size)
        super().__init__(rows, hidden_size)
        self.tp = tp

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return super().forward(input_ids)
        local = input_ids - self.first_row
        held = (local >= 0) & (local < self.num_embeddings)
        rows = super().forward(torch.where(held, local, 0))
        return self.tp.all_reduce(rows * held.unsqueeze(-1).to(rows.dtype))


class DecoderLayer(nn.Module):
    def __init__(self, config: DecoderConfig, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, tp)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config, tp)

    def forward(
        self,
        rotary: RotaryAngles,
        hidden: torch.Tensor,  # [T, hidden]: the last layer's output
        residual: torch.Tensor | None,  # [T, hidden]: the stream before it; None at layer 0
        kv_cache: KVCache,
        metadata: PagedAttentionMetadata,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # this layer's output, the stream before it
        """One layer, with each residual add fused into the RMSNorm that follows it (as
        vLLM does): hidden + residual is the stream Hugging Face's layers return."""
        normed, residual = self.input_layernorm(hidden, residual)
        attended = self.self_attn(rotary, normed, kv_cache, metadata)
        normed, residual = self.post_attention_layernorm(attended, residual)
        return self.mlp(normed), residual


class DecoderModel(nn.Module):
    """This rank's stage: the embedding on the first (and, when tied, the last), its
    layers, the final norm on the last."""

    def __init__(self, config: DecoderConfig, shard: ModelShard, tp: TensorParallelGroup) -> None:
        super().__init__()
        if shard.holds_embedding(config):
            self.embed_tokens = VocabParallelEmbedding(
                config.vocab_size, config.hidden_size, shard, tp
            )
        self.rotary = RotaryEmbedding(
            config.head_dim,
            config.max_position_embeddings,
            config.rope_theta,
            config.rope_scaling,
        )
        local = shard.local_config(config)
        self.layers = nn.ModuleList(
            DecoderLayer(local, tp) for _ in shard.layers(config.num_layers)
        )
        if shard.is_last_stage:
            self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class DecoderForCausalLM(nn.Module):
    # Hugging Face parameter name fragments -> (fused parameter, shard index).
    FUSED_SHARDS: ClassVar[dict[str, tuple[str, int]]] = {
        ".q_proj.": (".qkv_proj.", 0),
        ".k_proj.": (".qkv_proj.", 1),
        ".v_proj.": (".qkv_proj.", 2),
        ".gate_proj.": (".gate_up_proj.", 0),
        ".up_proj.": (".gate_up_proj.", 1),
    }

    def __init__(
        self,
        config: DecoderConfig,
        shard: ModelShard | None = None,
        tp: TensorParallelGroup = SINGLE_RANK,
    ) -> None:
        super().__init__()
        self.config = config  # the whole model's
        self.shard = shard or ModelShard()
        self.local_config = self.shard.local_config(config)  # this rank's layer sizes
        self.tp = tp
        self.model = DecoderModel(config, self.shard, tp)
        self.lm_head = None
        if self.shard.is_last_stage and not config.tie_word_embeddings:
            _, rows = self.shard.vocab_rows(config.vocab_size)
            self.lm_head = nn.Linear(config.hidden_size, rows, bias=False)

    def forward(
        self,
        input_ids: torch.Tensor,  # [T]
        positions: torch.Tensor,  # [T]
        kv_caches: list[KVCache],  # one per layer
        metadata: PagedAttentionMetadata,
    ) -> torch.Tensor:  # [T, hidden]
        """The whole model (a single stage): the final hidden states, normed."""
        hidden, residual = self.forward_stage(input_ids, positions, kv_caches, metadata)
        return self.final_norm(hidden, residual)

    def forward_stage(
        self,
        input_ids: torch.Tensor,  # [T]
        positions: torch.Tensor,  # [T]
        kv_caches: list[KVCache],  # one per layer of this stage
        metadata: PagedAttentionMetadata,
        hidden: torch.Tensor | None = None,  # [T, hidden]: the previous stage's output
        residual: torch.Tensor | None = None,  # [T, hidden]: the stream before it
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This stage's layers, from the tokens on the first stage and from the previous
        stage's states after it; the last layer's output and the stream before it."""
        if hidden is None:
            hidden = self.model.embed_tokens(input_ids)  # [T, hidden]
        rotary = self.model.rotary.angles(positions, hidden.dtype)
        for layer, kv_cache in zip(self.model.layers, kv_caches, strict=True):
            hidden, residual = layer(rotary, hidden, residual, kv_cache, metadata)
        return hidden, residual

    def final_norm(self, hidden: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        return self.model.norm(hidden, residual)[0]

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:  # [N, hidden] -> [N, vocab]
        if self.lm_head is not None:  # a module: it may be a quantized linear
            logits = self.lm_head(hidden)
        else:
            logits = torch.matmul(hidden, self.model.embed_tokens.weight.t())
        if self.tp.size == 1:
            return logits
        return self.tp.all_gather_columns(logits)[:, : self.config.vocab_size]

    def untie_lm_head(self) -> None:
        """Give a tied model a head module of its own, sharing the embedding's weight.

        NOTE: for weight-only quantization: the head then becomes an int8 linear that a
        decode step reads whole, while the embedding, only gathered by rows, stays as it is.
        A 151,936 x 896 tied head (Qwen2.5-0.5B's shape) is 0.27 GB of bf16 a step.
        """
        if self.lm_head is not None or not self.shard.is_last_stage:
            return
        embedding = self.model.embed_tokens.weight  # [vocab rows, hidden]
        head = nn.Linear(embedding.shape[1], embedding.shape[0], bias=False, device="meta")
        head.weight = embedding
        self.lm_head = head

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy a Hugging Face checkpoint in, splitting it into the fused projections.

        A sharded model keeps only its rank's part of each tensor it holds.

        Raises:
            KeyError: a checkpoint tensor with no place in this model, or a parameter
                the checkpoint left out.
        """
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in weights:
            if self.config.tie_word_embeddings and name == "lm_head.weight":
                continue  # tied: the embedding is the head
            local_name = self.shard.local_name(name, self.config)
            if local_name is None:
                continue  # another pipeline stage's
            target, shard = self._fused_target(local_name)
            with torch.no_grad():
                self._shard_view(target, params[target], shard).copy_(
                    self.shard.slice(name, tensor, self.config)
                )
            loaded.add(target)
        missing = set(params) - loaded
        if missing:
            raise KeyError(f"checkpoint has no weights for {sorted(missing)[:5]}")

    def _fused_target(self, name: str) -> tuple[str, int | None]:
        for fragment, (fused, shard) in self.FUSED_SHARDS.items():
            if fragment in name:
                return name.replace(fragment, fused), shard
        return name, None

    def _shard_view(self, name: str, param: torch.Tensor, shard: int | None) -> torch.Tensor:
        if shard is None:
            return param
        c = self.local_config
        if ".qkv_proj." in name:
            sizes = [c.q_size, c.kv_size, c.kv_size]
        else:
            sizes = [c.intermediate_size, c.intermediate_size]
        return param.split(sizes, dim=0)[shard]
