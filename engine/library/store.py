"""The local model store: one Hugging Face-format directory per model."""

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from common.errors import InvalidInputError
from common.paths import default_home
from engine.errors import ModelNotFoundError

# Written last by a conversion, so a readable manifest naming the model and its
# architecture means "complete"; a missing or damaged one means "pull again".
MANIFEST = "pagedrag.json"
QUANTIZED_DIR = "quantized"  # a store model's quantized weights, beside its own


def own_quantized_weights(model_dir: Path, tag: str) -> Path:
    """Where a store model keeps its quantized weights (`tag`: int8, int4-g32)."""
    return model_dir / QUANTIZED_DIR / f"{tag}.safetensors"


@dataclass(frozen=True)
class InstalledModel:
    """One complete model in the store, as `pagedrag models` lists it."""

    name: str  # the library name, or `gguf-<sha256 prefix>` for an imported .gguf file
    path: Path  # its Hugging Face-format directory
    size_bytes: int  # of the files in that directory
    architecture: str  # GGUF `general.architecture` (= Hugging Face `model_type`)


@dataclass(frozen=True)
class ModelStore:
    """Where converted models live; a directory is installed once its manifest is valid."""

    root: Path  # <home>/models

    @classmethod
    def default(cls, home: Path | None = None) -> "ModelStore":
        return cls((home or default_home()) / "models")

    def path_for(self, name: str) -> Path:
        """A directory name safe on any filesystem: `qwen2.5:0.5b` -> `qwen2.5--0.5b`."""
        return self.root / re.sub(r"[^A-Za-z0-9._-]", "--", name)

    def quantized_weights_path(self, model_dir: Path, tag: str) -> Path:
        """Where a model's quantized weights are kept, made once and loaded after that.

        A store model keeps them in its own directory (removed with it); a user's model
        directory is left untouched, its file kept in the store under a name derived
        from the directory's path.
        """
        model_dir = model_dir.resolve()
        if model_dir.parent == self.root.resolve():
            return own_quantized_weights(model_dir, tag)
        key = hashlib.sha256(str(model_dir).encode()).hexdigest()[:12]
        return self.root / QUANTIZED_DIR / f"{model_dir.name}-{key}" / f"{tag}.safetensors"

    def is_installed(self, name: str) -> bool:
        """Whether the model's directory has a valid manifest; if not, `pull` rebuilds it."""
        return _read_manifest(self.path_for(name) / MANIFEST) is not None

    def remove(self, name: str) -> None:
        """Delete an installed model, its quantized weights with it."""
        if not self.is_installed(name):
            raise ModelNotFoundError(f"model {name!r} is not installed")
        shutil.rmtree(self.path_for(name))

    def copy(self, source: str, destination: str) -> Path:
        """Install `source` again under the name `destination` (Ollama's `cp`)."""
        if not self.is_installed(source):
            raise ModelNotFoundError(f"model {source!r} is not installed")
        target = self.path_for(destination)
        if target.exists():
            raise InvalidInputError(f"a model named {destination!r} is already installed")
        partial = target.with_name(f".{target.name}.copying")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self.path_for(source), partial)
        manifest = json.loads((partial / MANIFEST).read_text())
        (partial / MANIFEST).write_text(json.dumps({**manifest, "name": destination}))
        os.replace(partial, target)  # complete or absent: its manifest is valid once there
        return target

    def installed(self) -> list[InstalledModel]:
        """Every complete model, sorted by directory; damaged entries are left out."""
        if not self.root.is_dir():
            return []
        models = []
        for manifest_path in sorted(self.root.glob(f"*/{MANIFEST}")):
            manifest = _read_manifest(manifest_path)
            if manifest is None:
                continue  # a damaged entry is not listed; `pull` rebuilds it
            directory = manifest_path.parent
            size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
            models.append(
                InstalledModel(manifest["name"], directory, size, manifest["architecture"])
            )
        return models


def _read_manifest(path: Path) -> dict[str, str] | None:
    """The manifest's name and architecture; None if it is missing, unreadable or incomplete."""
    try:
        manifest = json.loads(path.read_text())
        return {"name": str(manifest["name"]), "architecture": str(manifest["architecture"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_models(*, home: Path | None = None) -> list[InstalledModel]:
    """The models installed in the store under `home` (default: `default_home()`)."""
    return ModelStore.default(home).installed()
