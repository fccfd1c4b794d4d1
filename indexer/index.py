"""`Index`: documents in, the right passages out.

The database is the source of truth. A document's chunks are committed in the same
transaction that marks it ready, so a document is either fully there or not at all; the
FAISS and BM25 indexes are caches of the database, saved atomically and brought back in
line (`CollectionIndexes.reconcile`) when a crash or another process left them behind.
Documents still `pending` when the writer lock is next taken were interrupted: they are
marked failed and retried when the same file is ingested again. Opening an index never
waits for another process's writer: a reader then skips that recovery (the writer did it
when it took the lock) and sees only what the database says is ready.
"""

import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from common.ids import storable
from indexer.chunking import ChunkingConfig, Region, TextChunk, chunk_text
from indexer.collection_indexes import CollectionIndexes
from indexer.embedders import Embedder, load_embedder
from indexer.errors import (
    DocumentNotFoundError,
    EmbedderMismatchError,
    IndexerError,
    ParseError,
)
from indexer.file_lock import exclusive
from indexer.parsers import PageSpan, ParsedDocument, mime_type_for, parse_file
from indexer.paths import make_data_dir
from indexer.records import (
    DocumentInfo,
    DocumentText,
    IngestFailure,
    IngestReport,
    Progress,
    SearchHit,
)
from indexer.retrieval import fuse, rank_by_score
from indexer.sources import expand, keep_original, sha256_of
from indexer.store import Chunk, Collection, Database, Document, DocumentStatus
from indexer.vector_index import VectorIndex, VectorIndexConfig

DEFAULT_COLLECTION = "default"
SEARCH_MODES = ("hybrid", "dense", "bm25")
EMBED_GROUP_CHUNKS = 512  # chunks embedded and committed together
SAVE_INTERVAL_S = 30.0  # during a long ingest, save the indexes at least this often
INTERRUPTED = "ingestion was interrupted; ingest the file again to retry"


@dataclass(frozen=True)
class IndexConfig:
    # None: the chunking the index was built with (remembered at its first ingest), else
    # the default; another value is refused by ingest and applied by `reindex`.
    chunking: ChunkingConfig | None = None
    vectors: VectorIndexConfig = field(default_factory=VectorIndexConfig)
    relevance_threshold: float | None = None  # None: the embedder's own
    candidates: int = 100  # fetched from each retriever before fusion


@dataclass
class _Work:
    """One document on its way through parse -> chunk -> embed."""

    document_id: int
    collection_id: int
    title: str
    parsed: ParsedDocument
    chunks: list[TextChunk] = field(default_factory=list)


