"""Linears over bf16 weights through the compiled `cpu_linear.c`: bf16 ones on CPUs with
AVX512-BF16, and fp32 ones whose weights are bf16 values on CPUs with AVX2 and FMA.

The weight is tiled once ([ceil(N / 32), K / 2, 32, 2]: the input-column pairs of 32
output channels, in the order `vdpbf16ps` reads them), so a decode step streams each
weight front to back. On a 2-core AVX-512 BF16 EPYC, the 24 layers of Qwen2.5-0.5B's
four shapes (716 MB of bf16) took, against oneDNN's own packed weights (an ad-hoc
script, 5 passes after 2, 2026-12-05): 21.7 against 29.8 ms for one row, 21.7 against
32.5 for eight, 61 against 66 for 32, and 702 against 679 ms for 1,024 rows (prefill).
"""

import ctypes
import logging
from functools import cache

import torch
import torch.nn.functional as F

from kernels.cpu_build import KernelBuildError, default_build_dir, load_library

logger = logging.getLogger(__name__)

TILE = 32  # output channels per tile (TILE in cpu_linear.c)


@cache
def linear_kernel() -> ctypes.CDLL | None:
    """The compiled kernel where this CPU has AVX512-BF16 and gcc builds it, else None."""
    return _library_with("linear_bf16_supported", "oneDNN runs bf16 linears")


@cache
def compact_kernel() -> ctypes.CDLL | None:
    """The compiled fp32 kernel over bf16 weights where this CPU has AVX2 and FMA, else None."""
    return _library_with("linear_f32_bf16w_supported", "MKL runs fp32 linears")


def _library_with(probe: str, otherwise: str) -> ctypes.CDLL | None:
    try:
        library = load_library("cpu_linear", default_build_dir())
    except KernelBuildError as error:
        logger.warning("the CPU linear kernel did not build (%s): %s", error, otherwise)
        return None
    return library if getattr(library, probe)() else None


def tile_weight(weight: torch.Tensor) -> torch.Tensor:  # [N, K] -> [ceil(N/32), K/2, 32, 2]
    """The weight in the kernel's layout; output channels past N are zero."""
    out_features, in_features = weight.shape
    if weight.dtype != torch.bfloat16 or in_features % 2:
        raise ValueError(
            f"the kernel takes bf16 weights of even width, got {weight.dtype} "
            f"[{out_features}, {in_features}]"
        )
    padded = F.pad(weight.detach(), (0, 0, 0, (-out_features) % TILE))
    tiles = padded.view(-1, TILE, in_features // 2, 2)  # [tiles, 32, K/2, 2]
    return tiles.permute(0, 2, 1, 3).contiguous()


def untile_weight(tiled: torch.Tensor, out_features: int, dtype: torch.dtype) -> torch.Tensor:
    """The [N, K] weight back from its tiles, in `dtype` (one pass)."""
    tiles, pairs = tiled.shape[0], tiled.shape[1]
    weight = torch.empty(tiles, TILE, pairs, 2, dtype=dtype, device=tiled.device)
    weight.copy_(tiled.permute(0, 2, 1, 3))
    return weight.view(tiles * TILE, pairs * 2)[:out_features]


def linear(
    library: ctypes.CDLL,
    rows: torch.Tensor,  # [M, K]: bf16 (the AVX512-BF16 kernel) or float32 (the AVX2 one)
    tiled: torch.Tensor,  # from tile_weight
    bias: torch.Tensor | None,  # [N] float32
    out_features: int,
) -> torch.Tensor:  # [M, N], the rows' dtype
    rows = rows.contiguous()
    function = library.linear_bf16 if rows.dtype == torch.bfloat16 else library.linear_f32_bf16w
    out = torch.empty(rows.shape[0], out_features, dtype=rows.dtype, device=rows.device)
    if rows.shape[0] == 0:
        return out
    bias_pointer = None if bias is None else bias.data_ptr()
    rows_count, in_features = rows.shape
    status = function(
        rows.data_ptr(),
        tiled.data_ptr(),
        bias_pointer,
        out.data_ptr(),
        rows_count,
        out_features,
        in_features,
    )
    if status != 0:
        raise RuntimeError(f"cpu_linear.c returned {status} (a bug: its inputs were checked)")
    return out
