"""Paged attention: the KV write and attention over a paged cache.

Three backends share one interface: the PyTorch reference (`reference.py`), which runs
everywhere; Triton kernels (`triton_*.py`), chosen on CUDA; and on the CPU a compiled C
decode kernel (`cpu_decode.c`, `cpu_attention.py`) beside the reference's prefill.
`backend.py` picks one per device, unless the caller forces one by name
(`metadata.backend`).
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from kernels.backend import AttentionBackendError, select_backend
    from kernels.metadata import PagedAttentionMetadata
    from kernels.paged import paged_attention, write_kv_cache

# NOTE: imported on first use, as `engine`'s exports are: the CLI reads the backends'
# names (backend_names.py) without paying for torch.
_EXPORTS = {
    "AttentionBackendError": "kernels.backend",
    "select_backend": "kernels.backend",
    "PagedAttentionMetadata": "kernels.metadata",
    "paged_attention": "kernels.paged",
    "write_kv_cache": "kernels.paged",
}


__getattr__ = lazy_exports("kernels", _EXPORTS)


__all__ = [
    "AttentionBackendError",
    "PagedAttentionMetadata",
    "paged_attention",
    "select_backend",
    "write_kv_cache",
]
