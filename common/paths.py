"""The one home-directory default: models, data and caches live under it."""

from pathlib import Path


def default_home() -> Path:
    """`~/.cache/pagedrag`; the command line and the server let `PAGEDRAG_HOME` move it
    (api/settings.py), the Python API takes `home=` where it matters."""
    return Path.home() / ".cache" / "pagedrag"
