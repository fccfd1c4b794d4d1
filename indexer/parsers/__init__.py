"""Document parsers: a file in, its text (with PDF page spans) and title out."""

from indexer.parsers.dispatch import SUPPORTED_SUFFIXES, is_supported, mime_type_for, parse_file
from indexer.parsers.document import PageSpan, ParsedDocument

__all__ = [
    "SUPPORTED_SUFFIXES",
    "PageSpan",
    "ParsedDocument",
    "is_supported",
    "mime_type_for",
    "parse_file",
]
