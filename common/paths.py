"""The one home-directory default: models, data and caches live under it."""

import os
from pathlib import Path

HOME_VARIABLE = "PAGEDRAG_HOME"


def pagedrag_home() -> Path:
    """`$PAGEDRAG_HOME`, else `~/.cache/pagedrag`."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".cache" / "pagedrag").expanduser()
