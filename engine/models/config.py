"""The few numbers a Llama/Qwen2-family decoder needs, read from a Hugging Face config."""

from dataclasses import dataclass
from typing import Any

from engine.errors import UnsupportedModelError


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int  # fewer than num_heads: grouped-query attention
    head_dim: int
    rms_norm_eps: float
    rope_theta: float  # 10_000 in Llama 2, 100_000 in SmolLM2, 1_000_000 in Qwen2.5
    max_position_embeddings: int
    qkv_bias: bool  # Qwen2 has biases on q, k and v only
    o_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool  # the LM head reuses the embedding matrix

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "DecoderConfig":
        """Build from a parsed `config.json`, refusing features this decoder lacks."""
        model_type = hf.get("model_type")
        _require(hf.get("hidden_act", "silu") == "silu", f"activation {hf.get('hidden_act')!r}")
        _require(not hf.get("use_sliding_window", False), "sliding-window attention")
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        _require(rope_type == "default", f"RoPE scaling {rope_type!r}")
        num_heads = hf["num_attention_heads"]
        attention_bias = bool(hf.get("attention_bias", False))
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // num_heads,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10_000.0)),
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            qkv_bias=model_type == "qwen2" or attention_bias,
            o_bias=model_type != "qwen2" and attention_bias,
            mlp_bias=bool(hf.get("mlp_bias", False)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )


def _require(condition: bool, feature: str) -> None:
    if not condition:
        raise UnsupportedModelError(f"this model uses {feature}, which PagedRAG does not support")
