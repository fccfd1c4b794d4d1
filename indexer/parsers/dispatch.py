"""Choosing a parser by file suffix, and turning every failure into a one-line ParseError."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import ParseError, UnsupportedFormatError
from indexer.parsers import markdown, pdf, text, web, word
from indexer.parsers.cleanup import one_line
from indexer.parsers.document import ParsedDocument


@dataclass(frozen=True, slots=True)
class Format:
    """A file type the indexer reads."""

    name: str  # how messages call it, e.g. "PDF"
    mime_type: str  # stored with the document and reported by the API
    parse: Callable[[Path], ParsedDocument]  # reads the file; raises ParseError


_PDF = Format("PDF", pdf.MIME_TYPE, pdf.parse_pdf)
_DOCX = Format("DOCX", word.MIME_TYPE, word.parse_docx)
_HTML = Format("HTML", web.MIME_TYPE, web.parse_html)
_MARKDOWN = Format("Markdown", markdown.MIME_TYPE, markdown.parse_markdown)
_TEXT = Format("text", text.MIME_TYPE, text.parse_text)
_FORMATS = {
    ".pdf": _PDF,
    ".docx": _DOCX,
    ".html": _HTML,
    ".htm": _HTML,
    ".md": _MARKDOWN,
    ".markdown": _MARKDOWN,
    ".txt": _TEXT,
    ".text": _TEXT,
}
SUPPORTED_SUFFIXES = frozenset(_FORMATS)


def is_supported(path: Path) -> bool:
    """Whether a parser exists for the file's suffix (compared case-insensitively)."""
    return path.suffix.lower() in _FORMATS


def mime_type_for(path: Path) -> str:
    """The MIME type of a supported file, from its suffix alone.

    Raises:
        UnsupportedFormatError: no parser for the suffix.
    """
    return _format_for(path).mime_type


# An absolute path in a library's message ("Package not found at '/srv/.../a.docx'"): the
# client sees the file's name, never where the server keeps it.
_ABSOLUTE_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\s'\"\\/]+[\\/])+(?P<name>[^\s'\"\\/]*)")


def without_paths(message: str) -> str:
    """`message` with each absolute path cut down to its last part."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group("name"), message)


def parse_file(path: Path) -> ParsedDocument:
    """Extract a file's text, choosing the parser by suffix (case-insensitive).

    Raises:
        UnsupportedFormatError: no parser for the suffix.
        ParseError: the file is missing, unreadable, damaged, encrypted or has no text;
            the message names the file and says what to do.
    """
    file_format = _format_for(path)
    if not path.is_file():
        reason = "is not a file" if path.exists() else "file does not exist"
        raise ParseError(f"{path.name}: {reason}; check the path and ingest again")
    try:
        document = file_format.parse(path)
    except ParseError as error:  # a parser's message may quote its library's, paths and all
        raise ParseError(without_paths(str(error))) from error
    except MemoryError:
        raise
    except OSError as error:
        raise ParseError(
            f"{path.name}: cannot be read ({error.strerror or error}); "
            "check that it is readable and ingest again"
        ) from error
    except Exception as error:  # a parser library's own failure on a malformed file
        raise ParseError(
            f"{path.name}: cannot be read as {file_format.name} "
            f"({type(error).__name__}: {without_paths(one_line(str(error)))[:200]}); "
            "check that it opens "
            "in its usual application, save it again and ingest the new copy"
        ) from error
    if not document.text.strip():
        raise ParseError(f"{path.name}: contains no text; check it is the right file")
    return document


def _format_for(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        what = f"unsupported file type {suffix!r}" if suffix else "no file extension"
        raise UnsupportedFormatError(
            f"{path.name}: {what}; convert it to one of {', '.join(sorted(_FORMATS))} "
            "and ingest again"
        )
    return _FORMATS[suffix]
