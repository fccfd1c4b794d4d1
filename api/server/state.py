"""What the routes share: the RAG pipeline (index + engine), the loaded models, ingestion
jobs and metrics."""

import time
from dataclasses import dataclass, field

from api.server.jobs import IngestJobs
from api.server.metrics import ServerMetrics
from api.server.model_pool import ModelPool
from api.server.settings import ServerSettings
from engine.async_engine import AsyncLLMEngine
from indexer.index import Index
from rag import RAG


@dataclass
class AppState:
    settings: ServerSettings
    rag: RAG
    metrics: ServerMetrics
    jobs: IngestJobs
    models: ModelPool  # the server's own generator, and others loaded on demand
    started_at: float = field(default_factory=time.time)

    @property
    def model_name(self) -> str:
        """The server's own generator: the one that answers over the documents."""
        return self.models.own.name

    @property
    def engine(self) -> AsyncLLMEngine:
        """The server's own generator's engine (the RAG pipeline's)."""
        return self.rag.engine

    @property
    def index(self) -> Index:
        """The library; routes take it as `IndexDep`."""
        return self.rag.index
