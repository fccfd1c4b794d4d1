"""`--model` accepts a library name, a Hugging Face model directory or a .gguf file."""

from pathlib import Path

from engine.errors import ModelNotFoundError, UnsupportedModelError
from engine.library.catalog import CATALOG, DEFAULT_MODEL
from engine.library.pull import build_dir, file_sha256, install_gguf, pull
from engine.library.store import ModelStore


def resolve_model(model: str | None, *, home: Path | None = None, progress: bool = True) -> Path:
    """The local Hugging Face-format directory to load for `model`.

    None means the default model. A library name not yet pulled is pulled first,
    as `ollama run` does. A .gguf file is converted once into the store.
    """
    store = ModelStore.default(home)
    name = model or DEFAULT_MODEL
    if name in CATALOG:
        return pull(name, store=store, progress=progress)
    path = Path(name).expanduser()
    if path.is_dir():
        _check_hf_directory(path)
        return path.resolve()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _import_gguf(path, store, progress)
    if path.exists():
        raise UnsupportedModelError(f"{path} is neither a model directory nor a .gguf file")
    if "/" in name or name.lower().endswith(".gguf"):
        raise ModelNotFoundError(f"{path}: no such file or directory")
    raise ModelNotFoundError(
        f"unknown model {name!r}; known models: {', '.join(CATALOG)} "
        "(or pass a Hugging Face model directory or a .gguf file)"
    )


def _check_hf_directory(path: Path) -> None:
    from engine.models import SUPPORTED_MODEL_TYPES
    from engine.models.loader import read_hf_config

    model_type = read_hf_config(path).get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{path} holds a {model_type!r} model; PagedRAG runs {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if not any(path.glob("*.safetensors")):
        raise UnsupportedModelError(
            f"{path} has no .safetensors weights (convert .bin weights first)"
        )


def _import_gguf(path: Path, store: ModelStore, progress: bool) -> Path:
    """Convert a user's GGUF once, keyed by its content, and reuse it afterwards."""
    sha256 = file_sha256(path)
    name = f"gguf-{sha256[:12]}"
    if store.is_installed(name):
        return store.path_for(name)
    with build_dir(store) as build:
        local = build / "model.gguf"
        local.symlink_to(path.resolve())
        return install_gguf(store, name, local, sha256, f"file:{path.resolve()}", build, progress)
