"""Parsers: exact text and page spans per format, and a clear ParseError for every bad file."""

import codecs
import zipfile
from pathlib import Path

import pytest
import trafilatura
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from indexer.errors import ParseError, UnsupportedFormatError
from indexer.parsers import (
    SUPPORTED_SUFFIXES,
    PageSpan,
    is_supported,
    mime_type_for,
    parse_file,
)
from indexer.parsers import text as text_parser
from indexer.parsers.pdf import join_hyphenated
from tests.indexer.documents import make_docx, make_html, make_pdf, make_scanned_pdf

CHINESE = "检索增强生成。它很有用！"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def assert_parse_error(path: Path, *fragments: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_file(path)
    message = str(caught.value)
    assert path.name in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


# --- PDF -------------------------------------------------------------------------------------


def test_pdf_pages_have_exact_spans(tmp_path: Path) -> None:
    pages = ["First page about retrieval.", "Second page: the block manager.", "Third page."]
    path = make_pdf(tmp_path / "three.pdf", pages)

    document = parse_file(path)

    assert document.mime_type == "application/pdf"
    assert document.page_count == 3
    assert [span.number for span in document.pages] == [1, 2, 3]
    second = document.pages[1]
    assert document.text[second.start : second.end] == "Second page: the block manager."
    assert [document.text[s.start : s.end] for s in document.pages] == pages
    assert document.text == "\n\n".join(pages)


def test_pdf_blank_page_keeps_numbering(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "gap.pdf", ["Page one.", "", "Page three."])

    document = parse_file(path)

    assert document.page_count == 3
    blank, third = document.pages[1], document.pages[2]
    assert blank == PageSpan(number=2, start=blank.start, end=blank.start)
    assert third.number == 3
    assert document.text[third.start : third.end] == "Page three."


def test_pdf_lines_use_newlines(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "lines.pdf", ["Line one   \nLine two\n\n\n\nLine three"])

    assert parse_file(path).text == "Line one\nLine two\nLine three"


def test_pdf_keeps_spaces_between_separately_placed_words(tmp_path: Path) -> None:
    # Each word is its own text object with no space character, as many generators write.
    phrase = "retrieval augmented generation works"
    path = tmp_path / "words.pdf"
    canvas = Canvas(str(path), pagesize=A4)
    x = 72.0
    for word in phrase.split():
        canvas.drawString(x, 700, word)
        x += stringWidth(word, "Helvetica", 12) + 4
    canvas.showPage()
    canvas.save()

    assert parse_file(path).text == phrase


def test_pdf_wrapped_line_keeps_words(tmp_path: Path) -> None:
    sentence = "retrieval augmented generation answers questions from your documents " * 4
    document = parse_file(make_pdf(tmp_path / "long.pdf", [sentence]))

    assert document.text.split() == sentence.split()
    assert "retrieval augmented generation" in document.text


def test_pdf_word_hyphenated_across_lines_is_joined(tmp_path: Path) -> None:
    pages = ["a long infor-\nmation line", "OP-\nTIONAL fields", "the Challenge-\nResponse step"]
    path = make_pdf(tmp_path / "hyphen.pdf", pages)

    document = parse_file(path)

    pages_text = [document.text[p.start : p.end] for p in document.pages]
    assert pages_text == ["a long information line", "OPTIONAL fields", pages[2]]
    assert "\ufffe" not in document.text


@pytest.mark.parametrize(
    ("text", "joined"),
    [
        ("data man-\nagement", "data management"),  # next line starts lower-case
        ("über-\nall", "überall"),
        ("SE-\nQUENCE", "SEQUENCE"),  # inside a word in capitals
        ("Challenge-\nResponse", "Challenge-\nResponse"),  # a compound: kept
        ("UTF-\n32", "UTF-\n32"),
        ("A-\nB", "A-\nB"),
        ("pages 3 -\nfour", "pages 3 -\nfour"),  # a dash, not a hyphen
        ("x-\n", "x-\n"),
    ],
)
def test_join_hyphenated(text: str, joined: str) -> None:
    assert join_hyphenated(text) == joined


def test_pdf_title_from_metadata(tmp_path: Path) -> None:
    titled = make_pdf(tmp_path / "titled.pdf", ["Body."], title="Annual Report 2024")
    untitled = make_pdf(tmp_path / "untitled.pdf", ["Body."])

    assert parse_file(titled).title == "Annual Report 2024"
    assert parse_file(untitled).title is None


def test_pdf_chinese(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "中文.pdf", [CHINESE, "第二页 RAG"], chinese=True, title="检索")

    document = parse_file(path)

    first, second = document.pages
    assert document.text[first.start : first.end] == CHINESE
    assert document.text[second.start : second.end] == "第二页 RAG"
    assert document.title == "检索"


def test_pdf_with_owner_password_only_parses(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "restricted.pdf", ["Readable text."], encrypt_password="")

    assert parse_file(path).text == "Readable text."


def test_pdf_encrypted(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "secret.pdf", ["Hidden."], encrypt_password="pw")

    assert_parse_error(path, "encrypted PDF", "password", "decrypt it")


def test_pdf_scanned(tmp_path: Path) -> None:
    path = make_scanned_pdf(tmp_path / "scan.pdf", pages=2)

    assert_parse_error(path, "no text layer", "OCR is not supported")


def test_pdf_blank_pages_only(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "blank.pdf", ["", ""])

    assert_parse_error(path, "contains no text", "blank")


def test_pdf_zero_pages(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "empty.pdf", [])

    assert_parse_error(path, "contains no text", "no pages")


def test_pdf_not_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "fake.pdf"
    path.write_bytes(b"this is not a PDF at all")

    assert_parse_error(path, "damaged or not a PDF")


def test_pdf_truncated(tmp_path: Path) -> None:
    whole = make_pdf(tmp_path / "whole.pdf", ["One.", "Two."]).read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(whole[: len(whole) // 2])

    assert_parse_error(path, "damaged or not a PDF")


# --- DOCX ------------------------------------------------------------------------------------


def test_docx_paragraphs_and_table_in_body_order(tmp_path: Path) -> None:
    path = make_docx(
        tmp_path / "report.docx",
        ["Before the table.", "After the table."],
        table=[["Model", "Tokens"], ["Qwen", "32k"]],
        table_position=1,
    )

    document = parse_file(path)

    assert document.mime_type == DOCX_MIME
    assert document.text == "Before the table.\n\nModel | Tokens\nQwen | 32k\n\nAfter the table."
    assert document.pages == ()
    assert document.page_count is None


def test_docx_title_from_properties_then_heading(tmp_path: Path) -> None:
    with_title = make_docx(tmp_path / "a.docx", ["Body."], title="Props Title", heading="Head")
    with_heading = make_docx(tmp_path / "b.docx", ["Body."], heading="Introduction")
    plain = make_docx(tmp_path / "c.docx", ["Body."])

    assert parse_file(with_title).title == "Props Title"
    assert parse_file(with_heading).title == "Introduction"
    assert parse_file(with_heading).text == "Introduction\n\nBody."
    assert parse_file(plain).title is None


def test_docx_chinese(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "中文.docx", [CHINESE], heading="标题", table=[["单元", "格"]])

    document = parse_file(path)

    assert document.text == f"标题\n\n{CHINESE}\n\n单元 | 格"
    assert document.title == "标题"


def test_docx_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"\x00\x01 definitely not a zip " * 20)

    assert_parse_error(path, "not a valid DOCX file")


def test_a_failure_names_the_file_never_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "notzip.docx"
    path.write_text("hello, not a zip")  # python-docx: "Package not found at '<path>'"
    with pytest.raises(ParseError) as raised:
        parse_file(path)
    assert "notzip.docx" in str(raised.value) and str(tmp_path) not in str(raised.value)


def test_docx_zip_that_is_not_docx(tmp_path: Path) -> None:
    path = tmp_path / "archive.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")

    assert_parse_error(path, "not a valid DOCX file")


def test_docx_without_text(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "empty.docx", ["", "   "])

    assert_parse_error(path, "contains no text")


# --- HTML ------------------------------------------------------------------------------------

ARTICLE_PAGE = """
<header><div class="logo">SiteHeaderText</div></header>
<nav><ul><li><a href="/">HomeNavLink</a></li><li><a href="/about">AboutNavLink</a></li></ul></nav>
<script>var tracker = "ScriptText";</script>
<main><article>
  <h1>Paged attention</h1>
  <p>Retrieval augmented generation answers questions from your own documents.</p>
  <p>The engine keeps the KV cache of every full block of a shared prompt prefix.</p>
</article></main>
<aside>SidebarText</aside>
<footer>FooterText copyright</footer>
"""


def test_html_keeps_article_and_drops_page_chrome(tmp_path: Path) -> None:
    path = make_html(
        tmp_path / "page.html", ARTICLE_PAGE, title="PagedRAG docs", head="<style>p{}</style>"
    )

    document = parse_file(path)

    assert document.mime_type == "text/html"
    assert document.title == "PagedRAG docs"
    assert "Retrieval augmented generation answers questions" in document.text
    assert "every full block of a shared prompt prefix" in document.text
    for chrome in ("SiteHeaderText", "NavLink", "ScriptText", "SidebarText", "FooterText", "p{}"):
        assert chrome not in document.text


def test_html_page_wrapped_in_a_form_keeps_its_text(tmp_path: Path) -> None:
    body = (
        '<form id="aspnetForm"><form role="search"><input name="q"> SearchBoxLabel</form>'
        "<div><p>Opening hours are nine to five on weekdays.</p></div></form>"
    )
    document = parse_file(make_html(tmp_path / "default.aspx.html", body))

    assert "Opening hours are nine to five on weekdays." in document.text
    assert "SearchBoxLabel" not in document.text


def test_html_fallback_when_trafilatura_finds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trafilatura, "extract", lambda *args, **kwargs: None)
    body = (
        "<nav>Menu</nav><div>Outside main</div><main><h2>Hours</h2><p>Open   nine\n to five."
        "</p><table><tr><td>Mon</td><td>9-17</td></tr></table></main><footer>Foot</footer>"
    )
    path = make_html(tmp_path / "short.htm", body)

    document = parse_file(path)

    assert document.text == "Hours\n\nOpen nine to five.\n\nMon 9-17"
    assert document.title is None  # no <title> and no <h1>


