"""Reproduce a published BEIR figure through our own ingest and search path.

    python -m bench.retrieval_beir [DIR] [--embedder NAME] [--max-tokens 200] [--overlap 40]
                                   [--whole] [--data-dir PATH] [--k-chunks 300]

Every abstract goes in through `Index.ingest_texts` (title + text, the BEIR doc id as
metadata) and every test query through `Index.search`, so the figure checks our chunking,
embedding input, storage and fusion, not just the model. Chunk hits are collapsed to
documents (best rank kept); nDCG@10 and Recall@100 are computed as BEIR does. Published
all-MiniLM-L6-v2 on SciFact: nDCG@10 64.51, Recall@100 92.5 (BEIR/MTEB, whole abstract
up to 256 tokens, title + " " + text).

`--whole` chunks as BEIR embeds (`ChunkingConfig.whole()`): one chunk per abstract, which
the embedder truncates at its maximum length, so the pipeline sees what the published
setup sees. Without it the index's own chunking applies (200-token chunks by default).

`--data-dir` keeps the index between runs: if it was built with the same settings,
ingestion is skipped, so search settings can be iterated on quickly.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.beir import BeirDataset, load_beir
from bench.retrieval_metrics import (
    first_occurrences,
    machine,
    ndcg_at,
    percentile,
    recall_at,
    save_result,
)
from indexer import ChunkingConfig, Index, IndexConfig
from indexer.embedders import Embedder

DEFAULT_DIR = Path("/work/shared/data/beir-scifact")
MODES = ("dense", "bm25", "hybrid")
PUBLISHED = {"ndcg@10": 64.51, "recall@100": 92.5}  # all-MiniLM-L6-v2, SciFact test
SETTINGS_FILE = "bench-settings.json"


def build_index(args: argparse.Namespace, dataset: BeirDataset, data_dir: Path) -> dict:
    """Open (and if needed fill) the index; returns the ingestion figures."""
    settings = {
        "corpus": str(args.directory.resolve()),
        "embedder": args.embedder,
        "max_tokens": args.max_tokens,
        "overlap": args.overlap,
        "whole": args.whole,
    }
    marker = data_dir / SETTINGS_FILE
    if marker.exists():
        if json.loads(marker.read_text()) != settings:
            raise SystemExit(f"{data_dir} was built with other settings: {marker.read_text()}")
        return {"reused": True}
    index = open_index(args, data_dir)
    documents = [
        {"title": d.title, "text": d.text, "metadata": {"doc_id": d.doc_id}} for d in dataset.corpus
    ]
    start = time.perf_counter()
    index.ingest_texts(documents)
    seconds = time.perf_counter() - start
    chunks = sum(info.num_chunks for info in index.documents())
    index.close()
    marker.write_text(json.dumps(settings))
    return {"reused": False, "seconds": seconds, "documents": len(documents), "chunks": chunks}


def chunking_of(args: argparse.Namespace) -> ChunkingConfig:
    if args.whole:
        return ChunkingConfig.whole()
    return ChunkingConfig(max_tokens=args.max_tokens, overlap_tokens=args.overlap)


def describe(args: argparse.Namespace) -> str:
    if args.whole:
        return "one chunk per abstract, truncated by the embedder"
    return f"{args.max_tokens}-token chunks, {args.overlap} overlap"


def open_index(args: argparse.Namespace, data_dir: Path) -> Index:
    chunking = chunking_of(args)
    return Index(data_dir, args.embedder, config=IndexConfig(chunking=chunking))


def evaluate(index: Index, dataset: BeirDataset, mode: str, k_chunks: int) -> dict:
    """Mean nDCG@10 and Recall@100 over the queries, and the per-query search time."""
    ndcg, recall, seconds, distinct = [], [], [], []
    for query_id, text in dataset.queries.items():
        start = time.perf_counter()
        hits = index.search(text, k=k_chunks, mode=mode)
        seconds.append(time.perf_counter() - start)
        ranked = first_occurrences(hit.metadata["doc_id"] for hit in hits)
        distinct.append(len(ranked))
        ndcg.append(ndcg_at(ranked, dataset.qrels[query_id], 10))
        recall.append(recall_at(ranked, dataset.qrels[query_id], 100))
    return {
        "ndcg@10": 100 * float(np.mean(ndcg)),
        "recall@100": 100 * float(np.mean(recall)),
        "min_distinct_docs": min(distinct),
        "search_ms_p50": 1000 * percentile(seconds, 50),
        "search_ms_p99": 1000 * percentile(seconds, 99),
    }


def evaluate_model_only(embedder: Embedder, dataset: BeirDataset) -> dict:
    """The published setup, without our pipeline: one vector per abstract (title + " " +
    text, truncated by the model), exact search. Separates model from chunking effects."""
    documents = embedder.embed_documents([f"{d.title} {d.text}".strip() for d in dataset.corpus])
    doc_ids = [d.doc_id for d in dataset.corpus]
    queries = embedder.embed_queries(list(dataset.queries.values()))  # [queries, dim]
    top = np.argsort(-(queries @ documents.T), axis=1, kind="stable")[:, :100]
    ranked = [[doc_ids[i] for i in row] for row in top]
    pairs = list(zip(ranked, [dataset.qrels[q] for q in dataset.queries], strict=True))
    return {
        "ndcg@10": 100 * float(np.mean([ndcg_at(r, q, 10) for r, q in pairs])),
        "recall@100": 100 * float(np.mean([recall_at(r, q, 100) for r, q in pairs])),
        "search_ms_p50": float("nan"),
        "search_ms_p99": float("nan"),
    }


def markdown(results: dict[str, dict], setting: str) -> str:
    lines = [
        "| mode | chunking | nDCG@10 | Recall@100 | search p50 ms | search p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in results.items():
        chunking = "" if "model only" in mode else setting
        lines.append(
            f"| {mode} | {chunking} | {r['ndcg@10']:.2f} | {r['recall@100']:.1f} "
            f"| {r['search_ms_p50']:.1f} | {r['search_ms_p99']:.1f} |"
        )
    published = f"| published MiniLM dense | | {PUBLISHED['ndcg@10']} | {PUBLISHED['recall@100']} "
    lines.append(published + "| | |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--embedder", default="all-minilm-l6-v2")
    parser.add_argument("--max-tokens", type=int, default=ChunkingConfig.max_tokens)
    parser.add_argument("--overlap", type=int, default=ChunkingConfig.overlap_tokens)
    parser.add_argument(
        "--whole", action="store_true", help="one chunk per abstract, as BEIR embeds them"
    )
    parser.add_argument("--data-dir", type=Path, help="keep the index here and reuse it")
    parser.add_argument("--k-chunks", type=int, default=300, help="chunks asked for per query")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--model-only", action="store_true", help="also score whole abstracts embedded directly"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    dataset = load_beir(args.directory)
    with tempfile.TemporaryDirectory(prefix="beir-") as scratch:
        data_dir = args.data_dir or Path(scratch)
        started = machine()
        ingest = build_index(args, dataset, data_dir)
        with open_index(args, data_dir) as index:
            results = {m: evaluate(index, dataset, m, args.k_chunks) for m in args.modes.split(",")}
            if args.model_only:
                results["dense, model only"] = evaluate_model_only(index.embedder, dataset)
    print(markdown(results, describe(args)))
    print(f"\ningest: {ingest}")
    path = save_result(
        "retrieval_beir",
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "chunking": describe(args),
            "machine": started,
            "queries": len(dataset.queries),
            "documents": len(dataset.corpus),
            "ingest": ingest,
            "results": results,
            "published": PUBLISHED,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
