"""Following a question's generations: markers alone are held back and asked again."""

import time

import pytest

from engine.outputs import RequestOutput
from engine.sampling_params import SamplingParams
from rag.answer_tracker import AnswerTracker, Plan
from rag.language import PHRASES, Language


def plan() -> Plan:
    return Plan(
        question="Which file configures adduser?",
        standalone="Which file configures adduser?",
        prompt=None,
        hits=[],
        prompt_question="Which file configures adduser?",
        language=Language.ENGLISH,
        not_found=PHRASES[Language.ENGLISH].not_found,
        params=SamplingParams(temperature=0),
        salt=None,
        started=time.perf_counter(),
        rewrite_ms=0.0,
        retrieve_ms=0.0,
    )


def output(text: str, tokens: int, *, prompt: int = 100, cached: int = 0) -> RequestOutput:
    return RequestOutput("r", None, [0] * prompt, text, [1] * tokens, cached, None, False)


@pytest.mark.parametrize("text", ["", "[", "[2", "[2]", " [2, 3]\n", "[53]"])
def test_markers_alone_are_never_shown(text: str) -> None:
    tracker = AnswerTracker(plan(), check_support=True)
    assert tracker.add(output(text, 2)) == ""
    assert tracker.bare()


def test_text_after_a_marker_is_shown_with_the_marker() -> None:
    tracker = AnswerTracker(plan(), check_support=True)
    assert tracker.add(output("[2]", 3)) == ""
    assert tracker.add(output("[2] /etc/adduser.conf", 6)) == "[2] /etc/adduser.conf"
    assert tracker.add(output("[2] /etc/adduser.conf.", 7)) == "."
    assert not tracker.bare()


def test_a_second_try_counts_what_both_cost() -> None:
    tracker = AnswerTracker(plan(), check_support=True)
    tracker.add(output("[2]", 3, prompt=700))
    tracker.restart()
    tracker.add(output("It is /etc/adduser.conf [2].", 9, prompt=720, cached=690))
    usage = tracker._usage()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (1420, 12, 690)