def test_html_chinese_in_declared_gbk(tmp_path: Path) -> None:
    body = f"<article><h1>标题</h1><p>{CHINESE}</p></article>"
    path = make_html(tmp_path / "中文.html", body, title="检索增强", charset="gbk")

    document = parse_file(path)

    assert CHINESE in document.text
    assert document.title == "检索增强"


def test_html_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.html"
    page = f"<html><head><title>T</title></head><body><p>{CHINESE}</p></body></html>"
    path.write_bytes(codecs.BOM_UTF8 + page.encode("utf-8"))

    assert parse_file(path).text == CHINESE


def test_html_xml_declaration(tmp_path: Path) -> None:
    path = tmp_path / "page.xhtml.html"
    page = '<?xml version="1.0" encoding="utf-8"?><html><body><p>Declared.</p></body></html>'
    path.write_text(page, encoding="utf-8")

    assert parse_file(path).text == "Declared."


@pytest.mark.parametrize("body", ["", "<nav><a href='/'>Home</a></nav><script>x()</script>"])
def test_html_without_main_text(tmp_path: Path, body: str) -> None:
    path = make_html(tmp_path / "bare.html", body)

    assert_parse_error(path, "contains no text")


def test_html_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.html"
    path.write_bytes(b"")

    assert_parse_error(path, "contains no text")


