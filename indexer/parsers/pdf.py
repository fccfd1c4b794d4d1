"""PDF text, page by page, with pdfium (Apache/BSD licensed; keeps the spaces between words)."""

import os
import re
import threading
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from indexer.errors import ParseError
from indexer.parsers.cleanup import normalise, one_line, tidy
from indexer.parsers.document import PageSpan, ParsedDocument

MIME_TYPE = "application/pdf"
PAGE_SEPARATOR = "\n\n"

# NOTE: pdfium is not thread-safe, and ingestion may run in worker threads (FastAPI runs
# sync routes in a thread pool), so every call into it holds this lock.
_PDFIUM_LOCK = threading.Lock()
# NOTE: pdfium joins a word hyphenated across lines and marks the hyphen with U+FFFE
# ("man\ufffeagement"). It becomes "-\n", as the page shows it; then a hyphen at a line
# end between letters is dropped when the next line starts lower-case, so "man-\nagement"
# is indexed and searched as "management" (a compound such as "well-\nknown" becomes
# "wellknown": the rarer loss), and inside a capitalised word ("OP-\nTIONAL"). Otherwise
# ("Challenge-\nResponse", "UTF-\n32") the hyphen and the break stay.
_HYPHEN_MARK = "\ufffe"
_LINE_END_HYPHEN = re.compile(r"(?<=[^\W\d_])-\n(?=[^\W\d_])")
_OPEN_ERRORS = {
    pdfium_c.FPDF_ERR_PASSWORD: "encrypted PDF (password required); decrypt it and ingest again",
    pdfium_c.FPDF_ERR_SECURITY: "encrypted PDF (unsupported security handler); "
    "decrypt it and ingest again",
    pdfium_c.FPDF_ERR_FILE: "cannot be opened; check that it exists and is readable",
}
_DAMAGED = "damaged or not a PDF; download or export it again and ingest the new copy"


def parse_pdf(path: Path) -> ParsedDocument:
    """Extract each page's text; blank pages keep their number with an empty span.

    Raises:
        ParseError: the PDF is encrypted, damaged, has no pages, or has no text on any page
            (with a hint to run OCR when its pages are images).
    """
    with _PDFIUM_LOCK:
        document = _open(path)
        try:
            page_texts = [_page_text(document, index) for index in range(len(document))]
            if not any(page_texts):
                raise ParseError(_no_text_reason(path, document))
            title = _title(document)
        finally:
            document.close()
    text, spans = _join_pages(page_texts)
    return ParsedDocument(text, MIME_TYPE, title, spans, page_count=len(spans))


def _open(path: Path) -> pdfium.PdfDocument:
    # NOTE: the raw call, because pypdfium2's PdfDocument reports a PDF with zero pages
    # as a format error; opening by path also avoids reading the whole file into memory.
    handle = pdfium_c.FPDF_LoadDocument(os.fsencode(path), None)
    if not handle:
        reason = _OPEN_ERRORS.get(pdfium_c.FPDF_GetLastError(), _DAMAGED)
        raise ParseError(f"{path.name}: {reason}")
    return pdfium.PdfDocument(handle)


def _page_text(document: pdfium.PdfDocument, index: int) -> str:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            raw_text = textpage.get_text_range()
        finally:
            textpage.close()
    finally:
        page.close()
    return join_hyphenated(tidy(raw_text.replace(_HYPHEN_MARK, "-\n")))


def join_hyphenated(text: str) -> str:
    """Join words hyphenated across line ends when the next line starts lower-case
    (or both halves are capitals)."""

    def join(match: re.Match[str]) -> str:
        before, after = text[match.start() - 1], text[match.end() : match.end() + 2]
        capitals = before.isupper() and len(after) == 2 and after.isupper()
        return "" if after[0].islower() or capitals else match.group()

    return _LINE_END_HYPHEN.sub(join, text)


def _no_text_reason(path: Path, document: pdfium.PdfDocument) -> str:
    if len(document) == 0:
        return f"{path.name}: contains no text (the PDF has no pages); check it is the right file"
    if any(_has_images(document, index) for index in range(len(document))):
        return (
            f"{path.name}: has no text layer (its pages are images, e.g. a scan) and OCR is "
            "not supported; run OCR on it first (e.g. ocrmypdf) and ingest the result"
        )
    return f"{path.name}: contains no text (every page is blank); check it is the right file"


def _has_images(document: pdfium.PdfDocument, index: int) -> bool:
    page = document[index]
    try:
        images = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])
        return next(images, None) is not None
    finally:
        page.close()


def _title(document: pdfium.PdfDocument) -> str | None:
    try:
        title = document.get_metadata_value("Title")
    except UnicodeDecodeError:  # a malformed title is no reason to reject the text
        return None
    return one_line(normalise(title)) or None


def _join_pages(page_texts: list[str]) -> tuple[str, tuple[PageSpan, ...]]:
    spans, start = [], 0
    for number, page_text in enumerate(page_texts, start=1):
        spans.append(PageSpan(number, start, start + len(page_text)))
        start += len(page_text) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(page_texts), tuple(spans)
