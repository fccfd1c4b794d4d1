"""Tables for collections, documents, chunks and their vectors; the FAISS and BM25 indexes are
rebuilt from these.

Ids are never reused (SQLite AUTOINCREMENT): a stale index entry can then never point at a
newer chunk, and a deleted document's id stays dead.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the autoincrementing rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class DocumentStatus(StrEnum):
    PENDING = "pending"  # row created, text being parsed/chunked/embedded; no chunks yet
    READY = "ready"  # chunks committed in the same transaction as this status
    FAILED = "failed"  # `error` says why; ingesting the same file again retries it


# Who owns a collection made without one: the command line's, an open server's and
# `--api-key`'s tenant, so turning keys on later keeps what was stored.
DEFAULT_TENANT = "default"


class Collection(Base):
    """A named set of documents, owned by one tenant: names are unique within a tenant,
    and no other tenant sees, searches or changes it."""

    __tablename__ = "collections"
    __table_args__ = (
        UniqueConstraint("tenant", "name", name="uq_collection_tenant_name"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # A database default too: a process of an older PagedRAG may still insert without it.
    tenant: Mapped[str] = mapped_column(String(100), server_default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Bumped in every transaction that adds or removes chunks; an index saved at the same
    # generation is known to match the database without comparing ids.
    generation: Mapped[int] = mapped_column(BigInteger, default=0)

    documents: Mapped[list["Document"]] = relationship(back_populates="collection")


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "sha256", name="uq_document_content"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    source_name: Mapped[str] = mapped_column(String(1000))
    mime_type: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    page_count: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    doc_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # The original file under the data directory's files/ (None for texts given as strings).
    stored_file: Mapped[str | None] = mapped_column(String(200))
    num_chunks: Mapped[int] = mapped_column(Integer, default=0)
    # The extracted text and each page's [start, end) in it: enough to re-chunk without the file.
    text: Mapped[str | None] = deferred(mapped_column(Text))
    page_spans: Mapped[list[list[int]] | None] = deferred(mapped_column(JSON))

    collection: Mapped[Collection] = relationship(back_populates="documents")
    chunks: Mapped[list["Chunk"]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True
    )


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    page: Mapped[int | None] = mapped_column(Integer)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    token_count: Mapped[int] = mapped_column(Integer)
    # The embedder's normalised vector, float32 little-endian: another server builds its
    # FAISS cache from these without embedding again. None: stored before vectors were
    # (or re-chunked since); the next reconcile embeds it and fills it in.
    vector: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))

    document: Mapped[Document] = relationship(back_populates="chunks")


class Setting(Base):
    """Facts about the whole index, such as which embedder built it."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
