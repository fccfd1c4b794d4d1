"""What `RAG.ask` hands back: the answer, its numbered sources, token usage and timings."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Citation:
    """A passage the model was given, numbered as the prompt numbered it ([n])."""

    n: int  # the number the answer cites it by
    document_id: int
    title: str
    page: int | None  # 1-based page in the original file; None for pageless documents
    chunk_id: int
    text: str
    score: float  # the retriever's score (RRF, cosine or BM25, by search mode)
    char_start: int  # offsets of `text` in the document's extracted text (for highlighting)
    char_end: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attribution:
    """A sentence of the answer and the passage that supports it (see rag/attribution.py)."""

    start: int  # the sentence is answer[start:end], without its closing punctuation,
    end: int  # so a client shows the marker [n] at `end`
    n: int  # the passage, as numbered in `citations`
    share: float  # of the sentence's terms found in that passage


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix or passage cache
    passage_tokens: int = 0  # of those, copied from passages cached at another position
    reused_passages: int = 0  # how many passages those came from


@dataclass(frozen=True, slots=True)
class Timings:
    """Milliseconds from the moment the question arrived."""

    rewrite_ms: float = 0.0  # turning a follow-up into a standalone question
    retrieve_ms: float = 0.0  # search (and rerank)
    ttft_ms: float | None = None  # first answer token; None when the model was not called
    total_ms: float = 0.0

    @property
    def decode_ms(self) -> float:
        return self.total_ms - self.ttft_ms if self.ttft_ms is not None else 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    standalone_question: str  # the question as retrieved for (rewritten from the history)
    answer: str
    citations: list[Citation]  # every passage the model saw, in prompt order
    cited: list[int]  # the [n] the answer actually refers to, in order of first mention
    attributions: list[Attribution]  # sources of the sentences the model left uncited
    found: bool  # False: nothing relevant was retrieved, or the passages did not support
    # what the model wrote; `answer` is then the "not found" reply and `citations` empty
    finish_reason: str | None
    usage: Usage
    timings: Timings


@dataclass(frozen=True, slots=True)
class CitationsEvent:
    """First event of a streamed answer: the sources, before any token."""

    citations: list[Citation]
    standalone_question: str


@dataclass(frozen=True, slots=True)
class TokenEvent:
    delta: str  # new answer text


@dataclass(frozen=True, slots=True)
class DoneEvent:
    answer: Answer


AnswerEvent = CitationsEvent | TokenEvent | DoneEvent
