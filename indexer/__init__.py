"""PagedRAG's indexer: parse, chunk, embed and store documents; search them back.

from indexer import Index
index = Index("~/my-index")
index.ingest(["report.pdf", "notes/"])
hits = index.search("what did the report conclude?", k=5)
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from indexer.chunking import ChunkingConfig
    from indexer.index import Index, IndexConfig
    from indexer.records import DocumentInfo, IngestReport, SearchHit
    from indexer.rerank import CrossEncoderReranker, NoReranker, Reranker

# NOTE: imported on first use, so that the CLI's fast commands do not pay for torch.
_EXPORTS = {
    "ChunkingConfig": "indexer.chunking",
    "CrossEncoderReranker": "indexer.rerank",
    "DocumentInfo": "indexer.records",
    "Index": "indexer.index",
    "IndexConfig": "indexer.index",
    "IngestReport": "indexer.records",
    "NoReranker": "indexer.rerank",
    "Reranker": "indexer.rerank",
    "SearchHit": "indexer.records",
}


__getattr__ = lazy_exports("indexer", _EXPORTS)


__all__ = [
    "ChunkingConfig",
    "CrossEncoderReranker",
    "DocumentInfo",
    "Index",
    "IndexConfig",
    "IngestReport",
    "NoReranker",
    "Reranker",
    "SearchHit",
]
