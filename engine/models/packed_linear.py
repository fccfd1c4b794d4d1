"""Linears on the CPU with their weights laid out once for a faster kernel.

Two layouts, by what the CPU has. With AVX512-BF16, `TiledLinear` runs the project's own
kernel (`kernels/cpu_linear.c`) on weights tiled for `vdpbf16ps`: a decode step's
matvecs read the weights at about 33 GB/s, against 24 GB/s with oneDNN's packing (same
machine, same 716 MB of Qwen2.5-0.5B shapes, `kernels/cpu_linear.py`), and prefill runs
within a few percent of oneDNN. Its sums are fp32 in a fixed order per row, so a row's
result never depends on its batch; against `F.linear` (oneDNN) about one output in
10,000 differs, by one bf16 rounding step. Elsewhere `PackedLinear` keeps oneDNN's own
reordered layout: `aten::mm` reads a plain [out, in] bf16 weight at about 15 GB/s on a
decode step's few rows, the reordered one at 21-22 GB/s, and oneDNN computes both, so
the results are bit-identical to `F.linear`'s.

fp32 on a CPU without AVX512-BF16 (AVX2 and FMA): `CompactLinear` keeps a linear whose
weights are all bf16 values (the library's are) as bf16, tiled the same way, and the
kernel widens them to fp32 in registers, which is exact: the products and fp32 sums are
those of `F.linear` on the fp32 weight, in another order (outputs differ by about one
part in a million), and a step reads half the bytes: Qwen2.5-0.5B decodes 2.7 times
faster on the 2-core AVX2 EPYC (one stream, 48 tokens, 3 runs: 7.5-7.7 tok/s with MKL,
19.6-21.0 with the kernel; 8 prompts at once: 22.9 against 56.6 tok/s; an ad-hoc
script, 2026-12-06, nothing else running). From `WIDEN_ROWS` rows up (a long prefill),
the weight is widened back once per call and MKL runs it.
"""

import ctypes

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.decoder import DecoderForCausalLM
from kernels import cpu_linear

# Rows from which MKL on the weight widened back beats the kernel: on the 2-core AVX2 EPYC,
# Qwen2.5-0.5B's shapes (an ad-hoc script, best of 5, 2026-12-06) ran about even at 512
# rows (13.2 against 14.2 ms, 105 against 103, 51 against 42) and the kernel ahead below
# (3.2 against 5.9 ms at 128 rows for [1152, 896]).
WIDEN_ROWS = 512


def can_pack(dtype: torch.dtype, device: torch.device) -> bool:
    """oneDNN's reordered bf16 weights are available here."""
    return (
        device.type == "cpu"
        and dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()  # AVX-512 (BW, VL, DQ) or AVX-NE
    )


class PackedLinear(nn.Module):
    """`nn.Linear` with its weight in oneDNN's blocked layout (an opaque tensor)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        # NOTE: a buffer, so that the state dict (what a step reads) still counts it.
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
        self.register_buffer("bias", None if bias is None else bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        rows = x.reshape(-1, self.in_features)
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)


class TiledLinear(nn.Module):
    """`nn.Linear` in bf16 on the compiled kernel, its weight tiled for it."""

    tiled: torch.Tensor  # [ceil(out / 32), in / 2, 32, 2] bf16
    bias: torch.Tensor | None  # [out] float32

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, library: ctypes.CDLL
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.library = library
        # NOTE: buffers, so that the state dict (what a step reads) still counts them.
        self.register_buffer("tiled", cpu_linear.tile_weight(weight))
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        out = cpu_linear.linear(self.library, rows, self.tiled, self.bias, self.out_features)
        return out.view(*x.shape[:-1], self.out_features)


class CompactLinear(TiledLinear):
    """An fp32 `nn.Linear` whose weight holds bf16 values, kept as bf16 tiles."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, library: ctypes.CDLL
    ) -> None:
        super().__init__(weight.to(torch.bfloat16), bias, library)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        rows = x.reshape(-1, self.in_features).float()
        if rows.shape[0] >= WIDEN_ROWS:
            weight = cpu_linear.untile_weight(self.tiled, self.out_features, torch.float32)
            out = F.linear(rows, weight, self.bias)
        else:
            out = cpu_linear.linear(self.library, rows, self.tiled, self.bias, self.out_features)
        return out.view(*x.shape[:-1], self.out_features)


def can_compact(dtype: torch.dtype, device: torch.device) -> bool:
    """fp32 linears over bf16 weights can run on the compiled kernel here."""
    return (
        device.type == "cpu" and dtype == torch.float32 and cpu_linear.compact_kernel() is not None
    )


def compact_linears(model: DecoderForCausalLM) -> int:
    """Replace every plain fp32 `nn.Linear` whose weights are all bf16 values (and a tied
    head, by a compact copy); how many were replaced. Others (a GGUF's dequantized
    weights) stay as they are: rounding them to bf16 would change the model."""
    library = cpu_linear.compact_kernel()
    assert library is not None, "can_compact() first"
    model.untie_lm_head()
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear and child.in_features % 2 == 0 and _holds_bf16(child.weight)
    ]
    for parent, name, linear in targets:
        setattr(parent, name, CompactLinear(linear.weight, linear.bias, library))
    return len(targets)


def _holds_bf16(weight: torch.Tensor) -> bool:
    """Every value a bf16: the low 16 bits of each float are zero (one pass, no copies)."""
    if weight.dtype != torch.float32:
        return False
    return not bool((weight.detach().view(torch.int32) & 0xFFFF).any())


def pack_linears(model: DecoderForCausalLM) -> int:
    """Replace every plain `nn.Linear` (quantized ones are left as they are) and a tied
    head (a packed copy: the embedding keeps its rows for lookups); how many were packed.
    """
    model.untie_lm_head()
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear
    ]
    library = cpu_linear.linear_kernel()
    for parent, name, linear in targets:
        setattr(parent, name, _packed(linear, library))
    return len(targets)


def _packed(linear: nn.Linear, library: ctypes.CDLL | None) -> nn.Module:
    if library is not None and linear.in_features % 2 == 0:
        return TiledLinear(linear.weight, linear.bias, library)
    return PackedLinear(linear.weight, linear.bias)
