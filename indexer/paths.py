"""Where an index lives when the user does not say."""

import os
from pathlib import Path


def default_data_dir() -> Path:
    """`$PAGEDRAG_DATA_DIR`, else `$PAGEDRAG_HOME/data` (home defaults to ~/.cache/pagedrag)."""
    if os.environ.get("PAGEDRAG_DATA_DIR"):
        return Path(os.environ["PAGEDRAG_DATA_DIR"]).expanduser()
    home = os.environ.get("PAGEDRAG_HOME") or Path.home() / ".cache" / "pagedrag"
    return Path(home).expanduser() / "data"
