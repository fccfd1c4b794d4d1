"""The RAG pipeline: one question -> retrieve -> build prompt -> generate -> answer + citations.

from rag import RAG
rag = RAG()
rag.ingest(["report.pdf"])
print(rag.ask("What did the report conclude?").answer)
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from rag.answer import Answer, Citation, CitationsEvent, DoneEvent, TokenEvent, Usage
    from rag.pipeline import RAG, RAGConfig

# NOTE: imported on first use, so that importing `rag` does not pay for torch.
_EXPORTS = {
    "Answer": "rag.answer",
    "Citation": "rag.answer",
    "CitationsEvent": "rag.answer",
    "DoneEvent": "rag.answer",
    "TokenEvent": "rag.answer",
    "Usage": "rag.answer",
    "RAG": "rag.pipeline",
    "RAGConfig": "rag.pipeline",
}


__getattr__ = lazy_exports("rag", _EXPORTS)


__all__ = [
    "RAG",
    "Answer",
    "Citation",
    "CitationsEvent",
    "DoneEvent",
    "RAGConfig",
    "TokenEvent",
    "Usage",
]
