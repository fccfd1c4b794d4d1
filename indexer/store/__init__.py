"""The metadata store: SQLAlchemy models and the database they live in (the source of truth)."""

from indexer.store.database import Database
from indexer.store.models import Chunk, Collection, Document, DocumentStatus, Setting

__all__ = ["Chunk", "Collection", "Database", "Document", "DocumentStatus", "Setting"]
