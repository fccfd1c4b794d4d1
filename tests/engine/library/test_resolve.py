"""`resolve_model`: names, directories and .gguf files; bad input fails with one clear line."""

import json
import re
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.errors import ModelIntegrityError, ModelNotFoundError, UnsupportedModelError
from engine.library import (
    DEFAULT_MODEL,
    ModelStore,
    library_name,
    list_models,
    resolve,
    resolve_model,
)
from engine.library.pull import file_sha256
from engine.library.store import MANIFEST
from tests.engine.library.conftest import SMOLLM2


def write_gguf(path: Path, architecture: str) -> Path:
    """A tiny but valid GGUF file with one tensor."""
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_tensor("token_embd.weight", np.zeros((4, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unknown_name_lists_the_known_ones(home: Path) -> None:
    pattern = (
        r"unknown model 'llama9:1t'; known models: qwen2\.5-coder:0\.5b-instruct, "
        r"qwen2\.5-coder:1\.5b-instruct, smollm2"
    )
    with pytest.raises(ModelNotFoundError, match=pattern):
        resolve_model("llama9:1t", home=home)


@pytest.mark.parametrize("name", ["absent.gguf", "absent-dir/"])
def test_missing_path(tmp_path: Path, home: Path, name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="no such file or directory"):
        resolve_model(str(tmp_path / name), home=home)


def test_unsupported_architecture_directory(tmp_path: Path, home: Path) -> None:
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(UnsupportedModelError, match="'gpt2' model; PagedRAG runs llama, qwen2"):
        resolve_model(str(tmp_path / "gpt2"), home=home)


def test_directory_with_broken_config(tmp_path: Path, home: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="not valid JSON"):
        resolve_model(str(tmp_path / "broken"), home=home)


def test_directory_without_config(tmp_path: Path, home: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no config"):
        resolve_model(str(tmp_path), home=home)


def test_directory_without_safetensors(tmp_path: Path, home: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(UnsupportedModelError, match=r"no \.safetensors weights"):
        resolve_model(str(tmp_path), home=home)


def test_file_that_is_not_a_model(tmp_path: Path, home: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedModelError, match=r"neither a model directory nor a \.gguf"):
        resolve_model(str(tmp_path / "notes.txt"), home=home)


def test_corrupt_gguf_is_refused(tmp_path: Path, home: Path) -> None:
    corrupt = tmp_path / "random.gguf"
    corrupt.write_bytes(np.random.default_rng(0).bytes(1 << 16))
    with pytest.raises(ModelIntegrityError, match=re.escape(f"{corrupt} is not a valid GGUF file")):
        resolve_model(str(corrupt), home=home)
    assert list_models(home=home) == []


def test_truncated_gguf_is_refused(tmp_path: Path, home: Path, smollm2_gguf: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    with smollm2_gguf.open("rb") as source:
        truncated.write_bytes(source.read(5 << 20))  # the header is whole, the tensors are not
    with pytest.raises(ModelIntegrityError, match=re.escape(str(truncated)) + ".*corrupt"):
        resolve_model(str(truncated), home=home)
    assert list_models(home=home) == []


def test_gguf_of_an_unsupported_architecture(tmp_path: Path, home: Path) -> None:
    path = write_gguf(tmp_path / "tiny-gpt2.gguf", "gpt2")
    with pytest.raises(UnsupportedModelError, match="'gpt2' model; PagedRAG runs llama, qwen2"):
        resolve_model(str(path), home=home)


@pytest.mark.slow
def test_local_gguf_is_converted_once_and_reused(
    tmp_path: Path, home: Path, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "my models" / "SmolLM2.gguf"
    mine.parent.mkdir()
    shutil.copyfile(smollm2_gguf, mine)
    path = resolve_model(str(mine), home=home, progress=False)
    assert path == ModelStore.default(home).path_for(f"gguf-{SMOLLM2.sha256[:12]}")
    assert json.loads((path / "config.json").read_text())["model_type"] == "llama"
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["source"] == f"file:{mine.resolve()}"
    assert manifest["gguf_sha256"] == file_sha256(mine) == SMOLLM2.sha256

    # The same bytes elsewhere are found by content, without a second conversion.
    def no_second_conversion(*_: object, **__: object) -> Path:
        raise AssertionError("the GGUF was converted again")

    monkeypatch.setattr(resolve, "install_gguf", no_second_conversion)
    assert resolve_model(str(smollm2_gguf), home=home, progress=False) == path
    assert [model.name for model in list_models(home=home)] == [path.name]


@pytest.mark.slow
def test_hugging_face_directory_is_used_in_place(pulled_store: ModelStore, home: Path) -> None:
    directory = pulled_store.path_for(SMOLLM2.name)
    assert resolve_model(str(directory), home=home) == directory.resolve()
    assert not ModelStore.default(home).root.exists()  # nothing copied into the store


@pytest.mark.parametrize(
    ("asked", "named"),
    [
        ("qwen2.5-coder", DEFAULT_MODEL),  # the family's default tag
        ("qwen2.5-coder:latest", DEFAULT_MODEL),
        ("qwen2.5-coder:0.5b", "qwen2.5-coder:0.5b-instruct"),  # the one tag of that size
        ("smollm2:135m", "smollm2:135m-instruct"),
        ("qwen2.5-coder:7b", "qwen2.5-coder:7b"),  # no such size: left as asked
        ("my-model:latest", "my-model:latest"),
    ],
)
def test_library_names_take_tags_as_ollama_does(asked: str, named: str) -> None:
    assert library_name(asked) == named
