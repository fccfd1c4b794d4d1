"""Which implementation runs attention: Triton on CUDA, the compiled CPU kernel on the CPU.

On the CPU, decodes run in `cpu_decode.c`, compiled for this machine on first use
(`cpu_build.py`); where it cannot be built (no C compiler), the PyTorch reference runs
instead, with a warning. A caller may force a backend by name ("triton", "cpu" or
"reference": the engine's `attention_backend`, which the command line takes from
`PAGEDRAG_ATTENTION`), for debugging and tests; with `TRITON_INTERPRET=1` the forced
Triton path runs on the CPU, in Triton's interpreter. Triton is imported only once it
is chosen, so `import kernels` and the CPU path never need it.
"""

import logging
from functools import cache
from typing import Protocol

import torch

from kernels import reference
from kernels.backend_names import CHOICES
from kernels.cpu_attention import CpuAttention
from kernels.cpu_build import KernelBuildError, default_build_dir, load_library
from kernels.metadata import PagedAttentionMetadata

logger = logging.getLogger(__name__)


class AttentionBackendError(ValueError):
    """A forced backend this machine cannot honour; the message says why."""


class AttentionBackend(Protocol):
    """The interface of `kernels.reference`, which every backend module implements."""

    @property
    def NAME(self) -> str:  # the name that forces it
        ...

    def write_kv_cache(
        self,
        key: torch.Tensor,
        value: torch.Tensor,
        key_cache: torch.Tensor,
        value_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
    ) -> None: ...

    def paged_attention(
        self,
        query: torch.Tensor,
        key_cache: torch.Tensor,
        value_cache: torch.Tensor,
        metadata: PagedAttentionMetadata,
        scale: float,
    ) -> torch.Tensor: ...


def select_backend(device: torch.device, forced: str | None = None) -> AttentionBackend:
    """The backend for tensors on `device`: the one `forced` names, else Triton on CUDA
    when it imports, else the compiled CPU kernel when it builds, else the reference.

    Raises:
        AttentionBackendError: an unknown name, or a backend forced where it cannot run.
    """
    return _select(forced or None, device.type)


@cache
def _select(forced: str | None, device_type: str) -> AttentionBackend:
    if forced is not None and forced not in CHOICES:
        raise AttentionBackendError(
            f"the attention backend must be one of {', '.join(CHOICES)} (or unset to choose "
            f"by device), got {forced!r}"
        )
    if forced == "reference":
        return reference
    if forced == "cpu" or (forced is None and device_type == "cpu"):
        return _cpu(forced, device_type)
    if forced is None and device_type != "cuda":
        return reference
    return _triton(forced, device_type)


def _cpu(forced: str | None, device_type: str) -> AttentionBackend:
    if device_type != "cpu":
        raise AttentionBackendError(
            f"the cpu attention backend runs on the CPU, not on {device_type}"
        )
    try:
        return CpuAttention(load_library("cpu_decode", default_build_dir()))
    except KernelBuildError as error:
        if forced is None:
            logger.warning(
                "the CPU attention kernel did not build (%s): decodes run on the "
                "PyTorch reference, slower",
                error,
            )
            return reference
        raise AttentionBackendError(f"the cpu attention backend cannot run: {error}") from error


def _triton(forced: str | None, device_type: str) -> AttentionBackend:
    try:
        from kernels import triton_attention
    except ImportError as error:
        if forced is None:
            logger.warning("Triton does not import (%s): attention runs on the reference", error)
            return reference
        raise AttentionBackendError(
            f"the triton attention backend was asked for but Triton does not import ({error}); "
            "install it (pip install triton) or let the device choose"
        ) from error
    if device_type != "cuda" and not triton_attention.INTERPRETED:
        raise AttentionBackendError(
            f"the triton attention backend on {device_type} needs TRITON_INTERPRET=1 in the "
            "environment before the kernels are first imported (or a CUDA device)"
        )
    return triton_attention
