"""FAISS over normalised embeddings, keyed by chunk id.

Exact inner-product search (`IndexFlatIP` inside `IndexIDMap2`) while a collection is small;
past `approximate_after` vectors it switches to an inverted-file index (`IndexIVFFlat`,
trained on the vectors it holds) that keeps chunk ids itself and supports removal and
reconstruction through its hash-table direct map. HNSW would be faster to build but cannot
remove vectors, and documents get deleted.

On a CUDA machine with FAISS's GPU build (`pip install ".[gpu]"`), unfiltered searches run
on a GPU copy of the index, made again after every change. The CPU index stays the one
that is changed and saved, so an index file reads alike with either build; without the GPU
build or a device, or if the copy fails, everything runs on the CPU.
"""

import logging
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.atomic import write_atomically

# Below this many allowed ids, a filtered search on the approximate index is done exactly.
EXACT_FILTER_LIMIT = 20_000
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorIndexConfig:
    approximate_after: int = 50_000  # vectors; below this every search is exact
    # Share of the inverted lists a query visits. A share, not a count, so that recall
    # holds as the list count grows with the index (~4·sqrt(n)). On SciFact's embeddings
    # (docs/benchmarks.md) 10% finds 94% of the exact top 10; 3% (32 of 896 lists, the old
    # fixed nprobe at 100k) found 83%. At 1M chunks 10% scans ~100k vectors, ~14 ms.
    probe_fraction: float = 0.1
    min_probes: int = 32  # ... but never fewer lists than this
    use_gpu: bool = True  # search on a GPU copy when FAISS's GPU build and a device exist

    def __post_init__(self) -> None:
        if not 0 < self.probe_fraction <= 1:
            raise ValueError(f"probe_fraction must be in (0, 1], got {self.probe_fraction}")
        if self.min_probes < 1:
            raise ValueError(f"min_probes must be at least 1, got {self.min_probes}")

    def probes(self, lists: int) -> int:
        """Inverted lists visited per query in an index of `lists` lists."""
        return min(lists, max(self.min_probes, math.ceil(self.probe_fraction * lists)))


class VectorIndex:
    def __init__(self, dim: int, config: VectorIndexConfig = VectorIndexConfig()) -> None:
        self.dim = dim
        self.config = config
        # Any: faiss's type stubs miss most of what is used here.
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._gpu_copy: Any = None  # of _index for searching; None: not made since a change
        self._gpu_failed = False  # a copy failed once: stay on the CPU

    @property
    def is_approximate(self) -> bool:
        return not isinstance(self._index, faiss.IndexIDMap2)

    @property
    def nprobe(self) -> int | None:
        """Lists visited per query; None while the index is exact."""
        return self.config.probes(self._index.nlist) if self.is_approximate else None

    @property
    def on_gpu(self) -> bool:
        """Whether unfiltered searches run on a GPU copy."""
        return self._gpu_index() is not None

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
        self._gpu_copy = None
        self._index.add_with_ids(_as_vectors(vectors, self.dim), np.asarray(ids, np.int64))
        if not self.is_approximate:
            if len(self) > self.config.approximate_after:
                self._build_approximate()
        elif _list_count(len(self)) >= 2 * self._index.nlist:
            self._build_approximate()  # grown 4x since training: lists too long, retrain

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._gpu_copy = None
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
        gpu = self._gpu_index() if allowed is None else None  # GPU search takes no filter
        if gpu is not None:
            scores, ids = gpu.search(query, k)
        else:
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
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe)  # type: ignore[call-arg]
        return faiss.SearchParameters(sel=selector) if selector is not None else None  # type: ignore[call-arg]

    def _gpu_index(self) -> Any:
        """The GPU copy for searching, made if needed; None when searches stay on the CPU."""
        if self._gpu_copy is not None or self._gpu_failed or not self.config.use_gpu:
            return self._gpu_copy
        resources = _gpu_resources()
        if resources is None:
            return None
        try:
            copy = faiss.index_cpu_to_gpu(resources, 0, self._index)
            if self.is_approximate:
                nprobe = float(self.config.probes(self._index.nlist))
                faiss.GpuParameterSpace().set_index_parameter(copy, "nprobe", nprobe)
        except (RuntimeError, AttributeError) as error:
            logger.warning("searching on the CPU: the GPU copy of the index failed (%s)", error)
            self._gpu_failed = True
            return None
        self._gpu_copy = copy
        return copy

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
        """Always the CPU index: readable by faiss-cpu and faiss-gpu alike."""
        data = faiss.serialize_index(self._index)
        write_atomically(path, lambda file: file.write(data.tobytes()))

    @classmethod
    def load(cls, path: Path, config: VectorIndexConfig) -> "VectorIndex":
        stored: Any = faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        index = cls(stored.d, config)
        index._index = stored
        return index


@cache
def _gpu_resources() -> Any:
    """One set of FAISS GPU resources per process; None without the GPU build or a device."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    return faiss.StandardGpuResources()


def _list_count(size: int) -> int:
    """About 4·sqrt(n) inverted lists, with the 39 training points per list FAISS asks for."""
    return int(max(min(4 * math.sqrt(size), size / 39, 65_536), 1))


def _as_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))
