"""`Catalog`: what the database says is in the library, read without the writer lock.

Documents, collections, and the rows of the chunks a search found, typed (`ChunkRow`).
The only write here is creating a collection on first use, which takes a `Writer`.
Every collection belongs to a tenant, and every lookup by name or id names one: another
tenant's document or collection is as missing as one never made.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from common.ids import storable
from indexer.errors import DocumentNotFoundError, IndexerError
from indexer.parsers import PageSpan, ParsedDocument
from indexer.records import DocumentInfo, DocumentText
from indexer.store import Chunk, Collection, Database, Document, DocumentStatus
from indexer.writer import Writer

DEFAULT_COLLECTION = "default"
ROWS_PER_QUERY = 10_000  # chunk ids per `IN (...)`, below every database's parameter limit


@dataclass(frozen=True)
class ChunkRow:
    """One chunk of a ready document, with what a citation needs of its document."""

    chunk_id: int
    document_id: int
    collection: str
    title: str
    text: str
    page: int | None
    char_start: int
    char_end: int
    metadata: dict[str, Any]


class Catalog:
    def __init__(self, database: Database, files_dir: Path) -> None:
        self.database = database
        self.files_dir = files_dir  # where uploaded originals are kept

    # -- documents ------------------------------------------------------------------------

    def documents(self, collection: str | None, *, tenant: str) -> list[DocumentInfo]:
        """The tenant's documents, or those of one of its collections (IndexerError if it
        has none of that name)."""
        query = (
            select(Document, Collection.name)
            .join(Collection)
            .where(Collection.tenant == tenant)
            .order_by(Document.id)
        )
        if collection is not None:
            query = query.where(Document.collection_id == self.collection_id(collection, tenant))
        with self.database.session() as session:
            return [_info(document, name) for document, name in session.execute(query)]

    def document(self, document_id: int, *, tenant: str) -> DocumentInfo:
        check_storable(document_id)
        with self.database.session() as session:
            row = session.execute(
                select(Document, Collection.name)
                .join(Collection)
                .where(Document.id == document_id, Collection.tenant == tenant)
            ).first()
            if row is None:
                raise DocumentNotFoundError(f"no document with id {document_id}")
            return _info(*row)

    def document_text(self, document_id: int, *, tenant: str) -> DocumentText:
        """The text the document's chunks were cut from, with where each page lies in it."""
        with self.database.session() as session:
            parsed = parsed_from_store(owned_document(session, document_id, tenant))
        return DocumentText(parsed.text, tuple((p.start, p.end) for p in parsed.pages))

    def original_file(self, document_id: int, *, tenant: str) -> Path | None:
        """Where the uploaded file is kept (None for documents given as text)."""
        with self.database.session() as session:
            stored = owned_document(session, document_id, tenant).stored_file
        return None if stored is None else self.files_dir / stored

    def document_count(self) -> int:
        """Documents in the whole library, every tenant's."""
        with self.database.session() as session:
            return session.scalar(select(func.count()).select_from(Document)) or 0

    # -- collections ----------------------------------------------------------------------

    def collections(self, *, tenant: str) -> list[str]:
        """The names of the tenant's collections, oldest first."""
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(Collection.name)
                    .where(Collection.tenant == tenant)
                    .order_by(Collection.id)
                )
            )

    def collection_ids(self, *, tenant: str | None = None) -> list[int]:
        """The tenant's collections (None: every tenant's, for whole-library work)."""
        query = select(Collection.id).order_by(Collection.id)
        if tenant is not None:
            query = query.where(Collection.tenant == tenant)
        with self.database.session() as session:
            return list(session.scalars(query))

    def collection_id(self, name: str | None, tenant: str) -> int:
        """The tenant's collection of that name (None: its default one); IndexerError if
        it has none, naming the collections it has."""
        name = _collection_name(name)
        with self.database.session() as session:
            found = session.scalar(_named(name, tenant))
        if found is None:
            known = ", ".join(self.collections(tenant=tenant)) or "none yet"
            raise IndexerError(f"no collection named {name!r} (collections: {known})")
        return found

    def ensure_collection(self, writer: Writer, name: str | None, tenant: str) -> int:
        """The tenant's collection of that name, created on first use."""
        name = _collection_name(name)
        with self.database.session() as session:
            found = session.scalar(_named(name, tenant))
            if found is not None:
                return found
            collection = Collection(tenant=_tenant_name(tenant), name=name, generation=0)
            session.add(collection)
            session.flush()
            return collection.id

    def generation(self, collection_id: int) -> int:
        """Bumped by every commit that changes the collection's chunks."""
        with self.database.session() as session:
            return session.get_one(Collection, collection_id).generation

    # -- chunks ---------------------------------------------------------------------------

    def ready_chunk_ids(self, collection_id: int) -> np.ndarray:
        with self.database.session() as session:
            ids = session.scalars(
                select(Chunk.id)
                .join(Document)
                .where(
                    Document.collection_id == collection_id,
                    Document.status == DocumentStatus.READY,
                )
            )
            return np.fromiter(ids, dtype=np.int64)

    def chunk_ids_of(self, document_ids: Sequence[int]) -> np.ndarray:
        with self.database.session() as session:
            ids = session.scalars(
                select(Chunk.id).where(Chunk.document_id.in_([int(i) for i in document_ids]))
            )
            return np.fromiter(ids, dtype=np.int64)

    def stored_vectors(self, chunk_ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        """The vectors stored with those chunks, by chunk id; chunks without one of `dim`
        floats are left out."""
        found: dict[int, np.ndarray] = {}
        ids = [int(i) for i in chunk_ids]
        with self.database.session() as session:
            for start in range(0, len(ids), ROWS_PER_QUERY):
                query = select(Chunk.id, Chunk.vector).where(
                    Chunk.id.in_(ids[start : start + ROWS_PER_QUERY])
                )
                for chunk_id, data in session.execute(query):
                    if data is not None and len(data) == 4 * dim:
                        found[chunk_id] = np.frombuffer(data, dtype="<f4")
        return found

    def store_vectors(self, writer: Writer, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Keep these vectors with their chunks (those still in the database)."""
        rows = [
            {"id": int(chunk_id), "vector": vector_bytes(vector)}
            for chunk_id, vector in zip(chunk_ids, vectors, strict=True)
        ]
        with self.database.session() as session:
            session.execute(update(Chunk), rows)  # by primary key, many rows at once

    def chunk_rows(self, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The rows of those chunks that belong to ready documents, by chunk id."""
        rows: dict[int, ChunkRow] = {}
        ids = [int(i) for i in chunk_ids]
        with self.database.session() as session:
            for start in range(0, len(ids), ROWS_PER_QUERY):
                query = (
                    select(
                        Chunk.id,
                        Chunk.document_id,
                        Collection.name,
                        Document.title,
                        Chunk.text,
                        Chunk.page,
                        Chunk.char_start,
                        Chunk.char_end,
                        Document.doc_metadata,
                    )
                    .join(Document, Chunk.document_id == Document.id)
                    .join(Collection, Document.collection_id == Collection.id)
                    .where(Chunk.id.in_(ids[start : start + ROWS_PER_QUERY]))
                    .where(Document.status == DocumentStatus.READY)
                )
                for (
                    chunk_id,
                    document_id,
                    collection,
                    title,
                    text,
                    page,
                    start,
                    end,
                    meta,
                ) in session.execute(query):
                    rows[chunk_id] = ChunkRow(
                        chunk_id, document_id, collection, title, text, page, start, end, meta or {}
                    )
        return rows


def bump_generation(writer: Writer, session: Session, collection_id: int) -> int:
    """Mark the collection changed, in the transaction that changes it. One statement, so
    two transactions never read the same number and both write the next."""
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(generation=Collection.generation + 1)
    )
    generation = session.scalar(select(Collection.generation).where(Collection.id == collection_id))
    if generation is None:
        raise RuntimeError(f"collection {collection_id} vanished inside its own transaction")
    return generation


def vector_bytes(vector: np.ndarray) -> bytes:
    """How a chunk's vector is stored: float32, little-endian."""
    return np.asarray(vector, dtype="<f4").tobytes()


def parsed_from_store(document: Document) -> ParsedDocument:
    """The parsed document as ingestion left it, for re-chunking and for viewers."""
    pages = tuple(
        PageSpan(number, start, end)
        for number, (start, end) in enumerate(document.page_spans or [], 1)
    )
    return ParsedDocument(
        document.text or "", document.mime_type, document.title, pages, document.page_count
    )


def check_storable(document_id: int) -> None:
    """An id no database could hold names no document (not a database error)."""
    if not storable(document_id):
        raise DocumentNotFoundError(f"no document with id {document_id}")


def owned_document(session: Session, document_id: int, tenant: str) -> Document:
    """The document, if it is in one of the tenant's collections (else not found)."""
    check_storable(document_id)
    document = session.get(Document, document_id)
    if document is None or document.collection.tenant != tenant:
        raise DocumentNotFoundError(f"no document with id {document_id}")
    return document


def _named(name: str, tenant: str) -> Select[int]:
    return select(Collection.id).where(Collection.tenant == tenant, Collection.name == name)


def _tenant_name(tenant: str) -> str:
    if not tenant or len(tenant) > 100:
        raise IndexerError("a tenant name must have 1 to 100 characters")
    return tenant


def _collection_name(name: str | None) -> str:
    name = DEFAULT_COLLECTION if name is None else name.strip()
    if not name or len(name) > 200:
        raise IndexerError("a collection name must have 1 to 200 characters")
    return name


def _info(document: Document, collection: str) -> DocumentInfo:
    return DocumentInfo(
        id=document.id,
        collection=collection,
        title=document.title,
        source_name=document.source_name,
        mime_type=document.mime_type,
        sha256=document.sha256,
        size_bytes=document.size_bytes,
        page_count=document.page_count,
        created_at=document.created_at,
        status=document.status,
        error=document.error,
        metadata=document.doc_metadata or {},
        num_chunks=document.num_chunks,
        has_file=document.stored_file is not None,
    )
