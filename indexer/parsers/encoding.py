"""Decoding the bytes of text-like files (plain text, Markdown, HTML) to str."""

import codecs
import re

import charset_normalizer

# Longest first: the UTF-32 LE BOM starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# NOTE: browsers decode these labels with a superset (WHATWG Encoding): pages labelled
# gb2312 routinely use GBK-only characters, and "latin-1" pages use cp1252 quotes.
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "iso8859-1": "cp1252", "ascii": "cp1252"}
_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)


def decode_text(data: bytes, declared: str | None = None) -> str | None:
    """Decode by BOM, then as UTF-8, then by the declared charset, then charset_normalizer's guess.

    NOTE: UTF-8 goes before the declared charset because bytes in another encoding are
    almost never valid UTF-8, while UTF-8 pages that declare "iso-8859-1" are common.

    Returns None for bytes that are not text: NUL bytes without a UTF-16/32 BOM, or no
    encoding fits.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    if b"\x00" in data:
        return None
    for codec in filter(None, ("utf-8", _known_codec(declared))):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    best = charset_normalizer.from_bytes(data).best()
    return None if best is None else str(best)


def meta_charset(html: bytes) -> str | None:
    """The charset an HTML file declares in a <meta> tag near its start, if any."""
    match = _META_CHARSET.search(html[:4096])
    return None if match is None else match.group(1).decode("ascii")


def _known_codec(label: str | None) -> str | None:
    if label is None:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)
