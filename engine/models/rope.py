"""Rotary position embeddings, with the frequency scalings Llama checkpoints use."""

import math
from dataclasses import dataclass

import torch
from torch import nn

from engine.models.config import RopeScaling
from kernels import fused_ops


class RotaryEmbedding(nn.Module):
    """Rotates query and key halves by position-dependent angles (non-interleaved layout)."""

    cos: torch.Tensor  # [max_positions, head_dim] float32
    sin: torch.Tensor

    def __init__(
        self, head_dim: int, max_positions: int, theta: float, scaling: RopeScaling | None = None
    ) -> None:
        super().__init__()
        self.head_dim, self.max_positions, self.theta = head_dim, max_positions, theta
        self.scaling = scaling
        self.register_buffer("cos", torch.empty(max_positions, head_dim), persistent=False)
        self.register_buffer("sin", torch.empty(max_positions, head_dim), persistent=False)
        self.reset_tables()

    def reset_tables(self) -> None:
        """Fill the cos/sin tables (again after the module was built on the meta device)."""
        if self.cos.is_meta:
            return
        positions = torch.arange(self.max_positions, dtype=torch.float32)
        angles = self._table_angles(positions).to(self.cos.device)  # [P, head_dim]
        self.cos = angles.cos()
        self.sin = angles.sin()

    def shift(self, old: torch.Tensor, new: torch.Tensor, dtype: torch.dtype) -> "RotaryAngles":
        """The rotation that moves keys rotated for positions `old` to positions `new`
        (either way). RoPE turns each pair of dimensions by an angle, so one more turn by
        the difference of the two angles is all it takes; the difference of the table's
        own fp32 angles is taken in float64, so a moved key equals the key rotated at
        `new` to within the rounding of cos and sin."""
        moved = self._table_angles(new.float()).double() - self._table_angles(old.float()).double()
        cos = moved.cos().to(dtype)[:, None, :].to(self.cos.device)  # [T, 1, head_dim]
        sin = moved.sin().to(dtype)[:, None, :].to(self.cos.device)
        return RotaryAngles(cos, sin)

    def _table_angles(self, positions: torch.Tensor) -> torch.Tensor:  # [T] -> [T, head_dim]
        inv_freq = rope_inv_freq(self.head_dim, self.theta, self.scaling)  # [head_dim/2]
        angles = positions.cpu()[:, None] * inv_freq[None, :]  # float32, as the tables
        return torch.cat([angles, angles], dim=-1)

    def angles(self, positions: torch.Tensor, dtype: torch.dtype) -> "RotaryAngles":
        """The cos/sin rows of a step's positions, gathered once and shared by every layer."""
        cos = self.cos[positions].to(dtype)[:, None, :]  # [T, 1, head_dim]
        sin = self.sin[positions].to(dtype)[:, None, :]
        return RotaryAngles(cos, sin)


@dataclass(frozen=True)
class RotaryAngles:
    """One step's rotation, in the activations' dtype: built once, read by every layer."""

    cos: torch.Tensor  # [T, 1, head_dim]
    sin: torch.Tensor  # [T, 1, head_dim]

    def rotate(
        self, rows: torch.Tensor, heads: int, head_dim: int
    ) -> torch.Tensor:  # [T, width] -> [T, heads, head_dim]
        """The first `heads` heads of each row, rotated (in place where the CPU kernel
        runs: see `kernels.fused_ops.rotate_heads`)."""
        return fused_ops.rotate_heads(rows, self.cos, self.sin, heads, head_dim)

    def rotate_keys(self, keys: torch.Tensor) -> torch.Tensor:  # [T, heads, head_dim]
        """Keys already split into heads (cached ones), rotated: a new tensor."""
        return fused_ops.reference_rotate(keys, self.cos, self.sin)


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    """The rotation frequency of each pair of dimensions, [head_dim/2] float32.

    NOTE: computed exactly as Hugging Face does (int64 arange, then float32), so that
    fp32 outputs agree token for token.
    """
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / theta**exponents  # [head_dim/2]
    if scaling is None:
        return inv_freq
    if scaling.rope_type == "linear":
        return inv_freq / scaling.factor
    return _llama3_inv_freq(inv_freq, scaling)


def _llama3_inv_freq(inv_freq: torch.Tensor, scaling: RopeScaling) -> torch.Tensor:
    """Llama 3.1: long wavelengths divided by `factor`, short ones kept, a blend between."""
    original_len = scaling.original_max_position_embeddings
    low_freq_wavelen = original_len / scaling.low_freq_factor  # longer than this: scaled
    high_freq_wavelen = original_len / scaling.high_freq_factor  # shorter than this: kept
    wavelen = 2 * math.pi / inv_freq  # [head_dim/2]
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (original_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )  # 0 at the low-frequency edge, 1 at the high-frequency edge
    blended = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(is_medium, blended, scaled)