class Index:
    def __init__(
        self,
        data_dir: str | Path,
        embedder: str | Embedder | None = None,
        *,
        database_url: str | None = None,
        config: IndexConfig | None = None,
    ) -> None:
        self.data_dir = make_data_dir(Path(data_dir).expanduser())
        self.config = config or IndexConfig()
        self.database = (
            Database(database_url) if database_url else Database.sqlite_in(self.data_dir)
        )
        self.built_with = self.database.get_setting("embedder")
        self.chunking = self.config.chunking or _stored_chunking(self.database) or ChunkingConfig()
        if isinstance(embedder, Embedder):
            self.embedder = embedder
        else:
            self.embedder = load_embedder(embedder or self.built_with)
        self._indexes: dict[int, CollectionIndexes] = {}
        self._dirty: set[int] = set()
        self._memory_lock = threading.RLock()  # guards the in-memory indexes
        self._writer_lock = threading.Lock()  # one writer per process ...
        self._lock_path = self.data_dir / ".writer.lock"  # ... and one across processes
        self._writer_thread: int | None = None  # the thread of this process now writing
        with self._writing(wait=False) as writing:
            if writing:  # else another process writes: it recovered when it took the lock
                self._recover()

    @property
    def relevance_threshold(self) -> float:
        threshold = self.config.relevance_threshold
        return self.embedder.relevance_threshold if threshold is None else threshold

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- ingestion ---------------------------------------------------------------------

    def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        collection: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[int]:
        """Ingest files and directories (recursively); the ids of the documents now ready."""
        return self.ingest_files(paths, collection, progress=progress).document_ids

    def ingest_files(
        self,
        paths: str | Path | Iterable[str | Path],
        collection: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Like `ingest`, with the whole story: duplicates, failures and their reasons."""
        sources = expand([paths] if isinstance(paths, str | Path) else paths)
        report = IngestReport(skipped_unsupported=[str(p) for p in sources.unsupported])
        report.failures.extend(IngestFailure(str(p), message) for p, message in sources.problems)
        with self._writing():
            self._check_embedder()
            self._check_chunking(rechunking=False)
            collection_id = self._collection_id(collection, create=True)
            order: list[int] = []
            work: list[_Work] = []
            for done, path in enumerate(sources.files, 1):
                item = self._register_file(path, collection_id, report, order)
                if item is not None:
                    work.append(item)
                _report(progress, "parse", done, len(sources.files))
            self._chunk_and_embed(work, report, progress)
        failed = {failure.document_id for failure in report.failures}
        report.document_ids = [i for i in order if i not in failed]
        return report

    def ingest_texts(
        self,
        documents: Sequence[dict[str, Any]],
        collection: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[int]:
        """Ingest `{"text", "title"?, "metadata"?}` dicts; their document ids, in order."""
        items = [_validated_text(i, d) for i, d in enumerate(documents)]
        report = IngestReport()
        with self._writing():
            self._check_embedder()
            self._check_chunking(rechunking=False)
            collection_id = self._collection_id(collection, create=True)
            order, work = self._register_texts(items, collection_id, report)
            _report(progress, "parse", len(items), len(items))
            self._chunk_and_embed(work, report, progress)
        if report.failures:
            raise IndexerError("; ".join(f.error for f in report.failures))
        return order

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
            stored = keep_original(self.data_dir / "files", data, sha, path.suffix)
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
        self, items: list[dict[str, Any]], collection_id: int, report: IngestReport
    ) -> tuple[list[int], list[_Work]]:
        """Pending rows for the new texts (one transaction); ids in input order."""
        shas = [sha256_of(item["text"].encode()) for item in items]
        ids: dict[str, int] = {}
        fresh: dict[str, tuple[Document, dict[str, Any]]] = {}
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
                document.title = item["title"]
                document.source_name = item["title"]
                document.mime_type = "text/plain"
                document.size_bytes = len(item["text"].encode())
                document.doc_metadata = item["metadata"]
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
                item["title"],
                ParsedDocument(text=item["text"], mime_type="text/plain", title=None),
            )
            for document, item in fresh.values()
        ]
        return [ids[sha] for sha in shas], work

    def _chunk_and_embed(
        self, work: list[_Work], report: IngestReport, progress: Progress | None
    ) -> None:
        """Chunk, embed and commit, a group of documents at a time."""
        chunkable = []
        for done, item in enumerate(work, 1):
            item.chunks = chunk_text(
                item.parsed.text,
                _regions(item.parsed),
                self.embedder.count_tokens,
                self.chunking,
            )
            if item.chunks:
                chunkable.append(item)
            else:
                message = f"{item.title}: contains no text to index"
                self._fail(item.document_id, message)
                report.failures.append(IngestFailure(item.title, message, item.document_id))
            _report(progress, "chunk", done, len(work))
        total = sum(len(item.chunks) for item in chunkable)
        embedded = 0
        last_save = time.monotonic()
        for group in _groups(chunkable, EMBED_GROUP_CHUNKS):

            def advance(count: int) -> None:
                nonlocal embedded
                embedded += count
                _report(progress, "embed", embedded, total)

            texts = [_embedding_input(item.title, c.text) for item in group for c in item.chunks]
            vectors = self.embedder.embed_documents(texts, progress=advance)
            self._commit(group, vectors)
            report.new_documents += len(group)
            report.chunks += sum(len(item.chunks) for item in group)
            if time.monotonic() - last_save > SAVE_INTERVAL_S:
                self._save_dirty()
                last_save = time.monotonic()
        self._save_dirty()

    def _commit(self, group: list[_Work], vectors: np.ndarray) -> None:
        """Chunks and "ready" in one transaction; then the in-memory indexes follow."""
        collection_id = group[0].collection_id
        indexes = self._collection_indexes(collection_id)
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
            session.add_all(rows)
            session.flush()
            generation = _bump(session, collection_id)
            ids = [row.id for row in rows]
            texts = [row.text for row in rows]
        with self._memory_lock:
            indexes.add(ids, texts, vectors)
            indexes.generation = generation
            indexes.embedder = self.embedder.name
            self._dirty.add(collection_id)

    def _fail(self, document_id: int, message: str) -> None:
        with self.database.session() as session:
            document = session.get_one(Document, document_id)
            document.status = DocumentStatus.FAILED
            document.error = message

    # -- deleting and re-indexing -------------------------------------------------------

    def delete(self, document_id: int) -> None:
        """Remove a document, its chunks (database and every index) and its stored file."""
        _check_storable(document_id)
        with self._writing():
            with self.database.session() as session:
                document = session.get(Document, document_id)
                if document is None:
                    raise DocumentNotFoundError(f"no document with id {document_id}")
                collection_id, stored = document.collection_id, document.stored_file
                chunk_ids = list(
                    session.scalars(select(Chunk.id).where(Chunk.document_id == document_id))
                )
                indexes = self._collection_indexes(collection_id, reconcile=False)
                session.execute(delete(Chunk).where(Chunk.document_id == document_id))
                session.delete(document)
                generation = _bump(session, collection_id)
            with self._memory_lock:
                indexes.remove(chunk_ids)
                indexes.generation = generation
                self._dirty.add(collection_id)
            self._save_dirty()
            if stored is not None:
                self._remove_file_if_unused(stored)

    def _remove_file_if_unused(self, stored: str) -> None:
        with self.database.session() as session:
            still_used = session.scalar(
                select(func.count()).select_from(Document).where(Document.stored_file == stored)
            )
        if not still_used:
            (self.data_dir / "files" / stored).unlink(missing_ok=True)

    def reindex(self, *, progress: Progress | None = None) -> None:
        """Rebuild every index from the database, with this index's embedder.

        After a change of embedder (or of chunk size) documents are chunked again from their
        stored text first, since chunk sizes are counted in the embedder's tokens.
        """
        with self._writing():
            self._check_chunking(rechunking=True)
            chunking = _chunking_json(self.chunking)
            rechunk = (
                self.database.get_setting("embedder") != self.embedder.name
                or self.database.get_setting("chunking") != chunking
            )
            collection_ids = self._collection_ids()
            if rechunk:
                self._rechunk_all(progress)
            for collection_id in collection_ids:
                with self._memory_lock:
                    self._indexes.pop(collection_id, None)
                    fresh = CollectionIndexes(self._index_dir(collection_id), self.config.vectors)
                    fresh.embedder = self.embedder.name
                    self._indexes[collection_id] = fresh
                self._reconcile(collection_id, fresh, progress)
                self._dirty.add(collection_id)
            self._save_dirty()
            self.database.set_setting("embedder", self.embedder.name)
            self.database.set_setting("chunking", chunking)
            self.built_with = self.embedder.name

    def _rechunk_all(self, progress: Progress | None) -> None:
        with self.database.session() as session:
            documents = list(
                session.scalars(select(Document).where(Document.status == DocumentStatus.READY))
            )
            for done, document in enumerate(documents, 1):
                parsed = _parsed_from_store(document)
                chunks = chunk_text(
                    parsed.text, _regions(parsed), self.embedder.count_tokens, self.chunking
                )
                session.execute(delete(Chunk).where(Chunk.document_id == document.id))
                session.add_all(_chunk_records(document.id, chunks))
                document.num_chunks = len(chunks)
                _report(progress, "chunk", done, len(documents))
            for collection_id in {d.collection_id for d in documents}:
                _bump(session, collection_id)

    # -- searching -----------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: str = "hybrid",
        collection: str | None = None,
        *,
        document_ids: Sequence[int] | None = None,
    ) -> list[SearchHit]:
        """The k best chunks, best first. Each hit says whether it is `relevant`."""
        if not isinstance(query, str) or not query.strip():
            raise IndexerError("the query is empty")
        if mode not in SEARCH_MODES:
            raise IndexerError(
                f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}"
            )
        if not 1 <= k <= 1000:
            raise IndexerError(f"k must be between 1 and 1000, got {k}")
        if mode != "bm25":
            self._check_embedder()
        collection_ids = self._search_scope(collection)
        allowed = self._chunk_ids_of(document_ids) if document_ids is not None else None
        # NOTE: BM25 mode embeds the query too, for the relevance check alone: BM25 scores
        # have no scale on which "nothing relevant" could be read. It cannot when another
        # embedder built the index; its hits are then never `relevant`.
        can_embed = mode != "bm25" or self.built_with == self.embedder.name
        query_vector = self.embedder.embed_queries([query])[0] if can_embed else None
        depth = max(self.config.candidates, k)
        dense: list[tuple[float, int]] = []
        keyword: list[tuple[float, int]] = []
        owner: dict[int, CollectionIndexes] = {}
        for collection_id in collection_ids:
            indexes = self._collection_indexes(collection_id)
            found: list[int] = []
            with self._memory_lock:
                if mode != "bm25" and query_vector is not None and indexes.vectors is not None:
                    scores, ids = indexes.vectors.search(query_vector, depth, allowed)
                    dense.extend(zip(scores.tolist(), ids.tolist(), strict=True))
                    found.extend(ids.tolist())
                if mode != "dense":
                    scores, ids = indexes.keywords.search(query, depth, allowed)
                    keyword.extend(zip(scores.tolist(), ids.tolist(), strict=True))
                    found.extend(ids.tolist())
            owner.update(dict.fromkeys(found, indexes))
        dense_rank, keyword_rank = rank_by_score(dense)[:depth], rank_by_score(keyword)[:depth]
        if mode == "hybrid":
            ranked = fuse([dense_rank, keyword_rank])
        else:
            ranked = dense_rank if mode == "dense" else keyword_rank
        keyword_scores = dict((i, s) for s, i in keyword)
        hits = self._hydrate(ranked, k)
        similarity = dict((i, s) for s, i in dense)
        if query_vector is not None:
            missing = [chunk_id for _, chunk_id, _ in hits if chunk_id not in similarity]
            similarity.update(self._similarities(missing, owner, query_vector))
        return [
            SearchHit(
                chunk_id=chunk_id,
                document_id=row["document_id"],
                title=row["title"],
                page=row["page"],
                text=row["text"],
                score=score,
                metadata=row["metadata"] or {},
                collection=row["collection"],
                char_start=row["char_start"],
                char_end=row["char_end"],
                dense_score=similarity.get(chunk_id),
                bm25_score=keyword_scores.get(chunk_id),
                relevant=similarity.get(chunk_id, -1.0) >= self.relevance_threshold,
            )
            for score, chunk_id, row in hits
        ]

    def _similarities(
        self, chunk_ids: list[int], owner: dict[int, CollectionIndexes], query: np.ndarray
    ) -> dict[int, float]:
        """Cosine similarity to the query of chunks the dense search did not return."""
        groups: dict[int, tuple[CollectionIndexes, list[int]]] = {}
        for chunk_id in chunk_ids:
            groups.setdefault(id(owner[chunk_id]), (owner[chunk_id], []))[1].append(chunk_id)
        out: dict[int, float] = {}
        with self._memory_lock:
            for indexes, ids in groups.values():
                if indexes.vectors is None:
                    continue
                out.update(_cosines(indexes.vectors, ids, query))
        return out

    def _hydrate(
        self, ranked: list[tuple[float, int]], k: int
    ) -> list[tuple[float, int, dict[str, Any]]]:
        """Rows for the best ranked chunks that still belong to ready documents."""
        rows = _chunk_rows(self.database, [chunk_id for _, chunk_id in ranked[: k * 2 + 10]])
        out = [(score, chunk_id, rows[chunk_id]) for score, chunk_id in ranked if chunk_id in rows]
        return out[:k]

    def _search_scope(self, collection: str | None) -> list[int]:
        if collection is None:
            return self._collection_ids()
        found = self._collection_id(collection, create=False)
        return [found]

    def _chunk_ids_of(self, document_ids: Sequence[int]) -> np.ndarray:
        with self.database.session() as session:
            ids = session.scalars(
                select(Chunk.id).where(Chunk.document_id.in_([int(i) for i in document_ids]))
            )
            return np.fromiter(ids, dtype=np.int64)

    # -- documents and collections ------------------------------------------------------

    def documents(self, collection: str | None = None) -> list[DocumentInfo]:
        """Every document, or those of one collection (IndexerError if it does not exist)."""
        query = select(Document, Collection.name).join(Collection).order_by(Document.id)
        if collection is not None:
            collection_id = self._collection_id(collection, create=False)
            query = query.where(Document.collection_id == collection_id)
        with self.database.session() as session:
            return [_info(document, name) for document, name in session.execute(query)]

    def document(self, document_id: int) -> DocumentInfo:
        _check_storable(document_id)
        with self.database.session() as session:
            row = session.execute(
                select(Document, Collection.name).join(Collection).where(Document.id == document_id)
            ).first()
            if row is None:
                raise DocumentNotFoundError(f"no document with id {document_id}")
            return _info(*row)

    def collections(self) -> list[str]:
        with self.database.session() as session:
            return list(session.scalars(select(Collection.name).order_by(Collection.id)))

    def document_text(self, document_id: int) -> DocumentText:
        """The text the document's chunks were cut from, with where each page lies in it."""
        _check_storable(document_id)
        with self.database.session() as session:
            document = session.get(Document, document_id)
            if document is None:
                raise DocumentNotFoundError(f"no document with id {document_id}")
            parsed = _parsed_from_store(document)
        return DocumentText(parsed.text, tuple((p.start, p.end) for p in parsed.pages))

    def original_file(self, document_id: int) -> Path | None:
        """Where the uploaded file is kept (None for documents given as text)."""
        _check_storable(document_id)
        with self.database.session() as session:
            document = session.get(Document, document_id)
            if document is None:
                raise DocumentNotFoundError(f"no document with id {document_id}")
            stored = document.stored_file
        return None if stored is None else self.data_dir / "files" / stored

    # -- keeping the indexes in line with the database -----------------------------------

    @contextmanager
    def _writing(self, *, wait: bool = True) -> Iterator[bool]:
        """Be this data directory's one writer; without `wait`, yields False if busy."""
        if not self._writer_lock.acquire(blocking=wait):
            yield False
            return
        try:
            with exclusive(self._lock_path, wait=wait) as acquired:
                if not acquired:
                    yield False
                    return
                self._writer_thread = threading.get_ident()
                try:
                    yield True
                finally:
                    self._writer_thread = None
        finally:
            self._writer_lock.release()

    def _recover(self) -> None:
        """Fail interrupted documents, then bring every collection's indexes up to date."""
        with self.database.session() as session:
            for document in session.scalars(
                select(Document).where(Document.status == DocumentStatus.PENDING)
            ):
                session.execute(delete(Chunk).where(Chunk.document_id == document.id))
                document.status = DocumentStatus.FAILED
                document.error = INTERRUPTED
        if self.built_with is None or self.built_with == self.embedder.name:
            for collection_id in self._collection_ids():
                self._collection_indexes(collection_id)
            self._save_dirty()

    def _collection_indexes(
        self, collection_id: int, *, reconcile: bool = True
    ) -> CollectionIndexes:
        """This collection's indexes, reloaded if another process moved the database on.

        While another thread of this process writes, its in-memory indexes are current by
        construction (it updates them right after each commit): readers use them as they are.
        """
        writer = self._writer_thread
        another_thread_writes = writer is not None and writer != threading.get_ident()
        with self._memory_lock:
            indexes = self._indexes.get(collection_id)
            if indexes is not None and another_thread_writes:
                return indexes
        generation = self._generation(collection_id)
        with self._memory_lock:
            indexes = self._indexes.get(collection_id)
            if indexes is not None and (indexes.generation == generation or another_thread_writes):
                return indexes
            directory = self._index_dir(collection_id)
            # NOTE: while another process writes, the database runs ahead of the files it
            # saves every SAVE_INTERVAL_S; reloading the same files for every search until
            # then would cost a whole index read per query.
            if (
                indexes is None
                or CollectionIndexes.saved_generation(directory) != indexes.generation
            ):
                indexes = CollectionIndexes.load(directory, self.config.vectors)
                self._indexes[collection_id] = indexes
        if indexes.generation != generation and reconcile:
            self._reconcile_if_possible(collection_id, indexes)
        return indexes

    def _reconcile_if_possible(self, collection_id: int, indexes: CollectionIndexes) -> None:
        if self.built_with not in (None, self.embedder.name):
            return  # cannot embed with another model; search and ingest will say so
        if self._writer_thread == threading.get_ident():
            self._reconcile(collection_id, indexes, None)
            self._save_dirty()
            return
        # Never wait for a writer: its hits are filtered by the database meanwhile.
        with self._writing(wait=False) as writing:
            if writing:
                self._reconcile(collection_id, indexes, None)
                self._save_dirty()

    def _reconcile(
        self, collection_id: int, indexes: CollectionIndexes, progress: Progress | None
    ) -> None:
        generation = self._generation(collection_id)
        database_ids = self._ready_chunk_ids(collection_id)

        def embed(texts: Sequence[str]) -> np.ndarray:
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                _report(progress, "embed", done, len(texts))

            return self.embedder.embed_documents(texts, progress=advance)

        with self._memory_lock:
            indexes.reconcile(database_ids, self._texts_of, embed)
            indexes.generation = generation
            indexes.embedder = self.embedder.name
            self._dirty.add(collection_id)

    def _texts_of(self, chunk_ids: Sequence[int]) -> tuple[list[str], list[str]]:
        rows = _chunk_rows(self.database, chunk_ids)
        texts = [rows[i]["text"] for i in chunk_ids]
        titles = [rows[i]["title"] for i in chunk_ids]
        return texts, [_embedding_input(t, x) for t, x in zip(titles, texts, strict=True)]

    def _save_dirty(self) -> None:
        with self._memory_lock:
            for collection_id in sorted(self._dirty):
                self._indexes[collection_id].save()
            self._dirty.clear()

    def _check_embedder(self) -> None:
        stored = self.database.get_setting("embedder")
        if stored is None:
            self.database.set_setting("embedder", self.embedder.name)
            self.database.set_setting("chunking", _chunking_json(self.chunking))
            self.built_with = self.embedder.name
        elif stored != self.embedder.name:
            raise EmbedderMismatchError(
                f"this index was built with the embedder {stored!r}, not {self.embedder.name!r}; "
                f"open it with {stored!r}, or re-embed everything with "
                f"`pagedrag reindex --embedder {self.embedder.name}` (Index.reindex())"
            )

    def _check_chunking(self, *, rechunking: bool) -> None:
        """Refuse chunks the embedder would cut short, and (unless re-chunking everything)
        a chunk size other than the one the index was built with."""
        size, readable = self.chunking.max_tokens, self.embedder.max_tokens
        if size is not None and size > readable:
            raise IndexerError(
                f"chunks of {size} tokens are longer than the embedder {self.embedder.name!r} "
                f"reads ({readable} tokens): the rest of every chunk would be ignored; "
                f"use a chunk size of at most {readable} tokens"
            )
        stored = _stored_chunking(self.database)
        if not rechunking and stored is not None and stored != self.chunking:
            raise IndexerError(
                f"this index was chunked with {_describe(stored)}, not {_describe(self.chunking)}; "
                "ingest with its setting (leave the chunk options out), or re-chunk everything "
                "with `pagedrag reindex --chunk-tokens N --chunk-overlap M` (Index.reindex())"
            )

    def _index_dir(self, collection_id: int) -> Path:
        return self.data_dir / "indexes" / str(collection_id)

    def _generation(self, collection_id: int) -> int:
        with self.database.session() as session:
            return session.get_one(Collection, collection_id).generation

    def _collection_ids(self) -> list[int]:
        with self.database.session() as session:
            return list(session.scalars(select(Collection.id).order_by(Collection.id)))

    def _collection_id(self, name: str | None, *, create: bool) -> int:
        name = DEFAULT_COLLECTION if name is None else name.strip()
        if not name or len(name) > 200:
            raise IndexerError("a collection name must have 1 to 200 characters")
        with self.database.session() as session:
            found = session.scalar(select(Collection.id).where(Collection.name == name))
            if found is not None:
                return found
            if not create:
                known = ", ".join(session.scalars(select(Collection.name))) or "none yet"
                raise IndexerError(f"no collection named {name!r} (collections: {known})")
            collection = Collection(name=name, generation=0)
            session.add(collection)
            session.flush()
            return collection.id

    def _ready_chunk_ids(self, collection_id: int) -> np.ndarray:
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


# -- helpers ------------------------------------------------------------------------------


def _report(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)


def _embedding_input(title: str, text: str) -> str:
    """Title + " " + text, as BEIR embeds its corpora: the title names the topic.

    Not when the chunk's first line is the title (an untitled text is titled by its first
    line, a Markdown file by its "# " heading): embedding it twice would double short
    texts and skew them to that line.
    """
    line = text.split("\n", 1)[0].strip()
    if not title or title in (line, line.lstrip("#").strip()):
        return text
    if len(title) == 200 and line.startswith(title):  # an untitled text's first line, cut
        return text
    return f"{title} {text}"


def _cosines(vectors: VectorIndex, chunk_ids: list[int], query: np.ndarray) -> dict[int, float]:
    """Similarity of stored vectors to the query; ids not (yet) in the index are left out."""
    try:
        scores = vectors.vectors(np.asarray(chunk_ids, dtype=np.int64)) @ query  # [len(ids)]
        return dict(zip(chunk_ids, scores.tolist(), strict=True))
    except RuntimeError:  # some id is missing: another process is still adding it
        pass
    out = {}
    for chunk_id in chunk_ids:
        try:
            out[chunk_id] = float(vectors.vectors(np.array([chunk_id]))[0] @ query)
        except RuntimeError:
            continue
    return out


def _chunking_json(chunking: ChunkingConfig) -> str:
    settings = {"max_tokens": chunking.max_tokens, "overlap_tokens": chunking.overlap_tokens}
    return json.dumps(settings)


def _stored_chunking(database: Database) -> ChunkingConfig | None:
    stored = database.get_setting("chunking")
    if stored is None:
        return None
    try:
        return ChunkingConfig(**json.loads(stored))
    except (TypeError, ValueError):
        return None  # unreadable: re-chunking with the configured setting repairs it


def _describe(chunking: ChunkingConfig) -> str:
    if chunking.max_tokens is None:
        return "one chunk per page or text"
    return f"{chunking.max_tokens}-token chunks overlapping by {chunking.overlap_tokens}"


def _regions(parsed: ParsedDocument) -> list[Region]:
    if parsed.pages:
        return [Region(p.start, p.end, p.number) for p in parsed.pages if p.end > p.start]
    return [Region(0, len(parsed.text))]


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


def _parsed_from_store(document: Document) -> ParsedDocument:
    pages = tuple(
        PageSpan(number, start, end)
        for number, (start, end) in enumerate(document.page_spans or [], 1)
    )
    return ParsedDocument(
        document.text or "", document.mime_type, document.title, pages, document.page_count
    )


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


def _bump(session: Session, collection_id: int) -> int:
    collection = session.get_one(Collection, collection_id)
    collection.generation += 1
    return collection.generation


def _find(session: Session, collection_id: int, sha: str) -> Document | None:
    return session.scalar(
        select(Document).where(Document.collection_id == collection_id, Document.sha256 == sha)
    )


def _chunk_rows(database: Database, chunk_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Chunk, document and collection fields by chunk id, for chunks of ready documents."""
    rows: dict[int, dict[str, Any]] = {}
    ids = [int(i) for i in chunk_ids]
    with database.session() as session:
        for start in range(0, len(ids), 10_000):
            query = (
                select(
                    Chunk.id,
                    Chunk.document_id,
                    Chunk.text,
                    Chunk.page,
                    Chunk.char_start,
                    Chunk.char_end,
                    Document.title,
                    Document.doc_metadata,
                    Collection.name,
                )
                .join(Document, Chunk.document_id == Document.id)
                .join(Collection, Document.collection_id == Collection.id)
                .where(Chunk.id.in_(ids[start : start + 10_000]))
                .where(Document.status == DocumentStatus.READY)
            )
            for row in session.execute(query):
                rows[row[0]] = {
                    "document_id": row[1],
                    "text": row[2],
                    "page": row[3],
                    "char_start": row[4],
                    "char_end": row[5],
                    "title": row[6],
                    "metadata": row[7],
                    "collection": row[8],
                }
    return rows


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


def _validated_text(position: int, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise IndexerError(f"document {position}: expected an object with a 'text' field")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise IndexerError(f"document {position}: 'text' must be a non-empty string")
    title = item.get("title")
    if title is not None and not isinstance(title, str):
        raise IndexerError(f"document {position}: 'title' must be a string")
    metadata = item.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise IndexerError(f"document {position}: 'metadata' must be an object")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError):
        raise IndexerError(f"document {position}: 'metadata' must be JSON-serialisable") from None
    return {
        "text": text,
        "title": (title or text.strip().split("\n", 1)[0])[:200],
        "metadata": metadata,
    }


def _check_storable(document_id: int) -> None:
    if not storable(document_id):
        raise DocumentNotFoundError(f"no document with id {document_id}")
