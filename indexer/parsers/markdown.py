"""Markdown kept as written, so offsets point into the author's text; front matter removed."""

import re
from pathlib import Path

from indexer.errors import ParseError
from indexer.parsers.cleanup import normalise, one_line
from indexer.parsers.document import ParsedDocument
from indexer.parsers.encoding import decode_text

MIME_TYPE = "text/markdown"

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+)$", re.MULTILINE)
_HEADING = re.compile(r"#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r"(```|~~~)")


def parse_markdown(path: Path) -> ParsedDocument:
    """The text after any YAML front matter; title from its `title:` or the first `# ` heading.

    Raises:
        ParseError: the file is binary.
    """
    text = decode_text(path.read_bytes())
    if text is None:
        raise ParseError(f"{path.name}: not a text file (binary data); check it is Markdown")
    text = normalise(text)
    front_matter = _FRONT_MATTER.match(text)
    if front_matter is None:
        return ParsedDocument(text, MIME_TYPE, _first_heading(text))
    body = text[front_matter.end() :]
    title = _front_matter_title(front_matter.group(1) or "") or _first_heading(body)
    return ParsedDocument(body, MIME_TYPE, title)


def _front_matter_title(front_matter: str) -> str | None:
    match = _FRONT_MATTER_TITLE.search(front_matter)
    if match is None:
        return None
    return one_line(match.group(1).strip().strip("\"'")) or None


def _first_heading(text: str) -> str | None:
    """The first level-1 ATX heading outside code fences (a `# comment` in code is no title)."""
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line.lstrip()):
            in_fence = not in_fence
        elif not in_fence and (heading := _HEADING.fullmatch(line.strip())):
            return one_line(heading.group(1))
    return None
