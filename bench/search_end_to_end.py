"""`Index.search` end to end (hybrid, dense, BM25) over 100k and 1M chunks.

    python -m bench.search_end_to_end [--sizes 100000,1000000] [--queries 300] [--passes 3]

Embedding a million chunks would take this CPU about ten hours, so the data directory is
filled directly, as `Index` would have left it: SQLite rows for documents (10 chunks
each) and chunks, synthetic chunk texts of 120 words drawn from SciFact's word
frequencies, random unit vectors for them (valid for latency only, never for recall),
and the FAISS and BM25 indexes built the way `Index` builds them (groups of 512) and
saved at the database's generation. Then a real `Index` opens it with the real default
embedder, and the 300 SciFact test queries are timed through `Index.search` (query
embedding, FAISS, BM25, fusion, reading the hits from SQLite, the relevance check), after
a few warm-up queries. Each pass times every query once per mode; figures are the median
(min–max) over passes, each with the load average at its start. The parts are timed
alone too: embedding the query, the FAISS search and the BM25 search at the depth
`Index.search` asks each retriever for (100).
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from bench.beir import load_beir
from bench.retrieval_beir import DEFAULT_DIR
from bench.retrieval_metrics import machine, percentile, save_result
from bench.search_latency import DIM, random_unit, synthetic_chunks
from indexer import Index
from indexer.collection_indexes import CollectionIndexes
from indexer.ingest import EMBED_GROUP_CHUNKS
from indexer.store import Chunk, Collection, Database, Document, DocumentStatus
from indexer.vector_index import VectorIndexConfig

MODES = ("hybrid", "dense", "bm25")
PARTS = ("embed query only", "FAISS only (k=100)", "BM25 only (k=100)")
CHUNKS_PER_DOCUMENT = 10
TEXT_BATCH = 20_000  # chunks generated, inserted and indexed together (bounds memory)


def fill(data_dir: Path, size: int) -> dict:
    """A data directory holding `size` ready chunks; returns the build times."""
    rng = np.random.default_rng(size)
    database = Database.sqlite_in(data_dir)
    database.set_setting("embedder", "all-minilm-l6-v2")
    database.set_setting("chunking", json.dumps({"max_tokens": 200, "overlap_tokens": 40}))
    with database.session() as session:
        session.add(Collection(id=1, name="default", generation=1))
    indexes = CollectionIndexes(data_dir / "indexes" / "1", VectorIndexConfig())
    times = {"texts_s": 0.0, "database_s": 0.0, "indexes_s": 0.0}
    for first in range(0, size, TEXT_BATCH):
        count = min(TEXT_BATCH, size - first)
        start = time.perf_counter()
        texts = synthetic_chunks(count, rng)
        vectors = random_unit(count, rng)
        times["texts_s"] += time.perf_counter() - start
        start = time.perf_counter()
        insert_rows(database, first, texts)
        times["database_s"] += time.perf_counter() - start
        start = time.perf_counter()
        for offset in range(0, count, EMBED_GROUP_CHUNKS):
            rows = slice(offset, offset + EMBED_GROUP_CHUNKS)
            ids = list(
                range(first + offset + 1, first + min(offset + EMBED_GROUP_CHUNKS, count) + 1)
            )
            indexes.add(ids, texts[rows], vectors[rows])
        times["indexes_s"] += time.perf_counter() - start
    start = time.perf_counter()
    indexes.generation, indexes.embedder = 1, "all-minilm-l6-v2"
    indexes.save()
    times["save_s"] = time.perf_counter() - start
    database.close()
    dense = indexes.vectors
    if dense is not None and dense.is_approximate:
        times["ivf_lists"], times["nprobe"] = dense._index.nlist, dense.nprobe or 0
    times["bm25_segments"] = len(indexes.keywords._segments)
    return times


def insert_rows(database: Database, first: int, texts: list[str]) -> None:
    """Chunk ids first+1 ..., documents of CHUNKS_PER_DOCUMENT chunks each, all ready."""
    documents, chunks = [], []
    for offset, text in enumerate(texts):
        chunk_id = first + offset + 1
        document_id = (chunk_id - 1) // CHUNKS_PER_DOCUMENT + 1
        if (chunk_id - 1) % CHUNKS_PER_DOCUMENT == 0:
            documents.append(
                {
                    "id": document_id,
                    "collection_id": 1,
                    "title": f"Synthetic document {document_id}",
                    "source_name": f"synthetic-{document_id}.txt",
                    "mime_type": "text/plain",
                    "sha256": f"{document_id:064x}",
                    "size_bytes": 0,
                    "status": DocumentStatus.READY,
                    "doc_metadata": {},
                    "num_chunks": CHUNKS_PER_DOCUMENT,
                }
            )
        ordinal = (chunk_id - 1) % CHUNKS_PER_DOCUMENT
        chunks.append(
            {
                "id": chunk_id,
                "document_id": document_id,
                "ordinal": ordinal,
                "text": text,
                "page": None,
                "char_start": 0,
                "char_end": len(text),
                "token_count": 150,
            }
        )
    with database.session() as session:
        if documents:
            session.execute(insert(Document), documents)
        session.execute(insert(Chunk), chunks)


def time_searches(index: Index, queries: list[str], passes: int) -> dict:
    for query in queries[:5]:  # warm-up: model, caches, pages of the database
        for mode in MODES:
            index.search(query, k=10, mode=mode)
    indexes = index.live.get(1)
    dense = indexes.vectors
    if dense is None:
        raise RuntimeError("bug: the filled index has no vectors")
    vectors = index.embedder.embed_queries(queries)  # [queries, dim]
    parts = {
        "embed query only": lambda i: index.embedder.embed_queries([queries[i]]),
        "FAISS only (k=100)": lambda i: dense.search(vectors[i], 100),
        "BM25 only (k=100)": lambda i: indexes.keywords.search(queries[i], 100),
    }
    result: dict = {}
    for mode in (*MODES, *PARTS):
        result[mode] = []
        for _ in range(passes):
            load = os.getloadavg()[0]
            times = []
            for i, query in enumerate(queries):
                start = time.perf_counter()
                if mode in parts:
                    parts[mode](i)
                else:
                    index.search(query, k=10, mode=mode)
                times.append(1000 * (time.perf_counter() - start))
            result[mode].append(
                {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "load": load}
            )
    return result


def median_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def markdown(results: dict[int, dict]) -> str:
    lines = ["| chunks | mode (k=10) | p50 ms | p99 ms |", "|---|---|---|---|"]
    for size, result in results.items():
        for mode, passes in result["searches"].items():
            p50 = median_spread([p["p50_ms"] for p in passes])
            p99 = median_spread([p["p99_ms"] for p in passes])
            lines.append(f"| {size:,} | {mode} | {p50} | {p99} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--passes", type=int, default=3)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = machine()
    queries = list(load_beir(DEFAULT_DIR).queries.values())[: args.queries]
    results: dict[int, dict] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="search-e2e-") as scratch:
            data_dir = Path(scratch)
            start = time.perf_counter()
            build = fill(data_dir, size)
            build["total_s"] = time.perf_counter() - start
            start = time.perf_counter()
            with Index(data_dir) as index:
                build["open_s"] = time.perf_counter() - start
                results[size] = {
                    "build": build,
                    "searches": time_searches(index, queries, args.passes),
                }
        print(f"{size:,} chunks: {build}", flush=True)
    print(markdown(results))
    result = {"machine": started, "args": vars(args), "dim": DIM, "results": results}
    print(f"saved {save_result('search_end_to_end', result)}")


if __name__ == "__main__":
    main()
