"""One question's generations followed into its `Answer`: deltas, timings, the check.

`RAG` plans a question (`Plan`), then streams one generation or two through an
`AnswerTracker`, which holds back a bare marker, counts what every try cost and, at the
end, checks the answer against the passages (rag/grounding.py).
"""

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from engine.outputs import RequestOutput
from engine.reasoning import split_reply
from engine.sampling_params import SamplingParams
from indexer.records import SearchHit
from rag.answer import Answer, AnswerEvent, Citation, DoneEvent, Timings, Usage
from rag.attribution import attribute
from rag.grounding import Grounding, ground
from rag.language import Language
from rag.prompt import BuiltPrompt, cited_numbers

# Text that is nothing but citation markers, complete or still being written ("[", "[2, ").
BARE_MARKERS = re.compile(r"\s*(?:\[[\d\s,，]*\]?\s*)*")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided before the answer is generated."""

    question: str
    standalone: str
    prompt: BuiltPrompt | None  # None: nothing relevant was found
    hits: list[SearchHit]  # the passages in the prompt, in its order
    prompt_question: str  # the question as the prompt states it
    language: Language  # the question's, and so the answer's
    not_found: str  # the reply when `prompt` is None or the passages do not support the answer
    params: SamplingParams
    salt: str | None
    started: float  # time.perf_counter() when the question arrived
    rewrite_ms: float
    retrieve_ms: float


class AnswerTracker:
    """Follows a question's generations: text deltas, time to first token, the answer.

    Text that is nothing but markers so far ("[2]") is held back: it may be all the
    model says, and then it is asked again (`RAG._attempts` in rag/pipeline.py) and never shown.
    """

    def __init__(self, plan: Plan, check_support: bool) -> None:
        self.plan = plan
        self.check_support = check_support
        self.shown = 0
        self.ttft_ms: float | None = None
        self.last: RequestOutput | None = None
        self.spent = Usage()  # of the generations before the last one

    def add(self, output: RequestOutput) -> str:
        if self.ttft_ms is None:
            self.ttft_ms = ms_since(self.plan.started)
        self.last = output
        text = self._answer_text(output)
        if BARE_MARKERS.fullmatch(text):
            return ""
        delta = text[self.shown :]
        self.shown = len(text)
        return delta

    def bare(self) -> bool:
        """Whether the finished generation said nothing but citation markers."""
        last = self.last
        return last is not None and BARE_MARKERS.fullmatch(self._answer_text(last)) is not None

    def _answer_text(self, output: RequestOutput) -> str:
        """The reply without a reasoning model's thought: only the answer is shown, cited
        and checked against the passages."""
        reasoning = None if self.plan.prompt is None else self.plan.prompt.reasoning
        return split_reply(output.text, reasoning, final=output.finished).content

    def restart(self) -> None:
        """Before another generation for the same question: what this one cost is kept."""
        self.spent = self._usage()
        self.last = None

    def _usage(self) -> Usage:
        last, spent = self.last, self.spent
        if last is None:
            return spent
        return Usage(
            spent.prompt_tokens + last.num_prompt_tokens,
            spent.completion_tokens + len(last.token_ids),
            spent.cached_tokens + last.num_cached_tokens,
            spent.passage_tokens + last.num_passage_tokens,
            spent.reused_passages + last.num_reused_passages,
        )

    def answer(self) -> Answer:
        plan, last = self.plan, self.last
        if last is None or plan.prompt is None:
            raise RuntimeError("the engine finished a request without producing a token")
        citations: list[Citation] = plan.prompt.citations
        text = self._answer_text(last).strip()
        grounding = (
            ground(text, f"{plan.question} {plan.standalone}", citations, plan.language)
            if self.check_support
            else Grounding(True, text, cited_numbers(text, len(citations)))
        )
        usage = self._usage()
        timings = Timings(plan.rewrite_ms, plan.retrieve_ms, self.ttft_ms, ms_since(plan.started))
        if not grounding.supported:
            return not_found_answer(plan, last.finish_reason, usage, timings)
        return Answer(
            question=plan.question,
            standalone_question=plan.standalone,
            answer=grounding.text,
            citations=citations,
            cited=grounding.cited,
            attributions=attribute(grounding.text, citations),
            found=True,
            finish_reason=last.finish_reason,
            usage=usage,
            timings=timings,
        )


def not_found_answer(
    plan: Plan,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    timings: Timings | None = None,
) -> Answer:
    """The "not found" reply: nothing relevant was retrieved, or the passages do not
    support what the model wrote (then `usage` and `timings` say what the model cost)."""
    return Answer(
        question=plan.question,
        standalone_question=plan.standalone,
        answer=plan.not_found,
        citations=[],
        cited=[],
        attributions=[],
        found=False,
        finish_reason=finish_reason,
        usage=usage or Usage(),
        timings=timings or Timings(plan.rewrite_ms, plan.retrieve_ms, None, ms_since(plan.started)),
    )


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def last_answer(events: Iterator[AnswerEvent]) -> Answer:
    """The `Answer` at the end of an event stream."""
    for event in events:
        if isinstance(event, DoneEvent):
            return event.answer
    raise RuntimeError("the answer stream ended without a final answer")
