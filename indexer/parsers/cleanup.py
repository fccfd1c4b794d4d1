"""Text normalisation shared by the parsers, so every format yields text of one form."""

import re
import unicodedata

_TRAILING_SPACES = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINE_RUNS = re.compile(r"\n{3,}")


def normalise(text: str) -> str:
    """NFC with "\\n" line ends: the same words compare and search equal whatever the source."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def tidy(text: str) -> str:
    """Normalise, strip trailing spaces on lines and keep at most one blank line in a row.

    For extracted (not authored) text, where layout whitespace carries no meaning.
    """
    text = _TRAILING_SPACES.sub("", normalise(text))
    return _BLANK_LINE_RUNS.sub("\n\n", text).strip()


def one_line(text: str) -> str:
    """Collapse all whitespace to single spaces: for titles, table cells and error details."""
    return " ".join(text.split())
