"""The whole engine on the Triton kernels gives the reference's greedy tokens.

A tiny random-weight Llama (GQA 2, head_dim 16) in fp32, on the CPU in Triton's
interpreter: chunked prompts whose earlier chunks are their cached prefix, a
one-token prompt, decodes batched with prefill chunks in one step, and a second
request whose shared prefix comes from the prefix cache.
"""

from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is not installed (the dev extra has it)")

from engine import LLM, RequestOutput, SamplingParams
from engine.errors import EngineConfigError
from kernels import triton_attention
from tests.tiny_model import save_tiny_llama

SHARED = (
    "Passage [1]: The Rhine rises in the Swiss Alps and flows north through Germany and "
    "the Netherlands into the North Sea."
)
GREEDY = SamplingParams(temperature=0, max_tokens=4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny"))


def two_waves(model_dir: Path, backend: str) -> list:
    # NOTE: 24 tokens a step split the long prompt into chunks that end mid-block, and
    # put the short prompt's decodes in the same steps as those chunks.
    llm = LLM(
        str(model_dir),
        dtype="float32",
        kv_cache_memory=4 << 20,
        max_num_batched_tokens=24,
        attention_backend=backend,
    )
    assert llm.engine.attention_backend == backend
    first = llm.generate([SHARED + " Question: where does it rise?", "Hi"], GREEDY)
    second = llm.generate([SHARED + " Question: how long is it?"], GREEDY)
    assert second[0].num_cached_tokens >= 16  # at least one full block from the cache
    return first + second


def test_greedy_tokens_on_triton_equal_the_reference(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = [output.token_ids for output in two_waves(model_dir, "reference")]
    calls = 0
    kernel_attention = triton_attention.paged_attention

    def counted(*args, **kwargs):
        nonlocal calls
        calls += 1
        return kernel_attention(*args, **kwargs)

    monkeypatch.setattr(triton_attention, "paged_attention", counted)
    outputs: list[RequestOutput] = two_waves(model_dir, "triton")
    assert calls > 0  # the kernels ran, not the reference
    assert [output.token_ids for output in outputs] == expected
    assert all(len(tokens) == GREEDY.max_tokens for tokens in expected)


def test_an_unknown_backend_stops_the_engine_at_start(model_dir: Path) -> None:
    with pytest.raises(EngineConfigError, match="attention_backend must be one of"):
        LLM(str(model_dir), dtype="float32", kv_cache_memory=4 << 20, attention_backend="flash")
