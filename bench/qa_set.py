"""The QA benchmark's questions (bench/qa_set/*.json) and how an answer is judged.

Each language's file holds answerable questions (with the file, section and a verbatim
quote of their evidence, and the accepted answers), out-of-document questions (near
the library's topics or far from them) and follow-up dialogues. An answer is right when
it contains an accepted answer (case and spacing ignored); retrieval hits when a passage
given to the model comes from the evidence file and holds the evidence.
"""

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

QA_SET_DIR = Path(__file__).resolve().parent / "qa_set"
LANGUAGES = ("en", "zh")
QUOTE_ENDS = 50  # characters of either end of the quote that mark a passage holding it


@dataclass(frozen=True)
class Evidence:
    file: str  # a key of bench.qa_corpus.corpus_files
    section: str
    quote: str


@dataclass(frozen=True)
class Case:
    """One question to ask: answerable, out of the documents, or a follow-up."""

    id: str
    kind: str  # "answerable", "out_of_documents" or "followup"
    language: str
    question: str
    evidence: Evidence | None = None  # None for out-of-document questions
    accepted: tuple[str, ...] = ()
    history: tuple[dict[str, str], ...] = ()
    near: bool | None = None  # out-of-document questions: on the library's topics?


def load_cases(languages: tuple[str, ...] = LANGUAGES) -> list[Case]:
    cases = []
    for language in languages:
        data = json.loads((QA_SET_DIR / f"{language}.json").read_text(encoding="utf-8"))
        for item in data["questions"]:
            cases.append(_answerable(item, language, "answerable"))
        for item in data["followups"]:
            cases.append(_answerable(item, language, "followup"))
        for item in data["out_of_documents"]:
            cases.append(
                Case(item["id"], "out_of_documents", language, item["question"], near=item["near"])
            )
    return cases


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def is_right(answer: str, accepted: tuple[str, ...]) -> bool:
    text = normalise(answer)
    return any(normalise(option) in text for option in accepted)


def holds_evidence(passage: str, case: Case) -> bool:
    """Whether a passage from the evidence file holds the answer or either end of the quote."""
    assert case.evidence is not None
    text, quote = normalise(passage), normalise(case.evidence.quote)
    ends = (quote[:QUOTE_ENDS], quote[-QUOTE_ENDS:])
    return is_right(passage, case.accepted) or any(end in text for end in ends)


def _answerable(item: dict, language: str, kind: str) -> Case:
    return Case(
        id=item["id"],
        kind=kind,
        language=language,
        question=item["question"],
        evidence=Evidence(**item["evidence"]),
        accepted=tuple(item["accepted"]),
        history=tuple(item.get("history", ())),
    )
