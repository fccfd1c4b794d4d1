"""Server settings: what `pagedrag serve` flags (or a test) decide."""

from dataclasses import dataclass, field
from pathlib import Path

from api.server.auth import AuthPolicy
from api.server.browser_safety import BrowserPolicy
from engine.config import EngineConfig


@dataclass(frozen=True)
class PoolSettings:
    """`pagedrag serve --max-loaded-models / --keep-alive`."""

    max_loaded: int = 3  # generators in memory at once, the server's own included (Ollama's 3)
    keep_alive: float | None = 300.0  # seconds an idle model stays; None: until the server stops
    load_timeout: float = 300.0  # seconds a request waits for a loaded model to go idle

    def __post_init__(self) -> None:
        if self.max_loaded < 1:
            raise ValueError("max_loaded must be at least 1 (the server's own model)")
        if self.keep_alive is not None and self.keep_alive < 0:
            raise ValueError("keep_alive must not be negative (None keeps models loaded)")
        if self.load_timeout <= 0:
            raise ValueError("load_timeout must be positive")


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    embedder: str | None = None  # None: the index's own, else the default
    database_url: str | None = None  # the library's database; None: SQLite in data_dir
    max_upload_bytes: int = 100 << 20  # one POST /ingest; larger requests get 413
    background_ingest_bytes: int = 2 << 20  # uploads above this run as a background job
    max_prompt_chars: int = 200_000  # raw prompts above this get 400 before tokenizing
    engine: EngineConfig = field(default_factory=EngineConfig)  # its model: the one served
    ingest_paths: tuple[Path, ...] = ()  # ingested at start-up; unchanged files are skipped
    # Host names and foreign origins accepted (default: loopback names, no origin)
    browser: BrowserPolicy = field(default_factory=BrowserPolicy)
    auth: AuthPolicy = field(default_factory=AuthPolicy)  # API keys; none: open
    models: PoolSettings = field(default_factory=PoolSettings)  # other models, on demand

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be positive")
        if self.background_ingest_bytes < 0:
            raise ValueError("background_ingest_bytes must not be negative")
