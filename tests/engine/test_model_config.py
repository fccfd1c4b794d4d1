"""`DecoderConfig.from_hf`: what a config.json must hold, and which RoPE types are run."""

import pytest

from engine.errors import ModelIntegrityError, UnsupportedModelError
from engine.models.config import DecoderConfig, RopeScaling

SOURCE = "/models/mine/config.json"
LLAMA = {
    "model_type": "llama",
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 131072,
}


def test_llama31_style_rope_scaling_is_read() -> None:
    # As Llama 3.1-3.3 checkpoints ship it: `rope_scaling`, with `rope_theta` beside it.
    hf = {
        **LLAMA,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
    }
    config = DecoderConfig.from_hf(hf, SOURCE)
    assert config.rope_theta == 500000.0
    assert config.rope_scaling == RopeScaling("llama3", 8.0, 1.0, 4.0, 8192)


def test_transformers5_rope_parameters_are_read() -> None:
    hf = {**LLAMA, "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}
    config = DecoderConfig.from_hf(hf, SOURCE)
    assert config.rope_scaling == RopeScaling("linear", 2.0)
    plain = DecoderConfig.from_hf({**LLAMA, "rope_parameters": {"rope_type": "default"}})
    assert plain.rope_scaling is None


def test_llama3_without_a_pretraining_length_uses_max_position_embeddings() -> None:
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    config = DecoderConfig.from_hf({**LLAMA, "rope_scaling": rope}, SOURCE)
    assert config.rope_scaling is not None
    assert config.rope_scaling.original_max_position_embeddings == 131072


@pytest.mark.parametrize("rope_type", ["yarn", "dynamic", "longrope", "su"])
def test_other_rope_types_are_refused_naming_the_file(rope_type: str) -> None:
    hf = {**LLAMA, "rope_scaling": {"rope_type": rope_type, "factor": 4.0}}
    with pytest.raises(UnsupportedModelError) as error:
        DecoderConfig.from_hf(hf, SOURCE)
    message = str(error.value)
    assert message.startswith(SOURCE) and f"RoPE scaling {rope_type!r}" in message
    assert "default, linear, llama3" in message and "\n" not in message


def test_llama3_scaling_without_its_factors_is_a_damaged_config() -> None:
    hf = {**LLAMA, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    with pytest.raises(ModelIntegrityError, match="lacks low_freq_factor, high_freq_factor"):
        DecoderConfig.from_hf(hf, SOURCE)


def test_missing_required_keys_are_named() -> None:
    hf = {k: v for k, v in LLAMA.items() if k not in ("hidden_size", "num_hidden_layers")}
    with pytest.raises(ModelIntegrityError) as error:
        DecoderConfig.from_hf(hf, SOURCE)
    assert str(error.value).startswith(f"{SOURCE} lacks hidden_size, num_hidden_layers,")


@pytest.mark.parametrize(
    ("key", "value"), [("hidden_size", 0), ("vocab_size", "128"), ("num_hidden_layers", True)]
)
def test_required_keys_must_be_positive_integers(key: str, value: object) -> None:
    with pytest.raises(ModelIntegrityError, match=f"{key} must be a positive integer"):
        DecoderConfig.from_hf({**LLAMA, key: value}, SOURCE)


def test_inconsistent_head_counts_are_a_damaged_config() -> None:
    with pytest.raises(ModelIntegrityError, match="num_heads must be a multiple"):
        DecoderConfig.from_hf({**LLAMA, "num_key_value_heads": 3}, SOURCE)
