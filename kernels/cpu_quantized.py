"""int4 and int8 weight-only linears on CPUs with AVX2, through the compiled
`cpu_quantized.c`.

The kernel multiplies the stored values where they are loaded, with integer copies of x
(one scale per group of input columns: int8 beside int4 weights, as llama.cpp's Q8_0
rows beside its 4-bit weights; int16 beside int8 weights), so a decode step streams the
weights at memory speed. On a 2-core AVX2 EPYC (`python -m bench.quantized_linears`,
2026-12-06), one row through 28 layers of the 1.5B model's int4 projections took 35 ms
against 103 ms with torch's `_weight_int4pack_mm_for_cpu`, 8 rows 109 against 308 ms.
Each layout groups 8 output channels ("tile") and 8 input columns ("step") in the order
the kernel's integer dot products read them (see `tile_int4` and `tile_int8`)."""

import ctypes
import logging
from functools import cache

import torch

from kernels.cpu_build import KernelBuildError, default_build_dir, load_library

logger = logging.getLogger(__name__)

TILE = 8  # output channels per tile (TILE in cpu_quantized.c)
STEP = 8  # input columns per step (CHUNK in cpu_quantized.c)
MAX_GROUP = 4096  # int4: the largest group taken (4-bit formats use 32-256; sums stay < 2^31)
INT8_GROUP = 128  # int8 weights: the input columns that share one scale of x's int16 copy


@cache
def quantized_kernel() -> ctypes.CDLL | None:
    """The compiled kernel where this CPU has AVX2 and FMA and gcc builds it, else None."""
    try:
        library = load_library("cpu_quantized", default_build_dir())
    except KernelBuildError as error:
        logger.warning("the CPU quantized kernel did not build (%s): torch's kernels run", error)
        return None
    return library if library.linear_quantized_supported() else None


def fits(method: str, out_features: int, in_features: int, group_size: int) -> bool:
    """Whether the kernel's layout holds a weight of this shape (and int4 group size)."""
    if out_features % TILE:
        return False
    if method == "int8":
        return in_features % INT8_GROUP == 0
    return group_size % STEP == 0 and group_size <= MAX_GROUP and in_features % group_size == 0


def tile_int4(
    values: torch.Tensor,  # [N, K] uint8, 0..15
    scales: torch.Tensor,  # [N, K / group_size]
    zeros: torch.Tensor,  # [N, K / group_size]
) -> tuple[torch.Tensor, torch.Tensor]:  # [N/8, K/8, 32] uint8, [N/8, groups, 2, 8] bf16
    """int4 in the kernel's layout: byte 4m + j of a step's 32 holds output channel m's
    values at columns k0 + j (low nibble) and k0 + 4 + j (high nibble)."""
    out_features, in_features = values.shape
    groups = scales.shape[1]
    if not fits("int4", out_features, in_features, in_features // groups):
        raise ValueError(f"the int4 kernel cannot hold a [{out_features}, {in_features}] weight")
    nibbles = values.to(torch.uint8).view(out_features // TILE, TILE, in_features // STEP, 2, 4)
    nibbles = nibbles.permute(0, 2, 1, 4, 3)  # [tiles, steps, 8 channels, 4 (j), 2 (low/high)]
    packed = (nibbles[..., 0] | (nibbles[..., 1] << 4)).contiguous()
    packed = packed.view(out_features // TILE, in_features // STEP, 32)
    pairs = torch.stack([scales, zeros], dim=1).to(torch.bfloat16)  # [N, 2, groups]
    pairs = pairs.view(out_features // TILE, TILE, 2, groups).permute(0, 3, 2, 1)
    return packed, pairs.contiguous()


def tile_int8(qweight: torch.Tensor) -> torch.Tensor:  # [N, K] int8 -> [N/8, K/8, 64] int8
    """int8 in the kernel's layout: byte 16t + 2m + p of a step's 64 bytes is output
    channel m's value at column k0 + 2t + p."""
    out_features, in_features = qweight.shape
    if not fits("int8", out_features, in_features, 0):
        raise ValueError(f"the int8 kernel cannot hold a [{out_features}, {in_features}] weight")
    values = qweight.view(out_features // TILE, TILE, in_features // STEP, STEP // 2, 2)
    values = values.permute(0, 2, 3, 1, 4)  # [tiles, steps, 4 (t), 8 channels, 2 (p)]
    return values.contiguous().view(out_features // TILE, in_features // STEP, 64)


def linear_int4(
    library: ctypes.CDLL,
    rows: torch.Tensor,  # [M, K]
    packed: torch.Tensor,  # from tile_int4
    scales_zeros: torch.Tensor,  # from tile_int4
    bias: torch.Tensor | None,  # [N] float32
) -> torch.Tensor:  # [M, N] float32
    rows, out = _rows_and_out(rows, packed.shape[0] * TILE)
    group_size = rows.shape[1] // scales_zeros.shape[1]
    if rows.shape[0]:
        _check(
            library.linear_int4(
                rows.data_ptr(),
                packed.data_ptr(),
                scales_zeros.data_ptr(),
                None if bias is None else bias.data_ptr(),
                out.data_ptr(),
                *out.shape,
                rows.shape[1],
                group_size,
            )
        )
    return out


def linear_int8(
    library: ctypes.CDLL,
    rows: torch.Tensor,  # [M, K]
    packed: torch.Tensor,  # from tile_int8
    scales: torch.Tensor,  # [N] float32
    bias: torch.Tensor | None,  # [N] float32
) -> torch.Tensor:  # [M, N] float32
    rows, out = _rows_and_out(rows, packed.shape[0] * TILE)
    if rows.shape[0]:
        _check(
            library.linear_int8(
                rows.data_ptr(),
                packed.data_ptr(),
                scales.data_ptr(),
                None if bias is None else bias.data_ptr(),
                out.data_ptr(),
                *out.shape,
                rows.shape[1],
            )
        )
    return out


def _rows_and_out(rows: torch.Tensor, out_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = rows.to(torch.float32).contiguous()
    return rows, torch.empty(rows.shape[0], out_features, dtype=torch.float32)


def _check(status: int) -> None:
    if status == -3:
        raise MemoryError("cpu_quantized.c could not allocate its integer rows")
    if status != 0:
        raise RuntimeError(f"cpu_quantized.c returned {status} (a bug: its inputs were checked)")
