"""Which passage supports each sentence of an answer the model did not cite itself.

Small models often answer from the passages without writing [n]. Each sentence
without a marker is matched to the passage that holds most of its terms (the
retriever's own analyzer: stemmed words, Chinese character bigrams). A clear majority
of the sentence's terms must come from that one passage, so a sentence the passages
do not support (a refusal, a remark of the model's own) gets no source. The answer's
text is never changed: clients show the markers where `end` points.
"""

import re
from collections.abc import Sequence

from indexer.text_analysis import analyze
from rag.answer import Attribution, Citation
from rag.prompt import CITATION_MARKER

MIN_TERMS = 3  # a shorter sentence needs one passage that alone holds all its terms
MIN_SHARE = 0.6  # of the sentence's distinct terms, found in the one passage
# A sentence ends at . ! ? before a space or the end (so "comp.lang.python" and
# "README.Debian" stay whole), at a Chinese full stop, or at the end of its line.
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?]+(?=\s|$)|[。！？]+|(?=\n)|$)")
_TERMINAL = ".!?。！？:：;；,，"


def attribute(answer: str, citations: Sequence[Citation]) -> list[Attribution]:
    """The answer's uncited sentences that one passage clearly supports, in order."""
    passages = [(citation.n, set(analyze(citation.text))) for citation in citations]
    if not passages:
        return []
    found = []
    for match in _SENTENCE.finditer(answer):
        sentence = match.group()
        if CITATION_MARKER.search(sentence) or "`" in sentence:
            continue
        terms = set(analyze(sentence))
        if not terms:
            continue
        overlaps = [(n, len(terms & words)) for n, words in passages]
        n, shared = max(overlaps, key=_by_overlap)
        share = shared / len(terms)
        if share >= MIN_SHARE and (len(terms) >= MIN_TERMS or _only_source(overlaps, terms)):
            start = match.start() + len(sentence) - len(sentence.lstrip())
            end = match.start() + len(sentence.rstrip().rstrip(_TERMINAL).rstrip())
            found.append(Attribution(start, end, n, round(share, 3)))
    return found


def sentence_spans(answer: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of `answer`, covering all of its text but line breaks."""
    return [match.span() for match in _SENTENCE.finditer(answer)]


def _only_source(overlaps: list[tuple[int, int]], terms: set[str]) -> bool:
    """A short sentence ("April.") counts only if one passage alone holds all of it."""
    best, *others = sorted((shared for _, shared in overlaps), reverse=True)
    return best == len(terms) and not any(others)


def _by_overlap(candidate: tuple[int, int]) -> tuple[int, int]:
    n, shared = candidate
    return shared, -n  # ties go to the passage given first
