"""The optional second stage: retrieve many, keep the best.

`NoReranker` (the default) keeps the retriever's order. `CrossEncoderReranker` scores each
(query, passage) pair with a sentence-transformers cross-encoder from a folder the user
supplies; none is packaged, since nothing may be downloaded at run time.
"""

from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any

from indexer.errors import IndexerError
from indexer.records import SearchHit


class Reranker(ABC):
    @abstractmethod
    def rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]:
        """The k best of `hits` for `query`, best first."""


class NoReranker(Reranker):
    def rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]:
        return hits[:k]


class CrossEncoderReranker(Reranker):
    """Each hit's `score` becomes the cross-encoder's; dense and BM25 scores are kept."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 16) -> None:
        folder = Path(model_dir).expanduser()
        if not (folder / "config.json").is_file():
            raise IndexerError(
                f"{folder}: not a cross-encoder model folder (no config.json); "
                "give the folder of a sentence-transformers CrossEncoder"
            )
        self.folder = folder
        self.batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import CrossEncoder

            try:
                self._model = CrossEncoder(str(self.folder), local_files_only=True)
            except (OSError, ValueError) as error:
                raise IndexerError(
                    f"{self.folder}: cannot load the cross-encoder: {error}"
                ) from None
        return self._model

    def rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]:
        if not hits:
            return []
        scores = self._load().predict(
            [(query, hit.text) for hit in hits], batch_size=self.batch_size, show_progress_bar=False
        )
        rescored = [replace(hit, score=float(s)) for hit, s in zip(hits, scores, strict=True)]
        return sorted(rescored, key=lambda hit: -hit.score)[:k]
