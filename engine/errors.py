"""Errors a user can cause, each with a message that says what to do.

The CLI and the HTTP layer print `str(error)` as one line; they never show a traceback
for these. Impossible states raise `RuntimeError` instead, naming the bug.
"""

from common.errors import InvalidInputError, NotFoundError, PagedRAGError, UnavailableError

__all__ = [
    "EngineClosedError",
    "EngineConfigError",
    "EngineOverloadedError",
    "EngineStepError",
    "EngineWorkerError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "PagedRAGError",
    "PromptTooLongError",
    "UnsupportedModelError",
]


class ModelNotFoundError(NotFoundError):
    """An unknown model name or a path that does not exist."""


class UnsupportedModelError(PagedRAGError):
    """A model whose architecture or format the engine cannot run."""


class ModelIntegrityError(PagedRAGError):
    """A model file that is corrupt or does not match its pinned checksum."""


class PromptTooLongError(InvalidInputError):
    """A prompt that does not fit in the model's context (or in the whole KV pool)."""


class EngineOverloadedError(UnavailableError):
    """More requests are pending than the engine accepts; retry later (HTTP 503)."""


class EngineClosedError(UnavailableError):
    """The serving engine has been shut down; a new one must be started to serve requests."""


class EngineStepError(RuntimeError):
    """A model step failed; the requests it was running were aborted (the engine goes on).

    Not a `PagedRAGError`: no input causes it, it is a bug or an exhausted device. The
    original exception is its `__cause__`.
    """


class EngineConfigError(InvalidInputError):
    """An engine setting out of range (a KV budget too small, a zero block size, ...)."""


class EngineWorkerError(RuntimeError):
    """A rank of a parallel engine died or a collective across the ranks failed: the
    engine cannot go on and must be restarted. Every request in flight fails with it."""
