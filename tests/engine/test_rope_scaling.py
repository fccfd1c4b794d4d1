"""RoPE scaling (Llama 3.x `llama3`, and `linear`) agrees with Hugging Face transformers.

The frequencies are compared with transformers' own, and a tiny random-weight Llama
with each scaling is generated greedily by both, token for token, in fp32.
"""

from functools import cache
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from engine import LLM, SamplingParams
from engine.models.config import RopeScaling
from engine.models.rope import rope_inv_freq
from tests.tiny_model import save_tiny_llama, tiny_llama_config

# Llama 3.1's own values, and a tiny model's: with head_dim 16 and a pretraining length
# of 32, its frequencies fall in all three llama3 bands (kept, blended, divided).
LLAMA31 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
TINY_SCALINGS = {
    "llama3": {
        "rope_type": "llama3",
        "factor": 4.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
    },
    "linear": {"rope_type": "linear", "factor": 2.0},
}
PROMPTS = [
    "Hi",
    "The capital of France is",
    "List three prime numbers and explain why each one is prime:",
    "Once upon a time, " * 20,
    "def fibonacci(n):\n    if n < 2:\n        return n\n    ",
    "Passage: The Rhine rises in the Swiss Alps and flows north into the North Sea. " * 4,
]
MAX_NEW_TOKENS = 16


def hf_inv_freq(rope: dict, head_dim: int, theta: float) -> torch.Tensor:
    config = tiny_llama_config(
        hidden_size=head_dim * 4, head_dim=head_dim, rope_theta=theta, rope_scaling=rope
    )
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[rope["rope_type"]](config, "cpu")
    assert attention_factor == 1.0  # neither type rescales cos/sin, so ours does not either
    return inv_freq


@pytest.mark.parametrize(
    ("rope", "head_dim", "theta"),
    [
        (LLAMA31, 128, 500_000.0),
        (TINY_SCALINGS["llama3"], 16, 10_000.0),
        ({**LLAMA31, "rope_type": "linear"}, 64, 10_000.0),
    ],
    ids=["llama3.1", "llama3-tiny", "linear"],
)
def test_frequencies_equal_transformers(rope: dict, head_dim: int, theta: float) -> None:
    scaling = RopeScaling(
        rope["rope_type"],
        rope["factor"],
        rope.get("low_freq_factor", 1.0),
        rope.get("high_freq_factor", 4.0),
        rope.get("original_max_position_embeddings", 8192),
    )
    ours = rope_inv_freq(head_dim, theta, scaling)
    torch.testing.assert_close(ours, hf_inv_freq(rope, head_dim, theta), rtol=0, atol=0)
    assert not torch.equal(ours, rope_inv_freq(head_dim, theta, None))  # it does scale


@cache
def hf_model(model_dir: Path) -> AutoModelForCausalLM:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def hf_greedy(model_dir: Path, prompt_ids: tuple[int, ...]) -> list[int]:
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = hf_model(model_dir).generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS, do_sample=False
        )
    return out[0, len(prompt_ids) :].tolist()


@pytest.mark.parametrize("rope_type", list(TINY_SCALINGS))
def test_scaled_rope_greedy_output_equals_transformers(tmp_path: Path, rope_type: str) -> None:
    scaled = save_tiny_llama(tmp_path / rope_type, rope_scaling=TINY_SCALINGS[rope_type])
    plain = save_tiny_llama(tmp_path / "plain")  # the same weights without scaling
    llm = LLM(str(scaled), dtype="float32", kv_cache_memory=4 << 20, max_num_batched_tokens=64)
    assert llm.engine.runner.model.config.rope_scaling is not None
    outputs = llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS))
    assert max(o.num_prompt_tokens for o in outputs) > 64  # well past the pretraining length
    for output in outputs:
        prompt_ids = tuple(output.prompt_token_ids)
        assert output.token_ids == hf_greedy(scaled, prompt_ids), f"prompt {output.prompt!r}"
    # The test can tell: without the scaling, transformers itself answers differently.
    assert any(o.token_ids != hf_greedy(plain, tuple(o.prompt_token_ids)) for o in outputs)
