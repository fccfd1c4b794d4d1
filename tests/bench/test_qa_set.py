"""The QA benchmark's question set is complete and its judging is strict (no model needed)."""

from collections import Counter

from bench.qa import Outcome, summarise
from bench.qa_corpus import PARTS
from bench.qa_set import Case, Evidence, holds_evidence, is_right, load_cases

RESERVED = ("r-doc", "debian-reference")  # kept for independent acceptance checks


def test_the_set_has_what_the_benchmark_promises() -> None:
    cases = load_cases()
    counts = Counter((case.language, case.kind) for case in cases)
    assert counts["en", "answerable"] >= 60 and counts["zh", "answerable"] >= 30
    assert counts["en", "out_of_documents"] + counts["zh", "out_of_documents"] >= 30
    assert counts["en", "followup"] + counts["zh", "followup"] >= 30
    assert len({case.id for case in cases}) == len(cases)
    outside = [case for case in cases if case.kind == "out_of_documents"]
    assert {case.near for case in outside} == {True, False}  # near the topics and far


def test_every_answerable_case_names_its_evidence_and_never_gives_its_answer_away() -> None:
    packages = {part.package for part in PARTS}
    assert not any(reserved in package for package in packages for reserved in RESERVED)
    for case in load_cases():
        if case.kind == "out_of_documents":
            continue
        assert case.evidence is not None and case.evidence.file.split("/")[0] in packages
        assert is_right(case.evidence.quote, case.accepted), case.id
        assert not is_right(case.question, case.accepted), case.id
        if case.kind == "followup":
            assert [turn["role"] for turn in case.history] == ["user", "assistant"]


CASE = Case(
    "t-1",
    "answerable",
    "en",
    "Which command removes a package with its configuration?",
    Evidence("x/y.html", "6.2", "apt purge removes a package and its configuration files."),
    ("apt purge", "apt-get purge"),
)


def test_an_answer_is_right_only_when_it_holds_an_accepted_answer() -> None:
    assert is_right("Use  APT\nPurge [1].", CASE.accepted)  # case and spacing ignored
    assert not is_right("Use apt remove.", CASE.accepted)


def test_a_passage_holds_the_evidence_by_its_answer_or_the_quote() -> None:
    assert holds_evidence("... so apt purge is the way ...", CASE)
    assert holds_evidence("Note: apt purge removes a package and its configuration", CASE)
    assert not holds_evidence("apt remove keeps the configuration files.", CASE)


def outcome(kind: str, *, found: bool, right: bool = False, hit: bool = False, ms: float = 1000):
    return Outcome(
        "i", kind, "en", "q", "q", "a", "a", found, right, hit, [], [], [], ms, None, 0, 0
    )


def test_the_summary_counts_refusals_and_made_up_answers_apart() -> None:
    summary = summarise(
        [
            outcome("answerable", found=True, right=True, hit=True, ms=2000),
            outcome("answerable", found=False, hit=True, ms=4000),
            outcome("out_of_documents", found=True, ms=6000),
            outcome("out_of_documents", found=False, ms=8000),
            outcome("followup", found=True, right=False, hit=True, ms=10000),
        ]
    )
    assert summary["accuracy"] == 0.5 and summary["hit_at_5"] == 1.0
    assert summary["wrong_refusals"] == 0.5
    assert summary["made_up"] == 1 and summary["out_of_documents"] == 2
    assert summary["followup_hit"] == 1.0 and summary["followup_accuracy"] == 0.0
    assert summary["median_answer_s"] == 6.0
