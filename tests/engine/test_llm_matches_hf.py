"""Greedy output of our engine equals Hugging Face `generate`, token for token, in fp32.

Both library models; prompts of very different lengths submitted together (packing,
paging and chunked prefill all exercised), a second wave that hits the prefix
cache, and a KV pool so small that sequences are preempted and recomputed.
"""

from functools import cache
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine import LLM, SamplingParams
from engine.kv_cache import KVCacheSpec
from engine.library import resolve_model
from engine.models.config import DecoderConfig
from engine.models.loader import read_hf_config

pytestmark = pytest.mark.slow

MODELS = ["smollm2:135m-instruct", "qwen2.5-coder:0.5b-instruct"]
MAX_NEW_TOKENS = 20

PASSAGES = (
    "Passage [1]: The Rhine rises in the Swiss Alps and flows north through Germany and the "
    "Netherlands into the North Sea. Its length is about 1,230 kilometres.\n"
    "Passage [2]: Basel, Strasbourg, Cologne and Rotterdam are the largest ports on the river; "
    "barges carry coal, grain and containers between them every day of the year.\n"
    "Passage [3]: The Lorelei is a slate rock on the eastern bank, where the river narrows and "
    "legend says a siren lured boatmen to their deaths with her song.\n"
)
PROMPTS = [
    "Hi",
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "List three prime numbers:",
    "Translate to French: The weather is lovely today.",
    PASSAGES + "Question: Where does the Rhine rise?\nAnswer:",
    "Once upon a time, " * 12,
    "SELECT name FROM users WHERE",
    "Q: What is 12 times 12?\nA:",
    "用一句话介绍长城：",
]


@cache
def hf_model(model_path: Path) -> AutoModelForCausalLM:
    return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()


@cache
def hf_greedy(model_path: Path, prompt_ids: tuple[int, ...]) -> list[int]:
    """Hugging Face greedy continuation of one unpadded prompt (stops at EOS like ours)."""
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = hf_model(model_path).generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS, do_sample=False
        )
    return out[0, len(prompt_ids) :].tolist()


@pytest.fixture(scope="module", params=MODELS)
def model_path(request: pytest.FixtureRequest) -> Path:
    return resolve_model(request.param, progress=False)


def make_llm(model_path: Path, **kwargs) -> LLM:
    kwargs.setdefault("kv_cache_memory", 64 << 20)
    return LLM(str(model_path), dtype="float32", **kwargs)


def fp32_bytes_per_block(model_path: Path) -> int:
    config = DecoderConfig.from_hf(read_hf_config(model_path))
    spec = KVCacheSpec(config.num_layers, config.num_kv_heads, config.head_dim, 16, torch.float32)
    return spec.bytes_per_block


GREEDY = SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS)


def assert_matches_hf(model_path: Path, outputs) -> None:
    for output in outputs:
        expected = hf_greedy(model_path, tuple(output.prompt_token_ids))
        assert output.token_ids == expected, f"prompt {output.prompt!r}"


def test_batch_of_varied_prompts_matches_transformers(model_path: Path) -> None:
    # A small token budget splits the long prompts into chunks across steps.
    llm = make_llm(model_path, max_num_batched_tokens=48)
    outputs = llm.generate(PROMPTS, GREEDY)
    assert [o.prompt for o in outputs] == PROMPTS
    assert len({o.num_prompt_tokens for o in outputs}) >= 6  # lengths from 1 to over 100
    assert_matches_hf(model_path, outputs)
    texts = [llm.tokenizer.decode(o.token_ids, skip_special_tokens=True) for o in outputs]
    assert [o.text for o in outputs] == texts


def test_second_wave_hits_the_prefix_cache_and_output_is_unchanged(model_path: Path) -> None:
    llm = make_llm(model_path)
    first = llm.generate(
        [PASSAGES + f"Question {i}: Name a port.\nAnswer:" for i in range(4)], GREEDY
    )
    second = llm.generate(
        [PASSAGES + f"Question: What is the Lorelei? ({i})" for i in range(4)], GREEDY
    )
    shared = len(llm.tokenizer(PASSAGES).input_ids) // 16 * 16
    assert all(o.num_cached_tokens >= shared - 16 for o in second)
    assert sum(o.num_cached_tokens for o in second) > 0
    assert_matches_hf(model_path, first + second)


def test_preemption_in_a_tiny_kv_pool_does_not_change_output(model_path: Path) -> None:
    # 24 blocks of 16 tokens: the longest prompt fits alone, all ten together do not.
    llm = make_llm(model_path, kv_cache_memory=24 * fp32_bytes_per_block(model_path))
    outputs = llm.generate(PROMPTS, GREEDY)
    assert llm.engine.scheduler.num_preemptions > 0
    assert_matches_hf(model_path, outputs)
    manager = llm.engine.block_manager
    assert manager.num_free_blocks == manager.num_blocks  # nothing leaked
