"""Turning text into BM25 terms, for English (stemmed words) and Chinese (character bigrams).

Chinese has no spaces, so a word segmenter or n-grams are needed; overlapping character
bigrams need no dictionary, never split a query differently from a document, and are what
Lucene's CJK analyzer does. Runs of other scripts become lower-cased words, stemmed with
the Snowball English stemmer (harmless for the other Latin-script languages).
"""

import re
import unicodedata
from functools import lru_cache

import snowballstemmer

from common.scripts import CJK

_TERMS = re.compile(rf"(?P<cjk>[{CJK}]+)|(?P<word>[^\W_{CJK}]+)")
_STEMMER = snowballstemmer.stemmer("english")
_STOP_WORD_TEXT = """
a an and are as at be but by for from has have how if in into is it its of on or that the
their there these they this to was were what when where which who why will with
"""
STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())


def analyze(text: str) -> list[str]:
    """The BM25 terms of a text, in order, repeats kept."""
    terms: list[str] = []
    for match in _TERMS.finditer(unicodedata.normalize("NFKC", text).casefold()):
        run = match.group("cjk")
        if run is not None:
            terms.extend(_bigrams(run))
        elif match.group("word") not in STOP_WORDS:
            terms.append(_stem(match.group("word")))
    return terms


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


@lru_cache(maxsize=262_144)
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)
