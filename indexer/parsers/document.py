"""What every parser returns: the text of one file, and where each PDF page lies in it."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PageSpan:
    """One page of a PDF as a slice of `ParsedDocument.text`, so chunks can cite page numbers."""

    number: int  # 1-based page number
    start: int  # character offset into ParsedDocument.text (inclusive)
    end: int  # character offset into ParsedDocument.text (exclusive); == start for a blank page


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """The extracted text of one file: NFC-normalised, with "\\n" line ends."""

    text: str  # the whole text; for PDFs the pages joined by "\n\n"
    mime_type: str  # e.g. "application/pdf", "text/html", "text/markdown", "text/plain"
    title: str | None  # from metadata, the first heading or <title>; None if there is none
    pages: tuple[PageSpan, ...] = ()  # PDFs only: one span per page, blank pages included
    page_count: int | None = None  # PDFs only: the number of pages
