"""One question in, one grounded answer out: rewrite -> retrieve -> prompt -> generate -> cite.

`RAG` is the Python API and what the HTTP server drives. Generation goes through the
shared `AsyncLLMEngine`, so questions from the server, the CLI and Python code are
batched together and reuse each other's cached passage prefixes.
"""

import asyncio
import re
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import aclosing, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from engine.outputs import RequestOutput, final_output
from engine.sampling_params import SamplingParams
from indexer.index import SEARCH_MODES, Index
from indexer.paths import default_data_dir
from indexer.records import DocumentInfo, IngestReport, SearchHit
from indexer.rerank import NoReranker, Reranker
from rag.answer import (
    Answer,
    AnswerEvent,
    Citation,
    CitationsEvent,
    DoneEvent,
    Timings,
    TokenEvent,
    Usage,
)
from rag.attribution import attribute
from rag.errors import InvalidQuestionError
from rag.grounding import Grounding, ground
from rag.language import PHRASES, Language, detect_language
from rag.passage_judge import PassageJudge
from rag.prompt import BuiltPrompt, PromptBuilder, canonical_order, cited_numbers
from rag.relevance import RelevanceJudge
from rag.rewrite import Standalone, Turn, parse_history, rewrite_messages, standalone_question

MAX_QUESTION_CHARS = 4000
MAX_TOP_K = 50  # passages one question may ask for
# Text that is nothing but citation markers, complete or still being written ("[", "[2, ").
_BARE_MARKERS = re.compile(r"\s*(?:\[[\d\s,，]*\]?\s*)*")


