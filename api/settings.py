"""Settings from outside the code, read once at the edge: the `PAGEDRAG_` variables.

The `pagedrag` command reads them as it starts and hands typed sections down: the home
to the model store and the engine, the library's folder and database to the index, a
forced attention backend to the engine, an API key to the server. Flags win over
variables. Nothing below `api/` reads the environment (tests/test_layering.py holds
every package to that), so the Python API does exactly what its arguments say.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.errors import InvalidInputError
from common.paths import default_home
from engine.config import ATTENTION_BACKENDS
from indexer.paths import default_data_dir

HOME = "PAGEDRAG_HOME"  # models, and the library unless PAGEDRAG_DATA_DIR says otherwise
DATA_DIR = "PAGEDRAG_DATA_DIR"
DATABASE_URL = "PAGEDRAG_DATABASE_URL"  # SQLAlchemy URL; unset: SQLite in the data folder
ATTENTION = "PAGEDRAG_ATTENTION"  # "triton", "cpu" or "reference"; unset: by device
API_KEY = "PAGEDRAG_API_KEY"  # one more admin key for `pagedrag serve`


@dataclass(frozen=True)
class LibrarySettings:
    """Where the documents live: every command that opens the library gets both."""

    data_dir: Path
    database_url: str | None  # None: SQLite in data_dir


@dataclass(frozen=True)
class EngineSettings:
    """What `EngineConfig` takes from outside: where models are, which kernels run."""

    home: Path
    attention_backend: str | None  # None: Triton on CUDA, the compiled kernel on the CPU


@dataclass(frozen=True)
class Settings:
    library: LibrarySettings
    engine: EngineSettings
    api_key: str | None  # None: no key from the environment

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """The settings the variables in `environ` give (an empty one means unset).

        Raises:
            InvalidInputError: PAGEDRAG_ATTENTION names no backend.
        """
        home = _path(environ.get(HOME)) or default_home()
        attention = environ.get(ATTENTION) or None
        if attention is not None and attention not in ATTENTION_BACKENDS:
            raise InvalidInputError(
                f"{ATTENTION} must be one of {', '.join(ATTENTION_BACKENDS)} (or unset to "
                f"choose by device), got {attention!r}"
            )
        return cls(
            library=LibrarySettings(
                data_dir=_path(environ.get(DATA_DIR)) or default_data_dir(home),
                database_url=environ.get(DATABASE_URL) or None,
            ),
            engine=EngineSettings(home=home, attention_backend=attention),
            api_key=environ.get(API_KEY) or None,
        )

    def engine_options(self) -> dict[str, object]:
        """The `EngineConfig` fields these settings decide."""
        return {"home": self.engine.home, "attention_backend": self.engine.attention_backend}


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
