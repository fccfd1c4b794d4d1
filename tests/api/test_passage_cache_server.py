"""A server with the passage cache on, over real HTTP: questions whose passage sets
overlap reuse passages at new positions, and the answers' usage and /metrics say so."""

from collections.abc import Iterator

import pytest
from openai import OpenAI

from engine.config import EngineConfig
from tests.api.conftest import TEST_MODEL, LiveServer, serve_samples

pytestmark = pytest.mark.slow

QUESTIONS = [
    "How does PagedRAG share KV cache blocks between prompts?",
    "What does the paged attention kernel read for each block?",
    "Which HTTP routes does the server offer?",
    "How do I ingest a document from the command line?",
    "How are prompts laid out for prefix sharing?",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    config = EngineConfig(
        model=TEST_MODEL,
        kv_cache_memory=256 << 20,
        max_model_len=4096,
        enable_passage_cache=True,
        passage_recompute_tokens=4,
    )
    with serve_samples(tmp_path_factory.mktemp("passage-server"), config) as live:
        yield live


def test_overlapping_passage_sets_reuse_passages_and_say_so(server) -> None:
    usages = []
    with server.client() as client:
        for question in QUESTIONS:
            body = client.post("/ask", json={"question": question, "max_tokens": 4, "top_k": 5})
            assert body.status_code == 200, body.text
            usages.append(body.json()["usage"])
        metrics = client.get("/metrics").text
    reused = [usage for usage in usages if usage["reused_passages"]]
    assert reused, usages
    for usage in reused:
        assert usage["cached_tokens"] >= usage["passage_tokens"] > 0
    values = {
        line.split("{")[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("pagedrag_passage_cache")
    }
    assert values["pagedrag_passage_cache_hits_total"] == sum(u["reused_passages"] for u in usages)
    assert values["pagedrag_passage_cache_reused_tokens_total"] == sum(
        u["passage_tokens"] for u in usages
    )
    assert (
        values["pagedrag_passage_cache_queries_total"]
        >= values["pagedrag_passage_cache_hits_total"]
    )
    # 4 head tokens a reused passage, less those a prefix hit already covers
    recomputed = values["pagedrag_passage_cache_recomputed_tokens_total"]
    assert 0 < recomputed <= 4 * sum(u["reused_passages"] for u in usages)
    assert values["pagedrag_passage_cache_passages"] > 0


def test_openai_usage_counts_reused_passage_tokens_as_cached(server) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    before = server.rag.engine.stats().passage_cache_reused_tokens
    usages = []
    for question in reversed(QUESTIONS):  # other sets before each: new positions
        reply = client.chat.completions.create(
            model="pagedrag-rag",
            messages=[{"role": "user", "content": question + " Answer briefly."}],
            max_tokens=4,
        )
        usages.append(reply.usage)
    reused = server.rag.engine.stats().passage_cache_reused_tokens - before
    assert reused > 0
    cached = sum(u.prompt_tokens_details.cached_tokens for u in usages)
    assert cached >= reused
