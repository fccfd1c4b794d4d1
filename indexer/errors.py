"""Errors a user can cause while indexing or searching, each saying what to do.

The CLI and the HTTP layer print `str(error)` as one line, never a traceback.
"""

from common.errors import NotFoundError, PagedRAGError, UnsupportedError


class IndexerError(PagedRAGError):
    """Base of every indexer error caused by input, configuration or the environment."""


class ParseError(IndexerError):
    """A file whose text cannot be extracted: encrypted, empty, scanned-only or corrupt."""


class UnsupportedFormatError(ParseError, UnsupportedError):
    """A file type the indexer has no parser for."""


class EmbedderMismatchError(IndexerError):
    """A query or an ingest with another embedder than the one that built the index."""


class UnknownEmbedderError(IndexerError):
    """An embedder name the indexer does not know."""


class DocumentNotFoundError(IndexerError, NotFoundError):
    """A document id that is not in the index."""
