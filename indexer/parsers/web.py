"""HTML main text: trafilatura on a page stripped of navigation, with an lxml fallback."""

import copy
import re
from pathlib import Path

import lxml.html
import trafilatura
from lxml import etree

from indexer.errors import ParseError
from indexer.parsers.cleanup import normalise, one_line, tidy
from indexer.parsers.document import ParsedDocument
from indexer.parsers.encoding import decode_text, meta_charset

MIME_TYPE = "text/html"

_WHITESPACE = re.compile(r"\s+")
# NOTE: only forms without paragraphs (search boxes, logins, newsletters): ASP.NET pages
# wrap their whole body in one <form>.
_BOILERPLATE = (
    "//script | //style | //noscript | //nav | //aside | //template | //svg"
    " | //form[not(.//p)] | //*[@role='navigation'] | //comment() | //processing-instruction()"
)
# NOTE: a <header> or <footer> inside <article>/<main> holds the article's own title or
# byline; only the page-level ones are site chrome.
_PAGE_CHROME = "//header[not(ancestor::article or ancestor::main)]" + (
    " | //footer[not(ancestor::article or ancestor::main)]"
)
_BLOCK_TAGS = (
    "address", "article", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "h1",
    "h2", "h3", "h4", "h5", "h6", "hr", "li", "main", "ol", "p", "pre", "section", "table",
    "tr", "ul",
)  # fmt: skip


def parse_html(path: Path) -> ParsedDocument:
    """Extract the page's main text (not menus, headers, footers, scripts or styles).

    Raises:
        ParseError: the file is binary, or has no text once the page chrome is removed.
    """
    data = path.read_bytes()
    markup = decode_text(data, meta_charset(data))
    if markup is None:
        raise ParseError(f"{path.name}: not a text file (binary data); check it is an HTML page")
    tree = _parse(markup)
    if tree is None:
        raise ParseError(f"{path.name}: contains no text; check it is the right file")
    for element in tree.xpath(_BOILERPLATE) + tree.xpath(_PAGE_CHROME):
        _drop(element)
    title = _title(tree)
    text = _trafilatura_text(tree) or _block_text(_main_element(tree))
    return ParsedDocument(tidy(text), MIME_TYPE, title)


def _parse(markup: str) -> lxml.html.HtmlElement | None:
    # NOTE: lxml refuses str input that carries an XML encoding declaration, so feed it
    # UTF-8 bytes and say so; the <meta> charset was already used to decode.
    parser = lxml.html.HTMLParser(encoding="utf-8")
    try:
        return lxml.html.document_fromstring(markup.encode("utf-8"), parser=parser)
    except etree.ParserError:  # "Document is empty"
        return None


def _title(tree: lxml.html.HtmlElement) -> str | None:
    for xpath in ("//title", "//h1"):
        for element in tree.xpath(xpath):
            title = one_line(normalise(element.text_content()))
            if title:
                return title
    return None


def _drop(node: etree._Element) -> None:
    """Remove a node but keep its tail text, which belongs to the parent."""
    parent = node.getparent()
    if parent is None:
        return
    if node.tail:
        previous = node.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


def _trafilatura_text(tree: lxml.html.HtmlElement) -> str | None:
    # trafilatura prunes the tree it is given; the fallback needs it intact.
    return trafilatura.extract(
        copy.deepcopy(tree), favor_recall=True, include_tables=True, include_comments=False
    )


def _main_element(tree: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    for xpath in ("//main", "//article", "//body"):
        found = tree.xpath(xpath)
        if found:
            return found[0]
    return tree


def _block_text(root: lxml.html.HtmlElement) -> str:
    """Text with whitespace collapsed as a browser would, and blocks on lines of their own."""
    for element in root.iter():
        element.text = _collapse(element.text)
        element.tail = _collapse(element.tail)
    for element in root.iter(*_BLOCK_TAGS):
        element.tail = "\n" + (element.tail or "")
        if element.tag != "br":
            element.text = "\n" + (element.text or "")
    for element in root.iter("td", "th"):
        element.tail = " " + (element.tail or "")
    return "\n".join(line.strip() for line in root.text_content().split("\n"))


def _collapse(text: str | None) -> str | None:
    return None if text is None else _WHITESPACE.sub(" ", text)
