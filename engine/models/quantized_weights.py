"""Quantized weights on disk: made once from the full-precision ones, then loaded as they are.

A file records a fingerprint of the safetensors it was made from (names, sizes, times),
so a user's model directory whose weights change is quantized again rather than served
stale. Writes go to a temporary file renamed into place: a crash leaves no half file.
"""

import hashlib
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

logger = logging.getLogger(__name__)

FORMAT_VERSION = "2"  # 2: int4 grids fitted per group; a tied head kept as int8


def weights_fingerprint(model_dir: Path) -> str:
    """Changes whenever a safetensors file of the model is added, removed or rewritten."""
    digest = hashlib.sha256()
    for file in sorted(model_dir.glob("*.safetensors")):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def load_saved(path: Path, fingerprint: str) -> dict[str, torch.Tensor]:
    """The tensors saved at `path` for these weights; empty if none fit (then quantize)."""
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
        if metadata.get("fingerprint") != fingerprint or metadata.get("format") != FORMAT_VERSION:
            logger.info("%s was made from other weights: quantizing again", path)
            return {}
        return load_file(str(path))
    except (OSError, SafetensorError) as error:
        logger.warning("%s is unreadable (%s): quantizing again", path, error)
        return {}


def save(path: Path, tensors: dict[str, torch.Tensor], fingerprint: str) -> None:
    """Write atomically; a store that cannot be written only costs the next start time."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cpu = {name: tensor.contiguous().cpu() for name, tensor in tensors.items()}
        save_file(cpu, str(temporary), {"fingerprint": fingerprint, "format": FORMAT_VERSION})
        os.replace(temporary, path)
    except OSError as error:
        logger.warning("could not keep the quantized weights in %s: %s", path, error)
        temporary.unlink(missing_ok=True)
