"""IVF recall@10 against exact search on real embeddings (SciFact's chunk vectors).

    python -m bench.ivf_recall [--data-dir /tmp/beir-200] [BEIR_DIR]

Reads the exact vector index that `bench.retrieval_beir --data-dir` left (11,667 chunk
vectors of all-MiniLM-L6-v2 with the default chunking), embeds the 300 SciFact test
queries, and rebuilds the vectors through `VectorIndex.add` in groups of 512, as `Index`
does, with `approximate_after` lowered to 1,000 so that the index passes the switch and
retrains as it grows. Recall@10 and recall@100 (the depth `Index.search` asks for) are
the share of the exact top-k found, for several shares of the lists probed.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from bench.beir import load_beir
from bench.retrieval_beir import DEFAULT_DIR
from bench.retrieval_metrics import machine, save_result
from indexer.embedders import load_embedder
from indexer.ingest import EMBED_GROUP_CHUNKS
from indexer.vector_index import VectorIndex, VectorIndexConfig

FRACTIONS = (1 / 128, 1 / 64, 1 / 32, 0.05, 0.1, 0.2)


def rebuild_approximate(exact: VectorIndex) -> VectorIndex:
    ids = np.sort(exact.ids())
    vectors = exact.vectors(ids)
    index = VectorIndex(exact.dim, VectorIndexConfig(approximate_after=1_000))
    for first in range(0, len(ids), EMBED_GROUP_CHUNKS):
        rows = slice(first, first + EMBED_GROUP_CHUNKS)
        index.add(ids[rows], vectors[rows])
    return index


def recall(exact: VectorIndex, ivf: VectorIndex, queries: np.ndarray, k: int) -> float:
    found = 0
    for query in queries:
        truth = set(exact.search(query, k)[1].tolist())
        found += len(truth.intersection(ivf.search(query, k)[1].tolist()))
    return 100 * found / (k * len(queries))


def measure(
    exact: VectorIndex, ivf: VectorIndex, queries: np.ndarray, config: VectorIndexConfig
) -> dict:
    ivf.config = config
    start = time.perf_counter()
    for query in queries:
        ivf.search(query, 10)
    seconds = (time.perf_counter() - start) / len(queries)
    return {
        "probe_fraction": config.probe_fraction,
        "min_probes": config.min_probes,
        "nprobe": ivf.nprobe,
        "recall@10": recall(exact, ivf, queries, 10),
        "recall@100": recall(exact, ivf, queries, 100),
        "search_ms": 1000 * seconds,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/beir-200"))
    parser.add_argument("--embedder", default="all-minilm-l6-v2")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = machine()
    exact = VectorIndex.load(next(args.data_dir.glob("indexes/*/dense.faiss")), VectorIndexConfig())
    texts = list(load_beir(args.directory).queries.values())
    queries = load_embedder(args.embedder).embed_queries(texts)  # [queries, dim]
    ivf = rebuild_approximate(exact)
    lists = ivf._index.nlist
    rows = [
        measure(exact, ivf, queries, VectorIndexConfig(probe_fraction=f, min_probes=1))
        for f in FRACTIONS
    ]
    rows.append(measure(exact, ivf, queries, VectorIndexConfig()))  # the default
    print(f"{len(exact):,} vectors, {lists} lists, {len(queries)} queries")
    print("| probe fraction | min probes | nprobe | recall@10 | recall@100 | ms/query |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['probe_fraction']:.4g} | {r['min_probes']} | {r['nprobe']} | "
            f"{r['recall@10']:.1f} | {r['recall@100']:.1f} | {r['search_ms']:.2f} |"
        )
    result = {"machine": started, "vectors": len(exact), "lists": lists, "rows": rows}
    print(f"saved {save_result('ivf_recall', result)}")


if __name__ == "__main__":
    main()
