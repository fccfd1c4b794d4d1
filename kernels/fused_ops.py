"""The small per-token ops of a decoder layer: residual add + RMSNorm, rotary embedding,
SiLU-and-multiply.

A decode step of a 28-layer model runs about 150 of them on one row each, and torch
dispatches each as five to eight ops: on a 2-core EPYC they took about 5 ms of a 57 ms
int4 decode step (2026-12-06, an ad-hoc profile). On the CPU one call into the compiled
`cpu_fused.c` does each of the first two; elsewhere (CUDA, an unsupported dtype or
layout, no compiler) the PyTorch reference below runs. The two round alike (see the C
file), and the tests compare them on random inputs.
"""

import ctypes
import logging
from functools import cache

import torch
import torch.nn.functional as F

from kernels.cpu_build import KernelBuildError, default_build_dir, load_library

logger = logging.getLogger(__name__)

DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1}
MAX_HEAD_DIM = 256  # MAX_HEAD_DIM in cpu_fused.c


@cache
def fused_kernel() -> ctypes.CDLL | None:
    """The compiled kernel where gcc builds it, else None (the reference runs)."""
    try:
        return load_library("cpu_fused", default_build_dir())
    except KernelBuildError as error:
        logger.warning("the CPU fused-op kernel did not build (%s): torch's ops run", error)
        return None


def _library_for(*tensors: torch.Tensor) -> ctypes.CDLL | None:
    """The kernel where every tensor is a contiguous CPU tensor of one supported dtype."""
    first = tensors[0]
    if first.device.type != "cpu" or first.dtype not in DTYPE_CODES:
        return None
    if any(t.dtype != first.dtype or not t.is_contiguous() for t in tensors):
        return None
    return fused_kernel()


def rms_norm(
    x: torch.Tensor,  # [rows, hidden]
    weight: torch.Tensor,  # [hidden]
    eps: float,
    residual: torch.Tensor | None = None,  # [rows, hidden]
) -> tuple[torch.Tensor, torch.Tensor]:  # normalized [rows, hidden], the new residual
    """weight * RMSNorm(x + residual), and x + residual (x itself when there is none).

    The compiled path updates `residual` in place and returns it: the caller hands over a
    residual stream it owns, as each decoder layer does.
    """
    operands = (x, weight) if residual is None else (x, weight, residual)
    library = _library_for(*operands)
    shapes_fit = x.dim() == 2 and weight.shape == x.shape[1:]
    if library is None or not shapes_fit or (residual is not None and residual.shape != x.shape):
        return reference_rms_norm(x, weight, eps, residual)
    out = torch.empty_like(x)
    status = library.fused_rms_norm(
        x.data_ptr(),
        None if residual is None else residual.data_ptr(),
        weight.data_ptr(),
        out.data_ptr(),
        x.shape[0],
        x.shape[1],
        eps,
        DTYPE_CODES[x.dtype],
    )
    _check(status, "fused_rms_norm")
    return out, x if residual is None else residual


def reference_rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    # NOTE: normalised in fp32, then back to the model dtype before the weight, as
    # Hugging Face does (its five ops are one fused `rms_norm` here, bit for bit).
    if residual is not None:
        x = x + residual
    normalized = torch.rms_norm(x.float(), weight.shape, eps=eps)
    return weight * normalized.to(x.dtype), x


def rotate_heads(
    rows: torch.Tensor,  # [tokens, width]: `heads` heads of head_dim from column 0
    cos: torch.Tensor,  # [tokens, 1, head_dim], the activations' dtype
    sin: torch.Tensor,  # [tokens, 1, head_dim]
    heads: int,
    head_dim: int,
) -> torch.Tensor:  # [tokens, heads, head_dim]
    """The first `heads` heads of each row rotated by the rows' angles (rotate-half).

    The compiled path rotates in place and returns a view of `rows`; the reference
    returns a new tensor.
    """
    library = _library_for(cos, sin)
    heads_view = rows[:, : heads * head_dim].unflatten(1, (heads, head_dim))
    if (
        library is None
        or rows.dtype != cos.dtype
        or rows.dim() != 2
        or rows.stride(1) != 1
        or cos.shape != (rows.shape[0], 1, head_dim)
        or sin.shape != cos.shape
        or head_dim > MAX_HEAD_DIM
        or head_dim % 2
    ):
        return reference_rotate(heads_view, cos, sin)
    status = library.rotate_heads(
        rows.data_ptr(),
        cos.data_ptr(),
        sin.data_ptr(),
        rows.shape[0],
        heads,
        head_dim,
        rows.stride(0),
        DTYPE_CODES[rows.dtype],
    )
    _check(status, "rotate_heads")
    return heads_view


def reference_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:  # [rows, 2 * width] -> [rows, width]
    """silu(gate) * up, the SwiGLU activation, with gate and up the two halves of a row.

    NOTE: torch's own ops on every device: its vectorised SiLU beat a C loop with a
    polynomial exp (one 8,960-wide row: 17 against 25 us on a 2-core EPYC).
    """
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate).mul_(up)


def _check(status: int, name: str) -> None:
    if status != 0:  # the wrappers checked every argument the kernel checks
        raise RuntimeError(f"{name} refused its arguments (status {status}): a wrapper bug")
