"""The second stage of retrieval: the language model judges each candidate passage.

The first stage ranks candidates by embedding similarity and shared terms
(`rag/relevance.py`). This one reads each of the best few with the question under a
short judging prompt and scores it by the model's probability of answering "yes" rather
than "no", as LLM rerankers do. The passage comes before the question in the prompt, so
a passage judged for an earlier question is a cached prefix: only the question's tokens
are computed again.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from engine.async_engine import AsyncLLMEngine
from engine.outputs import RequestOutput
from engine.sampling_params import MAX_LOGPROBS, SamplingParams
from indexer.records import SearchHit
from indexer.rerank import Reranker
from rag.prompt import PromptBuilder

JUDGE_SYSTEM_PROMPT = (
    "You check whether a passage contains the answer to a question. Reply with one word: yes or no."
)
JUDGE_QUESTION = "Does the passage contain the answer to this question? Reply yes or no."
YES_WORDS = ("yes", "Yes", "是")
NO_WORDS = ("no", "No", "否")
JUDGE_PARAMS = SamplingParams(temperature=0, max_tokens=1, logprobs=MAX_LOGPROBS)


@dataclass
class JudgeStats:
    """What the stage has cost so far: its prompts and how much of them the cache held."""

    passages: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0

    @property
    def cache_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True, slots=True)
class JudgedPassage:
    hit: SearchHit
    score: float  # P(yes) / (P(yes) + P(no)) for the judging prompt's first token


class PassageJudge(Reranker):
    """Ranks the first `judged` candidates by the model's verdict; the rest follow unjudged.

    Args:
        engine: called once, on first use (the RAG layer loads its model lazily).
        judged: candidates read by the model, from the top of the first stage's ranking.
        keep_share: a judged passage scoring below this share of the best one is dropped,
            so a small model is not handed passages it would be misled by.
    """

    def __init__(
        self,
        engine: Callable[[], AsyncLLMEngine],
        judged: int = 8,
        keep_share: float = 0.5,
    ) -> None:
        self._engine_source = engine
        self.judged = judged
        self.keep_share = keep_share
        self.stats = JudgeStats()

    def rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]:
        if not hits:
            return []
        judged = sorted(self.judge(query, hits[: self.judged]), key=lambda j: -j.score)
        best = judged[0].score
        kept = [j.hit for j in judged if j.score >= self.keep_share * best]
        return (kept + hits[self.judged :])[:k]

    def judge(self, question: str, hits: list[SearchHit]) -> list[JudgedPassage]:
        started = time.perf_counter()
        prompts = [
            self._prompts.user_turn(
                f"Passage:\n{hit.text.strip()}\n\n",
                f"Question: {question.strip()}\n{JUDGE_QUESTION}",
            )
            for hit in hits
        ]
        outputs = self._engine.complete(prompts, JUDGE_PARAMS)  # together: one prefill for all
        scores = [self._score(output) for output in outputs]
        self.stats.passages += len(hits)
        self.stats.prompt_tokens += sum(out.num_prompt_tokens for out in outputs)
        self.stats.cached_tokens += sum(out.num_cached_tokens for out in outputs)
        self.stats.seconds += time.perf_counter() - started
        return [JudgedPassage(hit, score) for hit, score in zip(hits, scores, strict=True)]

    @cached_property
    def _engine(self) -> AsyncLLMEngine:
        return self._engine_source()

    @cached_property
    def _prompts(self) -> PromptBuilder:
        return PromptBuilder(self._engine.tokenizer, JUDGE_SYSTEM_PROMPT)

    @cached_property
    def _answer_ids(self) -> tuple[frozenset[int], frozenset[int]]:
        tokenizer = self._engine.tokenizer
        return _word_ids(tokenizer, YES_WORDS), _word_ids(tokenizer, NO_WORDS)

    def _score(self, output: RequestOutput) -> float:
        yes_ids, no_ids = self._answer_ids
        assert output.logprobs  # JUDGE_PARAMS asks for them
        first = output.logprobs[0]
        yes = sum(math.exp(value) for token, value in first.items() if token in yes_ids)
        no = sum(math.exp(value) for token, value in first.items() if token in no_ids)
        return yes / (yes + no) if yes + no > 0 else 0.0


def _word_ids(tokenizer: Any, words: tuple[str, ...]) -> frozenset[int]:
    """The first token of each word, with and without a leading space."""
    ids = set()
    for word in words:
        for text in (word, f" {word}"):
            ids.add(tokenizer(text, add_special_tokens=False).input_ids[0])
    return frozenset(ids)
