"""One question in, one grounded answer out: rewrite -> retrieve -> prompt -> generate -> cite.

`RAG` is the Python API and what the HTTP server drives. Generation goes through the
shared `AsyncLLMEngine`, so questions from the server, the CLI and Python code are
batched together and reuse each other's cached passage prefixes.
"""

import asyncio
import time
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.async_engine import AsyncLLMEngine
from engine.config import EngineConfig
from engine.reasoning import split_reply
from engine.sampling_params import SamplingParams
from indexer.index import Index
from indexer.paths import default_data_dir
from indexer.records import DocumentInfo, IngestReport, SearchHit
from indexer.rerank import NoReranker, Reranker
from indexer.search import SEARCH_MODES
from indexer.store import DEFAULT_TENANT
from rag import sync_bridge
from rag.answer import Answer, AnswerEvent, CitationsEvent, DoneEvent, TokenEvent
from rag.answer_tracker import AnswerTracker, Plan, last_answer, ms_since, not_found_answer
from rag.draft import draft_messages, search_text
from rag.language import PHRASES, Language, detect_language
from rag.passage_judge import PassageJudge
from rag.prompt import BuiltPrompt, PromptBuilder, canonical_order
from rag.question import Question, validated_question
from rag.relevance import RelevanceJudge
from rag.rewrite import Standalone, rewrite_messages, standalone_question


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
    # Search for the question plus the model's own short draft answer (rag/draft.py), for
    # questions in these languages. English only: on bench-qa it raised English right
    # answers 0.797 -> 0.848 for about 1.5 s a question, and left Chinese ones as they
    # were at 2.4 s more (docs/benchmarks.md).
    draft_languages: frozenset[Language] = frozenset({Language.ENGLISH})
    draft_max_tokens: int = 32
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


