"""Ranking helpers: ordering scored ids and reciprocal rank fusion."""

from collections.abc import Sequence

RRF_K = 60  # the constant of Cormack et al. (2009); large enough that rank 1 does not dominate


def rank_by_score(scored: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """(score, id) pairs best first; an id seen twice keeps its best score."""
    best: dict[int, float] = {}
    for score, item in scored:
        if item not in best or score > best[item]:
            best[item] = score
    return sorted(((s, i) for i, s in best.items()), key=lambda pair: (-pair[0], pair[1]))


def fuse(rankings: Sequence[Sequence[tuple[float, int]]]) -> list[tuple[float, int]]:
    """Reciprocal rank fusion: score(id) = sum over rankings of 1 / (RRF_K + rank)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (_, item) in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(((s, i) for i, s in fused.items()), key=lambda pair: (-pair[0], pair[1]))
