"""Turning the paths a user gives into the files to ingest, and keeping their originals."""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from indexer.atomic import write_atomically
from indexer.parsers import is_supported


@dataclass(frozen=True)
class Sources:
    files: list[Path]
    unsupported: list[Path]  # found inside directories; skipped, not failures
    problems: list[tuple[Path, str]]  # named by the user but missing or unsupported


def expand(paths: Iterable[str | Path]) -> Sources:
    """Files as given, directories recursively (sorted, hidden entries skipped)."""
    files: list[Path] = []
    unsupported: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if not found.is_file() or _hidden(found.relative_to(path)):
                    continue
                (files if is_supported(found) else unsupported).append(found)
        elif path.is_file():
            if is_supported(path):
                files.append(path)
            else:
                problems.append((path, f"{path.name}: unsupported file type {path.suffix!r}"))
        else:
            problems.append((path, f"{path}: no such file or directory"))
    return Sources(files, unsupported, problems)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keep_original(files_dir: Path, data: bytes, sha256: str, suffix: str) -> str:
    """Store the uploaded bytes once per content; returns the name under `files_dir`."""
    name = f"{sha256}{suffix.lower()}"
    path = files_dir / name
    if not path.exists():
        files_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda file: file.write(data))
    return name
