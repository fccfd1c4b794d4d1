"""The Triton kernels against the PyTorch reference, on fresh random inputs every run.

Without CUDA they run in Triton's interpreter (the root conftest.py sets TRITON_INTERPRET=1
before they are imported), about 1000x slower than compiled code: shapes are small.
bf16 runs on CUDA only, since the interpreter's bf16 `tl.dot` is wrong.
"""

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed (the dev extra has it)")

from kernels import reference, triton_attention, triton_decode
from tests.kernels.paged_batch import PagedBatch, random_batch, relative_error, written

# (num_heads, num_kv_heads, head_dim, block_size): GQA ratios 1, 2 and 7, head dims
# 64 and 128, blocks of 16 and 32 tokens.
SHAPES = [(2, 2, 64, 16), (4, 2, 128, 32), (7, 1, 64, 32), (14, 2, 128, 16)]


def shape_id(shape: tuple[int, int, int, int]) -> str:
    num_heads, num_kv_heads, head_dim, block_size = shape
    return f"gqa{num_heads // num_kv_heads}-d{head_dim}-b{block_size}"


# (context_len, query_len): ragged decodes, then a fresh prompt, a chunk behind a
# prefix ending mid-block (36 tokens), one behind a prefix ending on a block boundary
# (32), and a chunk longer than one query tile behind a 5-token prefix.
MIXED = [(1, 1), (19, 1), (50, 1), (6, 6), (45, 9), (40, 8), (85, 80)]
FP32_TOLERANCE = 1e-4
# NOTE: fp16 inputs, and fp16 probabilities in the P @ V product: about 2e-4 measured,
# as for the reference itself in fp16; a real bug gives errors near 1.
FP16_TOLERANCE = 1e-3


def make_batch(seqs, shape, dtype, device, generator) -> PagedBatch:
    num_heads, num_kv_heads, head_dim, block_size = shape
    return random_batch(
        seqs,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        block_size=block_size,
        dtype=dtype,
        device=device,
        generator=generator,
    )


def triton_output(batch: PagedBatch) -> torch.Tensor:
    """The Triton kernels' attention over the batch, in its own dtype."""
    return triton_attention.paged_attention(
        batch.query,
        batch.key_cache,
        batch.value_cache,
        batch.metadata,
        batch.query.shape[-1] ** -0.5,
    )


def reference_attention(batch: PagedBatch) -> torch.Tensor:
    """The reference in fp32 on the batch's own (possibly fp16-rounded) values."""
    return reference.paged_attention(
        batch.query.float(),
        batch.key_cache.float(),
        batch.value_cache.float(),
        batch.metadata,
        batch.query.shape[-1] ** -0.5,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", SHAPES[:2], ids=shape_id)
def test_write_kv_cache_fills_exactly_the_reference_slots(shape, dtype, device, generator) -> None:
    batch = make_batch(MIXED, shape, dtype, device, generator)
    expected_keys, expected_values = batch.key_cache.clone(), batch.value_cache.clone()
    reference.write_kv_cache(
        batch.new_keys,
        batch.new_values,
        expected_keys,
        expected_values,
        batch.metadata.slot_mapping,
    )
    assert not torch.equal(expected_keys, batch.key_cache)  # the write changes something
    triton_attention.write_kv_cache(
        batch.new_keys,
        batch.new_values,
        batch.key_cache,
        batch.value_cache,
        batch.metadata.slot_mapping,
    )
    assert torch.equal(batch.key_cache, expected_keys)  # every slot: the new ones and the rest
    assert torch.equal(batch.value_cache, expected_values)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_paged_attention_fp32_matches_reference(shape, device, generator) -> None:
    batch = written(make_batch(MIXED, shape, torch.float32, device, generator))
    output = triton_output(batch)
    assert output.shape == batch.query.shape and output.dtype == torch.float32
    assert relative_error(output, reference_attention(batch)) < FP32_TOLERANCE


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[2]], ids=shape_id)
def test_paged_attention_fp16_matches_reference(shape, device, generator) -> None:
    batch = written(make_batch(MIXED, shape, torch.float16, device, generator))
    output = triton_output(batch)
    assert output.dtype == torch.float16
    assert relative_error(output, reference_attention(batch)) < FP16_TOLERANCE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 tl.dot is wrong in the interpreter")
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_paged_attention_bf16_matches_reference_on_cuda(shape, device, generator) -> None:
    batch = written(make_batch(MIXED, shape, torch.bfloat16, device, generator))
    output = triton_output(batch)
    assert relative_error(output, reference_attention(batch)) < 2e-2


@pytest.mark.parametrize("split_len", [48, 64])
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3]], ids=shape_id)
def test_decode_split_along_the_context_then_reduced_matches_reference(
    shape, split_len, device, generator
) -> None:
    # Up to 6 splits for the longest; the shorter contexts leave some splits empty.
    batch = written(
        make_batch([(300, 1), (1, 1), (130, 1), (257, 1)], shape, torch.float32, device, generator)
    )
    output = torch.full_like(batch.query, float("nan"))
    triton_decode.decode_attention(
        batch.query,
        batch.key_cache,
        batch.value_cache,
        batch.metadata,
        shape[2] ** -0.5,
        output,
        split_len=split_len,
    )
    assert relative_error(output, reference_attention(batch)) < FP32_TOLERANCE


def test_split_length_fills_the_device_but_never_drops_below_the_minimum() -> None:
    cpu = torch.device("cpu")  # one "SM": four programs wanted
    minimum = triton_decode.MIN_SPLIT_LEN
    assert triton_decode.choose_split_len(1, 8 * minimum, cpu) == 2 * minimum  # 4 splits
    assert triton_decode.choose_split_len(1, minimum + 1, cpu) == 320  # 2 splits, rounded up
    assert triton_decode.choose_split_len(1, 100, cpu) == 128  # one split, rounded up
    assert triton_decode.choose_split_len(64, 8 * minimum, cpu) == 8 * minimum  # batch fills it


def test_launchers_refuse_what_the_kernels_would_misread(device, generator) -> None:
    batch = written(make_batch(MIXED, SHAPES[0], torch.float32, device, generator))
    scale = batch.query.shape[-1] ** -0.5
    with pytest.raises(
        ValueError, match=r"query is torch\.float16 but the cache is torch\.float32"
    ):
        triton_attention.paged_attention(
            batch.query.half(), batch.key_cache, batch.value_cache, batch.metadata, scale
        )
    with pytest.raises(ValueError, match="slot_mapping must be"):
        triton_attention.write_kv_cache(
            batch.new_keys,
            batch.new_values,
            batch.key_cache,
            batch.value_cache,
            batch.metadata.slot_mapping.int(),
        )
    with pytest.raises(ValueError, match="key and value caches must share strides"):
        triton_attention.paged_attention(
            batch.query,
            batch.key_cache,
            batch.value_cache.transpose(1, 2).contiguous().transpose(1, 2),
            batch.metadata,
            scale,
        )
