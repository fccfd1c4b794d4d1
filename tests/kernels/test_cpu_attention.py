"""The compiled CPU decode kernel against the reference, its batch invariance, and its build."""

import logging
from pathlib import Path

import pytest
import torch

from kernels import AttentionBackendError, backend, cpu_build, reference, select_backend
from kernels.cpu_attention import CpuAttention
from tests.kernels.paged_batch import random_batch, relative_error, written

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cpu_backend() -> CpuAttention:
    chosen = select_backend(CPU)
    assert isinstance(chosen, CpuAttention), "the kernel should build wherever gcc is installed"
    return chosen


def attend(chosen, batch) -> torch.Tensor:
    batch = written(batch)
    head_dim = batch.query.shape[-1]
    return chosen.paged_attention(
        batch.query, batch.key_cache, batch.value_cache, batch.metadata, head_dim**-0.5
    )


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize(
    ("num_heads", "num_kv_heads", "head_dim"),
    # Qwen2.5-0.5B's and -1.5B's shapes (the head sizes with vector code), SmolLM2's
    # group of 3, plain multi-head attention, and a head size the generic loop takes.
    [(14, 2, 64), (12, 2, 128), (9, 3, 64), (4, 4, 32), (6, 2, 40)],
)
def test_decodes_match_the_reference(
    cpu_backend, dtype, tolerance, num_heads, num_kv_heads, head_dim, generator
) -> None:
    # One token, lengths on both sides of the 512-token partitions, several partitions,
    # then prefill chunks behind the decodes (they stay on the reference's path).
    seqs = [(1, 1), (17, 1), (511, 1), (512, 1), (513, 1), (1300, 1), (40, 40), (90, 30)]
    batch = random_batch(
        seqs,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        block_size=16,
        dtype=dtype,
        device=CPU,
        generator=generator,
    )
    expected = attend(reference, batch)
    output = attend(cpu_backend, batch)
    for index, (start, end) in enumerate(
        zip(
            batch.metadata.query_start_loc[:-1].tolist(),
            batch.metadata.query_start_loc[1:].tolist(),
            strict=True,
        )
    ):
        assert relative_error(output[start:end], expected[start:end]) < tolerance, index
    num_decodes = batch.metadata.num_decodes
    assert torch.equal(output[num_decodes:], expected[num_decodes:])  # the same code ran


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_decode_gets_the_same_bits_alone_or_in_any_batch(cpu_backend, dtype, generator) -> None:
    batch = random_batch(
        [(700, 1), (3, 1), (1500, 1), (64, 1)],
        num_heads=14,
        num_kv_heads=2,
        head_dim=64,
        block_size=16,
        dtype=dtype,
        device=CPU,
        generator=generator,
    )
    together = attend(cpu_backend, batch)
    metadata = batch.metadata
    for index in range(metadata.num_seqs):
        alone = type(metadata)(
            slot_mapping=metadata.slot_mapping[index : index + 1],
            query_start_loc=torch.tensor([0, 1], dtype=torch.int32),
            context_lens=metadata.context_lens[index : index + 1],
            block_tables=metadata.block_tables[index : index + 1],
            num_decodes=1,
            query_lens_host=(1,),
            context_lens_host=metadata.context_lens_host[index : index + 1],
        )
        single = cpu_backend.paged_attention(
            batch.query[index : index + 1], batch.key_cache, batch.value_cache, alone, 0.125
        )
        assert torch.equal(single[0], together[index]), index


def test_half_precision_decodes_fall_back_to_the_reference(cpu_backend, generator) -> None:
    batch = random_batch(
        [(30, 1), (9, 1)],
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        block_size=16,
        dtype=torch.float16,
        device=CPU,
        generator=generator,
    )
    assert torch.equal(attend(cpu_backend, batch), attend(reference, batch))


@pytest.fixture
def fresh_selection():
    """Forget which backend was chosen and which libraries were loaded, before and after."""
    backend._select.cache_clear()
    cpu_build._loaded.clear()
    yield
    backend._select.cache_clear()
    cpu_build._loaded.clear()


def test_the_library_is_built_once_per_source_and_machine(fresh_selection, tmp_path: Path) -> None:
    first = cpu_build.load_library("cpu_decode", tmp_path)
    built = list(tmp_path.glob("cpu_decode-*.so"))
    assert len(built) == 1 and not list(tmp_path.glob("*.tmp"))
    cpu_build._loaded.clear()  # as a new process would start
    modified = built[0].stat().st_mtime_ns
    second = cpu_build.load_library("cpu_decode", tmp_path)
    assert built[0].stat().st_mtime_ns == modified  # loaded, not compiled again
    assert first._name == second._name == str(built[0])


def test_without_a_compiler_the_cpu_falls_back_to_the_reference_with_a_warning(
    fresh_selection, monkeypatch, tmp_path: Path, caplog
) -> None:
    monkeypatch.setattr(cpu_build.shutil, "which", lambda name: None)
    monkeypatch.setattr(cpu_build, "default_build_dir", lambda: tmp_path)
    monkeypatch.setattr(backend, "default_build_dir", lambda: tmp_path)
    with caplog.at_level(logging.WARNING, logger="kernels.backend"):
        assert select_backend(CPU) is reference
    assert "no C compiler found" in caplog.text
    with pytest.raises(AttentionBackendError, match=r"cpu attention backend cannot run.*gcc"):
        select_backend(CPU, "cpu")


def test_the_cpu_backend_refuses_other_devices() -> None:
    with pytest.raises(AttentionBackendError, match="runs on the CPU, not on cuda"):
        select_backend(torch.device("cuda"), "cpu")
