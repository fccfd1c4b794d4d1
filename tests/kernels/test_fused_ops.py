"""The compiled residual-add + RMSNorm and rotary embedding against their PyTorch
references, and the layouts that fall back to the references."""

import pytest
import torch

from kernels import fused_ops

pytestmark = pytest.mark.skipif(fused_ops.fused_kernel() is None, reason="the kernel needs gcc")

DTYPES = [torch.float32, torch.bfloat16]


def random(generator: torch.Generator, *shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, generator=generator).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 3, 70])  # 70 x 1,000: above the parallel threshold
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_matches_the_reference(generator, dtype, rows, with_residual):
    x = random(generator, rows, 1000, dtype=dtype) * 3
    weight = random(generator, 1000, dtype=dtype)
    residual = random(generator, rows, 1000, dtype=dtype) if with_residual else None
    expected, expected_stream = fused_ops.reference_rms_norm(x, weight, 1e-6, residual)

    normed, stream = fused_ops.rms_norm(
        x, weight, 1e-6, None if residual is None else residual.clone()
    )

    # the stream is an exact add; the norm's sum of squares runs in another order
    assert torch.equal(stream, expected_stream)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2  # one bf16 step of |value| < 4
    torch.testing.assert_close(normed, expected, rtol=tolerance, atol=tolerance)


def test_rms_norm_updates_the_residual_in_place(generator):
    x, residual = random(generator, 2, 64, dtype=torch.float32), torch.ones(2, 64)
    weight = torch.ones(64)

    _, stream = fused_ops.rms_norm(x, weight, 1e-6, residual)

    assert stream.data_ptr() == residual.data_ptr()
    assert torch.equal(residual, x + 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "heads", "head_dim"), [(1, 16, 128), (5, 3, 64), (40, 18, 64)])
def test_rotation_matches_the_reference_bit_for_bit(generator, dtype, tokens, heads, head_dim):
    # a fused QKV row: the rotated heads, then 2 more (values) that must stay untouched
    rows = random(generator, tokens, (heads + 2) * head_dim, dtype=dtype)
    angles = torch.rand(tokens, 1, head_dim // 2, generator=generator) * 100
    cos = torch.cat([angles, angles], dim=-1).cos().to(dtype)
    sin = torch.cat([angles, angles], dim=-1).sin().to(dtype)
    untouched = rows[:, heads * head_dim :].clone()
    expected = fused_ops.reference_rotate(
        rows[:, : heads * head_dim].view(tokens, heads, head_dim), cos, sin
    )

    rotated = fused_ops.rotate_heads(rows, cos, sin, heads, head_dim)

    assert torch.equal(rotated, expected)
    assert rotated.data_ptr() == rows.data_ptr()  # in place
    assert torch.equal(rows[:, heads * head_dim :], untouched)


def test_layouts_the_kernel_does_not_take_fall_back_to_the_reference(generator):
    x = random(generator, 4, 64, dtype=torch.float32)
    weight = random(generator, 64, dtype=torch.float32)
    strided = x.t().contiguous().t()  # same values, column-major
    expected, _ = fused_ops.reference_rms_norm(x, weight, 1e-6)
    normed, _ = fused_ops.rms_norm(strided, weight, 1e-6)
    torch.testing.assert_close(normed, expected)

    rows = random(generator, 2, 4 * 8, dtype=torch.float64)  # a dtype the kernel lacks
    cos, sin = torch.ones(2, 1, 8, dtype=torch.float64), torch.zeros(2, 1, 8, dtype=torch.float64)
    rotated = fused_ops.rotate_heads(rows, cos, sin, 4, 8)
    assert torch.equal(rotated.reshape(2, -1), rows)  # angle 0: unchanged


def test_silu_and_mul_is_the_swiglu_activation(generator):
    gate_up = random(generator, 3, 20, dtype=torch.float32)
    gate, up = gate_up[:, :10], gate_up[:, 10:]
    expected = gate * torch.sigmoid(gate) * up
    torch.testing.assert_close(fused_ops.silu_and_mul(gate_up), expected)
