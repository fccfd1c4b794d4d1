"""BM25 over chunks, kept as immutable segments so that adding a batch never rewrites the rest.

Each ingest batch becomes one segment: a term -> postings table in compressed-sparse-row
form. Deletes only clear a chunk's bit in its segment's `alive` mask. Segments are merged
(dropping the dead) by size tier, as Lucene's log merge policy does: once MERGE_FACTOR
segments hold a similar number of chunks (the same power of MERGE_FACTOR), they become one
of the next tier. So each chunk is merged about log(n / batch) times, not once per batch
(merging everything whenever a few batches had arrived cost time quadratic in the index
size: hours at a million chunks), and a million chunks in batches of 512 sit in at most
about 30 segments. When too much of the index is dead, everything is merged.
On disk: one immutable `.npz` + vocabulary `.json` per segment, and a `manifest.json`
replaced atomically last, so a crash leaves the previous manifest and its segments intact.
"""

import json
import math
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from indexer.atomic import write_atomically
from indexer.text_analysis import analyze

K1 = 1.2
B = 0.75
MERGE_FACTOR = 8  # segments of one size tier merged together
MAX_DEAD_FRACTION = 0.3


@dataclass
class _Segment:
    name: str
    chunk_ids: np.ndarray  # int64 [n]
    lengths: np.ndarray  # float32 [n], terms per chunk
    alive: np.ndarray  # bool [n]
    vocabulary: dict[str, int]  # term -> row of indptr
    indptr: np.ndarray  # int64 [terms + 1]
    rows: np.ndarray  # int32 [postings], chunk positions in this segment
    counts: np.ndarray  # float32 [postings], term frequency

    @classmethod
    def build(cls, chunk_ids: Sequence[int], term_lists: Sequence[Sequence[str]]) -> "_Segment":
        vocabulary: dict[str, int] = {}
        term_of, row_of, count_of = [], [], []
        for row, terms in enumerate(term_lists):
            for term, count in Counter(terms).items():
                term_of.append(vocabulary.setdefault(term, len(vocabulary)))
                row_of.append(row)
                count_of.append(count)
        order = np.argsort(np.asarray(term_of, dtype=np.int64), kind="stable")
        per_term = np.bincount(np.asarray(term_of, dtype=np.int64), minlength=len(vocabulary))
        return cls(
            name=uuid.uuid4().hex,
            chunk_ids=np.asarray(chunk_ids, dtype=np.int64),
            lengths=np.asarray([len(t) for t in term_lists], dtype=np.float32),
            alive=np.ones(len(chunk_ids), dtype=bool),
            vocabulary=vocabulary,
            indptr=np.concatenate([[0], np.cumsum(per_term)]).astype(np.int64),
            rows=np.asarray(row_of, dtype=np.int32)[order],
            counts=np.asarray(count_of, dtype=np.float32)[order],
        )

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        row = self.vocabulary.get(term)
        if row is None:
            return _EMPTY_ROWS, _EMPTY_COUNTS
        span = slice(self.indptr[row], self.indptr[row + 1])
        return self.rows[span], self.counts[span]


_EMPTY_ROWS = np.empty(0, dtype=np.int32)
_EMPTY_COUNTS = np.empty(0, dtype=np.float32)


