"""The dense and keyword indexes of one collection, and keeping them equal to the database.

Both are caches of the database: on disk they carry the collection `generation` they were
saved at (`state.json`, written last). If that differs from the database's, something
happened in between (a crash, another process), and `reconcile` compares chunk ids to
remove what the database no longer has and add what it has that they lack.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.atomic import write_atomically
from indexer.keyword_index import KeywordIndex
from indexer.vector_index import VectorIndex, VectorIndexConfig

EmbedTexts = Callable[[Sequence[str]], np.ndarray]


@dataclass
class CollectionIndexes:
    directory: Path
    config: VectorIndexConfig
    vectors: VectorIndex | None = None  # created on the first add: its size is the embedder's
    keywords: KeywordIndex = field(default_factory=KeywordIndex)
    generation: int = -1  # the database generation these indexes match; -1: unknown
    embedder: str | None = None

    @property
    def _vector_path(self) -> Path:
        return self.directory / "dense.faiss"

    @classmethod
    def load(cls, directory: Path, config: VectorIndexConfig) -> "CollectionIndexes":
        indexes = cls(directory, config)
        state_path = directory / "state.json"
        if state_path.exists():
            state = json.loads(state_path.read_text())
            indexes.generation, indexes.embedder = state["generation"], state["embedder"]
        if indexes._vector_path.exists():
            indexes.vectors = VectorIndex.load(indexes._vector_path, config)
        indexes.keywords = KeywordIndex.load(directory / "keywords")
        return indexes

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.vectors is not None:
            self.vectors.save(self._vector_path)
        self.keywords.save(self.directory / "keywords")
        state = json.dumps({"generation": self.generation, "embedder": self.embedder}).encode()
        write_atomically(self.directory / "state.json", lambda file: file.write(state))

    def add(self, ids: Sequence[int], texts: Sequence[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        if self.vectors is None:
            self.vectors = VectorIndex(vectors.shape[1], self.config)
        self.vectors.add(np.asarray(ids, dtype=np.int64), vectors)
        self.keywords.add(ids, texts)

    def remove(self, ids: Sequence[int]) -> None:
        if self.vectors is not None:
            self.vectors.remove(np.asarray(ids, dtype=np.int64))
        self.keywords.remove(ids)

    def reconcile(
        self,
        database_ids: np.ndarray,
        load_texts: Callable[[Sequence[int]], tuple[list[str], list[str]]],
        embed: EmbedTexts,
    ) -> int:
        """Make both indexes hold exactly `database_ids`; returns how many ids changed.

        `load_texts(ids)` gives (texts to index, texts to embed) for chunk ids.
        """
        changed = 0
        vector_ids = self.vectors.ids() if self.vectors is not None else np.empty(0, np.int64)
        stale = np.setdiff1d(vector_ids, database_ids)
        missing = np.setdiff1d(database_ids, vector_ids).tolist()
        if self.vectors is not None and len(stale):
            self.vectors.remove(stale)
        if missing:
            _, to_embed = load_texts(missing)
            vectors = embed(to_embed)
            if self.vectors is None:
                self.vectors = VectorIndex(vectors.shape[1], self.config)
            self.vectors.add(np.asarray(missing, dtype=np.int64), vectors)
        changed += len(stale) + len(missing)
        keyword_ids = self.keywords.ids()
        stale = np.setdiff1d(keyword_ids, database_ids)
        missing = np.setdiff1d(database_ids, keyword_ids).tolist()
        self.keywords.remove(stale.tolist())
        if missing:
            self.keywords.add(missing, load_texts(missing)[0])
        return changed + len(stale) + len(missing)
