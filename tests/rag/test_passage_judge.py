"""The model's yes/no verdict as a second ranking stage, on the real default model."""

import pytest

from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from rag import RAG, RAGConfig
from rag.passage_judge import PassageJudge

pytestmark = pytest.mark.slow

DOCUMENTS = [
    {
        "title": "Zorblat festival",
        "text": "The Zorblat festival is held every April in Lisbon. Visitors bring paper "
        "lanterns and the festival ends with a boat parade on the river Tagus.",
    },
    {
        "title": "Kangaroos",
        "text": "Kangaroos live in Australia. They carry their young in a pouch and can hop "
        "at more than 50 kilometres per hour.",
    },
    {"title": "Rust", "text": "Rust is a systems language focused on memory safety."},
]


@pytest.fixture(scope="module")
def judged_rag(tmp_path_factory):
    config = EngineConfig(kv_cache_memory=256 << 20, max_model_len=4096)
    with (
        AsyncLLMEngine.from_config(config) as engine,
        RAG(
            tmp_path_factory.mktemp("judged"),
            engine=engine,
            config=RAGConfig(judge_passages=True),
        ) as rag,
    ):
        rag.ingest_texts(DOCUMENTS)
        yield rag


def test_the_passage_that_answers_is_judged_best(judged_rag) -> None:
    judge = judged_rag.reranker
    assert isinstance(judge, PassageJudge)
    hits = judged_rag.index.search("Zorblat festival kangaroos Rust", k=3, mode="hybrid")
    assert len(hits) == 3
    scores = {j.hit.title: j.score for j in judge.judge("When is the Zorblat festival held?", hits)}
    assert max(scores, key=scores.__getitem__) == "Zorblat festival"
    assert all(0.0 <= score <= 1.0 for score in scores.values())


def test_a_passage_judged_again_comes_from_the_prefix_cache(judged_rag) -> None:
    judge = judged_rag.reranker
    hit = judged_rag.index.search("kangaroos", k=1, mode="hybrid")[0]
    judge.judge("How fast can a kangaroo hop?", [hit])
    before = (judge.stats.prompt_tokens, judge.stats.cached_tokens)
    judge.judge("Where do kangaroos live?", [hit])
    prompt_tokens = judge.stats.prompt_tokens - before[0]
    cached_tokens = judge.stats.cached_tokens - before[1]
    # Everything up to the question (system prompt and passage), in whole 16-token blocks.
    assert cached_tokens >= prompt_tokens - 16 - 30
    assert 0 < judge.stats.cache_hit_rate < 1


def test_a_question_is_answered_from_the_judged_passages(judged_rag) -> None:
    answer = judged_rag.ask("When is the Zorblat festival held?", max_tokens=32)
    assert answer.found and "April" in answer.answer
    assert answer.citations[0].title == "Zorblat festival"
