"""Plain text files, in whatever encoding they were saved."""

from pathlib import Path

from indexer.errors import ParseError
from indexer.parsers.cleanup import normalise
from indexer.parsers.document import ParsedDocument
from indexer.parsers.encoding import decode_text

MIME_TYPE = "text/plain"


def parse_text(path: Path) -> ParsedDocument:
    """The whole file, decoded (UTF-8, UTF-16/32 with BOM, or the best guess); no title.

    Raises:
        ParseError: the file is binary (has NUL bytes) or fits no known encoding.
    """
    text = decode_text(path.read_bytes())
    if text is None:
        raise ParseError(
            f"{path.name}: not a text file (binary data); check the file, or convert it to "
            "UTF-8 text and ingest again"
        )
    return ParsedDocument(normalise(text), MIME_TYPE, title=None)
