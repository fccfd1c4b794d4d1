"""The metadata store: SQLAlchemy models and the database they live in (the source of truth)."""

from indexer.store.database import Database
from indexer.store.models import (
    DEFAULT_TENANT,
    Chunk,
    Collection,
    Document,
    DocumentStatus,
    Setting,
)

__all__ = [
    "DEFAULT_TENANT",
    "Chunk",
    "Collection",
    "Database",
    "Document",
    "DocumentStatus",
    "Setting",
]
