"""FAISS by chunk id: exact while small, inverted lists past a size; removal, persistence,
and the GPU copy (here: its fallback to the CPU, and its logic on a stand-in device)."""

import logging

import faiss
import numpy as np
import pytest

from indexer import vector_index
from indexer.vector_index import VectorIndex, VectorIndexConfig


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=["exact", "approximate"])
def filled(request):
    vectors = unit_vectors(2_000)
    ids = np.arange(10_000, 12_000)
    approximate_after = 500 if request.param == "approximate" else 100_000
    index = VectorIndex(32, VectorIndexConfig(approximate_after=approximate_after, min_probes=64))
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


def test_probed_lists_grow_with_the_list_count():
    config = VectorIndexConfig(probe_fraction=0.05, min_probes=32)
    assert [config.probes(n) for n in (10, 299, 896, 3_584)] == [10, 32, 45, 180]
    with pytest.raises(ValueError, match="probe_fraction"):
        VectorIndexConfig(probe_fraction=0)


def test_without_the_gpu_build_searches_stay_on_the_cpu(filled):
    index, ids, vectors = filled
    assert not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0
    assert not index.on_gpu
    assert index.search(vectors[7], 1)[1][0] == ids[7]


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """A "device" whose copies are CPU clones: exercises when copies are made and used."""
    copies = []

    def to_gpu(resources, device, index):
        copies.append(faiss.clone_index(index))
        return copies[-1]

    monkeypatch.setattr(vector_index, "_gpu_resources", lambda: object())
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(faiss, "GpuParameterSpace", faiss.ParameterSpace, raising=False)
    return copies


@pytest.mark.parametrize("approximate_after", [100_000, 500])
def test_searches_use_a_device_copy_made_again_after_each_change(
    stand_in_gpu, tmp_path, approximate_after
):
    vectors, ids = unit_vectors(2_000), np.arange(2_000)
    index = VectorIndex(32, VectorIndexConfig(approximate_after=approximate_after))
    index.add(ids[:1_500], vectors[:1_500])
    assert index.search(vectors[3], 1)[1][0] == 3 and index.on_gpu
    index.search(vectors[4], 1)
    assert len(stand_in_gpu) == 1  # reused while nothing changes
    index.add(ids[1_500:], vectors[1_500:])
    assert index.search(vectors[1_999], 1)[1][0] == 1_999
    index.remove(ids[:1])
    assert 0 not in index.search(vectors[0], 5)[1]
    assert len(stand_in_gpu) == 3
    if index.is_approximate:
        assert faiss.extract_index_ivf(stand_in_gpu[-1]).nprobe == index.nprobe
    index.search(vectors[0], 5, allowed=ids[10:20])  # filtered: on the CPU index
    assert len(stand_in_gpu) == 3
    index.save(tmp_path / "dense.faiss")  # the CPU index, loadable without a GPU
    assert type(faiss.read_index(str(tmp_path / "dense.faiss"))) is type(index._index)


def test_a_failed_device_copy_falls_back_to_the_cpu(monkeypatch, caplog):
    def broken(resources, device, index):
        raise RuntimeError("out of device memory")

    monkeypatch.setattr(vector_index, "_gpu_resources", lambda: object())
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", broken, raising=False)
    vectors = unit_vectors(100)
    index = VectorIndex(32)
    index.add(np.arange(100), vectors)
    with caplog.at_level(logging.WARNING, logger="indexer.vector_index"):
        assert index.search(vectors[9], 1)[1][0] == 9
    assert not index.on_gpu
    assert "searching on the CPU" in caplog.text
