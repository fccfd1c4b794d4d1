"""`--model` accepts a library name, a Hugging Face model directory or a .gguf file."""

from pathlib import Path

from engine.errors import ModelNotFoundError, UnsupportedModelError
from engine.library.catalog import CATALOG, DEFAULT_MODEL, library_name
from engine.library.convert import check_gguf_architecture
from engine.library.pull import build_dir, file_sha256, install_gguf, pull, unknown_model
from engine.library.store import ModelStore


def resolve_model(model: str | None, *, home: Path | None = None, progress: bool = True) -> Path:
    """The local Hugging Face-format directory to load for `model`.

    Args:
        model: None (the default model), a library name (pulled first if it is not
            yet, as `ollama run` does), a Hugging Face model directory (used in
            place), or a .gguf file (converted once into the store, then reused).
        home: the PagedRAG home holding the store; default: `default_home()`.
        progress: progress bars and messages on stderr for slow steps.

    Returns:
        A directory with config.json, safetensors weights and tokenizer files.
    """
    store = ModelStore.default(home)
    name = library_name(model or DEFAULT_MODEL)
    if name in CATALOG:
        return pull(name, store=store, progress=progress)
    if not _looks_like_a_path(name) and store.is_installed(name):
        return store.path_for(name)  # a copy made with /api/copy
    path = Path(name).expanduser()
    if path.is_dir():
        _check_hf_directory(path)
        return path.resolve()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _import_gguf(path, store, progress)
    if path.exists():
        raise UnsupportedModelError(
            f"{path} is neither a model directory nor a .gguf file; pass one of those "
            f"or a library name ({', '.join(CATALOG)})"
        )
    if _looks_like_a_path(name):
        raise ModelNotFoundError(f"{path}: no such file or directory")
    raise unknown_model(name)


def public_name(model: str | None) -> str:
    """What messages call a model: its library name (the default tag filled in), else
    the name of its folder or .gguf file (never the store's folder name)."""
    name = library_name(model or DEFAULT_MODEL)
    return name if name in CATALOG else Path(name).expanduser().name


def _looks_like_a_path(name: str) -> bool:
    return "/" in name or name.startswith(("~", ".")) or name.lower().endswith(".gguf")


def _check_hf_directory(path: Path) -> None:
    from engine.models import SUPPORTED_MODEL_TYPES
    from engine.models.loader import read_hf_config

    model_type = read_hf_config(path).get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{path} holds a {model_type!r} model; PagedRAG runs "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}: pick a model of one of those"
        )
    if not any(path.glob("*.safetensors")):
        raise UnsupportedModelError(
            f"{path} has no .safetensors weights; save the model with safetensors "
            "(save_pretrained(..., safe_serialization=True)) and try again"
        )


def _import_gguf(path: Path, store: ModelStore, progress: bool) -> Path:
    """Convert a user's GGUF once, keyed by its content, and reuse it afterwards."""
    # NOTE: the cheap header check comes first, so a wrong file fails before it is hashed.
    check_gguf_architecture(path)
    sha256 = file_sha256(path, progress)
    name = f"gguf-{sha256[:12]}"
    if store.is_installed(name):
        return store.path_for(name)
    with build_dir(store) as build:
        # NOTE: a link, not a copy: transformers reads the GGUF by folder and file name.
        local = build / "model.gguf"
        local.symlink_to(path.resolve())
        source = f"file:{path.resolve()}"
        return install_gguf(
            store, name, local, sha256, source, build, progress=progress, shown_as=path
        )
