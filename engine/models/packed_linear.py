"""bf16 linears on the CPU with their weights laid out once for a faster kernel.

Two layouts, by what the CPU has. With AVX512-BF16, `TiledLinear` runs the project's own
kernel (`kernels/cpu_linear.c`) on weights tiled for `vdpbf16ps`: a decode step's
matvecs read the weights at about 33 GB/s, against 24 GB/s with oneDNN's packing (same
machine, same 716 MB of Qwen2.5-0.5B shapes, `kernels/cpu_linear.py`), and prefill runs
within a few percent of oneDNN. Its sums are fp32 in a fixed order per row, so a row's
result never depends on its batch; against `F.linear` (oneDNN) about one output in
10,000 differs, by one bf16 rounding step. Elsewhere `PackedLinear` keeps oneDNN's own
reordered layout: `aten::mm` reads a plain [out, in] bf16 weight at about 15 GB/s on a
decode step's few rows, the reordered one at 21-22 GB/s, and oneDNN computes both, so
the results are bit-identical to `F.linear`'s. fp32 is left alone: there `F.linear`
runs MKL.
"""

import ctypes

import torch
from torch import nn

from engine.models.decoder import DecoderForCausalLM
from kernels import cpu_linear


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
