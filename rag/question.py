"""A question as every entry point asks it: checked once, then frozen.

The Python API, the CLI and the HTTP routes pass a question with options; this is the
one place that checks them and turns them into what the pipeline needs.
"""

from dataclasses import dataclass
from typing import Any

from common.ids import MAX_ROW_ID, storable
from engine.sampling_params import SamplingParams
from indexer.store import DEFAULT_TENANT
from rag.errors import InvalidQuestionError
from rag.rewrite import Turn, parse_history

MAX_QUESTION_CHARS = 4000
MAX_TOP_K = 50  # passages one question may ask for
OPTIONS = frozenset(
    {"collection", "history", "top_k", "max_tokens", "temperature", "document_ids", "tenant"}
)


@dataclass(frozen=True)
class Question:
    text: str  # stripped, non-empty, at most MAX_QUESTION_CHARS
    history: list[Turn]  # the conversation before it, oldest first
    params: SamplingParams  # how the answer is generated
    collection: str | None  # search only this collection
    top_k: int | None  # passages given to the model; None: the pipeline's own
    document_ids: list[int] | None  # search only these documents
    tenant: str | None  # whose prompts these are: the prefix cache keeps them apart

    @property
    def cache_salt(self) -> str | None:
        """The prefix-cache namespace: the collection's, within the tenant's."""
        if self.tenant is None:
            return self.collection
        return f"tenant:{self.tenant}/{self.collection or ''}"

    def retrieval(self) -> dict[str, Any]:
        """The options `RAG.retrieve` takes: the tenant's collections are searched (those
        of `DEFAULT_TENANT` when no tenant is named, as on a server without keys)."""
        return {
            "collection": self.collection,
            "top_k": self.top_k,
            "document_ids": self.document_ids,
            "tenant": self.tenant or DEFAULT_TENANT,
        }


def validated_question(
    question: str, options: dict[str, Any], temperature: float, max_tokens: int
) -> Question:
    """The question and its options, checked; `temperature` and `max_tokens` are the
    defaults for options left unset.

    Raises:
        TypeError: an option `RAG.ask` does not take (a caller's bug).
        InvalidQuestionError: a value a user could have sent.
    """
    unknown = set(options) - OPTIONS
    if unknown:
        raise TypeError(f"unknown ask options: {', '.join(sorted(unknown))}")
    if not isinstance(question, str) or not question.strip():
        raise InvalidQuestionError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidQuestionError(f"the question is longer than {MAX_QUESTION_CHARS} chars")
    top_k = options.get("top_k")
    if top_k is not None and not 1 <= top_k <= MAX_TOP_K:
        raise InvalidQuestionError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
    document_ids = options.get("document_ids")
    if document_ids is not None and not all(
        isinstance(i, int) and storable(i) for i in document_ids
    ):
        raise InvalidQuestionError(f"document_ids must be integers of at most {MAX_ROW_ID}")
    try:
        history = parse_history(options.get("history"))
        params = SamplingParams(
            temperature=_pick(options.get("temperature"), temperature),
            max_tokens=_pick(options.get("max_tokens"), max_tokens),
        )
    except ValueError as error:
        raise InvalidQuestionError(str(error)) from None
    return Question(
        question.strip(),
        history,
        params,
        options.get("collection"),
        top_k,
        document_ids,
        options.get("tenant"),
    )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value
