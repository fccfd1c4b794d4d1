"""Where an index lives when the user does not say, and making sure it can live there."""

from pathlib import Path

from common.paths import default_home
from indexer.errors import IndexerError


def default_data_dir(home: Path | None = None) -> Path:
    """`data` under the PagedRAG home (default: ~/.cache/pagedrag)."""
    return (home or default_home()) / "data"


def make_data_dir(path: Path) -> Path:
    """Create the data directory (and its parents) if needed.

    Raises:
        IndexerError: the path is a file, lies under a file, or cannot be created.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise IndexerError(
            f"the data directory {path} is a file, not a directory; choose another data "
            "directory (--data-dir)"
        ) from None
    except NotADirectoryError:
        raise IndexerError(
            f"the data directory {path} cannot be created: {_file_above(path)} is a file, "
            "not a directory; choose another data directory (--data-dir)"
        ) from None
    except OSError as error:
        raise IndexerError(
            f"the data directory {path} cannot be created: {error.strerror}; choose another "
            "data directory (--data-dir)"
        ) from None
    return path


def _file_above(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            return parent
    return path