# --- Markdown --------------------------------------------------------------------------------


def test_markdown_front_matter_is_removed_and_gives_the_title(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text('---\ntitle: "Release notes"\ntags: [a]\n---\n# Heading\n\nBody *text*.\n')

    document = parse_file(path)

    assert document.mime_type == "text/markdown"
    assert document.title == "Release notes"
    assert document.text == "# Heading\n\nBody *text*.\n"


def test_markdown_title_from_first_heading_outside_code(tmp_path: Path) -> None:
    path = tmp_path / "README.markdown"
    path.write_text("```bash\n# install it\npip install x\n```\n\n# Real Title #\n\n## Usage\n")

    assert parse_file(path).title == "Real Title"


def test_markdown_without_heading(tmp_path: Path) -> None:
    path = tmp_path / "plain.md"
    path.write_text("Just a paragraph.\r\n")

    document = parse_file(path)

    assert document.title is None
    assert document.text == "Just a paragraph.\n"


def test_markdown_chinese(tmp_path: Path) -> None:
    path = tmp_path / "中文.md"
    path.write_text(f"# 标题\n\n{CHINESE}\n", encoding="utf-8")

    document = parse_file(path)

    assert document.title == "标题"
    assert document.text == f"# 标题\n\n{CHINESE}\n"


def test_markdown_front_matter_only(tmp_path: Path) -> None:
    path = tmp_path / "meta.md"
    path.write_text("---\ntitle: Nothing else\n---\n")

    assert_parse_error(path, "contains no text")


# --- Plain text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        CHINESE.encode("utf-8"),
        codecs.BOM_UTF8 + CHINESE.encode("utf-8"),
        codecs.BOM_UTF16_LE + CHINESE.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + CHINESE.encode("utf-16-be"),
        (CHINESE * 4).encode("gb18030"),
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "gb18030-guess"],
)
def test_text_encodings(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(data)

    document = parse_file(path)

    assert document.text.startswith(CHINESE)
    assert document.mime_type == "text/plain"
    assert document.title is None


def test_text_is_nfc_with_newlines(tmp_path: Path) -> None:
    path = tmp_path / "accents.text"
    path.write_bytes("Cafe\u0301\r\nline two\rthree".encode())

    assert parse_file(path).text == "Caf\u00e9\nline two\nthree"


def test_text_binary(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    assert_parse_error(path, "not a text file")


@pytest.mark.parametrize("data", [b"", b" \n\t\r\n "])
def test_text_empty(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(data)

    assert_parse_error(path, "contains no text")


# --- Dispatch --------------------------------------------------------------------------------


def test_supported_suffixes_and_mime_types() -> None:
    assert {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt", ".text"} <= set(
        SUPPORTED_SUFFIXES
    )
    assert all(suffix == suffix.lower() for suffix in SUPPORTED_SUFFIXES)
    assert is_supported(Path("REPORT.PDF"))
    assert not is_supported(Path("sheet.xlsx"))
    assert mime_type_for(Path("a.Docx")) == DOCX_MIME
    assert mime_type_for(Path("a.htm")) == "text/html"
    assert mime_type_for(Path("a.markdown")) == "text/markdown"


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "UPPER.PDF", ["Shouting."])

    assert parse_file(path).text == "Shouting."


@pytest.mark.parametrize("name", ["sheet.xlsx", "Makefile"])
def test_unsupported_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("data")

    with pytest.raises(UnsupportedFormatError, match=name) as caught:
        parse_file(path)
    assert ".pdf" in str(caught.value)
    with pytest.raises(UnsupportedFormatError):
        mime_type_for(path)


def test_missing_file(tmp_path: Path) -> None:
    assert_parse_error(tmp_path / "gone.pdf", "does not exist")


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.md"
    folder.mkdir()

    assert_parse_error(folder, "is not a file")


def test_library_error_becomes_parse_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(data: bytes) -> str:
        raise RuntimeError("codec\nexploded")

    monkeypatch.setattr(text_parser, "decode_text", explode)
    path = tmp_path / "notes.txt"
    path.write_text("fine")

    assert_parse_error(path, "cannot be read as text", "RuntimeError: codec exploded")


def test_memory_error_is_not_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def exhaust(data: bytes) -> str:
        raise MemoryError

    monkeypatch.setattr(text_parser, "decode_text", exhaust)
    path = tmp_path / "notes.txt"
    path.write_text("fine")

    with pytest.raises(MemoryError):
        parse_file(path)
