"""`Ingestor`: files and texts in, as ready documents with embedded chunks.

parse -> chunk -> embed -> commit, a group of documents at a time. A document's row is
`pending` while it is worked on; its chunks are committed in the transaction that marks
it `ready`, so it is either fully there or not at all, and the live indexes follow each
commit. A file already ingested into the collection (same sha256) is a duplicate, not a
second copy. Every method here runs as the writer: the caller holds the writer lock.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from indexer.build_settings import BuildSettings
from indexer.catalog import Catalog, bump_generation, parsed_from_store, vector_bytes
from indexer.chunking import TextChunk, chunk_document
from indexer.embedders import embedding_input
from indexer.errors import IndexerError, ParseError
from indexer.parsers import ParsedDocument, mime_type_for, parse_file
from indexer.records import IngestFailure, IngestReport, Progress, report_progress
from indexer.sources import Sources, keep_original, sha256_of
from indexer.store import Chunk, Document, DocumentStatus
from indexer.sync import LiveIndexes
from indexer.text_input import TextDocument
from indexer.writer import Writer

EMBED_GROUP_CHUNKS = 512  # chunks embedded and committed together
SAVE_INTERVAL_S = 30.0  # during a long ingest, save the indexes at least this often


@dataclass
class _Work:
    """One document on its way through parse -> chunk -> embed."""

    document_id: int
    collection_id: int
    title: str
    parsed: ParsedDocument
    chunks: list[TextChunk] = field(default_factory=list)


class Ingestor:
    def __init__(
        self, files_dir: Path, catalog: Catalog, settings: BuildSettings, live: LiveIndexes
    ) -> None:
        self.files_dir = files_dir  # uploaded originals, by content hash
        self.catalog = catalog
        self.database = catalog.database
        self.settings = settings
        self.live = live

    def files(
        self,
        writer: Writer,
        sources: Sources,
        collection_id: int,
        report: IngestReport,
        progress: Progress | None,
    ) -> None:
        """Ingest the expanded files into the collection, recording every outcome in `report`."""
        order: list[int] = []
        work: list[_Work] = []
        for done, path in enumerate(sources.files, 1):
            item = self._register_file(path, collection_id, report, order)
            if item is not None:
                work.append(item)
            report_progress(progress, "parse", done, len(sources.files))
        self._chunk_and_embed(writer, work, report, progress)
        failed = {failure.document_id for failure in report.failures}
        report.document_ids = [i for i in order if i not in failed]

    def texts(
        self,
        writer: Writer,
        items: list[TextDocument],
        collection_id: int,
        progress: Progress | None,
    ) -> list[int]:
        """Ingest checked texts into the collection; their document ids, in input order."""
        report = IngestReport()
        order, work = self._register_texts(items, collection_id, report)
        report_progress(progress, "parse", len(items), len(items))
        self._chunk_and_embed(writer, work, report, progress)
        if report.failures:
            raise IndexerError("; ".join(f.error for f in report.failures))
        return order

    def rechunk_all(self, writer: Writer, progress: Progress | None) -> None:
        """Cut every ready document again from its stored text (a new embedder or size)."""
        with self.database.session() as session:
            documents = list(
                session.scalars(select(Document).where(Document.status == DocumentStatus.READY))
            )
            for done, document in enumerate(documents, 1):
                parsed = parsed_from_store(document)
                chunks = self._chunks_of(parsed)
                session.execute(delete(Chunk).where(Chunk.document_id == document.id))
                session.add_all(_chunk_records(document.id, chunks))
                document.num_chunks = len(chunks)
                report_progress(progress, "chunk", done, len(documents))
            for collection_id in {d.collection_id for d in documents}:
                bump_generation(writer, session, collection_id)

    def _register_file(
        self, path: Path, collection_id: int, report: IngestReport, order: list[int]
    ) -> _Work | None:
        try:
            data = path.read_bytes()
        except OSError as error:
            report.failures.append(IngestFailure(str(path), f"{path.name}: {error.strerror}"))
            return None
        sha = sha256_of(data)
        with self.database.session() as session:
            document = _find(session, collection_id, sha)
            if document is not None and (
                document.status == DocumentStatus.READY or document.id in order
            ):
                report.duplicates += 1
                order.append(document.id)
                return None
            stored = keep_original(self.files_dir, data, sha, path.suffix)
            if document is None:
                document = Document(collection_id=collection_id, sha256=sha, doc_metadata={})
                session.add(document)
            document.title = path.name
            document.source_name = path.name
            document.mime_type = mime_type_for(path)
            document.size_bytes = len(data)
            document.stored_file = stored
            document.status = DocumentStatus.PENDING
            document.error = None
            session.flush()
            document_id = document.id
        order.append(document_id)
        try:
            parsed = parse_file(path)
        except ParseError as error:
            self._fail(document_id, str(error))
            report.failures.append(IngestFailure(str(path), str(error), document_id))
            return None
        if parsed.page_count:
            report.pages += parsed.page_count
        title = parsed.title if parsed.title and parsed.mime_type.startswith("text/") else None
        return _Work(document_id, collection_id, title or path.name, parsed)

    def _register_texts(
        self, items: list[TextDocument], collection_id: int, report: IngestReport
    ) -> tuple[list[int], list[_Work]]:
        """Pending rows for the new texts (one transaction); ids in input order."""
        shas = [sha256_of(item.text.encode()) for item in items]
        ids: dict[str, int] = {}
        fresh: dict[str, tuple[Document, TextDocument]] = {}
        with self.database.session() as session:
            existing = {
                d.sha256: d
                for d in session.scalars(
                    select(Document).where(
                        Document.collection_id == collection_id, Document.sha256.in_(set(shas))
                    )
                )
            }
            for item, sha in zip(items, shas, strict=True):
                document = existing.get(sha)
                if document is not None and document.status == DocumentStatus.READY:
                    ids[sha] = document.id
                    continue
                if sha in fresh:
                    continue
                if document is None:
                    document = Document(collection_id=collection_id, sha256=sha)
                    session.add(document)
                document.title = item.title
                document.source_name = item.title
                document.mime_type = "text/plain"
                document.size_bytes = len(item.text.encode())
                document.doc_metadata = item.metadata
                document.status = DocumentStatus.PENDING
                document.error = None
                fresh[sha] = (document, item)
            session.flush()
            ids.update({sha: document.id for sha, (document, _) in fresh.items()})
        report.duplicates += len(items) - len(fresh)
        work = [
            _Work(
                document.id,
                collection_id,
                item.title,
                ParsedDocument(text=item.text, mime_type="text/plain", title=None),
            )
            for document, item in fresh.values()
        ]
        return [ids[sha] for sha in shas], work

    def _chunk_and_embed(
        self, writer: Writer, work: list[_Work], report: IngestReport, progress: Progress | None
    ) -> None:
        """Chunk, embed and commit, a group of documents at a time."""
        chunkable = []
        for done, item in enumerate(work, 1):
            item.chunks = self._chunks_of(item.parsed)
            if item.chunks:
                chunkable.append(item)
            else:
                message = f"{item.title}: contains no text to index"
                self._fail(item.document_id, message)
                report.failures.append(IngestFailure(item.title, message, item.document_id))
            report_progress(progress, "chunk", done, len(work))
        total = sum(len(item.chunks) for item in chunkable)
        embedded = 0
        last_save = time.monotonic()
        for group in _groups(chunkable, EMBED_GROUP_CHUNKS):

            def advance(count: int) -> None:
                nonlocal embedded
                embedded += count
                report_progress(progress, "embed", embedded, total)

            texts = [embedding_input(item.title, c.text) for item in group for c in item.chunks]
            vectors = self.settings.embedder.embed_documents(texts, progress=advance)
            self._commit(writer, group, vectors)
            report.new_documents += len(group)
            report.chunks += sum(len(item.chunks) for item in group)
            if time.monotonic() - last_save > SAVE_INTERVAL_S:
                self.live.save_dirty(writer)
                last_save = time.monotonic()
        self.live.save_dirty(writer)

    def _chunks_of(self, parsed: ParsedDocument) -> list[TextChunk]:
        counter = self.settings.embedder.count_tokens
        return chunk_document(parsed, counter, self.settings.chunking)

    def _commit(self, writer: Writer, group: list[_Work], vectors: np.ndarray) -> None:
        """Chunks and "ready" in one transaction; then the in-memory indexes follow."""
        collection_id = group[0].collection_id
        indexes = self.live.get(collection_id)
        with self.database.session() as session:
            rows: list[Chunk] = []
            for item in group:
                rows.extend(_chunk_records(item.document_id, item.chunks))
                document = session.get_one(Document, item.document_id)
                document.title = item.title
                document.status = DocumentStatus.READY
                document.num_chunks = len(item.chunks)
                document.page_count = item.parsed.page_count
                document.text = item.parsed.text
                document.page_spans = [[p.start, p.end] for p in item.parsed.pages] or None
            for row, vector in zip(rows, vectors, strict=True):
                row.vector = vector_bytes(vector)
            session.add_all(rows)
            session.flush()
            generation = bump_generation(writer, session, collection_id)
            ids = [row.id for row in rows]
            texts = [row.text for row in rows]
        self.live.added(writer, collection_id, indexes, ids, texts, vectors, generation)

    def _fail(self, document_id: int, message: str) -> None:
        with self.database.session() as session:
            document = session.get_one(Document, document_id)
            document.status = DocumentStatus.FAILED
            document.error = message


def _chunk_records(document_id: int, chunks: list[TextChunk]) -> list[Chunk]:
    return [
        Chunk(
            document_id=document_id,
            ordinal=ordinal,
            text=chunk.text,
            page=chunk.page,
            char_start=chunk.start,
            char_end=chunk.end,
            token_count=chunk.token_count,
        )
        for ordinal, chunk in enumerate(chunks)
    ]


def _groups(work: list[_Work], size: int) -> Iterator[list[_Work]]:
    group: list[_Work] = []
    count = 0
    for item in work:
        group.append(item)
        count += len(item.chunks)
        if count >= size:
            yield group
            group, count = [], 0
    if group:
        yield group


def _find(session: Session, collection_id: int, sha: str) -> Document | None:
    return session.scalar(
        select(Document).where(Document.collection_id == collection_id, Document.sha256 == sha)
    )
