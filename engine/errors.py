"""Errors a user can cause, each with a message that says what to do.

The CLI and the HTTP layer print `str(error)` as one line; they never show a traceback
for these. Impossible states raise `RuntimeError` instead, naming the bug.
"""


class PagedRAGError(Exception):
    """Base of every error caused by input, configuration or the environment."""


class ModelNotFoundError(PagedRAGError):
    """An unknown model name or a path that does not exist."""


class UnsupportedModelError(PagedRAGError):
    """A model whose architecture or format the engine cannot run."""


class ModelIntegrityError(PagedRAGError):
    """A model file that is corrupt or does not match its pinned checksum."""


class PromptTooLongError(PagedRAGError, ValueError):
    """A prompt that does not fit in the model's context (or in the whole KV pool)."""
