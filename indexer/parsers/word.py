"""DOCX text with python-docx: paragraphs and tables in the order they appear in the body."""

from collections.abc import Iterator
from pathlib import Path
from zipfile import BadZipFile

import docx
from docx.document import Document
from docx.opc.exceptions import OpcError
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph
from lxml import etree

from indexer.errors import ParseError
from indexer.parsers.cleanup import normalise, one_line, tidy
from indexer.parsers.document import ParsedDocument

MIME_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
BLOCK_SEPARATOR = "\n\n"
CELL_SEPARATOR = " | "


def parse_docx(path: Path) -> ParsedDocument:
    """Extract the body's paragraphs and tables (rows as "cell | cell" lines) in body order.

    Headers, footers, footnotes, comments and text boxes are left out.

    Raises:
        ParseError: the file is not a readable DOCX package (corrupt, or a renamed .doc).
    """
    try:
        document = docx.Document(str(path))
    except (OpcError, BadZipFile, KeyError, ValueError, etree.XMLSyntaxError) as error:
        raise ParseError(
            f"{path.name}: not a valid DOCX file ({one_line(str(error))}); "
            "open it in Word or LibreOffice, save it as .docx and ingest it again"
        ) from error
    blocks = (tidy(block) for block in _blocks(document))
    text = BLOCK_SEPARATOR.join(block for block in blocks if block)
    return ParsedDocument(text, MIME_TYPE, _title(document))


def _blocks(container: Document | _Cell) -> Iterator[str]:
    for item in container.iter_inner_content():
        yield item.text if isinstance(item, Paragraph) else _table_text(item)


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells: list[_Cell] = []
        for cell in row.cells:
            # A merged cell appears once per grid column it spans; keep it once.
            if not cells or cell._tc is not cells[-1]._tc:
                cells.append(cell)
        texts = [one_line(" ".join(_blocks(cell))) for cell in cells]
        if any(texts):
            rows.append(CELL_SEPARATOR.join(texts))
    return "\n".join(rows)


def _title(document: Document) -> str | None:
    title = one_line(normalise(document.core_properties.title or ""))
    if title:
        return title
    for paragraph in document.paragraphs:
        style = (paragraph.style.name if paragraph.style is not None else None) or ""
        heading = one_line(normalise(paragraph.text))
        if heading and (style == "Title" or style.startswith("Heading")):
            return heading
    return None
