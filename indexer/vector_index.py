"""FAISS over normalised embeddings, keyed by chunk id.

Exact inner-product search (`IndexFlatIP` inside `IndexIDMap2`) while a collection is small;
past `approximate_after` vectors it switches to an inverted-file index (`IndexIVFFlat`,
trained on the vectors it holds) that keeps chunk ids itself and supports removal and
reconstruction through its hash-table direct map. HNSW would be faster to build but cannot
remove vectors, and documents get deleted.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.atomic import write_atomically

# Below this many allowed ids, a filtered search on the approximate index is done exactly.
EXACT_FILTER_LIMIT = 20_000


@dataclass(frozen=True)
class VectorIndexConfig:
    approximate_after: int = 50_000  # vectors; below this every search is exact
    nprobe: int = 32  # inverted lists visited per query once approximate


class VectorIndex:
    def __init__(self, dim: int, config: VectorIndexConfig = VectorIndexConfig()) -> None:
        self.dim = dim
        self.config = config
        # Any: faiss's type stubs miss most of what is used here.
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def is_approximate(self) -> bool:
        return not isinstance(self._index, faiss.IndexIDMap2)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        if not self.is_approximate:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        lists = self._index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(lists.nlist)
            if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self._index.add_with_ids(_as_vectors(vectors, self.dim), np.asarray(ids, np.int64))
        if not self.is_approximate:
            if len(self) > self.config.approximate_after:
                self._build_approximate()
        elif _list_count(len(self)) >= 2 * self._index.nlist:
            self._build_approximate()  # grown 4x since training: lists too long, retrain

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these chunk ids (all must be present)."""
        if len(ids) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar (scores, chunk ids), best first; `allowed` restricts the ids."""
        if len(self) == 0 or k <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        query = _as_vectors(query, self.dim)
        if allowed is not None and self.is_approximate and len(allowed) <= EXACT_FILTER_LIMIT:
            return self._search_exactly_among(query, k, np.asarray(allowed, dtype=np.int64))
        scores, ids = self._index.search(query, k, params=self._search_parameters(allowed))
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _search_exactly_among(
        self, query: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A filter the probed lists would mostly miss: score the allowed vectors directly."""
        allowed = allowed[np.isin(allowed, self.ids())]
        scores = self.vectors(allowed) @ query[0]
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top], allowed[top]

    def _search_parameters(self, allowed: np.ndarray | None) -> Any:
        selector = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        if self.is_approximate:
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.config.nprobe)  # type: ignore[call-arg]
        return faiss.SearchParameters(sel=selector) if selector is not None else None  # type: ignore[call-arg]

    def _build_approximate(self) -> None:
        ids = self.ids()
        vectors = self.vectors(ids)
        nlist = _list_count(len(ids))
        quantizer: Any = faiss.IndexFlatIP(self.dim)
        index: Any = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()
        sample = np.random.default_rng(0).permutation(len(ids))[: 64 * nlist]
        index.train(vectors[sample])
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        index.add_with_ids(vectors, ids)
        self._index = index

    # -- persistence -------------------------------------------------------------------

    def save(self, path: Path) -> None:
        data = faiss.serialize_index(self._index)
        write_atomically(path, lambda file: file.write(data.tobytes()))

    @classmethod
    def load(cls, path: Path, config: VectorIndexConfig) -> "VectorIndex":
        stored: Any = faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        index = cls(stored.d, config)
        index._index = stored
        return index


def _list_count(size: int) -> int:
    """About 4·sqrt(n) inverted lists, with the 39 training points per list FAISS asks for."""
    return int(max(min(4 * math.sqrt(size), size / 39, 65_536), 1))


def _as_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))
