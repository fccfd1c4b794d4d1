"""Starter questions for a document, drawn from its own first passages.

No model call: headings (short lines without a full stop) and the passages' most
frequent content words become questions in a second, so a newly uploaded document
offers questions about itself right away, even on a slow CPU.
"""

import re
from collections import Counter
from collections.abc import Sequence

from common.scripts import has_han

MAX_QUESTIONS = 3
_WORD = re.compile(r"[A-Za-z][A-Za-z\-]{3,}")
_STOPWORDS = frozenset(
    str.split(
        "this that with from have been were they them their there which when what where "
        "will would could should about into over under more most also than then such these "
        "those each only other some very your yours ours upon page pages after before while "
        "does done being because between during through without within"
    )
)


def starter_questions(title: str, passages: Sequence[str]) -> list[str]:
    """Up to three questions about a document, from its title and first passages."""
    chinese = has_han(title + "".join(passages[:2]))
    questions = [f"总结一下《{title}》。" if chinese else f"Summarize “{title}”."]
    for heading in _headings(passages):
        if len(questions) < MAX_QUESTIONS and heading.lower() != title.lower():
            questions.append(_about(heading, chinese))
    for word in _key_words(passages, title):
        if len(questions) < MAX_QUESTIONS:
            questions.append(f"What does the document say about {word}?")
    return questions


def _about(heading: str, chinese: bool) -> str:
    return f"{heading}是什么？" if chinese else f"What does it say about {heading}?"


def _headings(passages: Sequence[str]) -> list[str]:
    lines = (line.strip(" #*\t") for text in passages for line in text.splitlines())
    return [
        line
        for line in dict.fromkeys(lines)
        if 3 <= len(line) <= 60
        and not line.endswith((".", ",", ";", ":", "。", "，"))
        and (len(line.split()) >= 2 or has_han(line))
    ]


def _key_words(passages: Sequence[str], title: str) -> list[str]:
    in_title = {w.lower() for w in _WORD.findall(title)}
    counts = Counter(
        w.lower()
        for text in passages
        for w in _WORD.findall(text)
        if w.lower() not in _STOPWORDS and w.lower() not in in_title
    )
    return [word for word, _ in counts.most_common(MAX_QUESTIONS)]
