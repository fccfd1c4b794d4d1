"""Retrieval metrics as BEIR computes them (via pytrec_eval), plus small shared helpers.

nDCG uses linear gains (rel / log2(rank + 1)) and an ideal ranking built from the qrels
cut at the same depth, exactly as `pytrec_eval`'s `ndcg_cut`; recall counts judged
documents with relevance > 0. Hits are chunks, so they are collapsed to documents first,
each document keeping its best (first) rank, as a user of chunk search would see them.
"""

import json
import os
import platform
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).parent / "results"


def first_occurrences(doc_ids: Iterable[str]) -> list[str]:
    """Document ids in rank order, each kept at its first (best) position."""
    return list(dict.fromkeys(doc_ids))


def ndcg_at(ranked: Sequence[str], relevance: dict[str, int], k: int) -> float:
    gains = np.array([relevance.get(doc_id, 0) for doc_id in ranked[:k]], dtype=np.float64)
    ideal = np.sort(np.array(list(relevance.values()), dtype=np.float64))[::-1][:k]
    idcg = float(np.sum(ideal / np.log2(np.arange(2, len(ideal) + 2))))
    dcg = float(np.sum(gains / np.log2(np.arange(2, len(gains) + 2))))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], relevance: dict[str, int], k: int) -> float:
    relevant = {doc_id for doc_id, grade in relevance.items() if grade > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def percentile(values: Sequence[float], pct: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), pct))


def machine() -> dict:
    """What ran the benchmark, and how busy the machine was when it started."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def save_result(name: str, result: dict) -> Path:
    """Write `bench/results/NAME_<timestamp>.json` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    return path
