"""Which implementation runs attention: the Triton kernels on CUDA, the PyTorch reference elsewhere.

`PAGEDRAG_ATTENTION=triton` or `=reference` forces one, for debugging and tests;
with `TRITON_INTERPRET=1` the forced Triton path runs on the CPU, in Triton's
interpreter. Triton is imported only once it is chosen, so `import kernels` and
the CPU path never need it.
"""

import logging
import os
from functools import cache
from typing import Protocol

import torch

from kernels import reference
from kernels.metadata import PagedAttentionMetadata

logger = logging.getLogger(__name__)

# NOTE: read here rather than at the edge because it is a debugging switch for the one
# layer every caller (engine, tests, benchmarks) goes through; read on every call
# (a dictionary lookup) so that a test can change it, and resolved once per value.
ENV_VAR = "PAGEDRAG_ATTENTION"
CHOICES = ("triton", "reference")


class AttentionBackendError(ValueError):
    """A PAGEDRAG_ATTENTION setting this machine cannot honour; the message says why."""


class AttentionBackend(Protocol):
    """The interface of `kernels.reference`, which every backend module implements."""

    NAME: str  # what PAGEDRAG_ATTENTION calls it

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


def select_backend(device: torch.device) -> AttentionBackend:
    """The backend for tensors on `device`: the one forced by PAGEDRAG_ATTENTION, else
    Triton on CUDA when it imports, else the reference.

    Raises:
        AttentionBackendError: an unknown PAGEDRAG_ATTENTION value, or `triton` forced
            where it cannot run.
    """
    return _select(os.environ.get(ENV_VAR) or None, device.type)


@cache
def _select(setting: str | None, device_type: str) -> AttentionBackend:
    if setting is not None and setting not in CHOICES:
        raise AttentionBackendError(
            f"{ENV_VAR} must be one of {', '.join(CHOICES)} (or unset to choose by device), "
            f"got {setting!r}"
        )
    if setting == "reference" or (setting is None and device_type != "cuda"):
        return reference
    try:
        from kernels import triton_attention
    except ImportError as error:
        if setting is None:
            logger.warning("Triton does not import (%s): attention runs on the reference", error)
            return reference
        raise AttentionBackendError(
            f"{ENV_VAR}=triton but Triton does not import ({error}); "
            f"install it (pip install triton) or unset {ENV_VAR}"
        ) from error
    if device_type != "cuda" and not triton_attention.INTERPRETED:
        raise AttentionBackendError(
            f"{ENV_VAR}=triton on {device_type} needs TRITON_INTERPRET=1 in the environment "
            "before the kernels are first imported (or a CUDA device)"
        )
    return triton_attention
