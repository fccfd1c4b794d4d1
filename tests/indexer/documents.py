"""Factories that write real documents at test time, so no binary fixture is committed.

Each returns the path it wrote. PDFs come from reportlab, DOCX from python-docx.
"""

import re
from collections.abc import Sequence
from pathlib import Path

import docx
import pypdfium2 as pdfium
from docx.document import Document
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

LATIN_FONT = "Helvetica"
# A CID font every PDF reader knows, so Chinese is real text without embedding a font file.
CHINESE_FONT = "STSong-Light"
FONT_SIZE = 12
LINE_HEIGHT = 16
MARGIN = 72
TEXT_WIDTH = A4[0] - 2 * MARGIN


def make_pdf(
    path: Path,
    pages: Sequence[str],
    *,
    title: str | None = None,
    encrypt_password: str | None = None,
    chinese: bool = False,
) -> Path:
    """Write a PDF with one page per string; "" makes a blank page, [] a PDF with no pages.

    Lines ("\\n") stay lines; a line wider than the page wraps (at spaces, or anywhere in
    text without spaces), and a wrap point reads back as a line break, so keep a phrase
    you assert on short. `title` goes into the metadata (none by default); with
    `encrypt_password` the PDF cannot be opened without it; `chinese` uses the CID font
    STSong-Light so CJK characters are real text.
    """
    if not pages:
        document = pdfium.PdfDocument.new()
        try:
            document.save(path)
        finally:
            document.close()
        return path
    font = _register(CHINESE_FONT) if chinese else LATIN_FONT
    encrypt = None
    if encrypt_password is not None:
        encrypt = StandardEncryption(encrypt_password, encrypt_password + "-owner", strength=128)
    canvas = Canvas(str(path), pagesize=A4, encrypt=encrypt)
    canvas.setTitle(title or "")  # reportlab would write "untitled"
    for page in pages:
        _draw_lines(canvas, page, font)
        canvas.showPage()
    canvas.save()
    return path


def make_scanned_pdf(path: Path, pages: int = 1) -> Path:
    """Write a PDF whose pages hold only a raster image: a scan without a text layer."""
    pixels = bytes((x * 7 + y * 3) % 256 for y in range(64) for x in range(64))
    image = ImageReader(Image.frombytes("L", (64, 64), pixels))
    canvas = Canvas(str(path), pagesize=A4)
    for _ in range(pages):
        canvas.drawImage(image, MARGIN, MARGIN, width=TEXT_WIDTH, height=TEXT_WIDTH)
        canvas.showPage()
    canvas.save()
    return path


def make_docx(
    path: Path,
    paragraphs: Sequence[str],
    *,
    title: str | None = None,
    heading: str | None = None,
    table: Sequence[Sequence[str]] | None = None,
    table_position: int | None = None,
) -> Path:
    """Write a DOCX: an optional Heading 1, the paragraphs, and an optional table.

    `table` is a list of rows of cell texts, inserted before `paragraphs[table_position]`
    (after all paragraphs by default). `title` sets the core properties' title.
    """
    document = docx.Document()
    document.core_properties.title = title or ""
    if heading is not None:
        document.add_heading(heading, level=1)
    position = len(paragraphs) if table_position is None else table_position
    for index, paragraph in enumerate(paragraphs):
        if table is not None and index == position:
            _add_table(document, table)
        document.add_paragraph(paragraph)
    if table is not None and position >= len(paragraphs):
        _add_table(document, table)
    document.save(str(path))
    return path


def make_html(
    path: Path, body: str, *, title: str | None = None, charset: str = "utf-8", head: str = ""
) -> Path:
    """Write an HTML page with `body` as the <body> markup, encoded in (and declaring) `charset`."""
    title_tag = "" if title is None else f"<title>{title}</title>"
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="{charset}">{title_tag}{head}</head>\n'
        f"<body>{body}</body></html>\n"
    )
    path.write_bytes(page.encode(charset))
    return path


def _register(font: str) -> str:
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    return font


def _draw_lines(canvas: Canvas, page: str, font: str) -> None:
    text = canvas.beginText(MARGIN, A4[1] - MARGIN)
    text.setFont(font, FONT_SIZE, leading=LINE_HEIGHT)
    for line in page.split("\n"):
        for row in _wrap(line, font):
            text.textLine(row)
    canvas.drawText(text)


def _wrap(line: str, font: str) -> list[str]:
    rows = [""]
    for token in re.findall(r"\S+\s*|\s+", line):
        fits = pdfmetrics.stringWidth(token, font, FONT_SIZE) <= TEXT_WIDTH
        for piece in [token] if fits else list(token):
            if rows[-1] and pdfmetrics.stringWidth(rows[-1] + piece, font, FONT_SIZE) > TEXT_WIDTH:
                rows.append("")
            rows[-1] += piece
    return [row.rstrip() for row in rows]


def _add_table(document: Document, rows: Sequence[Sequence[str]]) -> None:
    table = document.add_table(rows=len(rows), cols=max(len(row) for row in rows))
    for cells, row in zip(table.rows, rows, strict=False):
        for cell, cell_text in zip(cells.cells, row, strict=False):
            cell.text = cell_text
