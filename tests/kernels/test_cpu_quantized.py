"""The compiled int4/int8 kernel against the dequantized weights in float64, its batch
invariance, and the shapes it refuses."""

from functools import cache

import pytest
import torch

from engine.models.quantization import (
    dequantize_int4,
    dequantize_int8,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)
from kernels import cpu_quantized

pytestmark = pytest.mark.skipif(
    cpu_quantized.quantized_kernel() is None, reason="the kernel needs AVX2, FMA and gcc"
)


@cache  # the same weights for every row count
def int4_weight(out_features: int, in_features: int, group_size: int, seed: int = 0):
    torch.manual_seed(seed)
    tensors = quantize_int4(torch.randn(out_features, in_features) * 0.05, group_size)
    values = unpack_int4(tensors["qweight"])
    packed = cpu_quantized.tile_int4(values, tensors["scales"], tensors["zeros"])
    # what multiplies the rounded x: q * scale (the zeros meet the exact sums of x)
    scaled = values.double() * tensors["scales"].double().repeat_interleave(group_size, dim=1)
    return dequantize_int4(tensors, torch.float64), packed, scaled


@cache
def int8_weight(out_features: int, in_features: int, seed: int = 0):
    torch.manual_seed(seed)
    tensors = quantize_int8(torch.randn(out_features, in_features) * 0.05)
    packed = cpu_quantized.tile_int8(tensors["qweight"]), tensors["scales"].float()
    weight = dequantize_int8(tensors, torch.float64)
    return weight, packed, weight.abs()


def run(method: str, rows: torch.Tensor, packed, bias=None) -> torch.Tensor:
    library = cpu_quantized.quantized_kernel()
    linear = cpu_quantized.linear_int4 if method == "int4" else cpu_quantized.linear_int8
    return linear(library, rows, *packed, bias)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9, 40])  # every pass shape, and a prefill
@pytest.mark.parametrize(
    ("method", "out_features", "in_features", "group_size"),
    # tiles not a multiple of the 4 a work item takes; the 1.5B's MLP shapes; int8 heads
    [
        ("int4", 72, 256, 32),
        ("int4", 160, 896, 128),
        ("int4", 1536, 8960, 32),
        ("int8", 72, 256, 0),
        ("int8", 1000, 896, 0),
    ],
)
def test_outputs_match_the_dequantized_weights_to_the_precision_of_rounded_x(
    rows, method, out_features, in_features, group_size
) -> None:
    weight, packed, scaled = (
        int4_weight(out_features, in_features, group_size)
        if method == "int4"
        else int8_weight(out_features, in_features)
    )
    x = torch.randn(rows, in_features)
    x[:, 3] = 40.0  # an outlier column, as real activations have: its group's scale grows
    bias = torch.randn(out_features)
    expected = x.double() @ weight.t() + bias.double()
    out = run(method, x, packed, bias)
    assert out.dtype == torch.float32 and out.shape == (rows, out_features)
    # Each x is rounded to its group's step (the group's largest magnitude / 127 in int8 for
    # int4 weights, / 32767 in int16 for int8 weights): an output may be off by half a step
    # times |q * scale| over the columns, plus fp32 sums.
    x_group, top = (group_size, 127) if method == "int4" else (cpu_quantized.INT8_GROUP, 32767)
    peaks = x.double().abs().view(rows, -1, x_group).amax(dim=-1, keepdim=True)
    half_steps = (peaks / top / 2).expand(-1, -1, x_group).reshape(rows, in_features)
    bound = half_steps @ scaled.abs().t() + 1e-6 * (x.double().abs() @ scaled.abs().t() + 1)
    assert ((out.double() - expected).abs() <= bound).all()


@pytest.mark.parametrize("method", ["int4", "int8"])
def test_a_rows_outputs_are_the_same_bits_alone_or_in_any_batch(method) -> None:
    _, packed, _ = int4_weight(96, 512, 64) if method == "int4" else int8_weight(96, 512)
    x = torch.randn(7, 512)
    loud = 1000 * torch.randn(3, 512)  # batch-mates of another range do not move its scale
    alone = torch.cat([run(method, x[i : i + 1], packed) for i in range(7)])
    assert torch.equal(run(method, x, packed), alone)
    assert torch.equal(run(method, torch.cat([loud, x]), packed)[3:], alone)


def test_zero_rows_and_shapes_the_layout_cannot_hold() -> None:
    _, packed, _ = int4_weight(16, 64, 32)
    assert run("int4", torch.empty(0, 64), packed).shape == (0, 16)
    assert run("int4", torch.zeros(2, 64), packed).abs().max() == 0  # an all-zero group
    assert not cpu_quantized.fits("int4", 12, 64, 32)  # channels not a multiple of 8
    assert not cpu_quantized.fits("int4", 16, 8192, 8192)  # a group above MAX_GROUP
    assert not cpu_quantized.fits("int8", 16, 200, 0)  # columns not a multiple of 128
    with pytest.raises(ValueError, match="cannot hold"):
        cpu_quantized.tile_int8(torch.zeros(16, 200, dtype=torch.int8))
