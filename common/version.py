"""PagedRAG's version: pyproject.toml's, as the package was installed."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("pagedrag")
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0+unknown"
