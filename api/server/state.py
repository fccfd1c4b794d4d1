"""What the routes share: the RAG pipeline (index + engine), ingestion jobs and metrics."""

import time
from dataclasses import dataclass, field

from api.server.jobs import IngestJobs
from api.server.metrics import ServerMetrics
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
    model_name: str  # what /v1/models and /api/tags call the generator
    started_at: float = field(default_factory=time.time)

    @property
    def engine(self) -> AsyncLLMEngine:
        return self.rag.engine

    @property
    def index(self) -> Index:
        """The library; routes take it as `IndexDep`."""
        return self.rag.index
