"""The FastAPI application: routers, error handlers, request metrics, start-up and shutdown.

`create_app(settings)` loads the index and the model when the server starts; tests and
embedders may pass a ready `RAG` instead, so that nothing is built at import time.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.server.auth import OPEN_TENANT, AuthMiddleware
from api.server.browser_safety import BrowserSafetyMiddleware
from api.server.conversations import ConversationStore
from api.server.errors import install_error_handlers
from api.server.jobs import UPLOADS, IngestJob, IngestJobs, remove_stale_uploads
from api.server.json_body import JsonBodyMiddleware
from api.server.metrics import RequestCountMiddleware, ServerMetrics
from api.server.model_pool import LoadedModel, ModelPool
from api.server.routes import (
    ask,
    conversations,
    documents,
    ollama,
    ollama_models,
    openai,
    system,
    vllm,
    web,
)
from api.server.settings import ServerSettings
from api.server.state import AppState
from common.version import VERSION
from engine.async_engine import AsyncLLMEngine
from engine.library import ModelStore
from rag import RAG

logger = logging.getLogger(__name__)


def create_app(
    settings: ServerSettings,
    rag: RAG | None = None,
    *,
    on_ready: Callable[[], None] | None = None,
    on_engine_lost: Callable[[Exception], None] | None = None,
) -> FastAPI:
    """The server app; builds a `RAG` from `settings` at start-up unless one is given.

    `on_ready` runs once the model is loaded, just before requests are served;
    `on_engine_lost` when a rank of a parallel engine is lost (its requests have failed).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        removed = remove_stale_uploads(settings.data_dir / UPLOADS)
        if removed:
            logger.info("removed %d upload folders a stopped server left behind", removed)
        pipeline = rag or _build_rag(settings)
        pipeline.engine.on_lost = on_engine_lost  # loads the model now, not on a question
        if settings.ingest_paths:
            _ingest_at_start(pipeline, settings.ingest_paths)
        state = _state(settings, pipeline)
        state.models.start()
        app.state.pagedrag = state
        app.state.conversations = ConversationStore(settings.data_dir, open_tenant=OPEN_TENANT)
        logger.info("serving %s over %s", state.model_name, settings.data_dir)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await state.models.close()
            state.jobs.close()
            app.state.conversations.close()
            if rag is None:  # a RAG passed in belongs to the caller
                pipeline.close()

    app = FastAPI(
        title="PagedRAG",
        version=VERSION,
        description="Local RAG on a paged-attention engine: PagedRAG's own API plus "
        "OpenAI-, Ollama- and vLLM-compatible routes.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(JsonBodyMiddleware)
    if settings.browser.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.browser.allowed_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestCountMiddleware)
    app.add_middleware(AuthMiddleware, policy=settings.auth)
    # NOTE: added last, so it runs first: nothing else sees a refused request.
    app.add_middleware(BrowserSafetyMiddleware, policy=settings.browser)
    for module in (system, documents, ask, conversations, openai, ollama, ollama_models, vllm):
        app.include_router(module.router)
    web.install(app)
    return app


def _build_rag(settings: ServerSettings) -> RAG:
    return RAG(
        settings.data_dir,
        embedder=settings.embedder,
        database_url=settings.database_url,
        engine_config=settings.engine,
    )


def _ingest_at_start(pipeline: RAG, paths: tuple[Path, ...]) -> None:
    report = pipeline.ingest(list(paths))
    logger.info(
        "ingested %s: %d new documents, %d unchanged, %d failed",
        ", ".join(str(p) for p in paths),
        report.new_documents,
        report.duplicates,
        len(report.failures),
    )
    for failure in report.failures:
        logger.warning("could not ingest %s: %s", failure.source, failure.error)


def _state(settings: ServerSettings, pipeline: RAG) -> AppState:
    models = _model_pool(settings, pipeline)
    metrics = ServerMetrics(models.engine_stats)

    def count_ingest(job: IngestJob) -> None:
        metrics.ingest_jobs.labels(job.status.value).inc()
        if job.report is not None:
            metrics.ingested_documents.labels("new").inc(job.report.new_documents)
            metrics.ingested_documents.labels("duplicate").inc(job.report.duplicates)
            metrics.ingested_documents.labels("failed").inc(len(job.report.failures))

    return AppState(
        settings=settings,
        rag=pipeline,
        metrics=metrics,
        jobs=IngestJobs(on_finished=count_ingest),
        models=models,
    )


def _model_pool(settings: ServerSettings, pipeline: RAG) -> ModelPool:
    """The server's own model (the RAG pipeline's) and the store's, loaded on demand with
    the server's engine settings."""
    engine = pipeline.engine
    own = LoadedModel(engine.model_name, engine, pipeline.prompts, pinned=True)

    def load(name: str) -> AsyncLLMEngine:
        return AsyncLLMEngine.from_config(replace(settings.engine, model=name))

    return ModelPool(own, ModelStore.default(settings.engine.home), load, settings.models)
