"""Search latency of the vector and BM25 indexes at 100k and 1M chunks.

    python -m bench.search_latency [--sizes 100000,1000000] [--queries 300] [--rounds 3]

Latency does not depend on what the vectors mean, so random unit 384-d vectors stand in
for embeddings (never use them for recall). Each size is built twice through
`VectorIndex.add` in groups of 512, as `Index` adds them: once kept exact (flat), once with
the default config, which turns into an IVF index when it passes `approximate_after`
(trained on the vectors it holds at that moment). Single-query searches are timed at
k=10 and at k=100 (the depth `Index.search` asks each retriever for).

At every size the IVF's list count and its recall@10 against the exact index on the
same random data are reported, as a sanity check of `nprobe` only: random points have
no clusters, so this is a pessimistic bound, not a retrieval-quality figure.

BM25: synthetic chunks of 120 words drawn from SciFact's word frequencies, searched
with the 300 real SciFact test queries.
"""

import argparse
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from functools import cache

import numpy as np

from bench.beir import load_beir
from bench.retrieval_beir import DEFAULT_DIR
from bench.retrieval_metrics import machine, percentile, save_result
from indexer.ingest import EMBED_GROUP_CHUNKS
from indexer.keyword_index import KeywordIndex
from indexer.vector_index import VectorIndex, VectorIndexConfig

DIM = 384
KS = (10, 100)
WORDS_PER_CHUNK = 120
EXACT = VectorIndexConfig(approximate_after=10**12)


def random_unit(count: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM), dtype=np.float32)  # [count, DIM]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build(vectors: np.ndarray, config: VectorIndexConfig) -> tuple[VectorIndex, float]:
    index = VectorIndex(DIM, config)
    start = time.perf_counter()
    for first in range(0, len(vectors), EMBED_GROUP_CHUNKS):
        rows = np.arange(first, min(first + EMBED_GROUP_CHUNKS, len(vectors)))
        index.add(rows, vectors[rows])
    return index, time.perf_counter() - start


def latencies_ms(search: Callable[[int], object], count: int) -> dict[str, float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        search(i)
        times.append(1000 * (time.perf_counter() - start))
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}


def ivf_recall(exact: VectorIndex, ivf: VectorIndex, queries: np.ndarray) -> float:
    found = 0
    for query in queries:
        truth = set(exact.search(query, 10)[1].tolist())
        found += len(truth.intersection(ivf.search(query, 10)[1].tolist()))
    return 100 * found / (10 * len(queries))


def vector_round(size: int, queries: np.ndarray) -> dict:
    vectors = random_unit(size, np.random.default_rng(size))
    result: dict = {"load_average_1m": os.getloadavg()[0]}
    built = {}
    for name, config in (("exact", EXACT), ("ivf", VectorIndexConfig())):
        index, seconds = build(vectors, config)
        built[name] = index
        result[name] = {
            "build_s": seconds,
            "approximate": index.is_approximate,
            "lists": index._index.nlist if index.is_approximate else None,
        }
        for k in KS:
            result[name][f"k{k}"] = latencies_ms(
                lambda i, x=index, k=k: x.search(queries[i], k), len(queries)
            )
    result["ivf_recall@10_random_data"] = ivf_recall(built["exact"], built["ivf"], queries)
    return result


@cache
def scifact_vocabulary() -> tuple[np.ndarray, np.ndarray]:
    """SciFact's words and their frequencies (a Zipf-like vocabulary)."""
    counts = Counter(
        word
        for document in load_beir(DEFAULT_DIR).corpus
        for word in re.findall(r"[a-z]+", document.text.lower())
    )
    weights = np.array(list(counts.values()), dtype=np.float64)
    return np.array(list(counts)), weights / weights.sum()


def synthetic_chunks(count: int, rng: np.random.Generator) -> list[str]:
    """Chunks of words drawn with SciFact's word frequencies."""
    words, p = scifact_vocabulary()
    drawn = rng.choice(words, size=(count, WORDS_PER_CHUNK), p=p)
    return [" ".join(row) for row in drawn]


def bm25_round(texts: list[str], queries: list[str]) -> dict:
    index = KeywordIndex()
    load = os.getloadavg()[0]
    start = time.perf_counter()
    for first in range(0, len(texts), EMBED_GROUP_CHUNKS):
        ids = list(range(first, min(first + EMBED_GROUP_CHUNKS, len(texts))))
        index.add(ids, texts[first : first + EMBED_GROUP_CHUNKS])
    build_s = time.perf_counter() - start
    result: dict = {"load_average_1m": load, "build_s": build_s}
    for k in KS:
        result[f"k{k}"] = latencies_ms(lambda i, k=k: index.search(queries[i], k), len(queries))
    return result


def median_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def markdown(vector: dict[int, list[dict]], bm25: list[dict], bm25_size: int) -> str:
    lines = [
        "| index | chunks | build s | k=10 p50 ms | k=10 p99 ms | k=100 p50 ms | k=100 p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [
        (f"vector {name}", size, [r[name] for r in rounds])
        for size, rounds in vector.items()
        for name in ("exact", "ivf")
    ]
    if bm25:
        rows.append(("BM25", bm25_size, bm25))
    for name, size, rounds in rows:
        cells = [median_spread([r["build_s"] for r in rounds])]
        cells += [
            median_spread([r[f"k{k}"][p] for r in rounds]) for k in KS for p in ("p50_ms", "p99_ms")
        ]
        lines.append(f"| {name} | {size:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="vector index sizes")
    parser.add_argument("--bm25-size", type=int, default=100_000, help="0 to skip BM25")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = machine()
    sizes = [int(s) for s in args.sizes.split(",")]
    queries = random_unit(args.queries, np.random.default_rng(1))
    vector = {size: [vector_round(size, queries) for _ in range(args.rounds)] for size in sizes}
    texts = synthetic_chunks(args.bm25_size, np.random.default_rng(2)) if args.bm25_size else []
    real_queries = list(load_beir(DEFAULT_DIR).queries.values())[: args.queries]
    bm25 = [bm25_round(texts, real_queries) for _ in range(args.rounds)] if texts else []
    print(markdown(vector, bm25, args.bm25_size))
    print()
    for size, rounds in vector.items():
        lists = sorted({r["ivf"]["lists"] for r in rounds}, key=str)
        recall = [r["ivf_recall@10_random_data"] for r in rounds]
        print(
            f"IVF at {size:,} random vectors: lists {lists}, recall@10 vs exact "
            f"(nprobe sanity check only) {median_spread(recall)}"
        )
    result = {"machine": started, "args": vars(args), "vector": vector, "bm25": bm25}
    print(f"saved {save_result('search_latency', result)}")


if __name__ == "__main__":
    main()
