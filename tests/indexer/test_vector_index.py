"""FAISS by chunk id: exact while small, inverted lists past a size; removal and persistence."""

import numpy as np
import pytest

from indexer.vector_index import VectorIndex, VectorIndexConfig


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=["exact", "approximate"])
def filled(request):
    vectors = unit_vectors(2_000)
    ids = np.arange(10_000, 12_000)
    approximate_after = 500 if request.param == "approximate" else 100_000
    index = VectorIndex(32, VectorIndexConfig(approximate_after=approximate_after, nprobe=64))
    index.add(ids[:1_000], vectors[:1_000])
    index.add(ids[1_000:], vectors[1_000:])
    assert index.is_approximate == (request.param == "approximate")
    return index, ids, vectors


def test_a_stored_vector_is_its_own_nearest_neighbour(filled):
    index, ids, vectors = filled
    for row in (0, 777, 1_999):
        scores, found = index.search(vectors[row], 3)
        assert found[0] == ids[row]
        assert scores[0] == pytest.approx(1.0, abs=1e-5)


def test_ids_and_vectors_survive_the_switch(filled):
    index, ids, vectors = filled
    assert sorted(index.ids().tolist()) == ids.tolist()
    np.testing.assert_allclose(index.vectors(ids[[5, 1_500]]), vectors[[5, 1_500]], atol=1e-6)


def test_removed_ids_are_never_found(filled):
    index, ids, vectors = filled
    index.remove(ids[:10])
    assert len(index) == 1_990
    for row in range(10):
        _, found = index.search(vectors[row], 5)
        assert not set(found.tolist()) & set(ids[:10].tolist())


def test_allowed_ids_restrict_results_even_outside_the_probed_lists(filled):
    index, ids, vectors = filled
    allowed = ids[[3, 1_234, 1_999]]
    _, found = index.search(vectors[0], 10, allowed=allowed)
    assert sorted(found.tolist()) == sorted(allowed.tolist())


def test_save_and_load_round_trip(filled, tmp_path):
    index, ids, vectors = filled
    index.save(tmp_path / "dense.faiss")
    loaded = VectorIndex.load(tmp_path / "dense.faiss", index.config)
    assert loaded.is_approximate == index.is_approximate
    assert sorted(loaded.ids().tolist()) == ids.tolist()
    assert loaded.search(vectors[42], 1)[1][0] == ids[42]


def test_the_approximate_index_is_retrained_as_it_grows():
    index = VectorIndex(32, VectorIndexConfig(approximate_after=1_000))
    vectors = unit_vectors(8_000, seed=1)
    index.add(np.arange(1_001), vectors[:1_001])
    first_lists = index._index.nlist
    for start in range(1_001, 8_000, 500):
        index.add(np.arange(start, min(start + 500, 8_000)), vectors[start : start + 500])
    assert index._index.nlist >= 2 * first_lists
    assert len(index) == 8_000 and index.search(vectors[7_999], 1)[1][0] == 7_999
