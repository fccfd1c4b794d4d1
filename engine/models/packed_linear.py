"""bf16 linears on the CPU with their weights laid out once for oneDNN.

`aten::mm` reads a plain [out, in] bf16 weight at about 15 GB/s on a decode step's few
rows; the same weight reordered once into oneDNN's blocked layout is read at about
21 GB/s for one row and 22 GB/s for eight (a 24-layer, 716 MB set of Qwen2.5-0.5B's
shapes on a 2-core AVX-512 BF16 EPYC: 46.6 -> 32.7 ms for one row, 55.5 -> 32.6 ms for
eight). The results are bit-identical to `F.linear`'s in bf16 (oneDNN computes both),
so packing changes speed, never tokens. fp32 is left alone: there `F.linear` runs MKL,
and oneDNN would round differently.
"""

import torch
from torch import nn

from engine.models.decoder import DecoderForCausalLM


def can_pack(dtype: torch.dtype, device: torch.device) -> bool:
    """oneDNN's reordered bf16 weights are available here."""
    return (
        device.type == "cpu"
        and dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
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
    for parent, name, linear in targets:
        setattr(parent, name, PackedLinear(linear.weight, linear.bias))
    return len(targets)
