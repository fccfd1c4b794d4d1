"""`Searcher`: a query in, the best chunks out, each marked relevant or not.

Hybrid search fuses the dense (FAISS) and keyword (BM25) rankings with reciprocal rank
fusion; `relevant` is always read on the dense scale (cosine similarity against the
embedder's threshold), whichever ranking put the chunk there. Hits are read back from
the database, so a chunk whose document was deleted or is still pending never comes out,
even while the in-memory indexes lag behind another process's writes.
"""

from collections.abc import Sequence

import numpy as np

from indexer.build_settings import BuildSettings
from indexer.catalog import Catalog, ChunkRow
from indexer.collection_indexes import CollectionIndexes
from indexer.errors import IndexerError
from indexer.records import SearchHit
from indexer.retrieval import fuse, rank_by_score
from indexer.sync import LiveIndexes
from indexer.vector_index import VectorIndex

SEARCH_MODES = ("hybrid", "dense", "bm25")
MAX_K = 1000


class Searcher:
    def __init__(
        self, catalog: Catalog, live: LiveIndexes, settings: BuildSettings, candidates: int
    ) -> None:
        self.catalog = catalog
        self.live = live
        self.settings = settings
        self.candidates = candidates  # fetched from each retriever before fusion

    def search(
        self,
        query: str,
        k: int,
        mode: str,
        collection: str | None,
        document_ids: Sequence[int] | None,
        threshold: float,
        tenant: str,
    ) -> list[SearchHit]:
        """The k best chunks of the tenant's collections (or one of them), best first;
        `relevant` when the cosine reaches `threshold`."""
        _check_query(query, k, mode)
        if mode != "bm25":
            self.settings.check_embedder()
        scope = (
            self.catalog.collection_ids(tenant=tenant)
            if collection is None
            else [self.catalog.collection_id(collection, tenant)]
        )
        allowed = self.catalog.chunk_ids_of(document_ids) if document_ids is not None else None
        # NOTE: BM25 mode embeds the query too, for the relevance check alone: BM25 scores
        # have no scale on which "nothing relevant" could be read. It cannot when another
        # embedder built the index; its hits are then never `relevant`.
        embedder = self.settings.embedder
        can_embed = mode != "bm25" or self.settings.built_with == embedder.name
        query_vector = embedder.embed_queries([query])[0] if can_embed else None
        depth = max(self.candidates, k)
        dense: list[tuple[float, int]] = []
        keyword: list[tuple[float, int]] = []
        owner: dict[int, CollectionIndexes] = {}
        for collection_id in scope:
            indexes = self.live.get(collection_id)
            found: list[int] = []
            with self.live.lock:
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
        hits = self._hydrate(ranked, k)
        similarity = dict((i, s) for s, i in dense)
        if query_vector is not None:
            missing = [row.chunk_id for _, row in hits if row.chunk_id not in similarity]
            similarity.update(self._similarities(missing, owner, query_vector))
        keyword_scores = dict((i, s) for s, i in keyword)
        return [
            _hit(
                row,
                score,
                similarity.get(row.chunk_id),
                keyword_scores.get(row.chunk_id),
                threshold,
            )
            for score, row in hits
        ]

    def _hydrate(self, ranked: list[tuple[float, int]], k: int) -> list[tuple[float, ChunkRow]]:
        """Rows for the best ranked chunks that still belong to ready documents."""
        rows = self.catalog.chunk_rows([chunk_id for _, chunk_id in ranked[: k * 2 + 10]])
        return [(score, rows[chunk_id]) for score, chunk_id in ranked if chunk_id in rows][:k]

    def _similarities(
        self, chunk_ids: list[int], owner: dict[int, CollectionIndexes], query: np.ndarray
    ) -> dict[int, float]:
        """Cosine similarity to the query of chunks the dense search did not return."""
        groups: dict[int, tuple[CollectionIndexes, list[int]]] = {}
        for chunk_id in chunk_ids:
            groups.setdefault(id(owner[chunk_id]), (owner[chunk_id], []))[1].append(chunk_id)
        out: dict[int, float] = {}
        with self.live.lock:
            for indexes, ids in groups.values():
                if indexes.vectors is not None:
                    out.update(_cosines(indexes.vectors, ids, query))
        return out


def _check_query(query: object, k: int, mode: str) -> None:
    if not isinstance(query, str) or not query.strip():
        raise IndexerError("the query is empty")
    if mode not in SEARCH_MODES:
        raise IndexerError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
    if not 1 <= k <= MAX_K:
        raise IndexerError(f"k must be between 1 and {MAX_K}, got {k}")


def _hit(
    row: ChunkRow, score: float, dense: float | None, bm25: float | None, threshold: float
) -> SearchHit:
    return SearchHit(
        chunk_id=row.chunk_id,
        document_id=row.document_id,
        title=row.title,
        page=row.page,
        text=row.text,
        score=score,
        metadata=row.metadata,
        collection=row.collection,
        char_start=row.char_start,
        char_end=row.char_end,
        dense_score=dense,
        bm25_score=bm25,
        relevant=(dense if dense is not None else -1.0) >= threshold,
    )


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
