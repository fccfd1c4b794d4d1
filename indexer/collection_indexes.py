"""The dense and keyword indexes of one collection, and keeping them equal to the database.

Both are caches of the database: on disk they carry the library and the collection
`generation` they were saved at (`state.json`, written last). If the generation differs
from the database's, something happened in between (a crash, another process, another
server), and `reconcile` compares chunk ids to remove what the database no longer has
and add what it has that they lack, with the vectors the database keeps. Files of
another library (the data directory pointed at another database) are not compared but
dropped: chunk ids mean nothing across libraries. A file that cannot be read (damaged or
truncated on disk) is treated as missing, with a warning: the generation becomes
unknown, so `reconcile` rebuilds that index from the database.
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

# Texts and vectors of chunk ids, read from the database; ids it no longer has are left out.
LoadTexts = Callable[[Sequence[int]], dict[int, str]]
LoadVectors = Callable[[Sequence[int]], tuple[list[int], np.ndarray]]
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
    library: str | None = None  # the database's library id; None: saved before there were

    @property
    def _vector_path(self) -> Path:
        return self.directory / "dense.faiss"

    @classmethod
    def load(
        cls, directory: Path, config: VectorIndexConfig, library: str, *, trust_unmarked: bool
    ) -> "CollectionIndexes":
        """What is on disk for `library`; a part that cannot be read is left empty, to be
        rebuilt. Files saved before libraries had ids are taken only if `trust_unmarked`."""
        indexes = cls(directory, config, library=library)
        state_path = directory / "state.json"
        damaged = False
        try:
            if state_path.exists():
                state = json.loads(state_path.read_text())
                indexes.generation, indexes.embedder = state["generation"], state["embedder"]
                saved_library = state.get("library")
                if saved_library != library and (saved_library or not trust_unmarked):
                    logger.info("%s holds another library's indexes; rebuilding", directory)
                    return cls(directory, config, library=library)
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
        state = {"generation": self.generation, "embedder": self.embedder, "library": self.library}
        data = json.dumps(state).encode()
        write_atomically(self.directory / "state.json", lambda file: file.write(data))

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
        self, database_ids: np.ndarray, load_texts: LoadTexts, load_vectors: LoadVectors
    ) -> int:
        """Make both indexes hold exactly `database_ids`; returns how many ids changed."""
        vector_ids = self.vectors.ids() if self.vectors is not None else np.empty(0, np.int64)
        keyword_ids = self.keywords.ids()
        stale_vectors = np.setdiff1d(vector_ids, database_ids)
        stale_keywords = np.setdiff1d(keyword_ids, database_ids)
        missing_vectors = np.setdiff1d(database_ids, vector_ids).tolist()
        missing_keywords = np.setdiff1d(database_ids, keyword_ids).tolist()
        if self.vectors is not None and len(stale_vectors):
            self.vectors.remove(stale_vectors)
        if missing_vectors:
            found, vectors = load_vectors(missing_vectors)  # [len(found), dim]
            if found:
                if self.vectors is None:
                    self.vectors = VectorIndex(vectors.shape[1], self.config)
                self.vectors.add(np.asarray(found, dtype=np.int64), vectors)
        self.keywords.remove(stale_keywords.tolist())
        if missing_keywords:
            texts = load_texts(missing_keywords)
            self.keywords.add(list(texts), list(texts.values()))
        changed = len(stale_vectors) + len(stale_keywords)
        return changed + len(missing_vectors) + len(missing_keywords)


def _warn(path: Path, error: Exception) -> bool:
    logger.warning("%s cannot be read (%s); rebuilding it from the database", path, error)
    return True
