"""Factory: a tiny random-weight Llama saved as a Hugging Face model directory.

The weights are random (built by `transformers` itself, so it is also the reference),
the tokenizer and chat template are SmolLM2's, copied from the model store: a real
tokenizer over a model that loads in a fraction of a second.
"""

import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from engine.library import resolve_model

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
SMOLLM2 = "smollm2:135m-instruct"


def tiny_llama_config(**overrides: Any) -> LlamaConfig:
    """Two layers of width 64, grouped-query attention, SmolLM2's vocabulary."""
    settings: dict[str, Any] = {
        "vocab_size": 49152,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "rope_theta": 10_000.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
        # NOTE: wide weights give peaked logits, so greedy choices are not near-ties that
        # rounding differences between two correct implementations could flip.
        "initializer_range": 0.2,
    }
    settings.update(overrides)
    return LlamaConfig(**settings)


def save_tiny_llama(directory: Path, *, tokenizer: bool = True, **overrides: Any) -> Path:
    """Save a seeded random tiny Llama (safetensors) into `directory`; returns it."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(**overrides)).eval()
    model.save_pretrained(directory)
    if tokenizer:
        source = resolve_model(SMOLLM2, progress=False)
        for name in TOKENIZER_FILES:
            shutil.copy(source / name, directory / name)
    return directory
