"""The dense and keyword indexes of one collection, and keeping them equal to the database.

Both are caches of the database: on disk they carry the collection `generation` they were
saved at (`state.json`, written last). If that differs from the database's, something
happened in between (a crash, another process), and `reconcile` compares chunk ids to
remove what the database no longer has and add what it has that they lack. A file that
cannot be read (damaged or truncated on disk) is treated as missing, with a warning: the
generation becomes unknown, so `reconcile` rebuilds that index from the database.
"""

import json
import logging
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.atomic import write_atomically
from indexer.keyword_index import KeywordIndex
from indexer.vector_index import VectorIndex, VectorIndexConfig

EmbedTexts = Callable[[Sequence[str]], np.ndarray]
logger = logging.getLogger(__name__)
# What FAISS, NumPy and json raise on a damaged or truncated file.
_UNREADABLE = (RuntimeError, ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile)


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
        """What is on disk; a part that cannot be read is left empty, to be rebuilt."""
        indexes = cls(directory, config)
        state_path = directory / "state.json"
        damaged = False
        try:
            if state_path.exists():
                state = json.loads(state_path.read_text())
                indexes.generation, indexes.embedder = state["generation"], state["embedder"]
        except (*_UNREADABLE, TypeError) as error:
            damaged = _warn(state_path, error)
        try:
            if indexes._vector_path.exists():
                indexes.vectors = VectorIndex.load(indexes._vector_path, config)
        except _UNREADABLE as error:
            damaged = _warn(indexes._vector_path, error)
        try:
            indexes.keywords = KeywordIndex.load(directory / "keywords")
        except _UNREADABLE as error:
            damaged = _warn(directory / "keywords", error)
        if damaged:
            indexes.generation = -1  # unknown: the next reconcile compares every chunk id
        return indexes

    @staticmethod
    def saved_generation(directory: Path) -> int | None:
        """The generation the files in `directory` were saved at; None if unknown."""
        try:
            return int(json.loads((directory / "state.json").read_text())["generation"])
        except (*_UNREADABLE, TypeError):
            return None

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
        vector_ids = self.vectors.ids() if self.vectors is not None else np.empty(0, np.int64)
        keyword_ids = self.keywords.ids()
        stale_vectors = np.setdiff1d(vector_ids, database_ids)
        stale_keywords = np.setdiff1d(keyword_ids, database_ids)
        missing_vectors = np.setdiff1d(database_ids, vector_ids).tolist()
        missing_keywords = np.setdiff1d(database_ids, keyword_ids).tolist()
        # One read of the texts both indexes lack.
        wanted = sorted(set(missing_vectors) | set(missing_keywords))
        to_index, to_embed = load_texts(wanted) if wanted else ([], [])
        row = {chunk_id: position for position, chunk_id in enumerate(wanted)}
        if self.vectors is not None and len(stale_vectors):
            self.vectors.remove(stale_vectors)
        if missing_vectors:
            vectors = embed([to_embed[row[i]] for i in missing_vectors])
            if self.vectors is None:
                self.vectors = VectorIndex(vectors.shape[1], self.config)
            self.vectors.add(np.asarray(missing_vectors, dtype=np.int64), vectors)
        self.keywords.remove(stale_keywords.tolist())
        if missing_keywords:
            self.keywords.add(missing_keywords, [to_index[row[i]] for i in missing_keywords])
        changed = len(stale_vectors) + len(stale_keywords)
        return changed + len(missing_vectors) + len(missing_keywords)


def _warn(path: Path, error: Exception) -> bool:
    logger.warning("%s cannot be read (%s); rebuilding it from the database", path, error)
    return True
