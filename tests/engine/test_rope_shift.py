"""A key cached at one position moved to another by one more rotation (the passage KV
reuse of issue 16): in fp32 it equals the key rotated at the new position from scratch."""

import pytest
import torch

from engine.models.config import RopeScaling
from engine.models.rope import RotaryEmbedding
from kernels.fused_ops import reference_rotate

LLAMA3 = RopeScaling(
    rope_type="llama3",
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=8192,
)


@pytest.mark.parametrize(
    ("theta", "scaling"),
    [(1_000_000.0, None), (10_000.0, None), (500_000.0, LLAMA3)],
    ids=["qwen2", "llama2", "llama3.1"],
)
@pytest.mark.parametrize(("old", "new"), [(100, 3_000), (20_000, 37), (16, 16)])
def test_a_moved_key_equals_the_key_rotated_at_its_new_position(theta, scaling, old, new):
    rope = RotaryEmbedding(64, 32_768, theta, scaling)
    torch.manual_seed(old + new)
    raw = torch.randn(40, 2, 64)  # 40 tokens of a passage, 2 KV heads: keys before RoPE
    old_positions, new_positions = torch.arange(old, old + 40), torch.arange(new, new + 40)
    cached = rope.angles(old_positions, torch.float32).rotate_keys(raw)
    fresh = rope.angles(new_positions, torch.float32).rotate_keys(raw)
    moved = rope.shift(old_positions, new_positions, torch.float32).rotate_keys(cached)
    # The rounding of cos and sin (fp32: about 6e-8), twice, on keys of size ~4.
    torch.testing.assert_close(moved, fresh, rtol=0, atol=3e-6)
    if old == new:
        assert torch.equal(moved, cached)  # no move: no turn at all


def test_the_fp32_angle_difference_is_what_makes_it_exact():
    """Turning by the table's angle for (new - old) instead is off by the rounding of the
    large angles themselves, a thousand times more at long positions."""
    rope = RotaryEmbedding(64, 32_768, 10_000.0)
    raw = torch.randn(8, 1, 64)
    old_positions, new_positions = torch.arange(8), torch.arange(30_000, 30_008)
    cached = rope.angles(old_positions, torch.float32).rotate_keys(raw)
    fresh = rope.angles(new_positions, torch.float32).rotate_keys(raw)
    naive = rope.angles(new_positions - old_positions, torch.float32).rotate_keys(cached)
    moved = rope.shift(old_positions, new_positions, torch.float32).rotate_keys(cached)
    assert (moved - fresh).abs().max() < 3e-6
    assert (naive - fresh).abs().max() > 1e-4


def test_reference_rotate_is_the_same_rotation_the_engine_applies():
    rope = RotaryEmbedding(64, 256, 10_000.0)
    rows = torch.randn(5, 3 * 64)
    angles = rope.angles(torch.arange(5), torch.float32)
    by_heads = angles.rotate(rows.clone(), 3, 64)
    torch.testing.assert_close(
        by_heads, reference_rotate(rows.view(5, 3, 64), angles.cos, angles.sin)
    )
