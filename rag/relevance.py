"""Which retrieved passages are worth the model's time, ranked by the same score that decides.

A passage's relevance is its cosine similarity to the question plus a share of the
question's terms it contains (BM25's analyzer: stemmed words, Chinese bigrams). Short
questions about long passages score a low cosine even when the passage names exactly
what was asked; the term share lifts those, and it is bounded, so one threshold per
embedder and language means the same on every question. The RAG layer ranks passages by
this score and keeps those at or above the threshold, so a passage kept never ranks
below one dropped.

Before any score, the question's named subjects must be in the library's answer to it: a
question about WireGuard whose candidates never mention WireGuard has nothing relevant,
however close their topic (a small model otherwise answers it from its own memory with
a Debian passage's words).

The figures were calibrated with `make bench-qa` (bench/qa.py) on a bilingual library of
four real manuals; docs/benchmarks.md has the precision and recall they give.
"""

import re
from dataclasses import dataclass

from indexer.records import SearchHit
from indexer.text_analysis import analyze
from rag.language import Language


@dataclass(frozen=True)
class Calibration:
    term_weight: float  # relevance = cosine + term_weight * share of question terms
    thresholds: dict[Language, float]  # relevance needed to be kept, by question language


CALIBRATIONS = {
    "multilingual-e5-small": Calibration(
        term_weight=0.15, thresholds={Language.ENGLISH: 0.865, Language.CHINESE: 0.88}
    ),
    # NOTE: English only: Chinese text maps to similar vectors whatever it says, so for
    # Chinese questions its cosine is left out and the term share alone decides.
    "all-minilm-l6-v2": Calibration(
        term_weight=0.15, thresholds={Language.ENGLISH: 0.30, Language.CHINESE: 0.20}
    ),
}
ENGLISH_ONLY_EMBEDDERS = frozenset({"all-minilm-l6-v2"})


@dataclass(frozen=True, slots=True)
class ScoredHit:
    hit: SearchHit
    relevance: float


class RelevanceJudge:
    """Scores, ranks and filters one question's passages for one embedder."""

    def __init__(self, embedder: str, fallback_threshold: float) -> None:
        self.embedder = embedder
        # An embedder with no calibration of its own keeps its plain cosine threshold.
        self.calibration = CALIBRATIONS.get(
            embedder,
            Calibration(
                0.0, {Language.ENGLISH: fallback_threshold, Language.CHINESE: fallback_threshold}
            ),
        )

    def relevant(
        self, question: str, language: Language, hits: list[SearchHit], draft: str = ""
    ) -> list[ScoredHit]:
        """The hits that reach the threshold, most relevant first (none when one of the
        question's named subjects is in none of them). A draft answer's terms count as
        asked (rag/draft.py) where that raises a passage's share, never where it lowers
        it: a wrong draft ("apt remove" for purging) must not bury the passage that holds
        the question's own words. The draft's named subjects, which the model may have
        made up, are not looked for.
        """
        hit_terms = [set(analyze(hit.text)) for hit in hits]  # each passage analyzed once
        if unknown_subjects(question, language, set().union(*hit_terms)):
            return []
        asked = set(analyze(question))
        drafted = asked | set(analyze(draft))
        threshold = self.calibration.thresholds[language]
        shares = [max(_share(asked, terms), _share(drafted, terms)) for terms in hit_terms]
        scored = [
            ScoredHit(hit, self._score(share, language, hit))
            for hit, share in zip(hits, shares, strict=True)
        ]
        scored.sort(key=lambda s: s.relevance, reverse=True)
        return [s for s in scored if s.relevance >= threshold]

    def score(self, question: str, language: Language, hit: SearchHit) -> float:
        return self._score(term_share(question, hit.text), language, hit)

    def _score(self, share: float, language: Language, hit: SearchHit) -> float:
        """Cosine plus the weighted term share (the share alone where the cosine means
        nothing)."""
        if language is Language.CHINESE and self.embedder in ENGLISH_ONLY_EMBEDDERS:
            return share
        cosine = hit.dense_score if hit.dense_score is not None else 0.0
        return cosine + self.calibration.term_weight * share


def term_share(question: str, passage: str) -> float:
    """The share of the question's distinct terms that the passage contains."""
    return _share(set(analyze(question)), set(analyze(passage)))


def _share(asked: set[str], terms: set[str]) -> float:
    return len(asked & terms) / len(asked) if asked else 0.0


# A Latin-script word of three characters or more; inner dots, dashes, slashes, plus signs
# and underscores belong to it (pg_hba.conf, debian/control, C++).
_LATIN_WORD = re.compile(r"[A-Za-z][\w.\-/+]*[\w+]")
_IDENTIFIER = re.compile(r"[0-9_]|\w\.\w|.[A-Z]")  # a digit, underscore, inner dot, inner capital
MIN_SUBJECT_CHARS = 3


def named_subjects(question: str, language: Language) -> list[str]:
    """What a question names: in a Chinese one every Latin-script word (commands, packages,
    products); in an English one the identifiers (TypedDict, VACUUM, asyncio.gather).

    NOTE: plain English words are left out: documents say the same thing in other words.
    Calibrated with `make bench-qa`: on 156 in-document questions no subject was missing
    from the candidates; on out-of-document ones about WireGuard, debootstrap or
    autopkgtest, it was.
    """
    words = [w for w in _LATIN_WORD.findall(question) if len(w) >= MIN_SUBJECT_CHARS]
    if language is Language.CHINESE:
        return words
    return [w for w in words if _IDENTIFIER.search(w)]


def unknown_subjects(question: str, language: Language, known: set[str]) -> list[str]:
    """The question's named subjects whose terms are not all among `known` (the
    candidates' terms)."""
    return [s for s in named_subjects(question, language) if not set(analyze(s)) <= known]