class KeywordIndex:
    """BM25 (k1=1.2, b=0.75) keyed by chunk id."""

    def __init__(self) -> None:
        self._segments: list[_Segment] = []
        self._where: dict[int, tuple[_Segment, int]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def ids(self) -> np.ndarray:
        return np.fromiter(self._where, dtype=np.int64, count=len(self._where))

    def add(self, chunk_ids: Sequence[int], texts: Sequence[str]) -> None:
        if not chunk_ids:
            return
        self.remove([i for i in chunk_ids if i in self._where])
        self._append(_Segment.build(chunk_ids, [analyze(text) for text in texts]))
        self._maybe_merge()

    def remove(self, chunk_ids: Iterable[int]) -> None:
        for chunk_id in chunk_ids:
            found = self._where.pop(int(chunk_id), None)
            if found is not None:
                segment, row = found
                segment.alive[row] = False
        self._maybe_merge()

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best (scores, chunk ids), best first; `allowed` restricts to those chunk ids."""
        terms = set(analyze(query))
        if not terms or not self._where:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        live = len(self._where)
        average_length = sum(float(s.lengths[s.alive].sum()) for s in self._segments) / live
        idf = {term: self._idf(term, live) for term in terms}
        scores, ids = [], []
        for segment in self._segments:
            total = np.zeros(len(segment.chunk_ids), dtype=np.float32)
            for term in terms:
                rows, counts = segment.postings(term)
                if len(rows):
                    norm = K1 * (1 - B + B * segment.lengths[rows] / average_length)
                    total[rows] += idf[term] * counts * (K1 + 1) / (counts + norm)
            mask = segment.alive & (total > 0)
            if allowed is not None:
                mask &= np.isin(segment.chunk_ids, allowed)
            scores.append(total[mask])
            ids.append(segment.chunk_ids[mask])
        all_scores, all_ids = np.concatenate(scores), np.concatenate(ids)
        top = np.argsort(-all_scores, kind="stable")[:k]
        return all_scores[top], all_ids[top]

    def _idf(self, term: str, live: int) -> float:
        frequency = 0
        for segment in self._segments:
            rows, _ = segment.postings(term)
            frequency += int(segment.alive[rows].sum())
        return math.log(1 + (live - frequency + 0.5) / (frequency + 0.5))

    def _append(self, segment: _Segment) -> None:
        self._segments.append(segment)
        for row, chunk_id in enumerate(segment.chunk_ids.tolist()):
            if segment.alive[row]:
                self._where[chunk_id] = (segment, row)

    def _maybe_merge(self) -> None:
        total = sum(len(s.chunk_ids) for s in self._segments)
        if total - len(self._where) > MAX_DEAD_FRACTION * max(total, 1):
            self._merge(list(self._segments))
            return
        while (group := self._full_tier()) is not None:
            self._merge(group)

    def _full_tier(self) -> list[_Segment] | None:
        """MERGE_FACTOR segments of the smallest size tier that has that many, if any."""
        tiers: dict[int, list[_Segment]] = {}
        for segment in self._segments:
            live = max(int(segment.alive.sum()), 1)
            tiers.setdefault(int(math.log(live, MERGE_FACTOR) + 1e-9), []).append(segment)
        for tier in sorted(tiers):
            if len(tiers[tier]) >= MERGE_FACTOR:
                return tiers[tier][:MERGE_FACTOR]
        return None

    def _merge(self, group: list[_Segment]) -> None:
        """Rebuild these segments as one from their live postings, without re-analysing."""
        vocabulary: dict[str, int] = {}
        terms, rows, counts, ids, lengths = [], [], [], [], []
        offset = 0
        for segment in group:
            new_row = offset + np.cumsum(segment.alive) - 1  # old row -> merged row
            local_terms = np.repeat(np.arange(len(segment.vocabulary)), np.diff(segment.indptr))
            to_global = np.fromiter(
                (vocabulary.setdefault(t, len(vocabulary)) for t in segment.vocabulary),
                dtype=np.int64,
                count=len(segment.vocabulary),
            )
            keep = segment.alive[segment.rows]
            terms.append(to_global[local_terms[keep]])
            rows.append(new_row[segment.rows[keep]])
            counts.append(segment.counts[keep])
            ids.append(segment.chunk_ids[segment.alive])
            lengths.append(segment.lengths[segment.alive])
            offset += int(segment.alive.sum())
        merged = {id(segment) for segment in group}
        self._segments = [s for s in self._segments if id(s) not in merged]
        if offset == 0:
            return
        term_array = np.concatenate(terms)
        order = np.argsort(term_array, kind="stable")
        per_term = np.bincount(term_array, minlength=len(vocabulary))
        self._append(
            _Segment(
                name=uuid.uuid4().hex,
                chunk_ids=np.concatenate(ids),
                lengths=np.concatenate(lengths),
                alive=np.ones(offset, dtype=bool),
                vocabulary=vocabulary,
                indptr=np.concatenate([[0], np.cumsum(per_term)]).astype(np.int64),
                rows=np.concatenate(rows).astype(np.int32)[order],
                counts=np.concatenate(counts)[order],
            )
        )

    # -- persistence -------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        manifest = []
        for segment in self._segments:
            postings = directory / f"{segment.name}.npz"
            if not postings.exists():  # segments are immutable: written once
                _save_segment(segment, directory)
            alive_name = f"{segment.name}.alive-{uuid.uuid4().hex[:8]}.npy"
            write_atomically(directory / alive_name, partial(np.save, arr=segment.alive))
            manifest.append({"name": segment.name, "alive": alive_name})
        text = json.dumps({"segments": manifest})
        write_atomically(directory / "manifest.json", lambda f: f.write(text.encode()))
        _remove_unlisted(directory, manifest)

    @classmethod
    def load(cls, directory: Path) -> "KeywordIndex":
        index = cls()
        manifest_path = directory / "manifest.json"
        if not manifest_path.exists():
            return index
        for entry in json.loads(manifest_path.read_text())["segments"]:
            index._append(_load_segment(directory, entry["name"], entry["alive"]))
        return index


def _save_segment(segment: _Segment, directory: Path) -> None:
    arrays = {
        "chunk_ids": segment.chunk_ids,
        "lengths": segment.lengths,
        "indptr": segment.indptr,
        "rows": segment.rows,
        "counts": segment.counts,
    }
    terms = json.dumps(list(segment.vocabulary), ensure_ascii=False).encode()
    write_atomically(directory / f"{segment.name}.terms.json", lambda f: f.write(terms))
    write_atomically(directory / f"{segment.name}.npz", lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def _load_segment(directory: Path, name: str, alive_name: str) -> _Segment:
    arrays = np.load(directory / f"{name}.npz")
    terms = json.loads((directory / f"{name}.terms.json").read_text())
    return _Segment(
        name=name,
        chunk_ids=arrays["chunk_ids"],
        lengths=arrays["lengths"],
        alive=np.load(directory / alive_name),
        vocabulary={term: row for row, term in enumerate(terms)},
        indptr=arrays["indptr"],
        rows=arrays["rows"],
        counts=arrays["counts"],
    )


def _remove_unlisted(directory: Path, manifest: list[dict[str, str]]) -> None:
    """Delete files of merged-away segments and old alive masks once the manifest is safe."""
    keep = {"manifest.json"}
    for entry in manifest:
        keep.update({f"{entry['name']}.npz", f"{entry['name']}.terms.json", entry["alive"]})
    for path in directory.iterdir():
        if path.name not in keep and not path.name.startswith("."):
            os.unlink(path)