@dataclass(frozen=True)
class RAGConfig:
    # Passages given to the model. Three, not five: on bench-qa the evidence is among the
    # first three for 90% (en) and 98% (zh) of questions, and the shorter prompt halves
    # the answer time on a CPU while the small model answers more of them right
    # (docs/benchmarks.md, session of 2026-12-05).
    top_k: int = 3
    candidates: int = 20  # retrieved before the reranker keeps top_k
    search_mode: str = "hybrid"
    max_tokens: int = 512
    temperature: float = 0.0  # greedy: the same question over the same passages, the same answer
    rewrite_max_tokens: int = 64
    # Withdraw answers the passages do not support (rag/grounding.py). Off only where the
    # model is a stand-in whose fragments are not answers (the 135M model of API tests).
    check_support: bool = True
    # The model's own yes/no verdict on each candidate as a second ranking stage
    # (rag/passage_judge.py). Off: with the default model it lowered bench-qa's retrieval
    # hit and added seconds per question (docs/benchmarks.md).
    judge_passages: bool = False

    def __post_init__(self) -> None:
        if self.search_mode not in SEARCH_MODES:
            raise ValueError(f"search_mode must be one of {', '.join(SEARCH_MODES)}")
        if not 1 <= self.top_k <= self.candidates:
            raise ValueError("top_k must be at least 1 and at most candidates")


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything decided before the answer is generated."""

    question: str
    standalone: str
    prompt: BuiltPrompt | None  # None: nothing relevant was found
    hits: list[SearchHit]  # the passages in the prompt, in its order
    prompt_question: str  # the question as the prompt states it
    language: Language  # the question's, and so the answer's
    not_found: str  # the reply when `prompt` is None or the passages do not support the answer
    params: SamplingParams
    salt: str | None
    started: float  # time.perf_counter() when the question arrived
    rewrite_ms: float
    retrieve_ms: float


class RAG:
    """Documents and a model, ready for questions.

    Args:
        data_dir: where the database, files and indexes live (default: the data dir).
        model: a library name, HF directory or .gguf; None is the default model.
        embedder: the embedder's name or folder; None is the index's own (or the default).
        database_url: the library's database (SQLAlchemy URL); None is SQLite in data_dir.
        engine: an already running engine to share (the server passes its own).
        engine_options: more `EngineConfig` fields (dtype, kv_cache_memory, ...).
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        model: str | None = None,
        embedder: str | None = None,
        *,
        database_url: str | None = None,
        index: Index | None = None,
        engine: AsyncLLMEngine | None = None,
        reranker: Reranker | None = None,
        config: RAGConfig | None = None,
        **engine_options: Any,
    ) -> None:
        self.index = index or Index(
            data_dir or default_data_dir(), embedder, database_url=database_url
        )
        self.config = config or RAGConfig()
        self.reranker = reranker or (
            PassageJudge(lambda: self.engine) if self.config.judge_passages else NoReranker()
        )
        self._engine = engine
        self._engine_config = EngineConfig(model=model, **engine_options)
        self._builder: PromptBuilder | None = None

    @property
    def engine(self) -> AsyncLLMEngine:
        """The generation engine, loaded on first use (listing documents needs no model)."""
        if self._engine is None:
            self._engine = AsyncLLMEngine.from_config(self._engine_config)
        return self._engine

    @property
    def prompts(self) -> PromptBuilder:
        if self._builder is None:
            self._builder = PromptBuilder(self.engine.tokenizer)
        return self._builder

    def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
        self.index.close()

    def __enter__(self) -> "RAG":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- documents ----------------------------------------------------------------------

    def ingest(self, paths: Any, collection: str | None = None, **kwargs: Any) -> IngestReport:
        """Ingest files and folders; the report lists new documents, duplicates and failures."""
        return self.index.ingest_files(paths, collection, **kwargs)

    def ingest_texts(self, documents: Sequence[dict[str, Any]], collection: str | None = None):
        return self.index.ingest_texts(documents, collection)

    def documents(self, collection: str | None = None) -> list[DocumentInfo]:
        return self.index.documents(collection)

    def delete(self, document_id: int) -> None:
        self.index.delete(document_id)

    # -- questions ----------------------------------------------------------------------

    def ask(
        self, question: str, *, stream: bool = False, **options: Any
    ) -> Answer | Iterator[AnswerEvent]:
        """Answer a question over the documents.

        Options: collection, history ([{"role", "content"}]), top_k, max_tokens,
        temperature, document_ids. With `stream=True`, returns an iterator of events: a
        `CitationsEvent`, then `TokenEvent`s, then a `DoneEvent` with the whole `Answer`.
        """
        events = self._events(question, **options)
        if stream:
            return events
        return _last_answer(events)

    def _events(self, question: str, **options: Any) -> Iterator[AnswerEvent]:
        started = time.perf_counter()
        question, history, params, retrieval = self._validated(question, options)
        standalone, rewrite_ms = Standalone(question, question, rewritten=False), 0.0
        if history:
            rewrite = self.prompts.chat(rewrite_messages(history, question))
            generated = final_output(self.engine.stream(rewrite, self._rewrite()))
            standalone = standalone_question(generated.text, question, history)
            rewrite_ms = _ms_since(started)
        plan = self._plan(question, standalone, params, retrieval, started, rewrite_ms)
        yield CitationsEvent(plan.prompt.citations if plan.prompt else [], plan.standalone)
        if plan.prompt is None:
            yield DoneEvent(_not_found(plan))
            return
        tracker = _Tracker(plan, self.config.check_support)
        for prompt in self._attempts(plan, tracker):
            outputs = self.engine.stream(prompt.token_ids, plan.params, cache_salt=plan.salt)
            with closing(outputs):  # a consumer that stops reading aborts the generation now
                for output in outputs:
                    if delta := tracker.add(output):
                        yield TokenEvent(delta)
        yield DoneEvent(tracker.answer())

    async def ask_events(self, question: str, **options: Any) -> AsyncGenerator[AnswerEvent, None]:
        """`ask(stream=True)` for asyncio callers (the server); cancelling aborts generation."""
        started = time.perf_counter()
        question, history, params, retrieval = self._validated(question, options)
        standalone, rewrite_ms = Standalone(question, question, rewritten=False), 0.0
        if history:
            rewrite = self.prompts.chat(rewrite_messages(history, question))
            generated = await _afinal(self.engine.generate(rewrite, self._rewrite()))
            standalone = standalone_question(generated.text, question, history)
            rewrite_ms = _ms_since(started)
        plan = await asyncio.to_thread(
            self._plan, question, standalone, params, retrieval, started, rewrite_ms
        )
        yield CitationsEvent(plan.prompt.citations if plan.prompt else [], plan.standalone)
        if plan.prompt is None:
            yield DoneEvent(_not_found(plan))
            return
        tracker = _Tracker(plan, self.config.check_support)
        for prompt in self._attempts(plan, tracker):
            outputs = self.engine.generate(prompt.token_ids, plan.params, cache_salt=plan.salt)
            async with aclosing(outputs):  # cancelled or closed: the generation is aborted now
                async for output in outputs:
                    if delta := tracker.add(output):
                        yield TokenEvent(delta)
        yield DoneEvent(tracker.answer())

    def retrieve(
        self,
        query: str,
        *,
        collection: str | None = None,
        top_k: int | None = None,
        document_ids: Sequence[int] | None = None,
    ) -> list[SearchHit]:
        """The relevant passages for a question, most relevant first (at most top_k)."""
        top_k = top_k or self.config.top_k
        hits = self.index.search(
            query,
            k=max(self.config.candidates, top_k),
            mode=self.config.search_mode,
            collection=collection,
            document_ids=document_ids,
        )
        judge = RelevanceJudge(self.index.embedder.name, self.index.relevance_threshold)
        relevant = judge.relevant(query, detect_language(query), hits)
        return self.reranker.rerank(query, [scored.hit for scored in relevant], top_k)

    # -- the steps ----------------------------------------------------------------------

    def _validated(
        self, question: str, options: dict[str, Any]
    ) -> tuple[str, list[Turn], SamplingParams, dict[str, Any]]:
        unknown = set(options) - {
            "collection",
            "history",
            "top_k",
            "max_tokens",
            "temperature",
            "document_ids",
        }
        if unknown:
            raise TypeError(f"unknown ask options: {', '.join(sorted(unknown))}")
        if not isinstance(question, str) or not question.strip():
            raise InvalidQuestionError("the question is empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise InvalidQuestionError(f"the question is longer than {MAX_QUESTION_CHARS} chars")
        top_k = options.get("top_k")
        if top_k is not None and not 1 <= top_k <= MAX_TOP_K:
            raise InvalidQuestionError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
        try:
            history = parse_history(options.get("history"))
            params = SamplingParams(
                temperature=_pick(options.get("temperature"), self.config.temperature),
                max_tokens=_pick(options.get("max_tokens"), self.config.max_tokens),
            )
        except ValueError as error:
            raise InvalidQuestionError(str(error)) from None
        retrieval = {
            "collection": options.get("collection"),
            "top_k": top_k,
            "document_ids": options.get("document_ids"),
        }
        return question.strip(), history, params, retrieval

    def _rewrite(self) -> SamplingParams:
        return SamplingParams(temperature=0, max_tokens=self.config.rewrite_max_tokens)

    def _plan(
        self,
        question: str,
        standalone: Standalone,
        params: SamplingParams,
        retrieval: dict[str, Any],
        started: float,
        rewrite_ms: float,
    ) -> _Plan:
        hits = canonical_order(self.retrieve(standalone.query, **retrieval))
        retrieve_ms = _ms_since(started) - rewrite_ms
        language = detect_language(question)
        prompt = self._fitting_prompt(hits, standalone.prompt_question, language)
        return _Plan(
            question=question,
            standalone=standalone.query,
            prompt=prompt,
            hits=hits[: len(prompt.citations)] if prompt else [],
            prompt_question=standalone.prompt_question,
            language=language,
            not_found=PHRASES[language].not_found,
            params=params,
            salt=retrieval["collection"],
            started=started,
            rewrite_ms=rewrite_ms,
            retrieve_ms=retrieve_ms,
        )

    def _attempts(self, plan: _Plan, tracker: "_Tracker") -> Iterator[BuiltPrompt]:
        """The prompt, then once more if the model answered only with a marker ("[2]").

        NOTE: small models often take "cite the passages like [1]" for the answer's form
        (the 1.5B model did for 8 of 121 bench-qa questions); asked again for a full
        sentence, they state the fact. The passages stay a cached prefix: the second
        try costs its question tail and its answer.
        """
        if plan.prompt is None:
            return
        yield plan.prompt
        if not tracker.bare():
            return
        in_words = PHRASES[plan.language].in_words
        retry = self.prompts.build(plan.hits, plan.prompt_question, plan.language, in_words)
        if len(retry.token_ids) < self.engine.engine.max_model_len:
            tracker.restart()
            yield retry

    def _fitting_prompt(
        self, hits: list[SearchHit], question: str, language: Language
    ) -> BuiltPrompt | None:
        """The prompt over as many passages as the context holds (None: no passages)."""
        limit = self.engine.engine.max_model_len - 1
        while hits:
            prompt = self.prompts.build(hits, question, language)
            if len(prompt.token_ids) <= limit or len(hits) == 1:
                return prompt  # one passage too long alone: the engine's error says so
            hits = hits[:-1]
        return None


class _Tracker:
    """Follows a question's generations: text deltas, time to first token, the answer.

    Text that is nothing but markers so far ("[2]") is held back: it may be all the
    model says, and then it is asked again (`RAG._attempts`) and never shown.
    """

    def __init__(self, plan: _Plan, check_support: bool) -> None:
        self.plan = plan
        self.check_support = check_support
        self.shown = 0
        self.ttft_ms: float | None = None
        self.last: RequestOutput | None = None
        self.spent = Usage()  # of the generations before the last one

    def add(self, output: RequestOutput) -> str:
        if self.ttft_ms is None:
            self.ttft_ms = _ms_since(self.plan.started)
        self.last = output
        if _BARE_MARKERS.fullmatch(output.text):
            return ""
        delta = output.text[self.shown :]
        self.shown = len(output.text)
        return delta

    def bare(self) -> bool:
        """Whether the finished generation said nothing but citation markers."""
        return self.last is not None and _BARE_MARKERS.fullmatch(self.last.text) is not None

    def restart(self) -> None:
        """Before another generation for the same question: what this one cost is kept."""
        self.spent = self._usage()
        self.last = None

    def _usage(self) -> Usage:
        last, spent = self.last, self.spent
        if last is None:
            return spent
        return Usage(
            spent.prompt_tokens + last.num_prompt_tokens,
            spent.completion_tokens + len(last.token_ids),
            spent.cached_tokens + last.num_cached_tokens,
        )

    def answer(self) -> Answer:
        plan, last = self.plan, self.last
        if last is None or plan.prompt is None:
            raise RuntimeError("the engine finished a request without producing a token")
        citations: list[Citation] = plan.prompt.citations
        text = last.text.strip()
        grounding = (
            ground(text, f"{plan.question} {plan.standalone}", citations, plan.language)
            if self.check_support
            else Grounding(True, text, cited_numbers(text, len(citations)))
        )
        usage = self._usage()
        timings = Timings(plan.rewrite_ms, plan.retrieve_ms, self.ttft_ms, _ms_since(plan.started))
        if not grounding.supported:
            return _not_found(plan, last.finish_reason, usage, timings)
        return Answer(
            question=plan.question,
            standalone_question=plan.standalone,
            answer=grounding.text,
            citations=citations,
            cited=grounding.cited,
            attributions=attribute(grounding.text, citations),
            found=True,
            finish_reason=last.finish_reason,
            usage=usage,
            timings=timings,
        )


def _not_found(
    plan: _Plan,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    timings: Timings | None = None,
) -> Answer:
    """The "not found" reply: nothing relevant was retrieved, or the passages do not
    support what the model wrote (then `usage` and `timings` say what the model cost)."""
    return Answer(
        question=plan.question,
        standalone_question=plan.standalone,
        answer=plan.not_found,
        citations=[],
        cited=[],
        attributions=[],
        found=False,
        finish_reason=finish_reason,
        usage=usage or Usage(),
        timings=timings
        or Timings(plan.rewrite_ms, plan.retrieve_ms, None, _ms_since(plan.started)),
    )


def _last_answer(events: Iterator[AnswerEvent]) -> Answer:
    for event in events:
        if isinstance(event, DoneEvent):
            return event.answer
    raise RuntimeError("the answer stream ended without a final answer")


async def _afinal(outputs: AsyncGenerator[RequestOutput, None]) -> RequestOutput:
    last = None
    async with aclosing(outputs):
        async for last in outputs:  # noqa: B007
            pass
    if last is None:
        raise RuntimeError("the engine finished a request without producing a token")
    return last


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
