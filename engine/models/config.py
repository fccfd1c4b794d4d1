"""The few numbers a Llama/Qwen2-family decoder needs, read from a Hugging Face config."""

from dataclasses import dataclass
from typing import Any

from engine.errors import ModelIntegrityError, UnsupportedModelError

# Keys without a sensible default: a config.json lacking one is damaged, not just terse.
REQUIRED_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
)
ROPE_TYPES = ("default", "linear", "llama3")  # Hugging Face `rope_type` values we implement


@dataclass(frozen=True)
class RopeScaling:
    """How a checkpoint stretches its rotary embeddings past its pretraining length.

    `linear` divides every frequency by `factor`. `llama3` (Llama 3.1 and later)
    divides only the low frequencies, keeps the high ones, and blends in between, so
    that nearby tokens are told apart as sharply as before.
    """

    rope_type: str  # "linear" or "llama3"
    factor: float  # how many times longer the context is than in pretraining
    low_freq_factor: float = 1.0  # llama3: wavelengths over original_len / this are divided
    high_freq_factor: float = 4.0  # llama3: wavelengths under original_len / this are kept
    original_max_position_embeddings: int = 8192  # llama3: the pretraining context length

    def __post_init__(self) -> None:
        if self.rope_type not in ROPE_TYPES[1:]:
            raise ValueError(f"rope_type must be one of {ROPE_TYPES[1:]}, got {self.rope_type!r}")
        if self.factor <= 0:
            raise ValueError(f"RoPE scaling factor must be positive, got {self.factor}")
        if self.rope_type == "llama3" and not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ValueError("llama3 RoPE scaling needs 0 < low_freq_factor < high_freq_factor")
        if self.original_max_position_embeddings < 1:
            raise ValueError("original_max_position_embeddings must be positive")


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
    rope_scaling: RopeScaling | None = None  # None: plain RoPE (`rope_type` "default")

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
    def from_hf(cls, hf: dict[str, Any], source: str = "config.json") -> "DecoderConfig":
        """Build from a parsed `config.json`, refusing features this decoder lacks.

        Args:
            hf: the parsed file.
            source: the file's path, named in error messages.

        Raises:
            ModelIntegrityError: a required key is missing or out of range.
            UnsupportedModelError: the model uses a feature the decoder does not implement.
        """
        _check_required(hf, source)
        model_type = hf.get("model_type")
        _require(
            hf.get("hidden_act", "silu") == "silu", f"activation {hf.get('hidden_act')!r}", source
        )
        _require(not hf.get("use_sliding_window", False), "sliding-window attention", source)
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        partial_rotary = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
        _require(partial_rotary == 1.0, "partial rotary embeddings", source)
        num_heads = hf["num_attention_heads"]
        attention_bias = bool(hf.get("attention_bias", False))
        max_positions = hf.get("max_position_embeddings", 4096)
        try:
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
                max_position_embeddings=max_positions,
                qkv_bias=model_type == "qwen2" or attention_bias,
                o_bias=model_type != "qwen2" and attention_bias,
                mlp_bias=bool(hf.get("mlp_bias", False)),
                tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
                rope_scaling=_rope_scaling(rope, max_positions, source),
            )
        except (ValueError, TypeError) as error:
            raise ModelIntegrityError(
                f"{source} is inconsistent ({error}); restore the file or re-save the model"
            ) from error


def _check_required(hf: dict[str, Any], source: str) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in hf]
    if missing:
        raise ModelIntegrityError(
            f"{source} lacks {', '.join(missing)}, which a Llama/Qwen2 config must have; "
            "restore the file, or re-save the model with save_pretrained()"
        )
    for key in REQUIRED_KEYS:
        value = hf[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelIntegrityError(
                f"{source}: {key} must be a positive integer, got {value!r}; restore the file"
            )


def _rope_scaling(rope: dict[str, Any], max_positions: int, source: str) -> RopeScaling | None:
    """The scaling a `rope_parameters`/`rope_scaling` dict asks for; None for plain RoPE."""
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    _require(
        rope_type in ROPE_TYPES,
        f"RoPE scaling {rope_type!r} (PagedRAG implements {', '.join(ROPE_TYPES)})",
        source,
    )
    if rope_type == "default":
        return None
    needed = ["factor"] + (["low_freq_factor", "high_freq_factor"] if rope_type == "llama3" else [])
    missing = [key for key in needed if key not in rope]
    if missing:
        raise ModelIntegrityError(
            f"{source}: its {rope_type} RoPE scaling lacks {', '.join(missing)}; restore the file"
        )
    if rope_type == "linear":
        return RopeScaling("linear", float(rope["factor"]))
    # NOTE: as in Hugging Face, a missing pretraining length means max_position_embeddings.
    return RopeScaling(
        "llama3",
        float(rope["factor"]),
        float(rope["low_freq_factor"]),
        float(rope["high_freq_factor"]),
        int(rope.get("original_max_position_embeddings", max_positions)),
    )


def _require(condition: bool, feature: str, source: str) -> None:
    if not condition:
        raise UnsupportedModelError(
            f"{source}: the model uses {feature}, which PagedRAG does not support; "
            "pick a Llama or Qwen2 model without it"
        )
