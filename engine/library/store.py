"""The local model store: one Hugging Face-format directory per model."""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "pagedrag.json"  # written last by a conversion: its presence means "complete"


def default_home() -> Path:
    """`$PAGEDRAG_HOME`, or `~/.cache/pagedrag`: the one place that reads the environment."""
    return Path(os.environ.get("PAGEDRAG_HOME") or Path.home() / ".cache" / "pagedrag")


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    size_bytes: int
    architecture: str


@dataclass(frozen=True)
class ModelStore:
    root: Path  # <home>/models

    @classmethod
    def default(cls, home: Path | None = None) -> "ModelStore":
        return cls((home or default_home()) / "models")

    def path_for(self, name: str) -> Path:
        """A directory name safe on any filesystem: `qwen2.5:0.5b` -> `qwen2.5--0.5b`."""
        return self.root / re.sub(r"[^A-Za-z0-9._-]", "--", name)

    def is_installed(self, name: str) -> bool:
        return (self.path_for(name) / MANIFEST).is_file()

    def installed(self) -> list[InstalledModel]:
        if not self.root.is_dir():
            return []
        models = []
        for manifest_path in sorted(self.root.glob(f"*/{MANIFEST}")):
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a damaged entry is not listed; `pull` rebuilds it
            directory = manifest_path.parent
            size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
            models.append(
                InstalledModel(manifest["name"], directory, size, manifest["architecture"])
            )
        return models