class RAG:
    """Documents and a model, ready for questions.

    Args:
        data_dir: where the database, files and indexes live (default: the data dir).
        model: a library name, HF directory or .gguf; None is the default model.
        embedder: the embedder's name or folder; None is the index's own (or the default).
        database_url: the library's database (SQLAlchemy URL); None is SQLite in data_dir.
        engine: an already running engine to share (the server passes its own).
        engine_config: the engine to load; else `model` and `engine_options` (more
            `EngineConfig` fields: dtype, kv_cache_memory, ...) describe it.
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
        engine_config: EngineConfig | None = None,
        **engine_options: Any,
    ) -> None:
        if engine_config and (model or engine_options):
            raise TypeError("pass engine_config, or model and engine options: not both")
        self.index = index or Index(
            data_dir or default_data_dir(), embedder, database_url=database_url
        )
        self.config = config or RAGConfig()
        self.reranker = reranker or (
            PassageJudge(lambda: self.engine) if self.config.judge_passages else NoReranker()
        )
        self._engine = engine
        self._engine_config = engine_config or EngineConfig(model=model, **engine_options)
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

    # Each takes `tenant=` (whose library: `DEFAULT_TENANT` unless named), as `Index` does.

    def ingest(self, paths: Any, collection: str | None = None, **kwargs: Any) -> IngestReport:
        """Ingest files and folders; the report lists new documents, duplicates and failures."""
        return self.index.ingest_files(paths, collection, **kwargs)

    def ingest_texts(
        self,
        documents: Sequence[dict[str, Any]],
        collection: str | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> list[int]:
        return self.index.ingest_texts(documents, collection, tenant=tenant)

    def documents(
        self, collection: str | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> list[DocumentInfo]:
        return self.index.documents(collection, tenant=tenant)

    def delete(self, document_id: int, *, tenant: str = DEFAULT_TENANT) -> None:
        self.index.delete(document_id, tenant=tenant)

    # -- questions ----------------------------------------------------------------------

    def ask(
        self, question: str, *, stream: bool = False, **options: Any
    ) -> Answer | Generator[AnswerEvent, None, None]:
        """Answer a question over the documents.

        Options: collection, history ([{"role", "content"}]), top_k, max_tokens,
        temperature, document_ids, tenant (whose question: its prompts are cached apart
        from other tenants'). With `stream=True`, returns an iterator of events: a
        `CitationsEvent`, then `TokenEvent`s, then a `DoneEvent` with the whole `Answer`.
        """
        events = self._events(question, **options)
        if stream:
            return events
        return last_answer(events)

    def _events(self, question: str, **options: Any) -> Generator[AnswerEvent, None, None]:
        """`ask_events` for synchronous callers; closing the iterator aborts generation."""
        return sync_bridge.iterate(self.ask_events(question, **options))

    async def ask_events(self, question: str, **options: Any) -> AsyncGenerator[AnswerEvent, None]:
        """`ask(stream=True)` for asyncio callers (the server); cancelling aborts generation."""
        started = time.perf_counter()
        asked = self._question(question, options)
        standalone, rewrite_ms = Standalone(asked.text, asked.text, rewritten=False), 0.0
        salt = asked.cache_salt  # every request of the question, in the tenant's namespace
        if asked.history:
            messages = rewrite_messages(asked.history, asked.text)
            rewritten = await self._side_reply(messages, self.config.rewrite_max_tokens, salt)
            standalone = standalone_question(rewritten, asked.text, asked.history)
            rewrite_ms = ms_since(started)
        draft = await self._draft(standalone.query, salt)
        plan = await asyncio.to_thread(self._plan, asked, standalone, draft, started, rewrite_ms)
        yield CitationsEvent(plan.prompt.citations if plan.prompt else [], plan.standalone)
        if plan.prompt is None:
            yield DoneEvent(not_found_answer(plan))
            return
        tracker = AnswerTracker(plan, self.config.check_support)
        for prompt in self._attempts(plan, tracker):
            outputs = self.engine.generate(
                prompt.token_ids,
                plan.params,
                cache_salt=plan.salt,
                passages=prompt.passage_spans,
            )
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
        draft: str = "",
        tenant: str = DEFAULT_TENANT,
    ) -> list[SearchHit]:
        """The relevant passages for a question, most relevant first (at most top_k), from
        the tenant's collections.

        `draft`: the model's own answer to the question (`rag/draft.py`), searched for
        and scored beside it.
        """
        top_k = top_k or self.config.top_k
        hits = self.index.search(
            search_text(query, draft),
            k=max(self.config.candidates, top_k),
            mode=self.config.search_mode,
            collection=collection,
            document_ids=document_ids,
            tenant=tenant,
        )
        judge = RelevanceJudge(self.index.embedder.name, self.index.relevance_threshold)
        relevant = judge.relevant(query, detect_language(query), hits, draft)
        return self.reranker.rerank(query, [scored.hit for scored in relevant], top_k)

    # -- the steps ----------------------------------------------------------------------

    def _question(self, question: str, options: dict[str, Any]) -> Question:
        c = self.config
        return validated_question(question, options, c.temperature, c.max_tokens)

    async def _draft(self, question: str, salt: str | None) -> str:
        """The model's short answer without passages ("" for a language not drafted)."""
        language = detect_language(question)
        if language not in self.config.draft_languages:
            return ""
        messages = draft_messages(question, language)
        return await self._side_reply(messages, self.config.draft_max_tokens, salt)

    async def _side_reply(
        self, messages: list[dict[str, str]], max_tokens: int, salt: str | None
    ) -> str:
        """A short greedy reply on the way to the answer (the rewrite, the draft): a
        reasoning model is asked not to think, and a thought it writes anyway is dropped."""
        chat = self.prompts.chat(messages, thinking=False)
        params = SamplingParams(temperature=0, max_tokens=max_tokens)
        text = (await self.engine.finish(chat, params, cache_salt=salt)).text
        return split_reply(text, self.prompts.reasoning(thinking=False)).content

    def _plan(
        self,
        asked: Question,
        standalone: Standalone,
        draft: str,
        started: float,
        rewrite_ms: float,
    ) -> Plan:
        """Retrieve and build the prompt; `retrieve_ms` counts the draft too."""
        hits = canonical_order(self.retrieve(standalone.query, **asked.retrieval(), draft=draft))
        retrieve_ms = ms_since(started) - rewrite_ms
        language = detect_language(asked.text)
        prompt = self._fitting_prompt(hits, standalone.prompt_question, language)
        return Plan(
            question=asked.text,
            standalone=standalone.query,
            prompt=prompt,
            hits=hits[: len(prompt.citations)] if prompt else [],
            prompt_question=standalone.prompt_question,
            language=language,
            not_found=PHRASES[language].not_found,
            params=asked.params,
            salt=asked.cache_salt,
            started=started,
            rewrite_ms=rewrite_ms,
            retrieve_ms=retrieve_ms,
        )

    def _attempts(self, plan: Plan, tracker: AnswerTracker) -> Iterator[BuiltPrompt]:
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
        if len(retry.token_ids) < self.engine.max_model_len:
            tracker.restart()
            yield retry

    def _fitting_prompt(
        self, hits: list[SearchHit], question: str, language: Language
    ) -> BuiltPrompt | None:
        """The prompt over as many passages as the context holds (None: no passages)."""
        limit = self.engine.max_model_len - 1
        while hits:
            prompt = self.prompts.build(hits, question, language)
            if len(prompt.token_ids) <= limit or len(hits) == 1:
                return prompt  # one passage too long alone: the engine's error says so
            hits = hits[:-1]
        return None
