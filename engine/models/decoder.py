"""The Llama/Qwen2 decoder family over a paged KV cache.

Pre-norm transformer: RMSNorm, rotary position embeddings (`rope.py`), grouped-query attention
(optionally with QKV bias), SwiGLU MLP, tied or untied LM head. The projections
that read the same input are fused (q|k|v and gate|up) so a step runs fewer, larger
matmuls; `load_weights` splits Hugging Face checkpoints into them.
"""

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn

import kernels
from engine.models.config import DecoderConfig
from engine.models.rope import RotaryAngles, RotaryEmbedding
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
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
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
        return self.o_proj(output.reshape(num_tokens, c.q_size))


class MLP(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(
            config.hidden_size, 2 * config.intermediate_size, config.mlp_bias
        )
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(fused_ops.silu_and_mul(self.gate_up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

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
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rotary = RotaryEmbedding(
            config.head_dim,
            config.max_position_embeddings,
            config.rope_theta,
            config.rope_scaling,
        )
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
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

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DecoderModel(config)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )

    def forward(
        self,
        input_ids: torch.Tensor,  # [T]
        positions: torch.Tensor,  # [T]
        kv_caches: list[KVCache],  # one per layer
        metadata: PagedAttentionMetadata,
    ) -> torch.Tensor:  # [T, hidden]
        hidden = self.model.embed_tokens(input_ids)  # [T, hidden]
        rotary = self.model.rotary.angles(positions, hidden.dtype)
        residual = None
        for layer, kv_cache in zip(self.model.layers, kv_caches, strict=True):
            hidden, residual = layer(rotary, hidden, residual, kv_cache, metadata)
        return self.model.norm(hidden, residual)[0]

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:  # [N, hidden] -> [N, vocab]
        if self.lm_head is not None:  # a module: it may be a quantized linear
            return self.lm_head(hidden)
        return torch.matmul(hidden, self.model.embed_tokens.weight.t())

    def untie_lm_head(self) -> None:
        """Give a tied model a head module of its own, sharing the embedding's weight.

        NOTE: for weight-only quantization: the head then becomes an int8 linear that a
        decode step reads whole, while the embedding, only gathered by rows, stays as it is.
        A 151,936 x 896 tied head (Qwen2.5-0.5B's shape) is 0.27 GB of bf16 a step.
        """
        if self.lm_head is not None:
            return
        embedding = self.model.embed_tokens.weight  # [vocab, hidden]
        head = nn.Linear(self.config.hidden_size, self.config.vocab_size, bias=False, device="meta")
        head.weight = embedding
        self.lm_head = head

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy a Hugging Face checkpoint in, splitting it into the fused projections.

        Raises:
            KeyError: a checkpoint tensor with no place in this model, or a parameter
                the checkpoint left out.
        """
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in weights:
            if self.lm_head is None and name == "lm_head.weight":
                continue  # tied: the embedding is the head
            target, shard = self._fused_target(name)
            with torch.no_grad():
                self._shard_view(target, params[target], shard).copy_(tensor)
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
        c = self.config
        if ".qkv_proj." in name:
            sizes = [c.q_size, c.kv_size, c.kv_size]
        else:
            sizes = [c.intermediate_size, c.intermediate_size]
        return param.split(sizes, dim=0)[shard]
